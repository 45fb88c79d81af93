//! The one admission pipeline: every stage a component passes before it may serve a slot,
//! in one order, for every path that admits one — a server push, the local components
//! directory, a stored component restored at boot, and `component verify` — the way one
//! authority decides for all of them. The paths differ only in their [`Path`]: which slot
//! state the manifest is checked against, and whether the self-test runs.
//!
//! Every refusal names its stage (the server's acknowledgement carries it, see
//! `docs/component-push.md`), and the order is cheapest-first: everything that can be decided
//! from the signed manifest alone — shape, size, signature, version, world, quarantine — is
//! decided before a byte is fetched or compiled ([`precheck`]), so a bad push is refused in
//! microseconds and cannot make the peer do work on behalf of an untrusted party. Then the
//! bytes ([`load`]): digest, compile, imports, link, world, instantiate, self-test.

use serde::Serialize;

use super::selftest;
use crate::sandbox::component::Source;
use crate::sandbox::{CodeCache, CodeSource, LoadError, LoadStage, LoadedComponent, Sandbox, WitVersion};
use crate::trust::{Manifest, Slot, TrustedKeys};

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

impl From<LoadError> for Rejection {
    fn from(e: LoadError) -> Rejection {
        let stage = match e.stage {
            LoadStage::Compile => Stage::Compile,
            LoadStage::Imports => Stage::Imports,
            LoadStage::World => Stage::World,
            LoadStage::Link => Stage::Link,
        };
        Rejection::new(stage, e.message)
    }
}

impl From<selftest::SelfTestError> for Rejection {
    fn from(e: selftest::SelfTestError) -> Rejection {
        match e {
            selftest::SelfTestError::Instantiate(f) => Rejection::new(Stage::Instantiate, f.to_string()),
            selftest::SelfTestError::Call(f) => Rejection::new(Stage::SelfTest, f.to_string()),
        }
    }
}

/// Which way a candidate came in; it decides what the stages are checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// `component.push` or the local directory: the slot as it is now (floor, active,
    /// quarantine), and the self-test unless exactly these bytes passed it before.
    Live,
    /// A stored component coming back at boot or as a fallback: re-verified against today's
    /// keys, but it is history, so the version floor does not apply; its bytes passed the
    /// self-test when they were admitted (same code, same input, same limits).
    Restore,
    /// `component verify`: a slot with only its built-in, and every stage a live admission runs.
    Verify,
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

/// Every check that needs only the signed manifest, in stage order. `slot` is `None` on the
/// restore path, where floor, active and quarantine are the caller's (history) business.
pub fn precheck(
    manifest: &Manifest,
    signature: &str,
    keys: &TrustedKeys,
    max_bytes: u64,
    slot: Option<SlotView<'_>>,
) -> Result<Precheck, Rejection> {
    manifest.validate().map_err(|e| Rejection::new(Stage::Manifest, e.to_string()))?;
    if manifest.size > max_bytes {
        return Err(Rejection::new(Stage::Size, format!("it declares {} bytes; this peer takes at most {max_bytes}", manifest.size)));
    }
    let key_id = keys.verify(manifest, signature).map_err(|e| Rejection::new(Stage::Signature, e.to_string()))?;
    if let Some(slot) = slot {
        if manifest.version == slot.active.0 && manifest.sha256 == slot.active.1 {
            return Ok(Precheck::AlreadyActive { key_id });
        }
    }
    if let Some(slot) = slot.filter(|s| manifest.version <= s.floor) {
        return Err(Rejection::new(
            Stage::Version,
            format!(
                "version {} is not newer than {} (versions of slot `{}` must strictly increase; an old signed component cannot be replayed)",
                manifest.version, slot.floor, manifest.slot
            ),
        ));
    }
    if manifest.world != manifest.slot.world() {
        return Err(Rejection::new(
            Stage::World,
            format!("slot `{}` serves world `{}`, not `{}`", manifest.slot, manifest.slot.world(), manifest.world),
        ));
    }
    if WitVersion::parse(&manifest.wit_version).is_none() {
        return Err(Rejection::new(
            Stage::World,
            format!("this peer serves WIT `orgx:peer` versions {}, not `{}`", WitVersion::served_list(), manifest.wit_version),
        ));
    }
    if slot.is_some_and(|s| s.quarantined) {
        return Err(Rejection::new(Stage::Quarantine, "this exact component was quarantined on this peer after repeated faults"));
    }
    Ok(Precheck::Proceed { key_id })
}

