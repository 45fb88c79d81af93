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

use super::bindings::{v0_1_0, v0_2_0, v0_3_0};
use super::compiler::Compiler;
use super::instance::GuestState;
use super::policy::{self, Refusal};
use super::wit::{WitVersion, World, PACKAGE};

/// What an auditor needs to know about a component, read from its bytes.
#[derive(Debug, Clone)]
pub struct ComponentInfo {
    pub name: String,
    pub sha256: String,
    pub size: usize,
    pub world: Option<World>,
    /// The WIT version of the world it implements (with `world`).
    pub wit_version: Option<WitVersion>,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    pub refused_imports: Vec<Refusal>,
}

impl ComponentInfo {
    /// `name@sha256:0123abcd`: how logs and errors name a component.
    pub fn label(&self) -> String {
        format!("{}@sha256:{}", self.name, &self.sha256[..12.min(self.sha256.len())])
    }

    /// The full name of the world it implements, for messages; `none` when it implements none.
    pub fn world_name(&self) -> String {
        match (self.world, self.wit_version) {
            (Some(world), Some(version)) => world.wit_name(version),
            _ => "none (it exports no orgx:peer interface this peer serves)".into(),
        }
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
    /// The component's own bytes, kept only where the host needs them again: a 0.3.0
    /// matcher's, to snapshot each rules version (`snapshot`). Everything else drops them.
    source: Option<Source>,
}

/// A component's bytes as its loader holds them: the built-ins' are in the binary already.
#[derive(Clone)]
pub enum Source {
    Static(&'static [u8]),
    Shared(Arc<[u8]>),
}

impl Source {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Source::Static(b) => b,
            Source::Shared(b) => b,
        }
    }
}

/// Linked, ready-to-instantiate bindings, by world and WIT version.
#[derive(Clone)]
pub(crate) enum Pre {
    Mapper(MapperPre),
    Matcher(MatcherPre),
}

#[derive(Clone)]
pub(crate) enum MapperPre {
    V0_1_0(v0_1_0::mapper::MapperComponentPre<GuestState>),
    V0_2_0(v0_2_0::mapper::MapperComponentPre<GuestState>),
    V0_3_0(v0_3_0::mapper::MapperComponentPre<GuestState>),
}

#[derive(Clone)]
pub(crate) enum MatcherPre {
    V0_1_0(v0_1_0::matcher::MatcherComponentPre<GuestState>),
    V0_2_0(v0_2_0::matcher::MatcherComponentPre<GuestState>),
    V0_3_0(v0_3_0::matcher::MatcherComponentPre<GuestState>),
}

impl LoadedComponent {
    pub fn world(&self) -> World {
        match self.pre {
            Pre::Mapper(_) => World::Mapper,
            Pre::Matcher(_) => World::Matcher,
        }
    }

    pub fn wit_version(&self) -> WitVersion {
        match self.pre {
            Pre::Mapper(MapperPre::V0_1_0(_)) | Pre::Matcher(MatcherPre::V0_1_0(_)) => WitVersion::V0_1_0,
            Pre::Mapper(MapperPre::V0_2_0(_)) | Pre::Matcher(MatcherPre::V0_2_0(_)) => WitVersion::V0_2_0,
            Pre::Mapper(MapperPre::V0_3_0(_)) | Pre::Matcher(MatcherPre::V0_3_0(_)) => WitVersion::V0_3_0,
        }
    }

    /// The full name of its world, e.g. `orgx:peer/mapper-component@0.2.0`.
    pub fn world_name(&self) -> String {
        self.world().wit_name(self.wit_version())
    }

    /// Whether runs can start from a prepared snapshot of it (a matcher of WIT 0.3.0 on).
    pub fn prepares(&self) -> bool {
        self.world() == World::Matcher && self.wit_version().matcher_prepares()
    }

    /// Keep `source` (the bytes this was loaded from) if the host will need them again:
    /// only a component that [`prepares`](Self::prepares) does; for others it is dropped.
    pub fn with_source(mut self, source: impl FnOnce() -> Source) -> LoadedComponent {
        if self.prepares() {
            self.source = Some(source());
        }
        self
    }

    /// The bytes kept by [`with_source`](Self::with_source).
    pub fn source(&self) -> Option<&[u8]> {
        self.source.as_ref().map(Source::bytes)
    }
}

