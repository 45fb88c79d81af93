//! The WebAssembly sandbox: where every decision about what driver output means is made.
//!
//! The host loads components (compile → audit imports → type-check against the WIT world),
//! then gives each run its own instances. Submodules: `policy` (the import allowlist),
//! `limits` (time/memory/output bounds), `engine` (the shared engine and epoch ticker),
//! `compiler` (where Cranelift runs: the daemon's in a child process), `component` (loading
//! and inspection), `cache` (compiled code kept across restarts), `typecheck` (the exports
//! against the WIT, before any instance exists), `instance` (bounded calls), `snapshot` (a 0.3.0 matcher's
//! prepared rules, which every run starts from), `guest_log`
//! (guest stdio into the log), `bindings` (generated from `wit/`, one module per served
//! version), `wit` (the served versions and every name built from them), `defaults` (the
//! built-in components).

mod bindings;
pub mod cache;
pub mod compiler;
pub mod component;
pub mod convert;
pub mod defaults;
pub mod engine;
mod guest_log;
pub mod instance;
pub mod limits;
pub mod policy;
pub mod snapshot;
mod typecheck;
pub mod wit;

use wasmtime::component::Linker;

pub use bindings::{matcher_types, types};
pub use cache::{CodeCache, CodeSource};
pub use compiler::Compiler;
pub use component::{ComponentInfo, LoadError, LoadStage, LoadedComponent};
pub use instance::{Fault, FaultKind, GuestState, MapperInstance, MatcherInstance};
pub use limits::Limits;
pub use wit::{WitVersion, World};

/// The engine, the linker with the allowed imports, and the limits for new instances.
#[derive(Clone)]
pub struct Sandbox {
    engine: engine::SandboxEngine,
    linker: Linker<GuestState>,
    limits: Limits,
    compiler: Compiler,
}

impl Sandbox {
    pub fn new(limits: Limits) -> anyhow::Result<Sandbox> {
        let engine = engine::SandboxEngine::new()?;
        let mut linker = Linker::new(engine.engine());
        // Defense in depth: the allowlist refuses socket imports before linking, and the
        // per-instance WASI context denies network use even if one got through.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| anyhow::anyhow!("cannot link WASI: {e:#}"))?;
        Ok(Sandbox { engine, linker, limits, compiler: Compiler::InProcess })
    }

    /// Compile with `compiler` from now on (the daemon: in a child, `compiler` module).
    pub fn with_compiler(mut self, compiler: Compiler) -> Sandbox {
        self.compiler = compiler;
        self
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Compile, audit and type-check a component.
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<LoadedComponent, LoadError> {
        component::load(&self.engine, &self.compiler, &self.linker, name, bytes)
    }

    /// Like `load`, but takes machine code from (and gives it to) the peer's own cache.
    pub fn load_cached(&self, name: &str, bytes: &[u8], cache: &CodeCache) -> Result<(LoadedComponent, CodeSource), LoadError> {
        use sha2::Digest;
        let sha256 = hex::encode(sha2::Sha256::digest(bytes));
        let engine = self.engine.engine();
        if let Some(compiled) = cache.get(engine, &sha256) {
            let info = component::describe(engine, name, sha256, bytes.len(), &compiled);
            return component::admit(&self.engine, &self.linker, compiled, info).map(|c| (c, CodeSource::Cached));
        }
        let (compiled, info) = component::compile(engine, &self.compiler, name, sha256, bytes)?;
        let loaded = component::admit(&self.engine, &self.linker, compiled.clone(), info)?;
        cache.put(engine, &loaded.info.sha256, &compiled);
        Ok((loaded, CodeSource::Compiled))
    }

    /// Prepare `rules` in a WIT 0.3.0 `matcher` (whose bytes are `wasm`) once, for every run
    /// of this rules version to start from (`snapshot`).
    pub fn prepare_matcher(
        &self,
        matcher: &LoadedComponent,
        wasm: &[u8],
        rules: &[matcher_types::Rule],
    ) -> Result<snapshot::Prepared, snapshot::PrepareError> {
        snapshot::prepare(&self.engine, &self.compiler, &self.linker, matcher, wasm, rules, self.limits)
    }

    /// Compile a component, describe it, and say whether the policy would load it (imports,
    /// world, link) — without refusing: the auditor sees the whole picture either way.
    pub fn inspect(&self, name: &str, bytes: &[u8]) -> Result<Inspection, LoadError> {
        let (compiled, info) = component::inspect(self.engine.engine(), &self.compiler, name, bytes)?;
        let refusal = component::admit(&self.engine, &self.linker, compiled, info.clone()).err();
        Ok(Inspection { info, refusal })
    }
}

/// What `component inspect` reports: the component, and why loading would refuse it, if it would.
pub struct Inspection {
    pub info: ComponentInfo,
    pub refusal: Option<LoadError>,
}
