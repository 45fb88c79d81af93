//! The one wasmtime engine of the process, and the thread that drives its epoch.
//!
//! Compiled components are tied to the engine that compiled them, so the engine is built
//! once and shared. Epoch interruption (not fuel) bounds calls: it costs a load and a compare
//! per loop back-edge, where fuel costs a counter update per basic block — the mapper runs on
//! every stdout line, so the cheaper check matters.

use std::sync::Arc;
use std::thread;

use wasmtime::{Config, Engine, OptLevel};

use super::limits::{EPOCH_TICK, MAX_WASM_STACK};

/// Set to `1`, JIT code gets names for `perf` (the one variable that changes the engine's
/// configuration, so the compiler child is given it too).
pub const PERFMAP_ENV: &str = "ORGX_WASM_PERFMAP";

/// The shared engine plus its epoch ticker; the ticker stops when the last clone is dropped.
#[derive(Clone)]
pub struct SandboxEngine {
    engine: Engine,
    _ticker: Arc<Ticker>,
}

struct Ticker {
    stop: std::sync::mpsc::Sender<()>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        let _ = self.stop.send(());
    }
}

impl SandboxEngine {
    pub fn new() -> anyhow::Result<SandboxEngine> {
        let mut config = Config::new();
        config.wasm_component_model(true).epoch_interruption(true).cranelift_opt_level(OptLevel::Speed).max_wasm_stack(MAX_WASM_STACK);
        // For authors profiling a component with `perf`: JIT code gets names in
        // /tmp/perf-<pid>.map. Off by default; it changes nothing a component can do.
        if std::env::var_os(PERFMAP_ENV).is_some_and(|v| v == "1") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("cannot create the WebAssembly engine: {e:#}"))?;
        let weak = engine.weak();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        thread::Builder::new().name("orgx-epoch".into()).spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EPOCH_TICK) {
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })?;
        Ok(SandboxEngine { engine, _ticker: Arc::new(Ticker { stop }) })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}
