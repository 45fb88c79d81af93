//! The one writer of [`ActiveComponents`]: admits candidates, restores slots at boot, and
//! quarantines components that keep faulting.
//!
//! Reject-and-keep: a candidate becomes active only after every stage passed and it is on
//! disk; until then (and after any refusal) the slot's component serves unchanged. Admissions
//! are serialized (one at a time, each re-checking the version floor under the lock), but the
//! manifest-only checks run before waiting for that lock, so a bad push is refused at once
//! even while another component compiles. A swap publishes a new snapshot; runs that started
//! before it keep the snapshot they took. `restore` brings stored components back (boot,
//! fallback, lost records); `quarantine` takes faulting ones out of service.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::components::admission::{self, Precheck, Rejection, SlotView, Stage};
use crate::components::files::ComponentFiles;
use crate::components::{builtin, ActiveComponents, Origin, Serving};
use crate::sandbox::{CodeCache, CodeSource, LoadedComponent, Sandbox};
use crate::store::Store;
use crate::trust::{Envelope, Manifest, Slot, TrustedKeys};

mod quarantine;
mod restore;

pub use quarantine::Quarantined;
use restore::rebuilt;

/// Default for `ORGX_MAX_COMPONENT_BYTES`.
pub const DEFAULT_MAX_COMPONENT_BYTES: u64 = 16 << 20;
/// Consecutive faulting runs after which a component is quarantined.
pub const QUARANTINE_AFTER: u32 = 3;
/// How many earlier versions of a slot are remembered as fallbacks.
const HISTORY: usize = 8;

#[derive(Clone)]
pub struct RegistryConfig {
    pub data_dir: PathBuf,
    pub trusted: TrustedKeys,
    pub max_component_bytes: u64,
    /// Accept unsigned components from the local directory (authoring only).
    pub dev_unsigned_local: bool,
}

/// A slot's persisted record: its version floor and the components it has served.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SlotRecord {
    floor: u64,
    /// Oldest first; the last entry that is not quarantined and still verifies serves.
    history: Vec<HistoryEntry>,
}

