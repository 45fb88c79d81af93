//! One component instance serving one run, and the calls into it under hard limits.
//!
//! Each run gets fresh instances (a `Store` of its own), so a fault in one run cannot touch
//! another's state. Every call is bounded (epoch deadline, memory limiter, output size). A
//! call that faults poisons the instance: it is never called again, and the fault says which
//! component hit which limit, in which call.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{matcher_types as m, types, v0_1_0, v0_2_0, v0_3_0};
use super::component::{ComponentInfo, LoadedComponent, MapperPre, MatcherPre, Pre};
use super::guest_log::GuestLog;
use super::limits::{GuestLimiter, Limits};

/// Per-instance host state: an empty WASI context and the limiter.
pub struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: GuestLimiter,
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Which limit a faulting call hit.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// The call ran past its deadline (CPU / wall-clock limit).
    Deadline(Duration),
    /// The instance tried to grow memory past the limit.
    Memory { limit: usize, asked: usize },
    /// The call returned more than the output limit.
    Output { limit: usize, returned: usize },
    /// The call returned more events (`map-line`) or deviations (`check`) than one call may.
    Items { what: &'static str, limit: usize, returned: usize },
    /// The run as a whole sent more than it may (`what`: messages, bytes, or the rate).
    RunBudget { what: &'static str, limit: String },
    /// The component trapped (panic, unreachable, bad memory access, stack overflow, ...).
    Trap(String),
    /// An earlier call faulted; the instance is discarded.
    Poisoned,
}

/// A component call that failed; the run using it ends with `task.failed` (recoverable).
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// `name@sha256:0123abcd`, as logs and messages name the component.
    pub component: String,
    /// The component's full digest: what quarantine keys on.
    pub sha256: String,
    pub call: &'static str,
    pub kind: FaultKind,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.component;
        let call = self.call;
        match &self.kind {
            FaultKind::Deadline(d) => write!(f, "component `{c}` exceeded its time limit ({} ms) in `{call}`", d.as_millis()),
            FaultKind::Memory { limit, asked } => {
                write!(f, "component `{c}` exceeded its memory limit ({limit} bytes; asked for {asked}) in `{call}`")
            }
            FaultKind::Output { limit, returned } => {
                write!(f, "component `{c}` exceeded its output limit ({limit} bytes; returned {returned}) in `{call}`")
            }
            FaultKind::Items { what, limit, returned } => {
                write!(f, "component `{c}` exceeded its per-call limit of {limit} {what}: `{call}` returned {returned}")
            }
            FaultKind::RunBudget { what, limit } => write!(f, "component `{c}` exceeded the run's {what} limit ({limit}) in `{call}`"),
            FaultKind::Trap(msg) => write!(f, "component `{c}` trapped in `{call}`: {msg}"),
            FaultKind::Poisoned => write!(f, "component `{c}` faulted earlier and was discarded (`{call}` not called)"),
        }
    }
}

impl std::error::Error for Fault {}

/// A store plus the bookkeeping shared by both kinds of instance.
struct Guarded {
    store: Store<GuestState>,
    info: Arc<ComponentInfo>,
    limits: Limits,
    poisoned: bool,
}

