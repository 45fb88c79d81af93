//! Ed25519 keys: the publisher's signing key, the peer's trusted public keys, and the one
//! check that decides whether a manifest was signed by someone the peer trusts.
//!
//! Text forms are line-based so an operator can read and diff them: a public key is
//! `ed25519:<base64 of 32 bytes>`, a secret key file holds `orgx-peer-ed25519-secret:<base64>`.
//! A key's id is the first 16 hex digits of the sha256 of its 32 public bytes; the manifest
//! names its signer by id, and the signature is checked with the key of that id only.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::manifest::{Manifest, ManifestError};

const PUBLIC_PREFIX: &str = "ed25519:";
const SECRET_PREFIX: &str = "orgx-peer-ed25519-secret:";

/// Why a key's text is refused, or a key cannot be made or cannot sign.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("a public key starts with `{PUBLIC_PREFIX}`")]
    PublicPrefix,
    #[error("the key is not valid base64: {0}")]
    PublicBase64(#[source] base64::DecodeError),
    #[error("an Ed25519 public key has 32 bytes, not {0}")]
    PublicLength(usize),
    #[error("not a valid Ed25519 public key")]
    PublicInvalid(#[source] ed25519_dalek::SignatureError),
    /// A weak (small-order) key would accept forged signatures for some messages.
    #[error("refusing a weak (small-order) Ed25519 key")]
    Weak,
    #[error("a secret key file starts with `{SECRET_PREFIX}`")]
    SecretPrefix,
    /// No cause: the decoder's message quotes the offending byte of the secret.
    #[error("the secret key is not valid base64")]
    SecretBase64,
    #[error("an Ed25519 secret key has 32 bytes")]
    SecretLength,
    /// Not a `source`: `getrandom::Error` is no `std::error::Error` without its `std` feature.
    #[error("the system random source failed: {0}")]
    Random(getrandom::Error),
    #[error("the manifest names key {manifest}, but this key is {key}")]
    WrongKey { manifest: String, key: String },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// Why a set of trusted keys cannot be read: which setting, which file, which line.
#[derive(Debug, thiserror::Error)]
#[error("{}{}", setting.map(|s| format!("{s}: ")).unwrap_or_default(), fault)]
pub struct TrustedKeysError {
    /// `ORGX_TRUSTED_KEYS_FILE` or `ORGX_TRUSTED_KEYS`, when the keys came from a setting.
    pub setting: Option<&'static str>,
    #[source]
    pub fault: TrustedKeysFault,
}

#[derive(Debug, thiserror::Error)]
pub enum TrustedKeysFault {
    #[error("cannot read trusted keys file `{}`: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}line {line}: {source}", path.as_ref().map(|p| format!("trusted keys file `{}`: ", p.display())).unwrap_or_default())]
    Key { path: Option<PathBuf>, line: usize, source: KeyError },
}

impl From<TrustedKeysFault> for TrustedKeysError {
    fn from(fault: TrustedKeysFault) -> TrustedKeysError {
        TrustedKeysError { setting: None, fault }
    }
}

/// A trusted Ed25519 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parse `ed25519:<base64>`.
    pub fn parse(text: &str) -> Result<PublicKey, KeyError> {
        let b64 = text.trim().strip_prefix(PUBLIC_PREFIX).ok_or(KeyError::PublicPrefix)?;
        let bytes = B64.decode(b64).map_err(KeyError::PublicBase64)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| KeyError::PublicLength(b.len()))?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(KeyError::PublicInvalid)?;
        if key.is_weak() {
            return Err(KeyError::Weak);
        }
        Ok(PublicKey(key))
    }

    pub fn id(&self) -> String {
        hex::encode(&Sha256::digest(self.0.as_bytes())[..8])
    }

    pub fn to_text(&self) -> String {
        format!("{PUBLIC_PREFIX}{}", B64.encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id())
    }
}

/// A publisher's signing key. Never printed: `Debug` shows the key id only.
pub struct SecretKey(SigningKey);

