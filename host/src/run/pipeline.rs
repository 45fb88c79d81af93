//! One run's path from driver output lines to wire messages: sandbox in, protocol out.
//!
//! The pipeline owns the run's component instances and the one invariant the host enforces
//! itself: exactly one `task.started` first and exactly one terminal message last, whatever
//! the components do or fail to do. Everything about what a line *means* is the mapper's and
//! the matcher's; the pipeline only stamps `run_id` and wall-clock times.
//!
//! It is synchronous on purpose: component calls block for up to their deadline, so a live
//! run drives its pipeline from a dedicated thread, and `replay` drives the same pipeline
//! from a file — one code path for both.

use std::time::{Instant, SystemTime};

use crate::time::iso8601;

use super::budget::RunBudget;
use crate::metrics::RunMeters;
use crate::protocol::{self as p, PeerMessage};
use crate::rules::Rule;
use crate::sandbox::convert::provider_ref;
use crate::sandbox::instance::{deviation_bytes, event_bytes};
use crate::sandbox::snapshot::Prepared;
use crate::sandbox::{matcher_types as m, types as t, Fault, Limits, LoadedComponent, MapperInstance, MatcherInstance};

/// What a run needs to start.
pub struct RunSpec<'a> {
    /// What the mapper is told about its run (its id, working directory, driver, detection).
    pub context: t::RunContext,
    pub mapper: &'a LoadedComponent,
    pub matcher: &'a LoadedComponent,
    pub rules: &'a [Rule],
    /// `rules` prepared in `matcher` once (a WIT 0.3.0 matcher's snapshot): the run starts
    /// from it instead of compiling them. `None`: the run compiles them itself.
    pub prepared: Option<&'a Prepared>,
    pub started_at: SystemTime,
    pub limits: Limits,
}

/// What a resumed process carries over from the run's earlier processes (spec §8.1 step 9):
/// the run already started, its first response time, and the usage to add to the terminal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Carried {
    pub first_response_at: Option<String>,
    pub tokens_used: u64,
    pub cost_estimate_cents: u64,
    pub saved_estimate_cents: Option<u64>,
}

pub struct RunPipeline {
    run_id: String,
    started_at: String,
    first_response_at: Option<String>,
    started_sent: bool,
    done: bool,
    mapper: Option<MapperInstance>,
    matcher: Option<MatcherInstance>,
    /// The first component fault of the run: (digest, what happened). Quarantine counts it.
    fault: Option<(String, String)>,
    budget: RunBudget,
    /// Component calls are counted here, resolved once per run (the per-line path takes no lock).
    meters: RunMeters,
    /// May the run suspend on a question (protocol v3 with a CLI that parks calls)?
    may_suspend: bool,
    carried: Carried,
    /// The parked call, with the usage of every process so far, once the run suspended.
    suspension: Option<t::Suspension>,
}

impl RunPipeline {
    /// Instantiate the run's components and load its rules. A fault here still yields a
    /// well-formed run: the returned messages then hold `task.started` and `task.failed`.
    pub fn start(spec: RunSpec<'_>) -> (RunPipeline, Vec<PeerMessage>) {
        Self::start_metered(spec, RunMeters::default())
    }

    /// [`RunPipeline::start`], counting component calls into `meters` (a live run's, which the
    /// metrics endpoint serves; replays and benchmarks count into detached ones).
    pub fn start_metered(spec: RunSpec<'_>, meters: RunMeters) -> (RunPipeline, Vec<PeerMessage>) {
        let mut run = RunPipeline {
            run_id: spec.context.run_id.clone(),
            started_at: iso8601(spec.started_at),
            first_response_at: None,
            started_sent: false,
            done: false,
            mapper: None,
            matcher: None,
            fault: None,
            budget: RunBudget::new(&spec.limits, Instant::now()),
            meters,
            may_suspend: false,
            carried: Carried::default(),
            suspension: None,
        };
        let mut out = Vec::new();
        if let Err(fault) = run.instantiate(&spec) {
            run.fail_with_fault(&fault, &mut out);
        }
        (run, out)
    }