impl Guarded {
    fn new(engine: &wasmtime::Engine, info: Arc<ComponentInfo>, limits: Limits) -> Guarded {
        let (out, err) = GuestLog::pair(info.label().into(), limits.max_log_bytes);
        // No preopens, no environment, no arguments, no network, stdin empty.
        let wasi = WasiCtxBuilder::new().stdout(out).stderr(err).allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false).build();
        let state = GuestState { wasi, table: ResourceTable::new(), limiter: GuestLimiter::new(&limits) };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        Guarded { store, info, limits, poisoned: false }
    }

    fn fault(&mut self, call: &'static str, kind: FaultKind) -> Fault {
        self.poisoned = true;
        Fault { component: self.info.label(), sha256: self.info.sha256.clone(), call, kind }
    }

    /// Run `f` with a deadline, turning every failure into a [`Fault`] that names its limit.
    fn call<R>(
        &mut self,
        call: &'static str,
        deadline: Duration,
        f: impl FnOnce(&mut Store<GuestState>) -> wasmtime::Result<R>,
    ) -> Result<R, Fault> {
        if self.poisoned {
            return Err(Fault { component: self.info.label(), sha256: self.info.sha256.clone(), call, kind: FaultKind::Poisoned });
        }
        self.store.set_epoch_deadline(Limits::ticks(deadline));
        match f(&mut self.store) {
            Ok(r) => Ok(r),
            Err(e) => {
                let kind = if let Some(asked) = self.store.data_mut().limiter.denied_memory.take() {
                    FaultKind::Memory { limit: self.limits.max_memory_bytes, asked }
                } else if matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
                    FaultKind::Deadline(deadline)
                } else {
                    FaultKind::Trap(trap_cause(&e))
                };
                Err(self.fault(call, kind))
            }
        }
    }

    fn check_items(&mut self, call: &'static str, what: &'static str, returned: usize) -> Result<(), Fault> {
        if returned > self.limits.max_items_per_call {
            return Err(self.fault(call, FaultKind::Items { what, limit: self.limits.max_items_per_call, returned }));
        }
        Ok(())
    }

    fn check_output(&mut self, call: &'static str, returned: usize) -> Result<(), Fault> {
        if returned > self.limits.max_output_bytes {
            return Err(self.fault(call, FaultKind::Output { limit: self.limits.max_output_bytes, returned }));
        }
        Ok(())
    }
}

/// A trap's cause in one line. wasmtime's error puts "error while executing at wasm
/// backtrace:" and the frames first and the trap itself in the chain, so the first line of
/// the message says nothing; the trap code (or the root cause) is what a user can act on.
fn trap_cause(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<Trap>() {
        Some(Trap::StackOverflow) => {
            format!(
                "stack overflow: the call used more than its {} KiB wasm stack limit (unbounded recursion?)",
                super::limits::MAX_WASM_STACK >> 10
            )
        }
        Some(Trap::UnreachableCodeReached) => {
            "wasm `unreachable` executed (a Rust guest panics this way; its panic message is in the peer's log)".into()
        }
        Some(trap) => format!("wasm trap: {trap}"),
        None => {
            let root = e.root_cause().to_string();
            let line = root.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with("error while executing at wasm backtrace"));
            line.unwrap_or("unknown error").to_string()
        }
    }
}

/// A mapper instance for one run.
pub struct MapperInstance {
    guard: Guarded,
    bindings: MapperBindings,
}

/// An instance's exports, by the WIT version it was built against; older versions' values
/// are converted at the call (`bindings::v0_1_0`).
enum MapperBindings {
    V0_1_0(v0_1_0::mapper::MapperComponent),
    V0_2_0(v0_2_0::mapper::MapperComponent),
    V0_3_0(v0_3_0::mapper::MapperComponent),
}

enum MatcherBindings {
    V0_1_0(v0_1_0::matcher::MatcherComponent),
    V0_2_0(v0_2_0::matcher::MatcherComponent),
    V0_3_0(v0_3_0::matcher::MatcherComponent),
}

impl MapperInstance {
    pub fn new(component: &LoadedComponent, limits: Limits) -> Result<MapperInstance, Fault> {
        let Pre::Mapper(pre) = &component.pre else {
            return Err(Fault {
                component: component.info.label(),
                sha256: component.info.sha256.clone(),
                call: "instantiate",
                kind: FaultKind::Trap("not a mapper component".into()),
            });
        };
        let mut guard = Guarded::new(component.engine.engine(), component.info.clone(), limits);
        let bindings = guard.call("instantiate", limits.setup_deadline, |s| match pre {
            MapperPre::V0_1_0(pre) => pre.instantiate(s).map(MapperBindings::V0_1_0),
            MapperPre::V0_2_0(pre) => pre.instantiate(s).map(MapperBindings::V0_2_0),
            MapperPre::V0_3_0(pre) => pre.instantiate(s).map(MapperBindings::V0_3_0),
        })?;
        Ok(MapperInstance { guard, bindings })
    }

