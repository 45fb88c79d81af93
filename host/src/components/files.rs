//! Verified components on disk, content-addressed: `<dir>/<sha256>.wasm` and
//! `<dir>/<sha256>.sig.json` (the signed manifest). Written atomically, so a crash leaves the
//! old entry or the whole new one; read back with every check repeated by the caller, so a
//! corrupted or tampered entry is refused, never trusted because it is "ours".

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::fsutil::write_atomic;
use crate::trust::Envelope;

/// Why a component cannot be stored or read back; names the component (its digest).
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("`{sha256}` is not a component digest")]
    NotADigest { sha256: String },
    #[error("cannot encode the manifest of component {sha256}: {source}")]
    Encode {
        sha256: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write component {sha256} to `{}`: {source}", dir.display())]
    Write {
        sha256: String,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read stored component {sha256}: {source}")]
    ReadBytes {
        sha256: String,
        #[source]
        source: std::io::Error,
    },
    #[error("stored component {sha256} is corrupt (its bytes hash to {actual})")]
    Corrupt { sha256: String, actual: String },
    #[error("cannot read the manifest of stored component {sha256}: {source}")]
    ReadManifest {
        sha256: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the manifest of stored component {sha256} is corrupt: {source}")]
    BadManifest {
        sha256: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the manifest stored for {sha256} names another component")]
    OtherComponent { sha256: String },
}

#[derive(Clone)]
pub struct ComponentFiles {
    dir: PathBuf,
}

/// A stored entry, read back but not yet re-verified.
pub struct StoredEntry {
    pub envelope: Envelope,
    pub bytes: Vec<u8>,
}

impl ComponentFiles {
    pub fn new(dir: PathBuf) -> ComponentFiles {
        ComponentFiles { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn wasm_path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.wasm"))
    }

    fn sig_path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.sig.json"))
    }

    /// Whether these exact bytes are stored (and still hash to their name): then they were
    /// admitted before, self-test included.
    pub fn has_intact(&self, sha256: &str) -> bool {
        std::fs::read(self.wasm_path(sha256)).is_ok_and(|b| hex::encode(Sha256::digest(&b)) == sha256)
    }

    /// Keep a component's signed manifest and, unless they are already stored intact
    /// (`bytes` is `None`), its bytes. The bytes go first: an envelope on disk always has its
    /// component next to it.
    pub fn put(&self, envelope: &Envelope, bytes: Option<&[u8]>) -> Result<(), FilesError> {
        let sha = &envelope.manifest.sha256;
        let json = serde_json::to_vec_pretty(envelope).map_err(|source| FilesError::Encode { sha256: sha.clone(), source })?;
        let bytes_written = match bytes {
            Some(bytes) => write_atomic(&self.wasm_path(sha), bytes),
            None => Ok(()),
        };
        bytes_written.and_then(|()| write_atomic(&self.sig_path(sha), &json)).map_err(|source| FilesError::Write {
            sha256: sha.clone(),
            dir: self.dir.clone(),
            source,
        })
    }

    /// Every stored signed manifest (unverified): what a lost slot record is rebuilt from.
    pub fn manifests(&self) -> Vec<Envelope> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".sig.json"))
            .filter_map(|e| serde_json::from_slice::<Envelope>(&std::fs::read(e.path()).ok()?).ok())
            .collect()
    }

    /// Read an entry back; the digest of the bytes must still be the name it is stored under.
    pub fn get(&self, sha256: &str) -> Result<StoredEntry, FilesError> {
        let name = || sha256.to_string();
        let valid_name = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid_name {
            return Err(FilesError::NotADigest { sha256: name() });
        }
        let bytes = std::fs::read(self.wasm_path(sha256)).map_err(|source| FilesError::ReadBytes { sha256: name(), source })?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != sha256 {
            return Err(FilesError::Corrupt { sha256: name(), actual });
        }
        let json = std::fs::read(self.sig_path(sha256)).map_err(|source| FilesError::ReadManifest { sha256: name(), source })?;
        let envelope: Envelope = serde_json::from_slice(&json).map_err(|source| FilesError::BadManifest { sha256: name(), source })?;
        if envelope.manifest.sha256 != sha256 {
            return Err(FilesError::OtherComponent { sha256: name() });
        }
        Ok(StoredEntry { envelope, bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::{Manifest, Slot};

    fn envelope(bytes: &[u8]) -> Envelope {
        Envelope {
            manifest: Manifest {
                slot: Slot::Matcher,
                name: "m".into(),
                version: 1,
                sha256: hex::encode(Sha256::digest(bytes)),
                size: bytes.len() as u64,
                world: "orgx:peer/matcher-component".into(),
                wit_version: "0.1.0".into(),
                key_id: "0123456789abcdef".into(),
            },
            signature: "sig".into(),
        }
    }

    #[test]
    fn round_trip_and_corruption_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = ComponentFiles::new(dir.path().join("components"));
        let bytes = b"\0asm component bytes".to_vec();
        let env = envelope(&bytes);
        let sha = env.manifest.sha256.clone();
        files.put(&env, Some(&bytes)).unwrap();
        let back = files.get(&sha).unwrap();
        assert_eq!(back.bytes, bytes);
        assert_eq!(back.envelope, env);

        type Damage<'a> = &'a dyn Fn(&Path);
        let table: &[(&str, Damage, &str)] = &[
            ("flipped byte", &|d| std::fs::write(d.join(format!("{sha}.wasm")), b"\0asm component bytez").unwrap(), "corrupt"),
            ("torn manifest", &|d| std::fs::write(d.join(format!("{sha}.sig.json")), b"{\"manif").unwrap(), "manifest of stored component"),
            ("missing bytes", &|d| std::fs::remove_file(d.join(format!("{sha}.wasm"))).unwrap(), "cannot read stored component"),
        ];
        for (what, damage, want) in table {
            files.put(&env, Some(&bytes)).unwrap();
            damage(files.dir());
            let err = files.get(&sha).err().unwrap_or_else(|| panic!("{what}: accepted")).to_string();
            assert!(err.contains(want), "{what}: {err}");
        }
        for bad in ["../../etc/passwd", "", "ABCD", &"g".repeat(64)] {
            assert!(files.get(bad).is_err(), "{bad:?} accepted as a digest");
        }
    }
}
