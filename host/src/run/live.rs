//! A live run: the driver process, its stdout lines, the run's pipeline, and the outbox.
//!
//! The pipeline calls into components synchronously (each call bounded by its deadline), so
//! it lives on a thread of its own fed through a bounded channel: a slow or hostile
//! component backs up this run's stdout, never the async runtime or another run. The async
//! side owns the process: it reads lines, and enforces cancel and timeout (SIGTERM to the
//! group, SIGKILL after the grace). The terminal message goes out the moment the pipeline
//! produces it; the process then gets a short grace to exit before its group is killed.
//!
//! A v3 run can also *suspend* (spec §8): the mapper reports a parked question, the process
//! exits, and `attention::suspend` files the question and keeps the checkpoint. [`resume`]
//! later runs the continuing process through the same loop, carrying the run's start time
//! and usage, and says `resumed` at its first output line.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};

use super::lines::Line;
use super::pipeline::{Carried, RunPipeline, RunSpec};
use super::process::{DriverProcess, ExitInfo, SpawnSpec};
use super::progress::Progress;
use super::tree;
use crate::attention::checkpoint::Checkpoint;
use crate::attention::{Attention, Origin, Parked};
use crate::components::{ActiveComponents, RunReport};
use crate::driver::probe::GATEWAY_KEYS;
use crate::driver::{EnabledDriver, Launch};
use crate::gateway::frames::Dispatch;
use crate::metrics::{RunMeters, RunOutcome};
use crate::outbox::Outbox;
use crate::protocol::PeerMessage;
use crate::rules::Rule;
use crate::sandbox::convert::run_context;
use crate::sandbox::snapshot::Prepared;
use crate::sandbox::{types as t, Limits};
use crate::secret::ApiKey;
use crate::store::{RunGroup, Store};

/// SIGTERM → SIGKILL grace for cancel, timeout and shutdown (the protocol's 3 s).
pub const KILL_GRACE: Duration = Duration::from_secs(3);
/// How long a process may linger after its terminal message before its group is killed.
pub const EXIT_GRACE: Duration = Duration::from_secs(5);

/// What every live run needs besides its dispatch and driver.
#[derive(Clone)]
pub struct RunConfig {
    /// Where the run's messages go (durably, before they are sent).
    pub outbox: Outbox,
    /// The runs' process-group records, for a restarted peer to clean up after a crash.
    pub store: Store,
    pub api_key: ApiKey,
    pub max_line_bytes: usize,
    pub limits: Limits,
    /// Where a finished run reports which components served it and whether one faulted
    /// (the registry's quarantine counts these).
    pub reports: Option<mpsc::UnboundedSender<RunReport>>,
    /// Resumable attention (protocol v3); `None` on a v1 connection.
    pub attention: Option<Attention>,
    /// The peer's own binary, which starts each CLI tied to the peer without forking it
    /// (`run::tied`); `None` forks.
    pub tied_by: Option<PathBuf>,
}

/// How a run's process ended for the dispatcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// The run's terminal message is out: its dispatch key is finished.
    Finished,
    /// The run waits for an answer (its checkpoint is stored): the key stays blocked.
    Suspended,
}

/// One process of a run: a dispatch's first, or the continuation of a suspended run.
struct Job {
    run_id: String,
    cwd: Option<String>,
    timeout_seconds: Option<u64>,
    command: crate::driver::Command,
    started_at: SystemTime,
    /// The generated plugin dir, when the run may suspend.
    plugin_dir: Option<PathBuf>,
    /// Where the run came from, for the checkpoint a suspension writes.
    origin: Origin,
    /// Set for a continuation: what it carries and which decision it answers.
    resumed: Option<Resumed>,
}

struct Resumed {
    carried: Carried,
    decision_id: String,
    resolution_key: String,
    session: String,
}

/// The prompt handed to the driver's CLI, built from the task (spec §2.1's format).
pub fn prompt(d: &Dispatch) -> String {
    let mut p = d.task.title.trim().to_string();
    if let Some(desc) = d.task.description.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        p.push_str("\n\n");
        p.push_str(desc);
    }
    if let Some(skills) = d.task.skill_ids.as_ref().filter(|s| !s.is_empty()) {
        p.push_str("\n\nApply these OrgX skills: ");
        p.push_str(&skills.join(", "));
    }
    p
}