/// Compile `bytes` and read what an auditor needs; no policy is enforced yet.
pub fn inspect(engine: &wasmtime::Engine, compiler: &Compiler, name: &str, bytes: &[u8]) -> Result<(Component, ComponentInfo), LoadError> {
    compile(engine, compiler, name, hex::encode(Sha256::digest(bytes)), bytes)
}

/// `inspect` for bytes whose digest the caller just computed from them.
pub fn compile(
    engine: &wasmtime::Engine,
    compiler: &Compiler,
    name: &str,
    sha256: String,
    bytes: &[u8],
) -> Result<(Component, ComponentInfo), LoadError> {
    let component = compiler.compile(engine, bytes).map_err(|e| LoadError {
        component: format!("{name}@sha256:{}", &sha256[..12]),
        stage: LoadStage::Compile,
        message: e.to_string(),
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
    let found = World::of_exports(exports.iter().map(String::as_str));
    let (world, wit_version) = (found.map(|f| f.0), found.map(|f| f.1));
    ComponentInfo { name: name.to_string(), sha256, size, world, wit_version, imports, exports, refused_imports }
}

/// Compile, audit and type-check `bytes` as a component called `name`.
pub fn load(
    engine: &super::engine::SandboxEngine,
    compiler: &Compiler,
    linker: &Linker<GuestState>,
    name: &str,
    bytes: &[u8],
) -> Result<LoadedComponent, LoadError> {
    let (component, info) = inspect(engine.engine(), compiler, name, bytes)?;
    admit(engine, linker, component, info)
}

/// Audit and type-check a compiled component: the policy half of loading.
pub fn admit(
    engine: &super::engine::SandboxEngine,
    linker: &Linker<GuestState>,
    component: Component,
    info: ComponentInfo,
) -> Result<LoadedComponent, LoadError> {
    let fail = |stage, message: String| LoadError { component: info.label(), stage, message };
    if !info.refused_imports.is_empty() {
        let list: Vec<String> = info.refused_imports.iter().map(ToString::to_string).collect();
        return Err(fail(LoadStage::Imports, list.join("; ")));
    }
    let (Some(world), Some(version)) = (info.world, info.wit_version) else {
        return Err(fail(
            LoadStage::World,
            format!(
                "it exports neither `{PACKAGE}/mapper` nor `{PACKAGE}/matcher` at a WIT version this peer serves ({}) (exports: {:?})",
                WitVersion::served_list(),
                info.exports
            ),
        ));
    };
    let link_err = |e: wasmtime::Error| fail(LoadStage::Link, format!("{e:#}"));
    let instance_pre = linker.instantiate_pre(&component).map_err(link_err)?;
    super::typecheck::check_exports(engine.engine(), &instance_pre, world, version).map_err(|e| fail(LoadStage::Link, e.to_string()))?;
    let pre = match (world, version) {
        (World::Mapper, WitVersion::V0_1_0) => {
            Pre::Mapper(MapperPre::V0_1_0(v0_1_0::mapper::MapperComponentPre::new(instance_pre).map_err(link_err)?))
        }
        (World::Mapper, WitVersion::V0_2_0) => {
            Pre::Mapper(MapperPre::V0_2_0(v0_2_0::mapper::MapperComponentPre::new(instance_pre).map_err(link_err)?))
        }
        (World::Matcher, WitVersion::V0_1_0) => {
            Pre::Matcher(MatcherPre::V0_1_0(v0_1_0::matcher::MatcherComponentPre::new(instance_pre).map_err(link_err)?))
        }
        (World::Matcher, WitVersion::V0_2_0) => {
            Pre::Matcher(MatcherPre::V0_2_0(v0_2_0::matcher::MatcherComponentPre::new(instance_pre).map_err(link_err)?))
        }
        (World::Mapper, WitVersion::V0_3_0) => {
            Pre::Mapper(MapperPre::V0_3_0(v0_3_0::mapper::MapperComponentPre::new(instance_pre).map_err(link_err)?))
        }
        (World::Matcher, WitVersion::V0_3_0) => {
            Pre::Matcher(MatcherPre::V0_3_0(v0_3_0::matcher::MatcherComponentPre::new(instance_pre).map_err(link_err)?))
        }
    };
    Ok(LoadedComponent { info: Arc::new(info), engine: engine.clone(), pre, source: None })
}
