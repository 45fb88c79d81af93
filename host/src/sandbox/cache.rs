//! The peer's own cache of machine code compiled from verified components.
//!
//! Compiling a component costs hundreds of milliseconds; loading compiled code costs about
//! one. But loading compiled code skips every check wasmtime makes on WebAssembly, so the
//! rule is strict: only artifacts *this peer* compiled are ever loaded. An artifact is keyed
//! by the component's digest plus a hash of the engine (wasmtime version and configuration,
//! so an upgrade never loads stale code), written atomically, and its own SHA-256 is kept in
//! the peer's store and checked before use: a torn write or a flipped bit means a recompile,
//! never a crash. Pushed bytes are always WebAssembly; there is no way to hand the peer code.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use crate::fsutil::write_atomic;
use crate::store::Store;

/// Where compiled artifacts live, and the store that vouches for them.
#[derive(Clone)]
pub struct CodeCache {
    dir: PathBuf,
    store: Store,
}

/// How a component got its machine code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeSource {
    Compiled,
    Cached,
}

impl CodeCache {
    pub fn new(dir: PathBuf, store: Store) -> CodeCache {
        CodeCache { dir, store }
    }

    fn key(engine: &wasmtime::Engine, sha256: &str) -> String {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        format!("{sha256}-{:016x}", h.finish())
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.cwasm"))
    }

    /// The compiled component for `sha256`, when a sound artifact of ours is cached.
    pub fn get(&self, engine: &wasmtime::Engine, sha256: &str) -> Option<Component> {
        let key = Self::key(engine, sha256);
        let recorded = self.store.code_integrity(&key).ok().flatten()?;
        let bytes = std::fs::read(self.path(&key)).ok()?;
        if hex::encode(Sha256::digest(&bytes)) != recorded {
            tracing::warn!(sha256, "compiled-code cache entry is corrupt; recompiling");
            let _ = std::fs::remove_file(self.path(&key));
            return None;
        }
        // SAFETY: the artifact was produced by `Component::serialize` in this peer (its
        // digest was recorded by `put` below and re-checked just now), for an engine with the
        // same compatibility hash; wasmtime re-checks the engine compatibility itself.
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(sha256, "cannot use a cached compiled component ({e:#}); recompiling");
                None
            }
        }
    }

    /// Remember `component`'s machine code. Failures only cost a later recompile.
    pub fn put(&self, engine: &wasmtime::Engine, sha256: &str, component: &Component) {
        let key = Self::key(engine, sha256);
        let result = component
            .serialize()
            .map_err(|e| format!("{e:#}"))
            .and_then(|bytes| write_atomic(&self.path(&key), &bytes).map(|()| bytes).map_err(|e| e.to_string()))
            .and_then(|bytes| {
                let digest = hex::encode(Sha256::digest(&bytes));
                self.store.set_code_integrity(&key, &digest).map_err(|e| e.to_string())
            });
        if let Err(e) = result {
            tracing::warn!(sha256, dir = %self.dir.display(), "cannot cache compiled code: {e}");
        }
    }
}