/// What a run's process is driven with: its driver, the peer's settings, the components and
/// rules it started with, the server's cancel (its reason) and what `status` shows of it.
pub struct RunWith {
    pub driver: Arc<EnabledDriver>,
    pub cfg: RunConfig,
    pub components: ActiveComponents,
    pub rules: Arc<Vec<Rule>>,
    /// The snapshot of `rules` prepared in the matcher, when it was ready at dispatch.
    pub prepared: Option<Arc<Prepared>>,
    pub cancel: watch::Receiver<Option<String>>,
    pub progress: Arc<Progress>,
}

/// Run one dispatch to its terminal message (or its suspension); the dispatch's
/// `timeout_seconds` bounds the run.
pub async fn run(dispatch: Dispatch, with: RunWith) -> RunEnd {
    let (driver, cfg) = (&with.driver, &with.cfg);
    let prompt = prompt(&dispatch);
    let mut command = (driver.driver.command)(&Launch { prompt: &prompt, settings: &driver.settings });
    let plugin_dir = match (&cfg.attention, driver.resumable) {
        (Some(a), Some(r)) => match a.prepare_plugin_dir(&dispatch.run_id) {
            Ok(dir) => {
                command.args.extend((r.attention_args)(&dir, &crate::attention::plugin::permission_prompt_tool()));
                Some(dir)
            }
            Err(e) => {
                tracing::warn!(run_id = %dispatch.run_id, "cannot write the attention plugin dir, so questions in this run cannot be answered from OrgX: {e}");
                None
            }
        },
        _ => None,
    };
    let job = Job {
        run_id: dispatch.run_id.clone(),
        cwd: dispatch.task.repo_path.clone(),
        timeout_seconds: dispatch.timeout_seconds,
        command,
        started_at: SystemTime::now(),
        plugin_dir,
        origin: Origin {
            dispatch_key: dispatch.idempotency_key.clone(),
            initiative_id: dispatch.task.initiative_id.clone(),
            workstream_id: dispatch.task.workstream_id.clone(),
        },
        resumed: None,
    };
    drive(job, with).await
}

/// Continue a suspended run whose questions are all answered: `claude --resume <session>`
/// with the first process's flags, `HOME` and working directory (the caller sent
/// `resuming` and checked that the driver can resume).
pub async fn resume(checkpoint: Checkpoint, decision_id: String, resolution_key: String, with: RunWith) -> RunEnd {
    let driver = &with.driver;
    let r = driver.resumable.expect("the resolver resumes only drivers whose CLI can");
    let mut command = (r.resume)(&Launch { prompt: "", settings: &driver.settings }, &checkpoint.session);
    command.args.extend((r.attention_args)(&checkpoint.plugin_dir, &crate::attention::plugin::permission_prompt_tool()));
    command.env_add.push(("ORGX_ATTENTION_DECISION_ID".into(), decision_id.clone().into()));
    let job = Job {
        run_id: checkpoint.run_id.clone(),
        cwd: checkpoint.cwd.clone(),
        timeout_seconds: checkpoint.timeout_seconds,
        command,
        started_at: checkpoint.started_at(),
        plugin_dir: Some(checkpoint.plugin_dir.clone()),
        origin: Origin {
            dispatch_key: checkpoint.dispatch_key.clone(),
            initiative_id: checkpoint.initiative_id.clone(),
            workstream_id: checkpoint.workstream_id.clone(),
        },
        resumed: Some(Resumed {
            carried: Carried {
                first_response_at: checkpoint.first_response_at.clone(),
                tokens_used: checkpoint.tokens_used,
                cost_estimate_cents: checkpoint.cost_estimate_cents,
                saved_estimate_cents: checkpoint.saved_estimate_cents,
            },
            decision_id,
            resolution_key,
            session: checkpoint.session.clone(),
        }),
    };
    drive(job, with).await
}