    fn instantiate(&mut self, spec: &RunSpec<'_>) -> Result<(), Fault> {
        let limits = spec.limits;
        let mut mapper = MapperInstance::new(spec.mapper, limits)?;
        self.meters.mapper_calls.inc();
        mapper.begin(&spec.context)?;
        self.meters.matcher_calls.inc();
        let run_id = &spec.context.run_id;
        let (matcher, own_warnings);
        let warnings = match spec.prepared {
            Some(prepared) => {
                let mut instance = MatcherInstance::new(&prepared.component, limits)?;
                instance.begin_prepared(run_id)?;
                matcher = instance;
                &prepared.warnings
            }
            None => {
                let mut instance = MatcherInstance::new(spec.matcher, limits)?;
                let rules: Vec<m::Rule> = spec.rules.iter().map(Into::into).collect();
                own_warnings = instance.begin(run_id, &rules)?;
                matcher = instance;
                &own_warnings
            }
        };
        // One line per run however many rules were refused (a server can send 10,000 bad
        // ones); each rule's own reason is at debug level.
        for w in warnings {
            let skill = spec.rules.get(w.index as usize).map_or("?", |r| r.skill_id.as_str());
            tracing::debug!(run_id = %spec.context.run_id, skill_id = skill, "rule #{} disabled: {}", w.index, w.message);
        }
        if let Some(first) = warnings.first() {
            let skill = spec.rules.get(first.index as usize).map_or("?", |r| r.skill_id.as_str());
            tracing::warn!(run_id = %spec.context.run_id, component = %matcher.component().label(), disabled = warnings.len(),
                "{} rule(s) disabled for this run; the first, rule #{} of skill `{skill}`: {}", warnings.len(), first.index, first.message);
        }
        self.mapper = Some(mapper);
        self.matcher = Some(matcher);
        Ok(())
    }

    /// Let a question suspend the run instead of failing it (resumable attention).
    pub fn allow_suspension(&mut self) {
        self.may_suspend = true;
    }

    /// This process continues a suspended run: `task.started` went out with the first one,
    /// and its usage is added to this one's.
    pub fn continue_from(&mut self, carried: Carried) {
        self.started_sent = true;
        self.first_response_at = carried.first_response_at.clone();
        self.carried = carried;
    }

    /// The run's `first_response_at`, once there was one.
    pub fn first_response_at(&self) -> Option<&str> {
        self.first_response_at.as_deref()
    }

    /// The parked call, once the run suspended (its usage includes every earlier process).
    pub fn suspension(&self) -> Option<&t::Suspension> {
        self.suspension.as_ref()
    }

    /// `task.suspended` for the parked call (the live run sends it once the question is
    /// filed in OrgX; `replay` prints it).
    pub fn suspended_message(&self) -> Option<PeerMessage> {
        let s = self.suspension.as_ref()?;
        Some(PeerMessage::Suspended(p::Suspended {
            run_id: self.run_id.clone(),
            reason: "attention".into(),
            session_handle: s.session_handle.clone(),
            detail: None,
        }))
    }

    /// Whether the terminal message has been produced; later input is ignored.
    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The component that faulted in this run, if one did: its digest and the fault.
    pub fn fault(&self) -> Option<&(String, String)> {
        self.fault.as_ref()
    }