/// The slot a `component verify` checks against: only its built-in has served.
pub const FRESH_SLOT: SlotView<'static> = SlotView { floor: 0, active: (0, ""), quarantined: false };

/// What the bytes stages need from the peer.
pub struct Loader<'a> {
    pub sandbox: &'a Sandbox,
    /// The peer's compiled-code cache; `None` compiles every time (`component verify`).
    pub cache: Option<&'a CodeCache>,
    pub max_bytes: u64,
}

/// A candidate that passed every stage on its bytes.
pub struct Loaded {
    pub component: LoadedComponent,
    pub slot: Slot,
    pub code: CodeSource,
}

/// Every stage on the bytes, in order: size and digest against the manifest, compile,
/// imports, link, the slot's world at the signed WIT version, then — unless `path` says the
/// bytes passed it before (`self_tested`) — instantiate and self-test. An unsigned candidate
/// (`manifest` `None`, dev mode and `replay --mapper`) serves the slot its world implies.
pub fn load(
    loader: &Loader<'_>,
    path: Path,
    manifest: Option<&Manifest>,
    name: &str,
    bytes: &[u8],
    self_tested: bool,
) -> Result<Loaded, Rejection> {
    check_bytes(manifest, bytes, loader.max_bytes)?;
    let (component, code) = match loader.cache {
        Some(cache) => loader.sandbox.load_cached(name, bytes, cache)?,
        None => (loader.sandbox.load(name, bytes)?, CodeSource::Compiled),
    };
    let component = component.with_source(|| Source::Shared(bytes.into()));
    let slot = manifest.map_or_else(|| super::world_slot(component.world()), |m| m.slot);
    check_world(&component, slot, manifest)?;
    let skip_self_test = path == Path::Restore || (path == Path::Live && self_tested);
    if !skip_self_test {
        selftest::run(&component, slot, loader.sandbox.limits())?;
    }
    Ok(Loaded { component, slot, code })
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

/// The loaded bytes implement the slot's world, and (when signed) at the WIT version the
/// manifest names: the one world check every admission path makes after loading.
pub fn check_world(component: &LoadedComponent, slot: Slot, manifest: Option<&Manifest>) -> Result<(), Rejection> {
    if component.world() != super::slot_world(slot) {
        return Err(Rejection::new(
            Stage::World,
            format!("the bytes implement `{}`, but slot `{slot}` needs a `{}`", component.world_name(), slot.world()),
        ));
    }
    if let Some(m) = manifest {
        if m.wit_version != component.wit_version().as_str() {
            return Err(Rejection::new(
                Stage::World,
                format!("the manifest signed WIT `{}`, but the bytes implement `{}`", m.wit_version, component.world_name()),
            ));
        }
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
            wit_version: WitVersion::LATEST.to_string(),
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
            ("a WIT version the peer does not serve", |m| m.wit_version = "0.4.0".into(), None, slot, Err(Stage::World)),
            ("an older WIT version the peer still serves", |m| m.wit_version = "0.1.0".into(), None, slot, Ok(())),
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
            let got = precheck(&m, &signature, &f.keys, MAX, Some(view)).map(|_| ()).map_err(|r| r.stage);
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
        assert!(matches!(precheck(&m, &sig, &f.keys, MAX, Some(view)), Ok(Precheck::AlreadyActive { .. })));
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
