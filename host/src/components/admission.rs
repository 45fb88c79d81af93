//! The admission stages a component passes before it may serve a slot, and the checks that
//! decide the first of them.
//!
//! Every refusal names its stage (the server's acknowledgement carries it, see
//! `docs/component-push.md`), and the order is cheapest-first: everything that can be decided
//! from the signed manifest alone — shape, size, signature, version, world, quarantine — is
//! decided before a byte is fetched or compiled, so a bad push is refused in microseconds
//! and cannot make the peer do work on behalf of an untrusted party.

use serde::Serialize;

use super::WIT_VERSION;
use crate::trust::{Manifest, TrustedKeys};

/// Where admission refused a component. Wire names are snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Manifest,
    Size,
    Signature,
    Version,
    World,
    Quarantine,
    Fetch,
    Digest,
    Compile,
    Imports,
    Link,
    Instantiate,
    SelfTest,
    Store,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Manifest => "manifest",
            Stage::Size => "size",
            Stage::Signature => "signature",
            Stage::Version => "version",
            Stage::World => "world",
            Stage::Quarantine => "quarantine",
            Stage::Fetch => "fetch",
            Stage::Digest => "digest",
            Stage::Compile => "compile",
            Stage::Imports => "imports",
            Stage::Link => "link",
            Stage::Instantiate => "instantiate",
            Stage::SelfTest => "self_test",
            Stage::Store => "store",
        }
    }
}

/// A refusal: the stage and a reason a server operator or author can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused at stage `{}`: {reason}", stage.as_str())]
pub struct Rejection {
    pub stage: Stage,
    pub reason: String,
}

impl Rejection {
    pub fn new(stage: Stage, reason: impl Into<String>) -> Rejection {
        Rejection { stage, reason: reason.into() }
    }
}

/// What the slot looks like when a candidate arrives.
#[derive(Debug, Clone, Copy)]
pub struct SlotView<'a> {
    /// The highest version ever accepted for the slot (0: only the built-in so far).
    pub floor: u64,
    /// The active version and digest.
    pub active: (u64, &'a str),
    /// Whether the candidate's digest was quarantined here.
    pub quarantined: bool,
}

/// The outcome of the manifest-only checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precheck {
    /// Go on to the bytes; the signature is by this key.
    Proceed { key_id: String },
    /// Exactly this version and digest already serve the slot: nothing to do.
    AlreadyActive { key_id: String },
}

/// Every check that needs only the signed manifest, in stage order.
pub fn precheck(manifest: &Manifest, signature: &str, keys: &TrustedKeys, max_bytes: u64, slot: SlotView<'_>) -> Result<Precheck, Rejection> {
    manifest.validate().map_err(|e| Rejection::new(Stage::Manifest, e.to_string()))?;
    if manifest.size > max_bytes {
        return Err(Rejection::new(Stage::Size, format!("it declares {} bytes; this peer takes at most {max_bytes}", manifest.size)));
    }
    let key_id = keys.verify(manifest, signature).map_err(|e| Rejection::new(Stage::Signature, e.to_string()))?;
    if manifest.version == slot.active.0 && manifest.sha256 == slot.active.1 {
        return Ok(Precheck::AlreadyActive { key_id });
    }
    if manifest.version <= slot.floor {
        return Err(Rejection::new(
            Stage::Version,
            format!(
                "version {} is not newer than {} (versions of slot `{}` must strictly increase; an old signed component cannot be replayed)",
                manifest.version, slot.floor, manifest.slot
            ),
        ));
    }
    if manifest.world != manifest.slot.world() {
        return Err(Rejection::new(Stage::World, format!("slot `{}` serves world `{}`, not `{}`", manifest.slot, manifest.slot.world(), manifest.world)));
    }
    if manifest.wit_version != WIT_VERSION {
        return Err(Rejection::new(Stage::World, format!("this peer serves WIT `orgx:peer@{WIT_VERSION}`, not `{}`", manifest.wit_version)));
    }
    if slot.quarantined {
        return Err(Rejection::new(Stage::Quarantine, "this exact component was quarantined on this peer after repeated faults"));
    }
    Ok(Precheck::Proceed { key_id })
}

