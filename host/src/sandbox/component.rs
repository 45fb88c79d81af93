//! Turning component bytes into something the host may run: compile, audit, type-check.
//!
//! Loading goes through fixed stages, and a failure names its stage, so an operator (or a
//! server receiving a rejection) knows whether the bytes were malformed, asked for a
//! capability, or implement the wrong interface. Nothing from the component runs here:
//! instantiation happens per run, in `instance`.

use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};

use super::bindings::{mapper::MapperComponentPre, matcher::MatcherComponentPre};
use super::instance::GuestState;
use super::policy::{self, Refusal};

/// The export that makes a component a mapper / a matcher.
pub const MAPPER_EXPORT: &str = "orgx:peer/mapper@0.1.0";
pub const MATCHER_EXPORT: &str = "orgx:peer/matcher@0.1.0";

/// Which world of `wit/orgx-peer.wit` a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    Mapper,
    Matcher,
}

impl World {
    pub fn wit_name(self) -> &'static str {
        match self {
            World::Mapper => "orgx:peer/mapper-component@0.1.0",
            World::Matcher => "orgx:peer/matcher-component@0.1.0",
        }
    }
}

/// What an auditor needs to know about a component, read from its bytes.
#[derive(Debug, Clone)]
pub struct ComponentInfo {
    pub name: String,
    pub sha256: String,
    pub size: usize,
    pub world: Option<World>,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    pub refused_imports: Vec<Refusal>,
}

impl ComponentInfo {
    /// `name@sha256:0123abcd`: how logs and errors name a component.
    pub fn label(&self) -> String {
        format!("{}@sha256:{}", self.name, &self.sha256[..12.min(self.sha256.len())])
    }
}

/// The stage at which a component was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadStage {
    Compile,
    Imports,
    World,
    Link,
}

impl LoadStage {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadStage::Compile => "compile",
            LoadStage::Imports => "imports",
            LoadStage::World => "world",
            LoadStage::Link => "link",
        }
    }
}

#[derive(Debug)]
pub struct LoadError {
    pub component: String,
    pub stage: LoadStage,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "component `{}` refused at stage `{}`: {}", self.component, self.stage.as_str(), self.message)
    }
}

impl std::error::Error for LoadError {}

/// A compiled, audited, type-checked component, ready to be instantiated per run.
#[derive(Clone)]
pub struct LoadedComponent {
    pub info: Arc<ComponentInfo>,
    /// Keeps the engine *and its epoch ticker* alive as long as the component can run:
    /// without ticks, deadlines would never fire.
    pub(crate) engine: super::engine::SandboxEngine,
    pub(crate) pre: Pre,
}

#[derive(Clone)]
pub(crate) enum Pre {
    Mapper(MapperComponentPre<GuestState>),
    Matcher(MatcherComponentPre<GuestState>),
}

impl LoadedComponent {
    pub fn world(&self) -> World {
        match self.pre {
            Pre::Mapper(_) => World::Mapper,
            Pre::Matcher(_) => World::Matcher,
        }
    }
}

/// Compile `bytes` and read what an auditor needs; no policy is enforced yet.
pub fn inspect(engine: &wasmtime::Engine, name: &str, bytes: &[u8]) -> Result<(Component, ComponentInfo), LoadError> {
    compile(engine, name, hex::encode(Sha256::digest(bytes)), bytes)
}

/// `inspect` for bytes whose digest the caller just computed from them.
pub fn compile(engine: &wasmtime::Engine, name: &str, sha256: String, bytes: &[u8]) -> Result<(Component, ComponentInfo), LoadError> {
    let component = Component::new(engine, bytes).map_err(|e| LoadError {
        component: format!("{name}@sha256:{}", &sha256[..12]),
        stage: LoadStage::Compile,
        message: format!("not a valid component: {e:#}"),
    })?;
    let info = describe(engine, name, sha256, bytes.len(), &component);
    Ok((component, info))
}

/// What an auditor needs to know about an already compiled component.
pub fn describe(engine: &wasmtime::Engine, name: &str, sha256: String, size: usize, component: &Component) -> ComponentInfo {
    let ty = component.component_type();
    let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    let refused_imports = policy::check_imports(imports.iter().map(String::as_str));
    let world = if exports.iter().any(|e| e == MAPPER_EXPORT) {
        Some(World::Mapper)
    } else if exports.iter().any(|e| e == MATCHER_EXPORT) {
        Some(World::Matcher)
    } else {
        None
    };
    ComponentInfo { name: name.to_string(), sha256, size, world, imports, exports, refused_imports }
}

/// Compile, audit and type-check `bytes` as a component called `name`.
pub fn load(engine: &super::engine::SandboxEngine, linker: &Linker<GuestState>, name: &str, bytes: &[u8]) -> Result<LoadedComponent, LoadError> {
    let (component, info) = inspect(engine.engine(), name, bytes)?;
    admit(engine, linker, component, info)
}

/// Audit and type-check a compiled component: the policy half of loading.
pub fn admit(engine: &super::engine::SandboxEngine, linker: &Linker<GuestState>, component: Component, info: ComponentInfo) -> Result<LoadedComponent, LoadError> {
    let fail = |stage, message: String| LoadError { component: info.label(), stage, message };
    if !info.refused_imports.is_empty() {
        let list: Vec<String> = info.refused_imports.iter().map(ToString::to_string).collect();
        return Err(fail(LoadStage::Imports, list.join("; ")));
    }
    let Some(world) = info.world else {
        return Err(fail(
            LoadStage::World,
            format!("it exports neither `{MAPPER_EXPORT}` nor `{MATCHER_EXPORT}` (exports: {:?})", info.exports),
        ));
    };
    let link_err = |e: wasmtime::Error| fail(LoadStage::Link, format!("{e:#}"));
    let instance_pre = linker.instantiate_pre(&component).map_err(link_err)?;
    super::typecheck::check_exports(engine.engine(), &instance_pre, world).map_err(|m| fail(LoadStage::Link, m))?;
    let pre = match world {
        World::Mapper => Pre::Mapper(MapperComponentPre::new(instance_pre).map_err(link_err)?),
        World::Matcher => Pre::Matcher(MatcherComponentPre::new(instance_pre).map_err(link_err)?),
    };
    Ok(LoadedComponent { info: Arc::new(info), engine: engine.clone(), pre })
}
