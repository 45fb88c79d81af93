//! Who may change what runs in the sandbox: signed component manifests and the keys the
//! peer trusts. Security-critical and small on purpose: `manifest` (the signed fields and
//! their canonical text), `keys` (Ed25519 keys and the signature check).

pub mod keys;
pub mod manifest;

use serde::{Deserialize, Serialize};

pub use keys::{KeyError, PublicKey, SecretKey, SignatureError, TrustedKeys, TrustedKeysError};
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

/// Why a `.sig` file next to a component could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error("cannot read `{path}`: {source}")]
    Unreadable { path: String, source: std::io::Error },
    #[error("`{path}` is not a signature file: {reason}")]
    Malformed { path: String, reason: String },
}

impl Envelope {
    /// The `.sig` next to `wasm`: `None` when there is none (an unsigned component). The one
    /// reader of signature files: the local directory, `component verify` and `inspect` use it.
    pub fn read_sidecar(wasm: &std::path::Path) -> Result<Option<Envelope>, SidecarError> {
        let path = Envelope::sidecar_path(wasm);
        let shown = || path.display().to_string();
        match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SidecarError::Unreadable { path: shown(), source }),
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map(Some).map_err(|e| SidecarError::Malformed { path: shown(), reason: e.to_string() })
            }
        }
    }

    /// The signature file that travels next to `component.wasm`: `component.wasm.sig`.
    pub fn sidecar_path(wasm: &std::path::Path) -> std::path::PathBuf {
        let mut name = wasm.as_os_str().to_owned();
        name.push(".sig");
        std::path::PathBuf::from(name)
    }
}