impl SecretKey {
    pub fn generate() -> Result<SecretKey, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(KeyError::Random)?;
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    pub fn parse(text: &str) -> Result<SecretKey, KeyError> {
        let b64 = text.trim().strip_prefix(SECRET_PREFIX).ok_or(KeyError::SecretPrefix)?;
        let bytes = B64.decode(b64).map_err(|_| KeyError::SecretBase64)?;
        let seed: [u8; 32] = bytes.try_into().map_err(|_| KeyError::SecretLength)?;
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    pub fn to_text(&self) -> String {
        format!("{SECRET_PREFIX}{}\n", B64.encode(self.0.to_bytes()))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Sign `manifest`, whose `key_id` must be this key's id.
    pub fn sign(&self, manifest: &Manifest) -> Result<String, KeyError> {
        if manifest.key_id != self.public().id() {
            return Err(KeyError::WrongKey { manifest: manifest.key_id.clone(), key: self.public().id() });
        }
        let canonical = manifest.canonical()?;
        Ok(B64.encode(self.0.sign(&canonical).to_bytes()))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.public().id())
    }
}

/// Why a signature does not make a manifest trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the component is unsigned")]
    Unsigned,
    #[error("it is signed by key {0}, which this peer does not trust")]
    UnknownKey(String),
    #[error("the signature is malformed: {0}")]
    Malformed(String),
    #[error("the signature does not match the manifest (tampered, or signed by another key)")]
    Mismatch,
    #[error("{0}")]
    BadManifest(String),
}

/// The public keys this peer trusts, by id.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys(BTreeMap<String, PublicKey>);

