//! Prepared matchers (WIT 0.3.0): a rules version compiled once, and every run of it started
//! from a copy of the instance that compiled it.
//!
//! Why a snapshot and not one shared instance: a run must never see another run's state,
//! whatever the component does. So each run still gets an instance of its own, and the host,
//! not the guest, makes sure it holds nothing but what `prepare` left. wizer
//! (`wasmtime-wizer`) instruments the component with exports that read every memory and
//! global of its core instances; after `prepare`, it reads them and writes them back as the
//! initializers of a new component. Instantiating that component maps its memory image
//! copy-on-write (an mmap, not a copy), so a run starts in the same time at 10 rules as at
//! 10,000 (`cargo bench --bench replay`, "start a run").
//!
//! The snapshot is a component the host made from an admitted one: the same imports and
//! exports, new data. It is linked and type-checked like any other (`component::admit`),
//! under the original's name and digest, so a fault in it counts against the component the
//! operator knows. Both compiles (the instrumented component, then the snapshot) run on the
//! sandbox's compiler, the daemon's child process; `prepare` runs under the limits of any
//! component call. Nothing here touches the network or the disk.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use wasmtime::component::{Linker, WasmList};
use wasmtime_wizer::{ComponentInstanceState, Wizer};

use super::bindings::matcher_types as m;
use super::compiler::Compiler;
use super::component::{self, LoadError, LoadStage, LoadedComponent};
use super::engine::SandboxEngine;
use super::instance::{Fault, GuestState, MatcherInstance};
use super::limits::Limits;
use super::wit::World;

/// The largest prepared memory a snapshot is made of. The built-in matcher's is 3.6 MiB at
/// 1,000 rules and 23 MiB at 10,000 (20 MiB of it non-zero, which is what the snapshot
/// holds). Making a snapshot holds three copies of it at its peak (the instance, the data read
/// from it, the new component; then the new component, its compiled form and that form
/// loaded), beside a run that compiles the same rules itself meanwhile: four in all, which
/// the peer's bound on peak memory under a hostile rule set (128 MiB over its baseline,
/// `tests/hostile_server.rs`) allows at this size. Past it, runs prepare their rules themselves.
pub const MAX_SNAPSHOT_MEMORY: usize = 32 << 20;

/// A rules version, prepared: the snapshot each of its runs instantiates.
pub struct Prepared {
    /// The snapshot, under the original component's name and digest.
    pub component: LoadedComponent,
    /// What `prepare` said about the rules: one warning per disabled rule.
    pub warnings: Vec<m::RuleWarning>,
    /// How long `prepare` itself took in the component (what each run no longer pays).
    pub prepare_time: Duration,
    /// How long making the snapshot took in all: instrument, two compiles, `prepare`.
    pub total_time: Duration,
    /// The size of the snapshot component (its code and its memory image).
    pub snapshot_bytes: usize,
}

/// Why a rules version could not be prepared; the runs then compile their rules themselves.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("component `{0}` is not a WIT 0.3.0 matcher, so it compiles its rules in every run")]
    NotPreparable(String),
    #[error("component `{component}` cannot be instrumented for a snapshot: {reason}")]
    Instrument { component: String, reason: String },
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Fault(#[from] Fault),
    #[error("component `{component}`: reading its state for the snapshot failed: {reason}")]
    Snapshot { component: String, reason: String },
}