    pub fn component(&self) -> &Arc<ComponentInfo> {
        &self.guard.info
    }

    /// The run went over one of its budgets through what this instance returned from `call`:
    /// a fault like any other (the instance is discarded, quarantine counts it).
    pub fn overrun(&mut self, call: &'static str, what: &'static str, limit: String) -> Fault {
        self.guard.fault(call, FaultKind::RunBudget { what, limit })
    }

    pub fn begin(&mut self, ctx: &types::RunContext) -> Result<(), Fault> {
        let b = &self.bindings;
        let d = self.guard.limits.setup_deadline;
        self.guard.call("begin", d, |s| match b {
            MapperBindings::V0_1_0(b) => b.orgx_peer_mapper().call_begin(s, &ctx.into()),
            MapperBindings::V0_2_0(b) => b.orgx_peer_mapper().call_begin(s, ctx),
            MapperBindings::V0_3_0(b) => b.orgx_peer_mapper().call_begin(s, ctx),
        })
    }

    pub fn map_line(&mut self, line: &[u8]) -> Result<Vec<types::Event>, Fault> {
        let b = &self.bindings;
        let d = self.guard.limits.call_deadline;
        let events = self.guard.call("map-line", d, |s| match b {
            MapperBindings::V0_1_0(b) => b.orgx_peer_mapper().call_map_line(s, line).map(|e| e.into_iter().map(Into::into).collect()),
            MapperBindings::V0_2_0(b) => b.orgx_peer_mapper().call_map_line(s, line),
            MapperBindings::V0_3_0(b) => b.orgx_peer_mapper().call_map_line(s, line),
        })?;
        self.guard.check_items("map-line", "events", events.len())?;
        let size = events.iter().map(event_bytes).sum();
        self.guard.check_output("map-line", size)?;
        Ok(events)
    }

    pub fn end(&mut self, reason: &types::EndReason, stderr_tail: Option<&str>) -> Result<types::Terminal, Fault> {
        let b = &self.bindings;
        let d = self.guard.limits.call_deadline;
        let t = self.guard.call("end", d, |s| match b {
            MapperBindings::V0_1_0(b) => b.orgx_peer_mapper().call_end(s, &reason.into(), stderr_tail).map(Into::into),
            MapperBindings::V0_2_0(b) => b.orgx_peer_mapper().call_end(s, reason, stderr_tail),
            MapperBindings::V0_3_0(b) => b.orgx_peer_mapper().call_end(s, reason, stderr_tail),
        })?;
        let size = terminal_bytes(&t);
        self.guard.check_output("end", size)?;
        Ok(t)
    }
}

/// A matcher instance for one run (or, since 0.3.0, for preparing a rules version once).
pub struct MatcherInstance {
    guard: Guarded,
    bindings: MatcherBindings,
    /// The instance itself, for what the bindings do not reach: a snapshot's reads (`snapshot`).
    instance: wasmtime::component::Instance,
}

