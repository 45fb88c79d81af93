//! `orgx-peer start`: wires the parts together and owns the shutdown sequence.
//!
//! Boot order matters: the store and the components come first (so the peer can account
//! for what a previous life left behind before it talks to anyone), then the socket and the
//! HTTP loops. Shutdown runs the other way: stop taking work, cancel runs and wait for their
//! `task.failed`, give the outbox a moment to drain, close the socket with 1000.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::components::local_dir::LocalDir;
use crate::components::prepared::PreparedRules;
use crate::components::registry::{Registry, RegistryConfig};
use crate::components::RunReport;
use crate::dispatcher::{Dispatcher, InFlight};
use crate::driver::{Detection, Driver, DriverSettings, EnabledDriver};
use crate::gateway::backoff::BackoffPolicy;
use crate::gateway::endpoint::{BaseUrl, RunnerInstanceId, StreamQuery};
use crate::gateway::session::{Gateway, GatewayStop, LinkState, SessionConfig};
use crate::heartbeat::{self, SharedBeats};
use crate::http::Api;
use crate::outbox::Outbox;
use crate::protocol::{self as p, PeerMessage};
use crate::receipts::ReceiptPoster;
use crate::rules::{Rule, RuleSet};
use crate::run::live::RunConfig;
use crate::run::process::kill_stale_group;
use crate::sandbox::{Compiler, Limits, Sandbox};
use crate::secret::ApiKey;
use crate::status::OwedView;
use crate::store::Store;
use crate::trust::TrustedKeys;