impl SlotRecord {
    /// `entry` becomes the newest version; the floor rises to it; the oldest beyond
    /// [`HISTORY`] are forgotten.
    fn remember(&mut self, entry: HistoryEntry) {
        self.floor = self.floor.max(entry.version);
        self.history.retain(|h| h.sha256 != entry.sha256);
        self.history.push(entry);
        let excess = self.history.len().saturating_sub(HISTORY);
        self.history.drain(..excess);
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct HistoryEntry {
    sha256: String,
    version: u64,
    origin: Origin,
}

#[derive(Default)]
struct State {
    slots: BTreeMap<Slot, SlotRecord>,
    /// Consecutive faulting runs per digest.
    faults: HashMap<String, u32>,
}

/// What an admission did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub slot: Slot,
    pub name: String,
    pub version: u64,
    pub sha256: String,
    /// Whether machine code came from the peer's cache.
    pub cached: bool,
    /// False when exactly this component was already active.
    pub changed: bool,
}

pub struct Registry {
    sandbox: Sandbox,
    store: Store,
    files: ComponentFiles,
    cache: CodeCache,
    cfg: RegistryConfig,
    builtins: BTreeMap<Slot, LoadedComponent>,
    active: watch::Sender<ActiveComponents>,
    state: Mutex<State>,
    admitting: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    /// The built-ins, then each slot's newest stored component that still verifies: the
    /// peer serves what it last accepted before it talks to anyone.
    pub fn open(sandbox: Sandbox, store: Store, cfg: RegistryConfig) -> anyhow::Result<Registry> {
        let files = ComponentFiles::new(cfg.data_dir.join("components"));
        let cache = CodeCache::new(cfg.data_dir.join("components").join("cache"), store.clone());
        let mut builtins = BTreeMap::new();
        for slot in Slot::all() {
            builtins.insert(slot, builtin(&sandbox, slot, Some(&cache))?);
        }
        let initial = ActiveComponents {
            mappers: crate::driver::ALL.iter().map(|d| (d.id, Serving::builtin(builtins[&Slot::Mapper(d.id)].clone()))).collect(),
            matcher: Serving::builtin(builtins[&Slot::Matcher].clone()),
        };
        let (active, _) = watch::channel(initial);
        let registry =
            Registry { sandbox, store, files, cache, cfg, builtins, active, state: Mutex::default(), admitting: Mutex::default() };
        let mut state = State::default();
        let stored = registry.files.manifests();
        for slot in Slot::all() {
            let mut record = match registry.store.slot_record(slot.as_str())? {
                Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                    tracing::error!(slot = %slot, "the slot's record is corrupt ({e}); rebuilding it from the stored components");
                    rebuilt(slot, &stored)
                }),
                None => rebuilt(slot, &stored),
            };
            // The floor never drops below a version this peer stored, even if its record was
            // lost: losing the store must not reopen the door to a rollback.
            let stored_max = stored.iter().filter(|e| e.manifest.slot == slot).map(|e| e.manifest.version).max().unwrap_or(0);
            record.floor = record.floor.max(stored_max);
            let serving = registry.newest_good(slot, &record, None);
            registry.active.send_modify(|a| a.set(slot, serving));
            state.slots.insert(slot, record);
        }
        *lock(&registry.state) = state;
        for slot in Slot::all() {
            let a = registry.active.borrow();
            let s = a.get(slot);
            tracing::info!(slot = %slot, name = %s.component.info.name, version = s.version, origin = s.origin.as_str(), "component serving");
        }
        Ok(registry)
    }

    pub fn subscribe(&self) -> watch::Receiver<ActiveComponents> {
        self.active.subscribe()
    }

    pub fn snapshot(&self) -> ActiveComponents {
        self.active.borrow().clone()
    }

    pub fn max_component_bytes(&self) -> u64 {
        self.cfg.max_component_bytes
    }

    pub fn trusted_key_ids(&self) -> Vec<String> {
        self.cfg.trusted.ids()
    }

    pub fn quarantined(&self) -> Vec<String> {
        self.store.quarantined().unwrap_or_default()
    }

    fn is_quarantined(&self, sha256: &str) -> bool {
        self.store.is_quarantined(sha256).unwrap_or(false)
    }

    /// The manifest-only stages for a signed candidate, against the slot as it is now: the
    /// edge runs them before it fetches a single byte of a push.
    pub fn precheck(&self, envelope: &Envelope) -> Result<Precheck, Rejection> {
        let m = &envelope.manifest;
        let floor = lock(&self.state).slots.get(&m.slot).map_or(0, |r| r.floor);
        let quarantined = self.is_quarantined(&m.sha256);
        let active = self.active.borrow();
        let serving = active.get(m.slot);
        let view = SlotView { floor, active: (serving.version, &serving.component.info.sha256), quarantined };
        admission::precheck(m, &envelope.signature, &self.cfg.trusted, self.cfg.max_component_bytes, Some(view))
    }

    /// Admit a pushed component whose manifest passed [`Registry::precheck`] and whose bytes
    /// arrived. Blocking (it compiles).
    pub fn admit_pushed(&self, envelope: Envelope, bytes: Vec<u8>) -> Result<Admitted, Rejection> {
        self.admit_bytes(Some(envelope), Origin::Pushed, None, bytes)
    }

    /// What admitting exactly the active component again did: nothing.
    pub fn unchanged(&self, m: &Manifest) -> Admitted {
        Admitted { slot: m.slot, name: m.name.clone(), version: m.version, sha256: m.sha256.clone(), cached: true, changed: false }
    }

    /// A component from the local directory: signed (`envelope`), or unsigned in dev mode.
    /// Blocking (it compiles).
    pub fn admit_local(&self, name: &str, envelope: Option<Envelope>, bytes: Vec<u8>) -> Result<Admitted, Rejection> {
        match envelope {
            // `admit_bytes` runs the manifest checks itself, under the admission lock.
            Some(envelope) => self.admit_bytes(Some(envelope), Origin::Local, None, bytes),
            None if self.cfg.dev_unsigned_local => {
                tracing::warn!(
                    name,
                    "DEV MODE: admitting an UNSIGNED local component (ORGX_DEV_UNSIGNED_LOCAL); never use this in production"
                );
                self.admit_bytes(None, Origin::DevUnsigned, Some(name), bytes)
            }
            None => Err(Rejection::new(
                Stage::Signature,
                "it has no `.sig` file: sign it with `orgx-peer component sign`, or set ORGX_DEV_UNSIGNED_LOCAL=1 while authoring",
            )),
        }
    }

    /// The stages on the bytes, then activation. `envelope` is `None` only for dev mode.
    fn admit_bytes(
        &self,
        envelope: Option<Envelope>,
        origin: Origin,
        dev_name: Option<&str>,
        bytes: Vec<u8>,
    ) -> Result<Admitted, Rejection> {
        let _one_at_a_time = lock(&self.admitting);
        let key_id = match &envelope {
            // The floor may have moved while this candidate waited.
            Some(e) => match self.precheck(e)? {
                Precheck::AlreadyActive { .. } => return Ok(self.unchanged(&e.manifest)),
                Precheck::Proceed { key_id } => Some(key_id),
            },
            None => None,
        };
        let manifest = envelope.as_ref().map(|e| &e.manifest);
        let name = manifest.map_or(dev_name.unwrap_or("dev"), |m| m.name.as_str());
        // Stored bytes passed the self-test when they were admitted.
        let stored = manifest.is_some_and(|m| self.files.has_intact(&m.sha256));
        let loader = admission::Loader { sandbox: &self.sandbox, cache: Some(&self.cache), max_bytes: self.cfg.max_component_bytes };
        let admission::Loaded { component, slot, code } = admission::load(&loader, admission::Path::Live, manifest, name, &bytes, stored)?;
        let sha256 = component.info.sha256.clone();
        let version = manifest.map_or(0, |m| m.version);
        if let Some(e) = &envelope {
            self.files.put(e, (!stored).then_some(&bytes[..])).map_err(|e| Rejection::new(Stage::Store, e.to_string()))?;
            let mut state = lock(&self.state);
            let record = state.slots.entry(slot).or_default();
            record.remember(HistoryEntry { sha256: sha256.clone(), version, origin });
            let json = serde_json::to_vec(record).map_err(|e| Rejection::new(Stage::Store, e.to_string()))?;
            self.store.set_slot_record(slot.as_str(), &json).map_err(|e| Rejection::new(Stage::Store, e.to_string()))?;
        }
        let admitted = Admitted { slot, name: name.to_string(), version, sha256, cached: code == CodeSource::Cached, changed: true };
        self.active.send_modify(|a| a.set(slot, Serving { component, version, origin, key_id }));
        Ok(admitted)
    }
}
