//! The author's drop-in directory: a new or changed `X.wasm` (with its `X.wasm.sig`) is
//! admitted through the same stages as a push, for new runs.
//!
//! Polling, not inotify: one `read_dir` every couple of seconds costs nothing, works the same
//! on every platform and filesystem (network mounts, containers), and a half-written file is
//! simply seen again on the next pass (its size or time changes until the writer is done).
//! Removing a file does not deactivate its component: what is active stays active until
//! something newer is admitted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::registry::Registry;
use crate::trust::{Envelope, SidecarError};

/// What a file looked like when it was last considered.
type Stamp = (Option<SystemTime>, u64, Option<SystemTime>, u64);

fn stamp(wasm: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(wasm).ok()?;
    let sig = std::fs::metadata(Envelope::sidecar_path(wasm)).ok();
    Some((m.modified().ok(), m.len(), sig.as_ref().and_then(|s| s.modified().ok()), sig.map_or(0, |s| s.len())))
}

/// `.wasm` files in `dir`, sorted so that admissions happen in a stable order.
fn wasm_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> =
        entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file()).collect();
    files.sort();
    files
}

/// Admit one file; the outcome goes to the log (there is no one else to tell).
pub fn admit_file(registry: &Registry, wasm: &Path) {
    let name: String = wasm.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let shown = wasm.display();
    let bytes = match std::fs::read(wasm) {
        Ok(b) => b,
        Err(e) => return tracing::warn!(file = %shown, "cannot read local component: {e}"),
    };
    let envelope = match Envelope::read_sidecar(wasm) {
        Ok(envelope) => envelope,
        Err(e @ SidecarError::Malformed { .. }) => return tracing::warn!(file = %shown, "local component refused at stage `manifest`: {e}"),
        Err(e) => return tracing::warn!(file = %shown, "{e}"),
    };
    match registry.admit_local(&name, envelope, bytes) {
        Ok(a) if a.changed => {
            tracing::info!(file = %shown, slot = %a.slot, name = %a.name, version = a.version, cached = a.cached, "local component activated; new runs use it")
        }
        Ok(a) => tracing::debug!(file = %shown, slot = %a.slot, "local component already active"),
        Err(r) => tracing::warn!(file = %shown, "local component {r}; the active component keeps serving"),
    }
}

/// The directory and what was last seen in it.
pub struct LocalDir {
    dir: PathBuf,
    seen: HashMap<PathBuf, Stamp>,
}

impl LocalDir {
    pub fn new(dir: PathBuf) -> LocalDir {
        LocalDir { dir, seen: HashMap::new() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Admit every new or changed file (blocking: admission compiles).
    pub fn scan(&mut self, registry: &Registry) {
        for f in wasm_files(&self.dir) {
            let Some(s) = stamp(&f) else { continue };
            if self.seen.get(&f) != Some(&s) {
                self.seen.insert(f.clone(), s);
                admit_file(registry, &f);
            }
        }
    }

    /// Keep scanning every `every` until shutdown.
    pub async fn watch(mut self, registry: Arc<Registry>, every: Duration, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = crate::shutdown::raised(&mut shutdown) => return,
            }
            let registry = registry.clone();
            match tokio::task::spawn_blocking(move || {
                self.scan(&registry);
                self
            })
            .await
            {
                Ok(me) => self = me,
                Err(e) => return tracing::error!("the local components watcher stopped: {e}"),
            }
        }
    }
}
