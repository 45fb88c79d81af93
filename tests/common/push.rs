//! Signed `component.push` frames, as a server would build them, and a registry that
//! trusts their key.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use orgx_peer::components::registry::{Registry, RegistryConfig};
use orgx_peer::gateway::frames::ComponentPush;
use orgx_peer::sandbox::{Limits, Sandbox, WitVersion};
use orgx_peer::store::Store;
use orgx_peer::trust::{Manifest, SecretKey, Slot, TrustedKeys};
use sha2::{Digest, Sha256};

/// Registry settings for a peer whose data dir is `dir`, trusting only `key`.
pub fn registry_config(dir: &Path, key: &SecretKey, max_component_bytes: u64) -> RegistryConfig {
    RegistryConfig {
        data_dir: dir.to_path_buf(),
        trusted: TrustedKeys::parse(&key.public().to_text()).unwrap(),
        max_component_bytes,
        dev_unsigned_local: false,
    }
}

/// The registry of a peer whose data dir is `dir` (opened, or reopened after a "restart").
pub fn open_registry(dir: &Path, key: &SecretKey, max_component_bytes: u64) -> Arc<Registry> {
    open_registry_in(Sandbox::new(Limits::default()).unwrap(), dir, key, max_component_bytes)
}

/// [`open_registry`] with a given sandbox (e.g. one compiling in a child, as the daemon's).
pub fn open_registry_in(sandbox: Sandbox, dir: &Path, key: &SecretKey, max_component_bytes: u64) -> Arc<Registry> {
    let store = Store::open(&dir.join("peer.redb")).unwrap();
    Arc::new(Registry::open(sandbox, store, registry_config(dir, key, max_component_bytes)).unwrap())
}

/// The manifest of `bytes` for `slot` at `version`, naming `key` as the signer.
pub fn manifest_for(key: &SecretKey, slot: Slot, name: &str, version: u64, bytes: &[u8]) -> Manifest {
    Manifest {
        slot,
        name: name.into(),
        version,
        sha256: hex::encode(Sha256::digest(bytes)),
        size: bytes.len() as u64,
        world: slot.world().into(),
        wit_version: wit_version_of(bytes),
        key_id: key.public().id(),
    }
}

/// The WIT version `bytes` implement, as the peer reads it; the newest for bytes that are
/// not a component (tests that push garbage still need a well-formed manifest).
fn wit_version_of(bytes: &[u8]) -> String {
    let sandbox = Sandbox::new(Limits::default()).unwrap();
    let version = sandbox.inspect("probe", bytes).ok().and_then(|i| i.info.wit_version);
    version.unwrap_or(WitVersion::LATEST).to_string()
}

/// A push of `bytes` inline with `manifest` and `signature` as given (tests forge them).
pub fn push_of(m: &Manifest, signature: &str, bytes: &[u8]) -> ComponentPush {
    ComponentPush {
        push_id: format!("push-{}-{}", m.name, m.version),
        manifest: serde_json::to_value(m).unwrap(),
        signature: Some(signature.to_string()),
        bytes_base64: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        url: None,
    }
}

/// A correctly signed inline push.
pub fn signed_push(key: &SecretKey, slot: Slot, name: &str, version: u64, bytes: &[u8]) -> ComponentPush {
    let m = manifest_for(key, slot, name, version, bytes);
    push_of(&m, &key.sign(&m).unwrap(), bytes)
}
