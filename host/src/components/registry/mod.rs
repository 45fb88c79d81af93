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
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::components::admission::{self, Precheck, Rejection, SlotView, Stage};
use crate::components::files::ComponentFiles;
use crate::components::{builtin, selftest, slot_world, world_slot, ActiveComponents, Origin, Serving};
use crate::gateway::frames::ComponentPush;
use crate::http::Api;
use crate::protocol::{self as p, PeerMessage};
use crate::sandbox::{CodeCache, CodeSource, LoadStage, LoadedComponent, Sandbox};
use crate::store::Store;
use crate::trust::{Envelope, Manifest, Slot, TrustedKeys};

/// Default for `ORGX_MAX_COMPONENT_BYTES`.
mod quarantine;
mod restore;

use restore::rebuilt;

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

fn slot_key(slot: Slot) -> String {
    format!("components/slot/{slot}")
}

const QUARANTINE_PREFIX: &str = "components/quarantine/";

fn quarantine_key(sha256: &str) -> String {
    format!("{QUARANTINE_PREFIX}{sha256}")
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
        for slot in Slot::ALL {
            builtins.insert(slot, builtin(&sandbox, slot, Some(&cache))?);
        }
        let initial = ActiveComponents {
            mapper: Serving::builtin(builtins[&Slot::MapperClaudeCode].clone()),
            matcher: Serving::builtin(builtins[&Slot::Matcher].clone()),
        };
        let (active, _) = watch::channel(initial);
        let registry = Registry { sandbox, store, files, cache, cfg, builtins, active, state: Mutex::default(), admitting: Mutex::default() };
        let mut state = State::default();
        let stored = registry.files.manifests();
        for slot in Slot::ALL {
            let mut record = match registry.store.get(&slot_key(slot))? {
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
        for slot in Slot::ALL {
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

    pub fn trusted_key_ids(&self) -> Vec<String> {
        self.cfg.trusted.ids()
    }

    pub fn quarantined(&self) -> Vec<String> {
        let entries = self.store.scan_prefix(QUARANTINE_PREFIX).unwrap_or_default();
        entries.into_iter().map(|(k, _)| k[QUARANTINE_PREFIX.len()..].to_string()).collect()
    }

    fn is_quarantined(&self, sha256: &str) -> bool {
        self.store.get(&quarantine_key(sha256)).ok().flatten().is_some()
    }

    /// The manifest-only stages for a signed candidate, against the slot as it is now.
    fn precheck(&self, envelope: &Envelope) -> Result<Precheck, Rejection> {
        let m = &envelope.manifest;
        let floor = lock(&self.state).slots.get(&m.slot).map_or(0, |r| r.floor);
        let quarantined = self.is_quarantined(&m.sha256);
        let active = self.active.borrow();
        let serving = active.get(m.slot);
        let view = SlotView { floor, active: (serving.version, &serving.component.info.sha256), quarantined };
        admission::precheck(m, &envelope.signature, &self.cfg.trusted, self.cfg.max_component_bytes, view)
    }

    /// Answer a `component.push`: every stage, then the acknowledgement to send.
    pub async fn admit_push(self: &Arc<Self>, push: ComponentPush, api: Option<&Api>) -> PeerMessage {
        let started = Instant::now();
        let manifest: Result<Manifest, Rejection> =
            serde_json::from_value(push.manifest.clone()).map_err(|e| Rejection::new(Stage::Manifest, format!("`manifest` is malformed: {e}")));
        let component = match &manifest {
            Ok(m) => p::ComponentRef { slot: m.slot.to_string(), name: m.name.clone(), version: m.version, sha256: m.sha256.clone() },
            Err(_) => p::ComponentRef::default(),
        };
        let result = match manifest {
            Ok(manifest) => self.admit_pushed(&push, Envelope { manifest, signature: push.signature.clone().unwrap_or_default() }, api).await,
            Err(r) => Err(r),
        };
        let ms = started.elapsed().as_millis() as u64;
        let (status, stage, reason) = match &result {
            Ok(a) => {
                tracing::info!(push_id = %push.push_id, slot = %a.slot, name = %a.name, version = a.version, ms, cached = a.cached, changed = a.changed, "pushed component activated");
                (p::AckStatus::Activated, None, None)
            }
            Err(r) => {
                tracing::warn!(push_id = %push.push_id, slot = %component.slot, name = %component.name, version = component.version, ms, "pushed component {r}");
                (p::AckStatus::Rejected, Some(r.stage.as_str().to_string()), Some(r.reason.clone()))
            }
        };
        PeerMessage::ComponentAck(p::ComponentAck { push_id: push.push_id, component, status, stage, reason })
    }

    async fn admit_pushed(self: &Arc<Self>, push: &ComponentPush, envelope: Envelope, api: Option<&Api>) -> Result<Admitted, Rejection> {
        if let Precheck::AlreadyActive { .. } = self.precheck(&envelope)? {
            return Ok(self.unchanged(&envelope.manifest));
        }
        let max = self.cfg.max_component_bytes;
        let bytes = match (&push.bytes_base64, &push.url) {
            (Some(b64), None) => {
                // base64 is 4/3 of the bytes: refuse an oversize body before decoding it.
                if (b64.len() as u64) / 4 * 3 > max + 3 {
                    return Err(Rejection::new(Stage::Size, format!("the inline body is over the {max}-byte limit")));
                }
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| Rejection::new(Stage::Manifest, format!("`bytes_base64` is not base64: {e}")))?
            }
            (None, Some(url)) => {
                let api = api.ok_or_else(|| Rejection::new(Stage::Fetch, "this peer has no server connection to fetch from"))?;
                let url = api.base.same_base(url).map_err(|e| Rejection::new(Stage::Fetch, e))?;
                api.fetch_component(url, max).await.map_err(|e| Rejection::new(Stage::Fetch, e.to_string()))?
            }
            _ => return Err(Rejection::new(Stage::Manifest, "exactly one of `bytes_base64` and `url` is required")),
        };
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.admit_bytes(Some(envelope), Origin::Pushed, None, bytes))
            .await
            .unwrap_or_else(|e| Err(Rejection::new(Stage::Compile, format!("admission crashed: {e}"))))
    }

    fn unchanged(&self, m: &Manifest) -> Admitted {
        Admitted { slot: m.slot, name: m.name.clone(), version: m.version, sha256: m.sha256.clone(), cached: true, changed: false }
    }

    /// A component from the local directory: signed (`envelope`), or unsigned in dev mode.
    /// Blocking (it compiles).
    pub fn admit_local(&self, name: &str, envelope: Option<Envelope>, bytes: Vec<u8>) -> Result<Admitted, Rejection> {
        match envelope {
            // `admit_bytes` runs the manifest checks itself, under the admission lock.
            Some(envelope) => self.admit_bytes(Some(envelope), Origin::Local, None, bytes),
            None if self.cfg.dev_unsigned_local => {
                tracing::warn!(name, "DEV MODE: admitting an UNSIGNED local component (ORGX_DEV_UNSIGNED_LOCAL); never use this in production");
                self.admit_bytes(None, Origin::DevUnsigned, Some(name), bytes)
            }
            None => Err(Rejection::new(
                Stage::Signature,
                "it has no `.sig` file: sign it with `orgx-peer plugin sign`, or set ORGX_DEV_UNSIGNED_LOCAL=1 while authoring",
            )),
        }
    }

    /// The stages on the bytes, then activation. `envelope` is `None` only for dev mode.
    fn admit_bytes(&self, envelope: Option<Envelope>, origin: Origin, dev_name: Option<&str>, bytes: Vec<u8>) -> Result<Admitted, Rejection> {
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
        admission::check_bytes(manifest, &bytes, self.cfg.max_component_bytes)?;
        let name = manifest.map_or(dev_name.unwrap_or("dev"), |m| m.name.as_str());
        let (component, code) = self.sandbox.load_cached(name, &bytes, &self.cache).map_err(|e| {
            let stage = match e.stage {
                LoadStage::Compile => Stage::Compile,
                LoadStage::Imports => Stage::Imports,
                LoadStage::World => Stage::World,
                LoadStage::Link => Stage::Link,
            };
            Rejection::new(stage, e.message)
        })?;
        let slot = match manifest {
            Some(m) => m.slot,
            None => world_slot(component.world()),
        };
        if component.world() != slot_world(slot) {
            return Err(Rejection::new(Stage::World, format!("the bytes implement `{}`, but slot `{slot}` needs `{}`", component.world().wit_name(), slot_world(slot).wit_name())));
        }
        let sha256 = component.info.sha256.clone();
        // Stored bytes passed this self-test when they were admitted; the same code on the
        // same input under the same limits would again.
        let stored = self.files.has_intact(&sha256);
        if !stored {
            selftest::run(&component, self.sandbox.limits()).map_err(|e| match e {
                selftest::SelfTestError::Instantiate(f) => Rejection::new(Stage::Instantiate, f.to_string()),
                selftest::SelfTestError::Call(f) => Rejection::new(Stage::SelfTest, f.to_string()),
            })?;
        }
        let version = manifest.map_or(0, |m| m.version);
        if let Some(e) = &envelope {
            self.files.put(e, (!stored).then_some(&bytes[..])).map_err(|e| Rejection::new(Stage::Store, e))?;
            let mut state = lock(&self.state);
            let record = state.slots.entry(slot).or_default();
            record.remember(HistoryEntry { sha256: sha256.clone(), version, origin });
            let json = serde_json::to_vec(record).map_err(|e| Rejection::new(Stage::Store, e.to_string()))?;
            self.store.put(&slot_key(slot), &json).map_err(|e| Rejection::new(Stage::Store, e.to_string()))?;
        }
        let admitted = Admitted { slot, name: name.to_string(), version, sha256, cached: code == CodeSource::Cached, changed: true };
        self.active.send_modify(|a| a.set(slot, Serving { component, version, origin, key_id }));
        Ok(admitted)
    }
}
