//! Bringing stored components back: at boot, after a quarantine, after a lost record.
//!
//! Nothing on disk is trusted because it is on disk: each stored component goes through the
//! admission pipeline again (`admission::Path::Restore`: today's trusted keys, its digest,
//! the size limit, compile, imports, link and the slot's world) before it may serve, and whatever fails is logged and skipped for the next older one, down to the
//! built-in. The version floor is rebuilt from the signed manifests if the record is gone.

use super::{HistoryEntry, Registry, SlotRecord};
use crate::components::admission::Rejection;
use crate::components::files::FilesError;
use crate::components::{admission, Origin, Serving};
use crate::trust::{Envelope, Slot};

/// Why a stored component is skipped (logged with its slot and digest).
#[derive(Debug, thiserror::Error)]
pub(super) enum RestoreError {
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error("its manifest says {stored_slot} v{stored_version}, the slot record says {slot} v{version}")]
    NotTheRecorded { stored_slot: Slot, stored_version: u64, slot: Slot, version: u64 },
    #[error(transparent)]
    Refused(#[from] Rejection),
}

/// A slot record recovered from the signed manifests on disk, oldest version first.
pub(super) fn rebuilt(slot: Slot, stored: &[Envelope]) -> SlotRecord {
    let mut manifests: Vec<_> = stored.iter().map(|e| &e.manifest).filter(|m| m.slot == slot).collect();
    manifests.sort_by_key(|m| m.version);
    let mut record = SlotRecord::default();
    for m in manifests {
        record.remember(HistoryEntry { sha256: m.sha256.clone(), version: m.version, origin: Origin::Pushed });
    }
    record
}

impl Registry {
    /// The newest entry of `record` that is not quarantined, not `except`, and re-verifies;
    /// else the built-in component.
    pub(super) fn newest_good(&self, slot: Slot, record: &SlotRecord, except: Option<&str>) -> Serving {
        for entry in record.history.iter().rev() {
            if Some(entry.sha256.as_str()) == except || self.is_quarantined(&entry.sha256) {
                continue;
            }
            match self.reload(slot, entry) {
                Ok(serving) => return serving,
                Err(e) => tracing::error!(slot = %slot, sha256 = %entry.sha256, "stored component skipped: {e}"),
            }
        }
        Serving::builtin(self.builtins[&slot].clone())
    }

    /// A stored component, with every check repeated against today's trusted keys.
    fn reload(&self, slot: Slot, entry: &HistoryEntry) -> Result<Serving, RestoreError> {
        let stored = self.files.get(&entry.sha256)?;
        let m = &stored.envelope.manifest;
        if m.slot != slot || m.version != entry.version {
            return Err(RestoreError::NotTheRecorded { stored_slot: m.slot, stored_version: m.version, slot, version: entry.version });
        }
        let precheck = admission::precheck(m, &stored.envelope.signature, &self.cfg.trusted, self.cfg.max_component_bytes, None);
        let key_id = match precheck? {
            admission::Precheck::Proceed { key_id } | admission::Precheck::AlreadyActive { key_id } => key_id,
        };
        let loader = admission::Loader { sandbox: &self.sandbox, cache: Some(&self.cache), max_bytes: self.cfg.max_component_bytes };
        let loaded = admission::load(&loader, admission::Path::Restore, Some(m), &m.name, &stored.bytes, true)?;
        let component = loaded.component;
        Ok(Serving { component, version: m.version, origin: entry.origin, key_id: Some(key_id) })
    }
}