async fn drive(job: Job, with: RunWith) -> RunEnd {
    let RunWith { driver, cfg, components, rules, prepared, mut cancel, progress } = with;
    let rules_from = if prepared.is_some() { "snapshot" } else { "compiled-per-run" };
    let (outbox, store) = (cfg.outbox.clone(), cfg.store.clone());
    let run_id = job.run_id.clone();
    let started_at = job.started_at;
    let (input, inputs) = mpsc::channel::<Input>(256);
    let (done_tx, mut done) = oneshot::channel::<Option<Parked>>();
    let meters = crate::metrics::global().run_meters(driver.driver.slot);
    let may_suspend = job.plugin_dir.is_some() && cfg.attention.is_some();
    let carried = job.resumed.as_ref().map(|r| r.carried.clone());
    let worker = {
        let mut context = run_context(run_id.clone(), job.cwd.clone(), driver.driver.id);
        let a = driver.attribution.clone();
        (context.detection, context.provider_id, context.model, context.pricing) = (a.detection, a.provider_id, a.model, a.pricing);
        let (outbox, limits, reports, meters, driver_id) =
            (outbox.clone(), cfg.limits, cfg.reports.clone(), meters.clone(), driver.driver.id);
        let start = PipelineStart { context, started_at, may_suspend, carried };
        std::thread::Builder::new().name(format!("run-{}", short(&run_id))).spawn(move || {
            let (report, outcome) =
                pipeline_thread(start, &components, (rules, prepared), limits, outbox, inputs, done_tx, meters, &progress);
            if let Some(outcome) = outcome {
                crate::metrics::global().run_ended(driver_id, outcome);
            }
            if let Some(reports) = reports {
                let _ = reports.send(report);
            }
        })
    };
    let worker = match worker {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(run_id = %run_id, "cannot start the run's pipeline thread: {e}");
            return RunEnd::Finished;
        }
    };

    let spawned = DriverProcess::spawn(spawn_spec(&job, &driver, &cfg));
    let (mut process, mut stdout) = match spawned {
        Ok(p) => p,
        Err(e) => {
            let name = driver.driver.display;
            tracing::error!(run_id = %run_id, driver = driver.driver.id, "cannot start {name}: {e}");
            let reason = format!("cannot start {name}: {e}");
            resume_failed(&cfg, &job, &driver, &reason);
            let _ = input.send(Input::Fail(reason, false)).await;
            drop(input);
            let _ = tokio::task::spawn_blocking(move || worker.join()).await;
            return RunEnd::Finished;
        }
    };
    crate::own_children::register(process.pid());
    tracing::info!(run_id = %run_id, driver = driver.driver.id, pid = process.pid(), rules = rules_from, "run started");
    // Recorded so a restarted peer can kill the group if this one dies mid-run.
    let group = RunGroup { run_id: run_id.clone(), pgid: process.pid(), started: super::process::start_time(process.pid()) };
    if let Err(e) = store.record_run_group(&group) {
        tracing::warn!(run_id = %run_id, "cannot record the run's process group: {e}");
    }

    let timeout = job.timeout_seconds.filter(|s| *s > 0);
    // A continuation proves it accepted the answer with its first output line (§8.1 step 9).
    let mut confirmed = job.resumed.is_none();
    let mut parked: Option<Parked> = None;
    let deadline = async {
        match timeout {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut oversize_reported = 0;
    let end = loop {
        tokio::select! {
            biased;
            finished = &mut done => {
                // The terminal message is out (or the run parked a question); let the process
                // finish on its own, briefly.
                parked = finished.ok().flatten();
                if tokio::time::timeout(EXIT_GRACE, process.wait()).await.is_err() {
                    stop_everything(&run_id, &mut process).await;
                }
                break None;
            }
            reason = cancelled(&mut cancel) => {
                tracing::info!(run_id = %run_id, "cancelling run: {reason}");
                stop_everything(&run_id, &mut process).await;
                break Some(Input::End(t::EndReason::Cancelled(reason), None));
            }
            _ = &mut deadline => {
                let secs = timeout.unwrap_or_default();
                tracing::warn!(run_id = %run_id, "run timed out after {secs} s");
                stop_everything(&run_id, &mut process).await;
                break Some(Input::End(t::EndReason::TimedOut(secs.min(u32::MAX as u64) as u32), None));
            }
            line = stdout.next() => match line {
                Ok(Some(Line::Full(bytes))) => {
                    meters.lines_read.inc();
                    if !confirmed {
                        confirmed = true;
                        resumed(&cfg, &job, &driver);
                    }
                    if input.send(Input::Line(bytes)).await.is_err() {
                        break None;
                    }
                }
                Ok(Some(Line::Oversize { len })) => {
                    oversize_reported += 1;
                    meters.lines_oversize.inc();
                    tracing::warn!(run_id = %run_id, len, limit = cfg.max_line_bytes, "skipped an oversize stdout line");
                }
                Ok(None) | Err(_) => {
                    let exit = process.wait().await;
                    let tail = process.stderr_tail().map(|t| cfg.api_key.redact(&t));
                    if !confirmed {
                        // The continuation ended before it showed it took the answer.
                        let reason = never_confirmed(driver.driver.display, &exit, tail.as_deref());
                        resume_failed(&cfg, &job, &driver, &reason);
                        break Some(Input::Fail(reason, false));
                    }
                    let exit = match exit {
                        ExitInfo::Code(c) => t::ProcessExit::Code(c),
                        ExitInfo::Signal(s) => t::ProcessExit::Signal(s),
                    };
                    break Some(Input::End(t::EndReason::Exited(exit), tail));
                }
            }
        }
    };
    if let Some(end) = end {
        let _ = input.send(end).await;
    }
    drop(input);
    if oversize_reported > 0 {
        tracing::warn!(run_id = %run_id, count = oversize_reported, "oversize stdout lines were skipped");
    }
    // Whatever the run started and left behind — a background job after a normal exit, a
    // shell tool in a session of its own — ends with the run (`tree`).
    crate::own_children::forget(process.pid());
    let leftovers = tree::stop(&run_id, None, None, KILL_GRACE).await;
    if leftovers > 0 {
        tracing::warn!(run_id = %run_id, count = leftovers, "stopped processes the run left behind");
    }
    let _ = tokio::task::spawn_blocking(move || worker.join()).await;
    let _ = store.clear_run_group(&run_id);
    if let (Some(parked), Some(attention)) = (parked, cfg.attention.as_ref()) {
        let ctx = crate::attention::SuspendContext {
            run_id: &run_id,
            driver: driver.driver.id,
            resumable: driver.resumable,
            cwd: job.cwd.clone(),
            plugin_dir: job.plugin_dir.clone(),
            timeout_seconds: job.timeout_seconds,
            started_at,
            origin: &job.origin,
            outbox: &outbox,
            store: &store,
        };
        if attention.suspend(ctx, parked).await {
            tracing::info!(run_id = %run_id, "run suspended: waiting for an answer from OrgX");
            return RunEnd::Suspended;
        }
    }
    tracing::info!(run_id = %run_id, "run finished");
    RunEnd::Finished
}

/// Why a continuation is not running, when it ended before its first line.
fn never_confirmed(name: &str, exit: &ExitInfo, stderr_tail: Option<&str>) -> String {
    let how = match exit {
        ExitInfo::Code(c) => format!("exited with status {c}"),
        ExitInfo::Signal(s) => format!("was killed by signal {s}"),
    };
    let tail = stderr_tail.map(str::trim).filter(|t| !t.is_empty()).map(|t| format!(": {}", crate::redact::reason(t)));
    format!("{name} {how} before it accepted the answer{}", tail.unwrap_or_default())
}

/// A continuation showed its first line: `resumed`.
fn resumed(cfg: &RunConfig, job: &Job, driver: &EnabledDriver) {
    receipt(cfg, job, driver, crate::protocol::ReceiptState::Resumed, None);
}

/// A continuation could not start or ended before it accepted the answer: `resume_failed`.
fn resume_failed(cfg: &RunConfig, job: &Job, driver: &EnabledDriver, detail: &str) {
    receipt(cfg, job, driver, crate::protocol::ReceiptState::ResumeFailed, Some(detail.to_string()));
}

fn receipt(cfg: &RunConfig, job: &Job, driver: &EnabledDriver, state: crate::protocol::ReceiptState, detail: Option<String>) {
    let (Some(r), Some(a)) = (job.resumed.as_ref(), cfg.attention.as_ref()) else { return };
    let source_client = driver.driver.resumable.map_or(driver.driver.id, |x| x.source_client);
    a.receipts.send(crate::attention::receipts::Receipt {
        run_id: &job.run_id,
        decision_id: &r.decision_id,
        idempotency_key: &r.resolution_key,
        state,
        session_handle: Some(&r.session),
        detail,
        source_client,
    });
}

/// SIGTERM to the CLI's group and to every other process of the run at once (some escape
/// the group), SIGKILL to what is left after the grace.
async fn stop_everything(run_id: &str, process: &mut DriverProcess) {
    let pid = process.pid();
    tokio::join!(process.terminate(KILL_GRACE), tree::stop(run_id, Some(pid), Some(pid), KILL_GRACE));
}

/// The server's cancel reason, once there is one. A dropped sender never cancels.
async fn cancelled(rx: &mut watch::Receiver<Option<String>>) -> String {
    let reason = match rx.wait_for(Option::is_some).await {
        Ok(r) => r.clone(),
        Err(_) => None,
    };
    match reason {
        Some(r) => r,
        None => std::future::pending().await,
    }
}

fn spawn_spec(job: &Job, driver: &EnabledDriver, cfg: &RunConfig) -> SpawnSpec {
    let mut env_add = job.command.env_add.clone();
    env_add.push(("ORGX_RUN_ID".into(), job.run_id.clone().into()));
    env_add.push((tree::RUN_TAG.into(), tree::tag(&job.run_id).into()));
    SpawnSpec {
        program: driver.settings.bin.clone(),
        args: job.command.args.clone(),
        cwd: job.cwd.as_deref().map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")),
        // The model's shell tool must not be able to read the gateway key (spec §6); this is
        // the host's rule, whatever the driver asks for.
        env_remove: GATEWAY_KEYS.iter().map(Into::into).collect(),
        env_add,
        max_line_bytes: cfg.max_line_bytes,
        stderr_tail_bytes: 8 << 10,
        setting: driver.driver.bin_env.to_string(),
        install_hint: driver.driver.install_hint.to_string(),
        tied_by: cfg.tied_by.clone(),
    }
}

enum Input {
    Line(Vec<u8>),
    End(t::EndReason, Option<String>),
    Fail(String, bool),
}

/// What the pipeline thread starts from.
struct PipelineStart {
    context: t::RunContext,
    started_at: SystemTime,
    may_suspend: bool,
    carried: Option<Carried>,
}

/// The run's pipeline, fed from `inputs` until its terminal message or its suspension; the
/// run's outcome for the metrics (`None` while it is only suspended).
#[allow(clippy::too_many_arguments)]
fn pipeline_thread(
    start: PipelineStart,
    components: &ActiveComponents,
    (rules, prepared): (Arc<Vec<Rule>>, Option<Arc<Prepared>>),
    limits: Limits,
    outbox: Outbox,
    mut inputs: mpsc::Receiver<Input>,
    done: oneshot::Sender<Option<Parked>>,
    meters: RunMeters,
    progress: &Progress,
) -> (RunReport, Option<RunOutcome>) {
    let PipelineStart { context, started_at, may_suspend, carried } = start;
    let run_id = context.run_id.clone();
    let driver = context.driver.clone();
    let (mut run, first) = RunPipeline::start_metered(
        RunSpec {
            context,
            mapper: &components.mapper(&driver).component,
            matcher: &components.matcher.component,
            rules: &rules,
            prepared: prepared.as_deref(),
            started_at,
            limits,
        },
        meters,
    );
    if may_suspend {
        run.allow_suspension();
    }
    if let Some(c) = carried {
        run.continue_from(c);
    }
    // How the run ended, for `orgx_peer_runs_total`: its terminal message, and whether the
    // end it answered was a cancel or a timeout.
    let mut outcome = RunOutcome::Failed;
    let mut ended_by: Option<RunOutcome> = None;
    // Lines are handed over without waiting for their commit (the writer groups them); only
    // the terminal message is waited for, so the dispatch is recorded finished only after
    // its terminal message is on disk.
    let mut push = |msgs: Vec<PeerMessage>, wait: bool, ended_by: Option<RunOutcome>| {
        match msgs.last() {
            Some(PeerMessage::Completed(_)) => outcome = RunOutcome::Completed,
            Some(PeerMessage::Failed(_)) => outcome = ended_by.unwrap_or(RunOutcome::Failed),
            _ => {}
        }
        if let Some(PeerMessage::Step(s)) = msgs.iter().rev().find(|m| matches!(m, PeerMessage::Step(_))) {
            progress.step(&s.step.summary);
        }
        let handed = outbox.push(&msgs);
        let stored = match handed {
            Ok(ticket) if wait => ticket.wait().map(drop),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            tracing::error!(run_id = %run_id, "cannot persist {} outgoing message(s): {e}", msgs.len());
        }
    };
    // A start that faulted is already done: its started + failed go out (and are waited for) here.
    push(first, run.is_done(), None);
    while !run.is_done() {
        let msgs = match inputs.blocking_recv() {
            Some(Input::Line(line)) => {
                progress.line_read();
                run.on_line(&line)
            }
            Some(Input::End(reason, tail)) => {
                ended_by = match reason {
                    t::EndReason::Cancelled(_) => Some(RunOutcome::Cancelled),
                    t::EndReason::TimedOut(_) => Some(RunOutcome::TimedOut),
                    _ => None,
                };
                run.on_end(&reason, tail.as_deref())
            }
            Some(Input::Fail(reason, recoverable)) => run.fail(reason, recoverable),
            // The async side is gone without an end: still close the run.
            None => run.fail("the peer lost track of the run".into(), true),
        };
        push(msgs, run.is_done(), ended_by);
    }
    let parked = run.suspension().cloned().map(|suspension| Parked {
        suspension,
        first_response_at: run.first_response_at().map(str::to_string),
        message: run.suspended_message().expect("a suspended run has its message"),
    });
    let suspended = parked.is_some();
    let _ = done.send(parked);
    let report = RunReport { served_by: components.digests().iter().map(|d| d.to_string()).collect(), faulted: run.fault().cloned() };
    (report, (!suspended).then_some(outcome))
}

fn short(s: &str) -> String {
    s.chars().take(24).collect()
}