impl MatcherInstance {
    pub fn new(component: &LoadedComponent, limits: Limits) -> Result<MatcherInstance, Fault> {
        let Pre::Matcher(pre) = &component.pre else {
            return Err(Fault {
                component: component.info.label(),
                sha256: component.info.sha256.clone(),
                call: "instantiate",
                kind: FaultKind::Trap("not a matcher component".into()),
            });
        };
        let mut guard = Guarded::new(component.engine.engine(), component.info.clone(), limits);
        let (bindings, instance) = guard.call("instantiate", limits.setup_deadline, |s| match pre {
            MatcherPre::V0_1_0(pre) => {
                let i = pre.instance_pre().instantiate(&mut *s)?;
                Ok((MatcherBindings::V0_1_0(v0_1_0::matcher::MatcherComponent::new(s, &i)?), i))
            }
            MatcherPre::V0_2_0(pre) => {
                let i = pre.instance_pre().instantiate(&mut *s)?;
                Ok((MatcherBindings::V0_2_0(v0_2_0::matcher::MatcherComponent::new(s, &i)?), i))
            }
            MatcherPre::V0_3_0(pre) => {
                let i = pre.instance_pre().instantiate(&mut *s)?;
                Ok((MatcherBindings::V0_3_0(v0_3_0::matcher::MatcherComponent::new(s, &i)?), i))
            }
        })?;
        Ok(MatcherInstance { guard, bindings, instance })
    }

    pub fn component(&self) -> &Arc<ComponentInfo> {
        &self.guard.info
    }

    /// The run went over one of its budgets through what this instance returned from `call`:
    /// a fault like any other (the instance is discarded, quarantine counts it).
    pub fn overrun(&mut self, call: &'static str, what: &'static str, limit: String) -> Fault {
        self.guard.fault(call, FaultKind::RunBudget { what, limit })
    }

    /// Load a run's rules and start it, whatever the version: `begin(run-id, rules)` before
    /// 0.3.0, `prepare(rules)` then `begin(run-id)` since (what a run does without a
    /// prepared snapshot).
    pub fn begin(&mut self, run_id: &str, rules: &[m::Rule]) -> Result<Vec<m::RuleWarning>, Fault> {
        if matches!(self.bindings, MatcherBindings::V0_3_0(_)) {
            let warnings = self.prepare(rules)?;
            self.begin_prepared(run_id)?;
            return Ok(warnings);
        }
        let b = &self.bindings;
        let d = self.guard.limits.setup_deadline;
        let w: Vec<m::RuleWarning> = self.guard.call("begin", d, |s| match b {
            MatcherBindings::V0_1_0(b) => {
                let rules: Vec<_> = rules.iter().map(Into::into).collect();
                b.orgx_peer_matcher().call_begin(s, run_id, &rules).map(|w| w.into_iter().map(Into::into).collect())
            }
            MatcherBindings::V0_2_0(b) => {
                let rules: Vec<_> = rules.iter().map(Into::into).collect();
                b.orgx_peer_matcher().call_begin(s, run_id, &rules).map(|w| w.into_iter().map(Into::into).collect())
            }
            MatcherBindings::V0_3_0(_) => unreachable!("handled above"),
        })?;
        self.check_warnings("begin", &w)?;
        Ok(w)
    }

    /// Since 0.3.0: compile one rules version in this instance (which is then snapshot, or
    /// started at once by `begin`).
    pub fn prepare(&mut self, rules: &[m::Rule]) -> Result<Vec<m::RuleWarning>, Fault> {
        let MatcherBindings::V0_3_0(b) = &self.bindings else {
            return Err(self.guard.fault("prepare", FaultKind::Trap("a matcher before WIT 0.3.0 has no `prepare`".into())));
        };
        let d = self.guard.limits.setup_deadline;
        let w = self.guard.call("prepare", d, |s| b.orgx_peer_matcher().call_prepare(s, rules))?;
        self.check_warnings("prepare", &w)?;
        Ok(w)
    }

    /// Since 0.3.0: start a run on a prepared instance (one made from a prepared snapshot).
    pub fn begin_prepared(&mut self, run_id: &str) -> Result<(), Fault> {
        let MatcherBindings::V0_3_0(b) = &self.bindings else {
            return Err(self.guard.fault("begin", FaultKind::Trap("a matcher before WIT 0.3.0 cannot start from a snapshot".into())));
        };
        let d = self.guard.limits.setup_deadline;
        self.guard.call("begin", d, |s| b.orgx_peer_matcher().call_begin(s, run_id))
    }

