//! Which component serves each slot, and how that changes at runtime.
//!
//! A run takes a snapshot of [`ActiveComponents`] when it is dispatched and keeps it to its
//! end, so a swap never changes a run's logic halfway. The snapshot is published through a
//! `watch` channel by the [`registry::Registry`], the only writer: it admits pushed and local
//! components through fixed stages (`admission`), runs them on sample input (`selftest`),
//! keeps them content-addressed on disk (`files`), and quarantines one that keeps faulting.
//! `local_dir` watches the author's directory; `prepared` keeps the newest rules version
//! compiled in the matcher, for runs to start from. Loading always goes through the sandbox's full
//! checks, built-ins included.

pub mod admission;
pub mod files;
pub mod local_dir;
pub mod prepared;
pub mod registry;
pub mod selftest;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::sandbox::component::Source;
use crate::sandbox::{defaults, CodeCache, LoadedComponent, Sandbox, World};
use crate::trust::Slot;

/// Where the component serving a slot came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Compiled into the binary (version 0 of its slot).
    BuiltIn,
    /// Given on the command line (`replay --mapper`, `component test`).
    File,
    /// Pushed by the server (`component.push`), signed.
    Pushed,
    /// Signed, from the local components directory.
    Local,
    /// Unsigned, from the local components directory, in dev mode.
    DevUnsigned,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::BuiltIn => "built-in",
            Origin::File => "file",
            Origin::Pushed => "pushed",
            Origin::Local => "local",
            Origin::DevUnsigned => "dev-unsigned",
        }
    }
}

/// One slot's component and what is known of it beyond its bytes.
#[derive(Clone)]
pub struct Serving {
    pub component: LoadedComponent,
    pub version: u64,
    pub origin: Origin,
    /// The key that signed it, if any.
    pub key_id: Option<String>,
}

/// Which component, as the server's messages name one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentId {
    pub slot: String,
    pub name: String,
    pub version: u64,
    pub sha256: String,
}

impl Serving {
    pub fn builtin(component: LoadedComponent) -> Serving {
        Serving { component, version: 0, origin: Origin::BuiltIn, key_id: None }
    }

    pub fn id(&self, slot: Slot) -> ComponentId {
        ComponentId {
            slot: slot.to_string(),
            name: self.component.info.name.clone(),
            version: self.version,
            sha256: self.component.info.sha256.clone(),
        }
    }

    /// The status / log view of this slot.
    pub fn describe(&self, slot: Slot) -> serde_json::Value {
        serde_json::json!({
            "slot": slot.as_str(),
            "name": self.component.info.name,
            "version": self.version,
            "origin": self.origin,
            "sha256": self.component.info.sha256,
            "key_id": self.key_id,
        })
    }
}

/// The mapper and matcher new runs get.
#[derive(Clone)]
pub struct ActiveComponents {
    /// One mapper per known driver, by driver id: every slot always has a component.
    pub mappers: BTreeMap<&'static str, Serving>,
    pub matcher: Serving,
}

impl ActiveComponents {
    /// The built-in components; `mapper` (a file) replaces the mapper of `driver`, `matcher`
    /// the matcher (`replay --mapper/--matcher`, `component test`).
    pub fn load(sandbox: &Sandbox, driver: &str, mapper: Option<&Path>, matcher: Option<&Path>) -> anyhow::Result<ActiveComponents> {
        let mut mappers = BTreeMap::new();
        for d in crate::driver::ALL {
            let file = mapper.filter(|_| d.id == driver);
            mappers.insert(d.id, load_one(sandbox, Slot::Mapper(d.id), file)?);
        }
        anyhow::ensure!(mappers.contains_key(driver), "unknown driver `{driver}` (drivers: {})", crate::driver::ids().join(", "));
        Ok(ActiveComponents { mappers, matcher: load_one(sandbox, Slot::Matcher, matcher)? })
    }