/// Prepare `rules` in a 0.3.0 `matcher` whose bytes are `wasm`, and snapshot the result.
pub fn prepare(
    engine: &SandboxEngine,
    compiler: &Compiler,
    linker: &Linker<GuestState>,
    matcher: &LoadedComponent,
    wasm: &[u8],
    rules: &[m::Rule],
    limits: Limits,
) -> Result<Prepared, PrepareError> {
    let t0 = Instant::now();
    let label = matcher.info.label();
    if matcher.world() != World::Matcher || !matcher.wit_version().matcher_prepares() {
        return Err(PrepareError::NotPreparable(label));
    }
    let wizer = Wizer::new();
    // wizer asserts what it expects of the component instead of returning an error at places:
    // a component it cannot handle must cost the snapshot, never the peer.
    let instrument = catch_unwind(AssertUnwindSafe(|| wizer.instrument_component(wasm)));
    let (cx, instrumented) = match instrument {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return Err(PrepareError::Instrument { component: label, reason: format!("{e:#}") }),
        Err(panic) => return Err(PrepareError::Instrument { component: label, reason: panic_text(&panic) }),
    };
    let load = |bytes: &[u8]| -> Result<LoadedComponent, LoadError> {
        let compiled = compiler.compile(engine.engine(), bytes).map_err(|e| LoadError {
            component: label.clone(),
            stage: LoadStage::Compile,
            message: e.to_string(),
        })?;
        component::admit(engine, linker, compiled, (*matcher.info).clone())
    };
    let mut instance = MatcherInstance::new(&load(&instrumented)?, limits)?;
    let started = Instant::now();
    let warnings = instance.prepare(rules)?;
    let prepare_time = started.elapsed();
    if instance.holds_host_resources() {
        let reason = "its `prepare` left WASI resources open (a stdout or stderr stream, if it printed), which a snapshot cannot carry: \
                      a run from it would trap on them"
            .to_string();
        return Err(PrepareError::Snapshot { component: label, reason });
    }
    let memory = instance.largest_memory();
    if memory > MAX_SNAPSHOT_MEMORY {
        let reason = format!("its prepared memory is {} MiB, over the {} MiB a snapshot may hold", memory >> 20, MAX_SNAPSHOT_MEMORY >> 20);
        return Err(PrepareError::Snapshot { component: label, reason });
    }
    let mut reader = StateReader { instance: &mut instance, fault: None };
    // The reader never waits, so the future is ready on its first poll.
    let snapshot = catch_unwind(AssertUnwindSafe(|| wizer.snapshot_component(&cx, &mut reader).now_or_never()));
    if let Some(fault) = reader.fault {
        return Err(fault.into());
    }
    let bytes = match snapshot {
        Ok(Some(Ok(bytes))) => bytes,
        Ok(Some(Err(e))) => return Err(PrepareError::Snapshot { component: label, reason: format!("{e:#}") }),
        Ok(None) => return Err(PrepareError::Snapshot { component: label, reason: "the snapshot did not complete".into() }),
        Err(panic) => return Err(PrepareError::Snapshot { component: label, reason: panic_text(&panic) }),
    };
    drop(instance);
    let component = load(&bytes)?;
    Ok(Prepared { component, warnings, prepare_time, total_time: t0.elapsed(), snapshot_bytes: bytes.len() })
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = panic.downcast_ref::<String>().map(String::as_str).or_else(|| panic.downcast_ref::<&str>().copied());
    format!("wizer failed on it: {}", text.unwrap_or("a panic without a message"))
}

/// wizer's view of the prepared instance: its accessor exports, called under the instance's
/// limits. A call that faults is kept and reported after the snapshot returns (the trait
/// has no error path).
struct StateReader<'a> {
    instance: &'a mut MatcherInstance,
    fault: Option<Fault>,
}

/// Call the accessor `interface#func` (no parameters, one result) and hand its value to
/// `out`; after a fault, nothing more is called and `T::default()` stands in.
fn read<R: wasmtime::component::Lift + 'static, T: Default>(
    instance: &mut MatcherInstance,
    fault: &mut Option<Fault>,
    interface: &str,
    func: &str,
    out: impl FnOnce(&wasmtime::Store<GuestState>, R) -> T,
) -> T {
    if fault.is_some() {
        return T::default();
    }
    let read = instance.with_instance("snapshot", |store, instance| {
        let missing = || wasmtime::format_err!("the instrumented component has no export `{interface}#{func}`");
        let (_, iface) = instance.get_export(&mut *store, None, interface).ok_or_else(missing)?;
        let (_, index) = instance.get_export(&mut *store, Some(&iface), func).ok_or_else(missing)?;
        let f = instance.get_typed_func::<(), (R,)>(&mut *store, index)?;
        let (value,) = f.call(&mut *store, ())?;
        Ok(out(store, value))
    });
    read.unwrap_or_else(|f| {
        *fault = Some(f);
        T::default()
    })
}

impl ComponentInstanceState for StateReader<'_> {
    async fn call_func_ret_list_u8(&mut self, interface: &str, func: &str, contents: impl FnOnce(&[u8]) + Send) {
        // Handed over in place: a memory can be tens of MiB.
        read(self.instance, &mut self.fault, interface, func, |store, list: WasmList<u8>| contents(list.as_le_slice(store)))
    }

    async fn call_func_ret_s32(&mut self, interface: &str, func: &str) -> i32 {
        read(self.instance, &mut self.fault, interface, func, |_, v: i32| v)
    }

    async fn call_func_ret_s64(&mut self, interface: &str, func: &str) -> i64 {
        read(self.instance, &mut self.fault, interface, func, |_, v: i64| v)
    }

    async fn call_func_ret_f32(&mut self, interface: &str, func: &str) -> u32 {
        read(self.instance, &mut self.fault, interface, func, |_, v: f32| v.to_bits())
    }

    async fn call_func_ret_f64(&mut self, interface: &str, func: &str) -> u64 {
        read(self.instance, &mut self.fault, interface, func, |_, v: f64| v.to_bits())
    }
}