    /// The largest linear memory this instance has had: after `prepare`, about what a
    /// snapshot of it holds (freed heap included: wasm memory never shrinks).
    pub fn largest_memory(&self) -> usize {
        self.guard.store.data().limiter.largest_memory
    }

    /// Whether the instance holds WASI resources (an open stream: Rust's standard library
    /// keeps stdout's once it printed). A snapshot cannot carry them: the copy's handles
    /// would name nothing, and its first use of one would trap.
    pub fn holds_host_resources(&self) -> bool {
        !self.guard.store.data().table.is_empty()
    }

    fn check_warnings(&mut self, call: &'static str, w: &[m::RuleWarning]) -> Result<(), Fault> {
        let size = w.iter().map(|w| w.message.len()).sum();
        self.guard.check_output(call, size)
    }

    pub fn check(&mut self, subject: &types::MatchSubject, evidence_ref: &str) -> Result<Vec<m::Deviation>, Fault> {
        let b = &self.bindings;
        let d = self.guard.limits.call_deadline;
        let devs = self.guard.call("check", d, |s| match b {
            MatcherBindings::V0_1_0(b) => {
                b.orgx_peer_matcher().call_check(s, &subject.into(), evidence_ref).map(|d| d.into_iter().map(Into::into).collect())
            }
            MatcherBindings::V0_2_0(b) => {
                b.orgx_peer_matcher().call_check(s, subject, evidence_ref).map(|d| d.into_iter().map(Into::into).collect())
            }
            MatcherBindings::V0_3_0(b) => b.orgx_peer_matcher().call_check(s, subject, evidence_ref),
        })?;
        self.guard.check_items("check", "deviations", devs.len())?;
        let size = devs.iter().map(deviation_bytes).sum();
        self.guard.check_output("check", size)?;
        Ok(devs)
    }

    /// Run `f` on the instance under the setup deadline, as a call named `call`: how a
    /// snapshot reads the instance's state through the exports wizer added.
    pub(crate) fn with_instance<R>(
        &mut self,
        call: &'static str,
        f: impl FnOnce(&mut Store<GuestState>, wasmtime::component::Instance) -> wasmtime::Result<R>,
    ) -> Result<R, Fault> {
        let (instance, d) = (self.instance, self.guard.limits.setup_deadline);
        self.guard.call(call, d, |s| f(s, instance))
    }
}

/// Bytes of text in what a call returned: what the output limit and the run's byte budget count.
pub fn deviation_bytes(d: &m::Deviation) -> usize {
    d.skill_id.len() + d.evidence_kind.len() + d.evidence_ref.len() + d.dedupe_key.len()
}

pub fn event_bytes(e: &types::Event) -> usize {
    match e {
        types::Event::Started(h) => h.as_ref().map_or(0, String::len),
        types::Event::FirstResponse => 0,
        types::Event::Step(s) => {
            s.summary.len() + s.evidence_ref.as_ref().map_or(0, String::len) + s.subject.as_ref().map_or(0, |m| m.text.len())
        }
        types::Event::Terminal(t) => terminal_bytes(t),
        types::Event::Suspended(s) => {
            s.session_handle.as_ref().map_or(0, String::len) + s.tool_use_id.len() + s.tool_name.len() + s.tool_input.len()
        }
    }
}

fn terminal_bytes(t: &types::Terminal) -> usize {
    match t {
        types::Terminal::Completed(c) => {
            c.source_driver.len() + provider_ref_bytes(&c.provider_id) + provider_ref_bytes(&c.observed_provider_id)
        }
        types::Terminal::Failed(f) => f.reason.len(),
    }
}

fn provider_ref_bytes(r: &types::ProviderRef) -> usize {
    match r {
        types::ProviderRef::Id(id) => id.len(),
        types::ProviderRef::Absent | types::ProviderRef::Unknown => 0,
    }
}