    /// Map one stdout line (without its newline).
    pub fn on_line(&mut self, line: &[u8]) -> Vec<PeerMessage> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        let Some(mapper) = self.mapper.as_mut() else { return out };
        self.meters.mapper_calls.inc();
        let mapped = mapper.map_line(line).and_then(|events| {
            let bytes = events.iter().map(event_bytes).sum::<usize>() as u64;
            match self.budget.charge(events.len() as u64, bytes, Instant::now()) {
                Ok(()) => Ok(events),
                Err(o) => Err(mapper.overrun("map-line", o.what, o.limit)),
            }
        });
        match mapped {
            Ok(events) => {
                for event in events {
                    if let Err(fault) = self.apply(event, &mut out) {
                        self.fail_with_fault(&fault, &mut out);
                    }
                    if self.done {
                        break;
                    }
                }
            }
            Err(fault) => self.fail_with_fault(&fault, &mut out),
        }
        out
    }

    /// The output ended (or the run was cancelled / timed out) without a terminal message.
    pub fn on_end(&mut self, reason: &t::EndReason, stderr_tail: Option<&str>) -> Vec<PeerMessage> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        let Some(mapper) = self.mapper.as_mut() else { return out };
        self.meters.mapper_calls.inc();
        match mapper.end(reason, stderr_tail) {
            Ok(terminal) => self.emit_terminal(terminal, &mut out),
            Err(fault) => self.fail_with_fault(&fault, &mut out),
        }
        out
    }

    /// End the run now with `task.failed` (e.g. the driver could not be spawned).
    pub fn fail(&mut self, reason: String, recoverable: bool) -> Vec<PeerMessage> {
        let mut out = Vec::new();
        if !self.done {
            self.emit_terminal(t::Terminal::Failed(t::Failed { reason, recoverable }), &mut out);
        }
        out
    }

    fn apply(&mut self, event: t::Event, out: &mut Vec<PeerMessage>) -> Result<(), Fault> {
        match event {
            t::Event::Started(handle) => self.ensure_started(handle, out),
            t::Event::FirstResponse => {
                if self.first_response_at.is_none() {
                    self.first_response_at = Some(iso8601(SystemTime::now()));
                }
            }
            t::Event::Step(step) => {
                self.ensure_started(None, out);
                let evidence = step.evidence_ref.clone();
                out.push(PeerMessage::Step(p::StepMessage {
                    run_id: self.run_id.clone(),
                    step: p::Step {
                        kind: step.kind.into(),
                        summary: step.summary,
                        evidence_ref: step.evidence_ref,
                        confidence: step.confidence,
                    },
                }));
                if let (Some(subject), Some(matcher)) = (step.subject, self.matcher.as_mut()) {
                    let evidence = evidence.unwrap_or_default();
                    self.meters.matcher_calls.inc();
                    let devs = matcher.check(&subject, &evidence)?;
                    let bytes = devs.iter().map(deviation_bytes).sum::<usize>() as u64;
                    if let Err(o) = self.budget.charge(devs.len() as u64, bytes, Instant::now()) {
                        return Err(matcher.overrun("check", o.what, o.limit));
                    }
                    for d in devs {
                        out.push(PeerMessage::Deviation(p::Deviation {
                            run_id: self.run_id.clone(),
                            skill_id: d.skill_id,
                            evidence_kind: d.evidence_kind,
                            evidence_ref: d.evidence_ref,
                            dedupe_key: d.dedupe_key,
                            severity: d.severity.map(Into::into),
                        }));
                    }
                }
            }
            t::Event::Terminal(terminal) => self.emit_terminal(terminal, out),
            t::Event::Suspended(mut s) if self.may_suspend => {
                self.ensure_started(s.session_handle.clone(), out);
                s.tokens_used = s.tokens_used.saturating_add(self.carried.tokens_used);
                s.cost_estimate_cents = s.cost_estimate_cents.saturating_add(self.carried.cost_estimate_cents);
                s.saved_estimate_cents = add_saved(s.saved_estimate_cents, self.carried.saved_estimate_cents);
                self.suspension = Some(s);
                self.done = true;
                self.mapper = None;
                self.matcher = None;
            }
            // Without resumable attention (protocol v1, or a CLI too old to park a call) no
            // one will answer: the run cannot finish here, and says so.
            t::Event::Suspended(s) => {
                let reason = format!(
                    "the driver stopped to ask a person (tool `{}`), but this run cannot be resumed: resumable attention needs ORGX_PROTOCOL_VERSION=3 and a CLI that parks tool calls",
                    s.tool_name
                );
                self.emit_terminal(t::Terminal::Failed(t::Failed { reason, recoverable: false }), out)
            }
        }
        Ok(())
    }

    /// Send `task.started` unless it went out already (a later session handle is dropped:
    /// exactly one `task.started` per run).
    fn ensure_started(&mut self, session_handle: Option<String>, out: &mut Vec<PeerMessage>) {
        if !self.started_sent {
            self.started_sent = true;
            out.push(PeerMessage::Started(p::Started { run_id: self.run_id.clone(), started_at: self.started_at.clone(), session_handle }));
        }
    }

    fn emit_terminal(&mut self, terminal: t::Terminal, out: &mut Vec<PeerMessage>) {
        self.ensure_started(None, out);
        self.done = true;
        let message = match terminal {
            t::Terminal::Completed(c) => PeerMessage::Completed(p::Completed {
                run_id: self.run_id.clone(),
                outcome_kind: c.outcome_kind.into(),
                started_at: self.started_at.clone(),
                first_response_at: self.first_response_at.clone(),
                completed_at: iso8601(SystemTime::now()),
                tokens_used: c.tokens_used.saturating_add(self.carried.tokens_used),
                provider: c.provider.into(),
                provider_id: provider_ref(c.provider_id),
                observed_provider_id: provider_ref(c.observed_provider_id),
                source_sub_type: c.source_sub_type.into(),
                source_driver: c.source_driver,
                cost_estimate_cents: c.cost_estimate_cents.saturating_add(self.carried.cost_estimate_cents),
                saved_estimate_cents: add_saved(c.saved_estimate_cents, self.carried.saved_estimate_cents),
            }),
            // Whoever wrote the reason (a mapper, the host from a CLI's stderr), it is redacted
            // and cut before it leaves (spec §6).
            t::Terminal::Failed(f) => PeerMessage::Failed(p::Failed {
                run_id: self.run_id.clone(),
                reason: crate::redact::reason(&f.reason),
                recoverable: f.recoverable,
            }),
        };
        out.push(message);
        // The instances are not needed after the terminal message: free them now.
        self.mapper = None;
        self.matcher = None;
    }

    fn fail_with_fault(&mut self, fault: &Fault, out: &mut Vec<PeerMessage>) {
        tracing::error!(run_id = %self.run_id, "{fault}");
        crate::metrics::global().component_fault(&fault.component);
        if self.fault.is_none() {
            self.fault = Some((fault.sha256.clone(), fault.to_string()));
        }
        if !self.done {
            self.emit_terminal(t::Terminal::Failed(t::Failed { reason: fault.to_string(), recoverable: true }), out);
        }
    }
}

/// Savings of two processes: present when either reported some.
fn add_saved(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
    }
}