/// Everything `start` needs, already validated.
#[derive(Clone)]
pub struct DaemonConfig {
    pub api_key: ApiKey,
    pub workspace_id: String,
    pub base_url: BaseUrl,
    /// Every known driver with its local settings.
    pub drivers: Vec<(&'static Driver, DriverSettings)>,
    /// `ORGX_DRIVERS`: the drivers to run; `None` runs every one detection finds.
    pub enabled_drivers: Option<Vec<&'static str>>,
    pub data_dir: PathBuf,
    pub runner_instance_id: Option<RunnerInstanceId>,
    pub activation: Option<crate::heartbeat::Activation>,
    pub plugin_id: String,
    pub max_concurrent_runs: usize,
    pub max_line_bytes: usize,
    pub ping_interval: Duration,
    pub dead_after: Duration,
    pub backoff: BackoffPolicy,
    pub presence_interval: Duration,
    pub license_interval: Duration,
    pub receipt_grace: Duration,
    pub trusted_keys: TrustedKeys,
    pub components_dir: PathBuf,
    pub components_poll: Duration,
    pub dev_unsigned_local: bool,
    pub max_component_bytes: u64,
    /// `ORGX_METRICS_ADDR`: where Prometheus metrics are served; `None`: not served.
    pub metrics_addr: Option<crate::metrics::MetricsAddr>,
    /// `ORGX_PROTOCOL_VERSION`: the one `orgx.vN` offered.
    pub protocol: crate::gateway::version::ProtocolVersion,
}

/// After the cancel, how long shutdown waits for the runs' terminal messages: the SIGTERM →
/// SIGKILL grace, plus time for the mapper to turn the exit into `task.failed`.
const SHUTDOWN_RUNS_WAIT: Duration = crate::run::live::KILL_GRACE.saturating_add(Duration::from_secs(5));
/// How long a connected socket gets to deliver what is owed; the rest waits on disk.
const SHUTDOWN_DRAIN_WAIT: Duration = Duration::from_secs(5);
/// How long the socket gets to close with 1000.
const SHUTDOWN_CLOSE_WAIT: Duration = Duration::from_secs(5);
/// The longest a clean stop takes after SIGTERM, save the last outbox commit (18 s).
/// A service manager's stop timeout must exceed it, or it SIGKILLs a peer that was still
/// reporting its cancelled runs (`service::STOP_TIMEOUT`, Kubernetes' grace period).
pub const SHUTDOWN_BUDGET: Duration = SHUTDOWN_RUNS_WAIT.saturating_add(SHUTDOWN_DRAIN_WAIT).saturating_add(SHUTDOWN_CLOSE_WAIT);

/// Why the daemon stopped, for `main`'s exit code.
#[derive(Debug)]
pub enum DaemonExit {
    /// SIGINT/SIGTERM: a clean stop.
    Signal,
    /// The server refused the peer (401/403, or a no-reconnect close code).
    Refused(String),
}

pub async fn run(cfg: DaemonConfig) -> anyhow::Result<DaemonExit> {
    crate::memory::map_large_allocations();
    // The store creates the data dir: its error names the fault and the fix (`store::open`).
    let store = Store::open(&cfg.data_dir.join("peer.redb"))?;
    let installation_id = installation_id(&store)?;
    crate::run::tree::scope_to(&cfg.data_dir);
    // Orphans of runs re-parent to the peer, not PID 1, so their trees stay walkable.
    if !crate::run::tree::become_subreaper() {
        tracing::warn!("cannot become the reaper of the runs' orphaned processes; runs are still stopped by their ORGX_RUN_TAG");
    }
    let outbox = Outbox::new(store.clone());
    reap_previous_life(&store, &outbox).await?;

    let limits = Limits::default();
    // Cranelift runs in a child, so what compiling frees leaves with it (`sandbox::compiler`).
    // This binary also starts each CLI (`run::tied`), so that starting one never forks the peer.
    let own_exe = std::env::current_exe()
        .inspect_err(|e| {
            tracing::warn!(
                "cannot find this executable ({e}); components compile in the daemon's own process, and CLIs start from a fork of it"
            )
        })
        .ok();
    let compiler = match &own_exe {
        Some(exe) => Compiler::Subprocess { exe: exe.clone() },
        None => Compiler::InProcess,
    };
    let sandbox = Sandbox::new(limits)?.with_compiler(compiler);
    // Components first: the last accepted version of each slot serves before any socket.
    let (registry, local) = open_components(&cfg, &store, sandbox.clone()).await?;
    let components_rx = registry.subscribe();
    let (reports_tx, mut reports_rx) = mpsc::unbounded_channel::<RunReport>();
    let cached_rules = store.cached_rules()?.and_then(|b| RuleSet::from_plan_skills(&b).ok()).map(|s| s.rules).unwrap_or_default();
    tracing::info!(rules = cached_rules.len(), "loaded cached skill rules");
    let (rules_tx, rules_rx) = watch::channel(Arc::new(cached_rules));

    // Detection runs once, here, for every driver at once; heartbeats read the cache.
    let detections = detect_drivers(&cfg.drivers).await;
    let enabled = enabled_drivers(&cfg, &detections);
    let enabled_ids: Vec<&'static str> = enabled.keys().copied().collect();
    if enabled_ids.is_empty() {
        tracing::warn!("no driver is available: every dispatch will be refused (install a CLI, or check ORGX_DRIVERS)");
    }
    let detections = Arc::new(detections);
    // Start-up compiled every component; what that freed goes back before the peer idles.
    crate::memory::release_freed();

    let api = Api::new(cfg.base_url.clone(), cfg.api_key.clone())?;
    let (shutdown_tx, shutdown) = watch::channel(false);
    let (draining_tx, draining) = watch::channel(false);
    let (link_tx, link) = watch::channel(LinkState::Connecting);
    let (frames_tx, mut frames) = mpsc::channel(256);
    let beats: SharedBeats = SharedBeats::default();
    let in_flight = InFlight::default();

    let url = cfg.base_url.gateway_stream(&StreamQuery {
        workspace_id: &cfg.workspace_id,
        plugin_id: &cfg.plugin_id,
        drivers: &enabled_ids,
        installation_id: Some(&installation_id),
        runner_instance_id: cfg.runner_instance_id.as_ref(),
    });
    let gateway = Gateway {
        config: SessionConfig {
            url,
            api_key: cfg.api_key.clone(),
            protocol: cfg.protocol,
            ping_interval: cfg.ping_interval,
            dead_after: cfg.dead_after,
            backoff: cfg.backoff,
            batch: 256,
            max_frame_bytes: crate::gateway::frames::max_frame_bytes(cfg.max_component_bytes),
        },
        outbox: outbox.clone(),
        frames: frames_tx,
        state: link_tx,
    };

    // v3: questions become OrgX questions; the receipts' HTTP channel posts until a 2xx.
    let attention = if cfg.protocol.resumable_attention() {
        let receipts = crate::attention::receipts::Receipts::new(outbox.clone(), store.clone());
        tokio::spawn(receipts.clone().post_loop(api.clone(), link.clone(), cfg.backoff, shutdown.clone()));
        let exe = std::env::current_exe().map_err(|e| anyhow::anyhow!("cannot find this binary, which the attention hook runs: {e}"))?;
        // Replaced by an upgrade while running, Linux names it `<path> (deleted)`: the new
        // binary at the same path has the same subcommands.
        let exe = match exe.to_str().and_then(|p| p.strip_suffix(" (deleted)")) {
            Some(p) => std::path::PathBuf::from(p),
            None => exe,
        };
        Some(crate::attention::Attention { api: api.clone(), receipts, dir: cfg.data_dir.join("attention"), exe })
    } else {
        None
    };
    // The rules compiled once per version, for runs to start from (`components::prepared`).
    let prepared = Arc::new(PreparedRules::default());
    tokio::spawn(prepare_loop(sandbox, prepared.clone(), components_rx.clone(), rules_rx.clone(), shutdown.clone()));
    let dispatcher = Arc::new(Dispatcher {
        drivers: enabled,
        run: RunConfig {
            outbox: outbox.clone(),
            store: store.clone(),
            api_key: cfg.api_key.clone(),
            max_line_bytes: cfg.max_line_bytes,
            limits,
            reports: Some(reports_tx),
            attention,
            tied_by: own_exe,
        },
        outbox: outbox.clone(),
        store: store.clone(),
        components: components_rx.clone(),
        rules: rules_rx.clone(),
        prepared: prepared.clone(),
        max_concurrent_runs: cfg.max_concurrent_runs,
        workspace_id: cfg.workspace_id.clone(),
        in_flight: in_flight.clone(),
        draining: draining.clone(),
        registry: Some(registry.clone()),
        api: Some(api.clone()),
    });
    let dispatch_task = {
        let dispatcher = dispatcher.clone();
        tokio::spawn(async move {
            while let Some(frame) = frames.recv().await {
                dispatcher.handle(frame);
            }
        })
    };

    // Finished runs feed quarantine; a quarantine is reported to the server.
    {
        let (registry, outbox) = (registry.clone(), outbox.clone());
        tokio::spawn(async move {
            while let Some(report) = reports_rx.recv().await {
                let registry = registry.clone();
                let quarantined = tokio::task::spawn_blocking(move || registry.on_run_report(&report)).await.ok().flatten();
                if let Some(quarantined) = quarantined {
                    if let Err(e) = outbox.push_control(&[crate::dispatcher::push::quarantined_message(quarantined)]) {
                        tracing::error!("cannot queue the quarantine report: {e}");
                    }
                }
            }
        });
    }
    tokio::spawn(local.watch(registry.clone(), cfg.components_poll, shutdown.clone()));
    // License heartbeat: the fingerprint follows the active components.
    {
        let (components, cfg2) = (components_rx.clone(), cfg.clone());
        let body = move || {
            let c = components.borrow();
            let fp = heartbeat::manifest_fingerprint(&c.digests());
            heartbeat::license_body(&cfg2.workspace_id, &cfg2.plugin_id, &fp)
        };
        tokio::spawn(heartbeat::license_loop(
            api.clone(),
            body,
            cfg.license_interval,
            cfg.backoff,
            beats.clone(),
            components_rx.clone(),
            shutdown.clone(),
        ));
    }
    // Presence heartbeat, from cached state only.
    {
        let (link_now, detections, runs, cfg2, installation_id, ids) =
            (link.clone(), detections.clone(), in_flight.clone(), cfg.clone(), installation_id.clone(), enabled_ids.clone());
        let body = move || {
            heartbeat::presence_body(&heartbeat::Presence {
                workspace_id: &cfg2.workspace_id,
                plugin_id: &cfg2.plugin_id,
                installation_id: &installation_id,
                runner_instance_id: cfg2.runner_instance_id.as_ref().map(|r| r.as_str()),
                activation: cfg2.activation.as_ref(),
                drivers: &ids,
                detections: &detections,
                online: *link_now.borrow() == LinkState::Connected,
                runs_in_flight: runs.len(),
                protocol_version: cfg2.protocol.number(),
            })
        };
        tokio::spawn(heartbeat::presence_loop(api.clone(), body, cfg.presence_interval, link.clone(), beats.clone(), shutdown.clone()));
    }
    // Skill rules on every connect; a failure keeps the last rules.
    tokio::spawn(rules_loop(api.clone(), cfg.workspace_id.clone(), store.clone(), rules_tx, link.clone(), shutdown.clone()));
    tokio::spawn(
        ReceiptPoster {
            api: api.clone(),
            outbox: outbox.clone(),
            store: store.clone(),
            link: link.clone(),
            grace: cfg.receipt_grace,
            backoff: cfg.backoff,
        }
        .run(shutdown.clone()),
    );
    let status_task = {
        let (link, in_flight, outbox, beats, detections, components, rules, cfg2, registry, ids, prepared) = (
            link.clone(),
            in_flight.clone(),
            outbox.clone(),
            beats.clone(),
            detections.clone(),
            components_rx.clone(),
            rules_rx.clone(),
            cfg.clone(),
            registry.clone(),
            enabled_ids.clone(),
            prepared.clone(),
        );
        crate::status::serve(&cfg.data_dir, move || {
            let c = components.borrow();
            let runs = in_flight.run_ids();
            crate::status::Snapshot {
                version: env!("CARGO_PKG_VERSION"),
                workspace_id: cfg2.workspace_id.clone(),
                link: link_text(&link.borrow()),
                protocol: cfg2.protocol.subprotocol(),
                runs_in_flight_count: runs.len(),
                runs_in_flight: runs,
                runs: in_flight.runs(),
                queue_depth: outbox.pending_count(),
                oldest_owed: OwedView::of(outbox.oldest_owed()),
                store_commits: outbox.commits(),
                messages_stored: outbox.stored(),
                rules: rules.borrow().len(),
                rules_start: prepared.start_of(&c.matcher.component, &rules.borrow()),
                components: c.describe(),
                components_dir: cfg2.components_dir.display().to_string(),
                dev_unsigned_local: cfg2.dev_unsigned_local,
                trusted_keys: registry.trusted_key_ids(),
                quarantined: registry.quarantined(),
                heartbeats: beats.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                drivers_enabled: ids.clone(),
                drivers: (*detections).clone(),
            }
        })
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the status socket in `{}`: {e}", cfg.data_dir.display()))?
    };
    let metrics_task = match cfg.metrics_addr {
        Some(addr) => {
            let (outbox, in_flight) = (outbox.clone(), in_flight.clone());
            // Gauges of state other parts own are read when scraped, not kept up to date.
            let scrape = Arc::new(move || {
                let m = crate::metrics::global();
                m.set_outbox_depth(outbox.pending_count());
                m.set_runs_in_flight(in_flight.len());
                m.encode()
            });
            let (bound, task) = crate::metrics::server::start(addr, scrape).await?;
            tracing::info!(addr = %bound, "metrics served at http://{bound}/metrics");
            Some(task)
        }
        None => None,
    };
    // The banner: what this peer is and serves, in one line an operator can quote.
    let runs: Vec<String> =
        enabled_ids.iter().map(|id| format!("{id} {}", detections.get(id).and_then(|d| d.version.as_deref()).unwrap_or("?"))).collect();
    tracing::info!(
        version = crate::build_info::VERSION,
        data_dir = %cfg.data_dir.display(),
        server = cfg.base_url.as_str(),
        protocol = cfg.protocol.subprotocol(),
        drivers = %if runs.is_empty() { "none".to_string() } else { runs.join(", ") },
        "orgx-peer started"
    );

    // The socket last: by the time the server can dispatch, `status` answers and every
    // loop above is running.
    let mut gateway_task = tokio::spawn(gateway.run(shutdown.clone()));
    let exit = tokio::select! {
        _ = shutdown_signal() => DaemonExit::Signal,
        stop = &mut gateway_task => match stop {
            Ok(GatewayStop::Refused(why)) => DaemonExit::Refused(why),
            Ok(GatewayStop::Shutdown) | Err(_) => DaemonExit::Signal,
        },
    };

    // Shutdown: no new work; cancel runs; wait for their terminal messages.
    tracing::info!("shutting down: cancelling {} run(s)", in_flight.len());
    draining_tx.send_replace(true);
    dispatcher.cancel_all("peer shutting down");
    let wait_runs = SHUTDOWN_RUNS_WAIT;
    if tokio::time::timeout(wait_runs, futures_util::future::join_all(in_flight.take_tasks())).await.is_err() {
        tracing::warn!(
            "runs did not finish within {} s of the cancel; their terminal messages come from the next start",
            wait_runs.as_secs()
        );
    }
    // Give a connected socket a moment to deliver what is owed; the rest waits on disk.
    if *link.borrow() == LinkState::Connected {
        outbox.drained(SHUTDOWN_DRAIN_WAIT).await;
    }
    shutdown_tx.send_replace(true);
    if !gateway_task.is_finished() {
        let _ = tokio::time::timeout(SHUTDOWN_CLOSE_WAIT, &mut gateway_task).await;
    }
    dispatch_task.abort();
    status_task.abort();
    if let Some(task) = metrics_task {
        task.abort();
    }
    let _ = std::fs::remove_file(crate::status::socket_path(&cfg.data_dir));
    // Whatever was handed over (the last deliveries among it) is committed before exit.
    if let Err(e) = outbox.flush().committed().await {
        tracing::warn!("the outbox did not finish its last write: {e}");
    }
    let owed = outbox.pending_count();
    if owed > 0 {
        tracing::warn!(owed, "stopped with messages still owed; they are kept on disk and sent after the next start");
    }
    tracing::info!("orgx-peer stopped");
    Ok(exit)
}

/// The registry (stored components restored) and the local directory, scanned once.
async fn open_components(cfg: &DaemonConfig, store: &Store, sandbox: Sandbox) -> anyhow::Result<(Arc<Registry>, LocalDir)> {
    let registry = Arc::new(Registry::open(
        sandbox,
        store.clone(),
        RegistryConfig {
            data_dir: cfg.data_dir.clone(),
            trusted: cfg.trusted_keys.clone(),
            max_component_bytes: cfg.max_component_bytes,
            dev_unsigned_local: cfg.dev_unsigned_local,
        },
    )?);
    if cfg.trusted_keys.is_empty() {
        tracing::info!("no trusted component keys configured (ORGX_TRUSTED_KEYS_FILE): pushed and local signed components will be refused");
    } else {
        tracing::info!(keys = ?cfg.trusted_keys.ids(), "trusted component-signing keys");
    }
    if cfg.dev_unsigned_local {
        tracing::warn!(dir = %cfg.components_dir.display(), "DEV MODE: unsigned components from the local directory will be admitted (ORGX_DEV_UNSIGNED_LOCAL)");
    }
    if let Err(e) = std::fs::create_dir_all(&cfg.components_dir) {
        tracing::warn!(dir = %cfg.components_dir.display(), "cannot create the local components directory: {e}");
    }
    let mut local = LocalDir::new(cfg.components_dir.clone());
    let scanning = registry.clone();
    let local = tokio::task::spawn_blocking(move || {
        local.scan(&scanning);
        local
    })
    .await?;
    Ok((registry, local))
}

fn link_text(s: &LinkState) -> String {
    match s {
        LinkState::Connecting => "connecting".into(),
        LinkState::Connected => "connected".into(),
        LinkState::Retrying(why) => format!("reconnecting ({why})"),
        LinkState::Stopped(why) => format!("stopped ({why})"),
    }
}

/// Detect every driver at once (each probe is bounded) and log what was found.
async fn detect_drivers(drivers: &[(&'static Driver, DriverSettings)]) -> BTreeMap<&'static str, Detection> {
    let probes = drivers.iter().map(|(d, s)| async move { (d.id, (d.detect)(&s.bin, s).await) });
    let found: BTreeMap<_, _> = futures_util::future::join_all(probes).await.into_iter().collect();
    for (id, d) in &found {
        match &d.hint {
            Some(hint) if d.installed => tracing::warn!(driver = id, version = d.version.as_deref().unwrap_or("?"), "{hint}"),
            Some(hint) => tracing::info!(driver = id, "{hint}"),
            None => tracing::info!(driver = id, version = d.version.as_deref().unwrap_or("?"), "driver found"),
        }
    }
    found
}

/// The drivers this peer runs: `ORGX_DRIVERS` as given, else every installed one.
fn enabled_drivers(cfg: &DaemonConfig, detections: &BTreeMap<&'static str, Detection>) -> BTreeMap<&'static str, Arc<EnabledDriver>> {
    let wanted = |id: &str| match &cfg.enabled_drivers {
        Some(list) => list.contains(&id),
        None => detections.get(id).is_some_and(|d| d.installed),
    };
    cfg.drivers
        .iter()
        .filter(|(d, _)| wanted(d.id))
        .map(|(d, s)| {
            let detection = detections.get(d.id);
            let attribution = (d.attribution)(s, detection);
            // Attention only where the installed CLI can park a call (claude 2.1.89+).
            let resumable = d.resumable.filter(|r| r.supports(detection.and_then(|x| x.version.as_deref())));
            if d.resumable.is_some() && resumable.is_none() && cfg.protocol.resumable_attention() {
                tracing::info!(driver = d.id, "this CLI version cannot park a tool call: its runs go without resumable attention");
            }
            (d.id, Arc::new(EnabledDriver { driver: d, settings: s.clone(), attribution, resumable }))
        })
        .collect()
}

/// Keeps the newest rules version prepared in the matcher new runs get: again whenever the
/// matcher or the rules change. Off the runtime: preparing is a compile and a component call.
async fn prepare_loop(
    sandbox: Sandbox,
    prepared: Arc<PreparedRules>,
    mut components: watch::Receiver<crate::components::ActiveComponents>,
    mut rules: watch::Receiver<Arc<Vec<Rule>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let matcher = components.borrow_and_update().matcher.component.clone();
        let now = rules.borrow_and_update().clone();
        let (sandbox, into) = (sandbox.clone(), prepared.clone());
        // A panic (a defect) loses only the snapshot: runs then compile their own rules.
        let _ = tokio::task::spawn_blocking(move || into.refresh(&sandbox, &matcher, &now)).await;
        tokio::select! {
            changed = components.changed() => if changed.is_err() { return },
            changed = rules.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}

async fn rules_loop(
    api: Api,
    workspace_id: String,
    store: Store,
    rules: watch::Sender<Arc<Vec<Rule>>>,
    mut link: watch::Receiver<LinkState>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = link.wait_for(|s| *s == LinkState::Connected) => if r.is_err() { return },
            _ = crate::shutdown::raised(&mut shutdown) => return,
        }
        match api.plan_skills(&workspace_id).await {
            // The body as it came (at most `http::MAX_PLAN_SKILLS_BYTES`), parsed once.
            Ok(bytes) => {
                match RuleSet::from_plan_skills(&bytes) {
                    Ok(set) => {
                        // One line for them all: a server can send 10,000 bad rules.
                        if let Some(first) = set.skipped.first() {
                            let n = set.skipped.len();
                            tracing::warn!(skipped = n, "plan-skills: skipped {n} bad rule(s) or skill(s); the first: {first}");
                        }
                        tracing::info!(rules = set.rules.len(), "skill rules fetched; new runs use them");
                        if let Err(e) = store.set_cached_rules(&bytes) {
                            tracing::error!("cannot cache the skill rules: {e}");
                        }
                        rules.send_replace(Arc::new(set.rules));
                    }
                    Err(e) => tracing::warn!("plan-skills answer unusable, keeping the last rules: {e}"),
                }
            }
            Err(e) => tracing::warn!("cannot fetch skill rules, keeping the last ones: {e}"),
        }
        // Wait for this connection to end before fetching again on the next one.
        tokio::select! {
            r = link.wait_for(|s| *s != LinkState::Connected) => if r.is_err() { return },
            _ = crate::shutdown::raised(&mut shutdown) => return,
        }
    }
}

fn installation_id(store: &Store) -> anyhow::Result<String> {
    if let Some(id) = store.installation_id()? {
        return Ok(id);
    }
    let id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    store.set_installation_id(&id)?;
    Ok(id)
}

/// Account for what a previous life (crash, SIGKILL) left: leftover process groups, and
/// every process tagged with a run's id (shell tools in sessions of their own), are killed,
/// and runs that were in flight end with `task.failed` (queued like any message).
async fn reap_previous_life(store: &Store, outbox: &Outbox) -> anyhow::Result<()> {
    for group in store.run_groups()? {
        if kill_stale_group(group.pgid, group.started) {
            tracing::warn!(run_id = %group.run_id, pgid = group.pgid, "killed a process group left by a previous run of the peer");
        }
        let escaped = crate::run::tree::stop(&group.run_id, None, None, crate::run::live::KILL_GRACE).await;
        if escaped > 0 {
            tracing::warn!(run_id = %group.run_id, count = escaped, "stopped processes a previous run of the peer left behind");
        }
        store.clear_run_group(&group.run_id)?;
    }
    for (key, run_id) in store.running_dispatches()? {
        // A run waiting for an answer survives the restart: the answer still resumes it. One
        // whose continuation was running cannot prove where it was, and ends below.
        match crate::attention::checkpoint::Checkpoint::load(store, &run_id)? {
            Some(cp) if cp.state == crate::attention::checkpoint::State::Suspended => {
                tracing::info!(run_id = %run_id, "run is waiting for an answer from OrgX");
                continue;
            }
            Some(cp) => cp.discard(store),
            None => {}
        }
        if !outbox.terminal_delivered(&run_id) && !has_queued_terminal(store, &run_id)? {
            tracing::warn!(run_id = %run_id, "run was in flight when the peer stopped; reporting it failed");
            let failed = PeerMessage::Failed(p::Failed {
                run_id: run_id.clone(),
                reason: "the peer stopped while the run was in flight".into(),
                recoverable: true,
            });
            // Killed before its CLI's first line: the server has never heard of the run, and
            // every run starts with `task.started` (spec §3.9).
            let msgs = if store.run_started(&run_id)? {
                vec![failed]
            } else {
                let started_at = crate::time::iso8601(std::time::SystemTime::now());
                vec![PeerMessage::Started(p::Started { run_id: run_id.clone(), started_at, session_handle: None }), failed]
            };
            outbox.push_control(&msgs)?.committed().await?;
        }
        store.finish_dispatch(&key)?;
    }
    Ok(())
}

fn has_queued_terminal(store: &Store, run_id: &str) -> anyhow::Result<bool> {
    Ok(store.pending(None, usize::MAX)?.iter().any(|e| e.terminal && e.run_id == run_id))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