impl TrustedKeys {
    /// Keys from text: one `ed25519:...` per line (or comma-separated); `#` starts a comment.
    pub fn parse(text: &str) -> Result<TrustedKeys, TrustedKeysError> {
        let mut keys = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("");
            for item in line.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let key = PublicKey::parse(item).map_err(|source| TrustedKeysFault::Key { path: None, line: n + 1, source })?;
                keys.insert(key.id(), key);
            }
        }
        Ok(TrustedKeys(keys))
    }

    pub fn from_file(path: &Path) -> Result<TrustedKeys, TrustedKeysError> {
        let text = std::fs::read_to_string(path).map_err(|source| TrustedKeysFault::Read { path: path.to_path_buf(), source })?;
        TrustedKeys::parse(&text).map_err(|mut e| {
            if let TrustedKeysFault::Key { path: p, .. } = &mut e.fault {
                *p = Some(path.to_path_buf());
            }
            e
        })
    }

    /// The keys of `ORGX_TRUSTED_KEYS_FILE` plus those of `ORGX_TRUSTED_KEYS`; an error names
    /// the setting at fault.
    pub fn from_settings(file: Option<&Path>, inline: Option<&str>) -> Result<TrustedKeys, TrustedKeysError> {
        let from = |setting: &'static str| move |e: TrustedKeysError| TrustedKeysError { setting: Some(setting), ..e };
        let mut keys = match file {
            Some(path) => TrustedKeys::from_file(path).map_err(from("ORGX_TRUSTED_KEYS_FILE"))?,
            None => TrustedKeys::default(),
        };
        if let Some(inline) = inline.filter(|s| !s.trim().is_empty()) {
            keys.merge(TrustedKeys::parse(inline).map_err(from("ORGX_TRUSTED_KEYS"))?);
        }
        Ok(keys)
    }

    pub fn merge(&mut self, other: TrustedKeys) {
        self.0.extend(other.0);
    }

    pub fn ids(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The check: `signature` (base64) is a valid Ed25519 signature, by the trusted key the
    /// manifest names, over the manifest's canonical text. Returns the signer's key id.
    pub fn verify(&self, manifest: &Manifest, signature: &str) -> Result<String, SignatureError> {
        if signature.trim().is_empty() {
            return Err(SignatureError::Unsigned);
        }
        let canonical = manifest.canonical().map_err(|e| SignatureError::BadManifest(e.to_string()))?;
        let key = self.0.get(&manifest.key_id).ok_or_else(|| SignatureError::UnknownKey(manifest.key_id.clone()))?;
        let bytes = B64.decode(signature.trim()).map_err(|e| SignatureError::Malformed(format!("not base64: {e}")))?;
        let bytes: [u8; 64] = bytes.try_into().map_err(|b: Vec<u8>| SignatureError::Malformed(format!("{} bytes, not 64", b.len())))?;
        // `verify_strict` also refuses malleable (non-canonical) signatures.
        key.0.verify_strict(&canonical, &Signature::from_bytes(&bytes)).map_err(|_| SignatureError::Mismatch)?;
        Ok(key.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::manifest::Slot;

    fn manifest(key: &SecretKey) -> Manifest {
        Manifest {
            slot: Slot::Matcher,
            name: "m".into(),
            version: 1,
            sha256: "c".repeat(64),
            size: 10,
            world: "orgx:peer/matcher-component".into(),
            wit_version: "0.1.0".into(),
            key_id: key.public().id(),
        }
    }

    #[test]
    fn keys_round_trip_through_text() {
        let k = SecretKey::generate().unwrap();
        let again = SecretKey::parse(&k.to_text()).unwrap();
        assert_eq!(again.public(), k.public());
        assert_eq!(PublicKey::parse(&k.public().to_text()).unwrap(), k.public());
        assert_eq!(k.public().id().len(), 16);
        assert!(!format!("{k:?}").contains(&k.to_text()[SECRET_PREFIX.len()..SECRET_PREFIX.len() + 8]));
    }

    #[test]
    fn signature_checks_are_adversarial() {
        let signer = SecretKey::generate().unwrap();
        let stranger = SecretKey::generate().unwrap();
        let trusted = TrustedKeys::parse(&format!("# ci\n{}\n", signer.public().to_text())).unwrap();
        let m = manifest(&signer);
        let sig = signer.sign(&m).unwrap();
        assert_eq!(trusted.verify(&m, &sig), Ok(signer.public().id()));

        let mut flipped = B64.decode(&sig).unwrap();
        flipped[10] ^= 1;
        let flipped = B64.encode(flipped);
        let mut stranger_manifest = manifest(&stranger);
        let stranger_sig = stranger.sign(&stranger_manifest).unwrap();
        // A stranger's signature, relabelled with the trusted key's id.
        stranger_manifest.key_id = signer.public().id();
        type Case = (&'static str, Manifest, String, fn(&SignatureError) -> bool);
        let bumped = Manifest { version: 2, ..m.clone() };
        let other_slot = Manifest { slot: Slot::Mapper("claude_code"), ..m.clone() };
        let other_digest = Manifest { sha256: "d".repeat(64), ..m.clone() };
        let table: Vec<Case> = vec![
            ("empty signature", m.clone(), String::new(), |e| *e == SignatureError::Unsigned),
            ("blank signature", m.clone(), "  ".into(), |e| *e == SignatureError::Unsigned),
            ("not base64", m.clone(), "!!!".into(), |e| matches!(e, SignatureError::Malformed(_))),
            ("short signature", m.clone(), B64.encode([0u8; 10]), |e| matches!(e, SignatureError::Malformed(_))),
            ("flipped bit", m.clone(), flipped, |e| *e == SignatureError::Mismatch),
            ("all zero", m.clone(), B64.encode([0u8; 64]), |e| *e == SignatureError::Mismatch),
            ("version bumped after signing", bumped, sig.clone(), |e| *e == SignatureError::Mismatch),
            ("slot changed after signing", other_slot, sig.clone(), |e| *e == SignatureError::Mismatch),
            ("digest changed after signing", other_digest, sig.clone(), |e| *e == SignatureError::Mismatch),
            ("untrusted signer", manifest(&stranger), stranger.sign(&manifest(&stranger)).unwrap(), |e| {
                matches!(e, SignatureError::UnknownKey(_))
            }),
            ("stranger relabelled as trusted", stranger_manifest, stranger_sig, |e| *e == SignatureError::Mismatch),
        ];
        for (what, m, sig, ok) in table {
            let err = trusted.verify(&m, &sig).expect_err(what);
            assert!(ok(&err), "{what}: {err:?}");
        }
    }

    #[test]
    fn key_files_are_strict() {
        let k = SecretKey::generate().unwrap();
        let table: &[(&str, &str)] = &[
            ("ed25519:", "32 bytes"),
            ("rsa:AAAA", "starts with `ed25519:`"),
            ("ed25519:not base64!", "base64"),
            ("ed25519:AAAA", "32 bytes"),
            // The identity point: a small-order key.
            ("ed25519:AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "weak"),
        ];
        for (text, want) in table {
            let err = TrustedKeys::parse(text).expect_err(text).to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
        let two =
            TrustedKeys::parse(&format!("{}, {}  # two keys", k.public().to_text(), SecretKey::generate().unwrap().public().to_text()))
                .unwrap();
        assert_eq!(two.ids().len(), 2);
        assert!(SecretKey::parse("ed25519:AAAA").is_err());
        let mut m = manifest(&k);
        m.key_id = "0000000000000000".into();
        assert!(matches!(k.sign(&m), Err(KeyError::WrongKey { .. })));
        assert!(k.sign(&m).unwrap_err().to_string().contains("names key"));
    }
}