/// The bytes are what the manifest signed: same length, same SHA-256, within the limit.
pub fn check_bytes(manifest: Option<&Manifest>, bytes: &[u8], max_bytes: u64) -> Result<(), Rejection> {
    if bytes.len() as u64 > max_bytes {
        return Err(Rejection::new(Stage::Size, format!("it is {} bytes; this peer takes at most {max_bytes}", bytes.len())));
    }
    let Some(manifest) = manifest else { return Ok(()) };
    if bytes.len() as u64 != manifest.size {
        return Err(Rejection::new(Stage::Digest, format!("{} bytes arrived; the manifest signed {}", bytes.len(), manifest.size)));
    }
    use sha2::Digest;
    let actual = hex::encode(sha2::Sha256::digest(bytes));
    if actual != manifest.sha256 {
        return Err(Rejection::new(Stage::Digest, format!("the bytes hash to {actual}; the manifest signed {}", manifest.sha256)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::{SecretKey, Slot};

    const MAX: u64 = 1 << 20;

    struct Fixture {
        key: SecretKey,
        keys: TrustedKeys,
    }

    fn fixture() -> Fixture {
        let key = SecretKey::generate().unwrap();
        let keys = TrustedKeys::parse(&key.public().to_text()).unwrap();
        Fixture { key, keys }
    }

    fn manifest(f: &Fixture, bytes: &[u8], version: u64) -> Manifest {
        use sha2::Digest;
        Manifest {
            slot: Slot::Matcher,
            name: "acme".into(),
            version,
            sha256: hex::encode(sha2::Sha256::digest(bytes)),
            size: bytes.len() as u64,
            world: "orgx:peer/matcher-component".into(),
            wit_version: WIT_VERSION.into(),
            key_id: f.key.public().id(),
        }
    }

    const ACTIVE: &str = "1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn each_manifest_check_refuses_at_its_stage() {
        let f = fixture();
        let other = fixture();
        let bytes = b"component".to_vec();
        let slot = SlotView { floor: 4, active: (4, ACTIVE), quarantined: false };
        type Case = (&'static str, fn(&mut Manifest), Option<&'static str>, SlotView<'static>, Result<(), Stage>);
        let table: Vec<Case> = vec![
            ("good", |_| {}, None, slot, Ok(())),
            ("newline smuggled into name", |m| m.name = "a\nversion: 9".into(), None, slot, Err(Stage::Manifest)),
            ("declared size over the limit", |m| m.size = MAX + 1, None, slot, Err(Stage::Size)),
            ("unsigned", |_| {}, Some(""), slot, Err(Stage::Signature)),
            ("signature not base64", |_| {}, Some("!!!"), slot, Err(Stage::Signature)),
            ("signature by an untrusted key", |_| {}, Some("other"), slot, Err(Stage::Signature)),
            ("manifest edited after signing", |_| {}, Some("tamper"), slot, Err(Stage::Signature)),
            ("rollback to an older version", |m| m.version = 3, None, slot, Err(Stage::Version)),
            ("replay of the floor version with other bytes", |m| m.version = 4, None, slot, Err(Stage::Version)),
            ("world of another slot", |m| m.world = "orgx:peer/mapper-component".into(), None, slot, Err(Stage::World)),
            ("a WIT version the peer does not serve", |m| m.wit_version = "0.2.0".into(), None, slot, Err(Stage::World)),
            ("quarantined digest", |_| {}, None, SlotView { quarantined: true, ..slot }, Err(Stage::Quarantine)),
        ];
        for (what, edit, sig, view, want) in table {
            let mut m = manifest(&f, &bytes, 5);
            edit(&mut m);
            let signature = match sig {
                None => f.key.sign(&m).unwrap_or_default(),
                Some("other") => {
                    let mut o = m.clone();
                    o.key_id = other.key.public().id();
                    m.key_id = o.key_id.clone();
                    other.key.sign(&o).unwrap()
                }
                Some("tamper") => {
                    let s = f.key.sign(&m).unwrap();
                    m.size += 1;
                    s
                }
                Some(s) => s.to_string(),
            };
            let got = precheck(&m, &signature, &f.keys, MAX, view).map(|_| ()).map_err(|r| r.stage);
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn the_active_component_again_is_not_a_rollback() {
        let f = fixture();
        let bytes = b"component".to_vec();
        let m = manifest(&f, &bytes, 4);
        let sig = f.key.sign(&m).unwrap();
        let view = SlotView { floor: 4, active: (4, &m.sha256), quarantined: false };
        assert!(matches!(precheck(&m, &sig, &f.keys, MAX, view), Ok(Precheck::AlreadyActive { .. })));
    }

    #[test]
    fn bytes_must_be_what_was_signed() {
        let f = fixture();
        let bytes = b"component".to_vec();
        let m = manifest(&f, &bytes, 1);
        assert_eq!(check_bytes(Some(&m), &bytes, MAX), Ok(()));
        let table: &[(&str, &[u8], u64, Stage)] = &[
            ("one byte flipped", b"componenT", MAX, Stage::Digest),
            ("truncated", b"componen", MAX, Stage::Digest),
            ("extended", b"component!", MAX, Stage::Digest),
            ("over the limit", b"component", 4, Stage::Size),
        ];
        for (what, body, max, stage) in table {
            assert_eq!(check_bytes(Some(&m), body, *max).map_err(|r| r.stage), Err(*stage), "{what}");
        }
    }
}