    /// The mapper new runs of `driver` get. Every known driver has one.
    pub fn mapper(&self, driver: &str) -> &Serving {
        self.mappers.get(driver).unwrap_or_else(|| panic!("no mapper slot for driver `{driver}`"))
    }

    pub fn get(&self, slot: Slot) -> &Serving {
        match slot {
            Slot::Mapper(driver) => self.mapper(driver),
            Slot::Matcher => &self.matcher,
        }
    }

    pub fn set(&mut self, slot: Slot, serving: Serving) {
        match slot {
            Slot::Mapper(driver) => {
                self.mappers.insert(driver, serving);
            }
            Slot::Matcher => self.matcher = serving,
        }
    }

    /// The digests the heartbeat's `manifest_fingerprint` covers, in slot order.
    pub fn digests(&self) -> Vec<&str> {
        Slot::all().into_iter().map(|s| self.get(s).component.info.sha256.as_str()).collect()
    }

    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!(Slot::all().iter().map(|s| self.get(*s).describe(*s)).collect::<Vec<_>>())
    }
}

/// The world a slot's components implement.
pub fn slot_world(slot: Slot) -> World {
    match slot {
        Slot::Mapper(_) => World::Mapper,
        Slot::Matcher => World::Matcher,
    }
}

/// The slot an unsigned component of `world` serves: a mapper serves the default driver's
/// slot (a signed manifest always names its slot).
pub fn world_slot(world: World) -> Slot {
    match world {
        World::Mapper => Slot::Mapper(crate::driver::DEFAULT_MAPPER.id),
        World::Matcher => Slot::Matcher,
    }
}

/// The name and bytes of a slot's built-in component.
fn builtin_bytes(slot: Slot) -> anyhow::Result<(&'static str, &'static [u8])> {
    match slot {
        Slot::Mapper(id) => {
            let driver = crate::driver::by_id(id).with_context(|| format!("no driver `{id}`"))?;
            Ok((driver.mapper.name, driver.mapper.wasm))
        }
        Slot::Matcher => Ok((defaults::SKILL_RULES_MATCHER_NAME, defaults::SKILL_RULES_MATCHER)),
    }
}

/// The built-in component of a slot, its machine code from `cache` when there is one.
pub fn builtin(sandbox: &Sandbox, slot: Slot, cache: Option<&CodeCache>) -> anyhow::Result<LoadedComponent> {
    let (name, bytes) = builtin_bytes(slot)?;
    let loaded = match cache {
        Some(cache) => sandbox.load_cached(name, bytes, cache).map(|(c, _)| c),
        None => sandbox.load(name, bytes),
    };
    let loaded = loaded.context("the built-in component does not load (a build defect)")?.with_source(|| Source::Static(bytes));
    ensure_world(&loaded, slot)?;
    Ok(loaded)
}

/// A component file for `slot`, named after its file stem.
fn load_file(sandbox: &Sandbox, slot: Slot, path: &Path) -> anyhow::Result<LoadedComponent> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read component file `{}`", path.display()))?;
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "component".into());
    let loaded = sandbox.load(&name, &bytes)?.with_source(|| Source::Shared(bytes.into()));
    ensure_world(&loaded, slot)?;
    Ok(loaded)
}

fn load_one(sandbox: &Sandbox, slot: Slot, file: Option<&Path>) -> anyhow::Result<Serving> {
    match file {
        Some(path) => Ok(Serving { component: load_file(sandbox, slot, path)?, version: 0, origin: Origin::File, key_id: None }),
        None => Ok(Serving::builtin(builtin(sandbox, slot, None)?)),
    }
}

fn ensure_world(loaded: &LoadedComponent, slot: Slot) -> anyhow::Result<()> {
    admission::check_world(loaded, slot, None).map_err(|r| anyhow::anyhow!("component `{}` {r}", loaded.info.label()))
}

/// What a finished run tells the registry: which components served it, and which one (if
/// any) faulted. Quarantine counts consecutive faulting runs per component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    pub served_by: Vec<String>,
    /// The faulting component's digest, and the fault.
    pub faulted: Option<(String, String)>,
}
