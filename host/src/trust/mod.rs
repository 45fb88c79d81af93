//! Who may change what runs in the sandbox: signed component manifests and the keys the
//! peer trusts. Security-critical and small on purpose: `manifest` (the signed fields and
//! their canonical text), `keys` (Ed25519 keys and the signature check).

pub mod keys;
pub mod manifest;

use serde::{Deserialize, Serialize};

pub use keys::{PublicKey, SecretKey, SignatureError, TrustedKeys};
pub use manifest::{Manifest, ManifestError, Slot};

/// A manifest with its signature: the body of a `.wasm.sig` file, and the signed part of a
/// `component.push` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub manifest: Manifest,
    /// Base64 Ed25519 signature over `manifest.canonical()`; empty when unsigned.
    #[serde(default)]
    pub signature: String,
}

impl Envelope {
    /// The signature file that travels next to `component.wasm`: `component.wasm.sig`.
    pub fn sidecar_path(wasm: &std::path::Path) -> std::path::PathBuf {
        let mut name = wasm.as_os_str().to_owned();
        name.push(".sig");
        std::path::PathBuf::from(name)
    }
}
