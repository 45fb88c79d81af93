//! Quarantine: a component whose runs keep faulting is taken out of service.
//!
//! Runs report after their terminal message; the count is of *consecutive* faulting runs per
//! digest (a clean run resets it), because one fault can be the input's fault, three in a row
//! are the component's. The slot falls back to its newest good stored version, else the
//! built-in; the digest is marked in the store so a restart does not bring it back.

use super::{lock, Registry, QUARANTINE_AFTER};
use crate::components::{ComponentId, Origin, RunReport};
use crate::trust::Slot;

/// A component taken out of service, and what serves its slot instead: the edge tells the
/// server (`component.quarantined`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    pub component: ComponentId,
    pub faults: u32,
    pub reason: String,
    pub fallback: ComponentId,
}

impl Registry {
    /// Count a finished run; quarantine a component after [`QUARANTINE_AFTER`] consecutive
    /// faulting runs. Returns what was quarantined, for the server.
    pub fn on_run_report(&self, report: &RunReport) -> Option<Quarantined> {
        let mut to_quarantine = None;
        {
            let mut state = lock(&self.state);
            for sha in &report.served_by {
                match &report.faulted {
                    Some((faulted, reason)) if faulted == sha => {
                        let n = state.faults.entry(sha.clone()).or_insert(0);
                        *n += 1;
                        if *n >= QUARANTINE_AFTER {
                            to_quarantine = Some((sha.clone(), *n, reason.clone()));
                        }
                    }
                    _ => {
                        state.faults.remove(sha);
                    }
                }
            }
        }
        let (sha, faults, reason) = to_quarantine?;
        self.quarantine(&sha, faults, &reason)
    }

    fn quarantine(&self, sha256: &str, faults: u32, reason: &str) -> Option<Quarantined> {
        let _one_at_a_time = lock(&self.admitting);
        let slot = Slot::all().into_iter().find(|s| self.active.borrow().get(*s).component.info.sha256 == sha256)?;
        let current = self.active.borrow().get(slot).clone();
        if current.origin == Origin::BuiltIn {
            tracing::error!(slot = %slot, "the built-in component keeps faulting ({faults} runs in a row); there is nothing to fall back to: {reason}");
            return None;
        }
        if let Err(e) = self.store.quarantine(sha256, reason) {
            tracing::error!(sha256, "cannot record the quarantine: {e}");
        }
        let record = lock(&self.state).slots.get(&slot).cloned().unwrap_or_default();
        let fallback = self.newest_good(slot, &record, Some(sha256));
        lock(&self.state).faults.remove(sha256);
        let quarantined = Quarantined { component: current.id(slot), faults, reason: reason.to_string(), fallback: fallback.id(slot) };
        tracing::error!(
            slot = %slot, name = %current.component.info.name, version = current.version,
            fallback = %fallback.component.info.name, fallback_version = fallback.version,
            "component QUARANTINED after {faults} faulting runs in a row; new runs use the fallback: {reason}"
        );
        crate::metrics::global().quarantined(&current.component.info.label());
        self.active.send_modify(|a| a.set(slot, fallback));
        Some(quarantined)
    }
}
