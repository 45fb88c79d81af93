//! The component manifest and its signature (`trust`): a `.wasm.sig` file's or a
//! `component.push` frame's `{manifest, signature}` read with serde, validated, written as
//! the canonical text the signature covers, and checked against a trusted key; the
//! trusted-keys settings parser too.
//!
//! Input: an envelope's JSON, optionally followed by a NUL and a second manifest's JSON, or
//! by a NUL, a `K` and trusted-keys text. Asserts: the fuzzer's signature verifies only if it
//! is exactly the key's own signature of the canonical text (Ed25519 is deterministic and
//! `verify_strict` refuses every other encoding), so no mutation of a signed envelope is
//! accepted; every valid manifest, re-addressed to the fixed key, can be signed, its signature
//! verifies, and it does not verify the same manifest with another version; the
//! canonical text is injective (two manifests with the same canonical bytes are equal); a
//! key id from the settings parser is the id of a key it parsed.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use orgx_peer::trust::{Envelope, Manifest, SecretKey, TrustedKeys};

/// A fixed signing key (a test key, not a secret) and the trust of its public half.
fn keys() -> &'static (SecretKey, TrustedKeys) {
    static KEYS: OnceLock<(SecretKey, TrustedKeys)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let secret = SecretKey::parse("orgx-peer-ed25519-secret:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").expect("test key");
        let trusted = TrustedKeys::parse(&secret.public().to_text()).expect("its public half");
        (secret, trusted)
    })
}

fuzz_target!(|data: &[u8]| {
    let (secret, trusted) = keys();
    let (first, rest) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    if let Some(text) = rest.and_then(|r| r.strip_prefix(b"K")) {
        let text = String::from_utf8_lossy(text);
        if let Ok(keys) = TrustedKeys::parse(&text) {
            for id in keys.ids() {
                assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()), "key id {id:?}");
            }
        }
    }
    let Ok(envelope) = serde_json::from_slice::<Envelope>(first) else { return };
    let m = &envelope.manifest;
    let valid = m.validate().is_ok();
    assert_eq!(m.canonical().is_ok(), valid, "canonical and validate disagree on {m:?}");
    if let Ok(id) = trusted.verify(m, &envelope.signature) {
        assert!(valid, "a manifest that does not validate verified: {m:?}");
        let own = secret.sign(m).expect("a verified manifest can be signed");
        assert_eq!(envelope.signature.trim(), own, "a signature other than the key's own verified");
        assert_eq!(id, m.key_id);
    }
    // The same manifest re-addressed to the fixed key: every valid manifest the fuzzer finds
    // is signed and checked, without the seeds having to know the key's id.
    let mut named = m.clone();
    named.key_id = secret.public().id();
    if named.validate().is_ok() {
        let own = secret.sign(&named).expect("a valid manifest naming the key can be signed");
        assert_eq!(
            trusted.verify(&named, &own).as_deref(),
            Ok(named.key_id.as_str()),
            "the key's own signature of {named:?} did not verify"
        );
        let mut other = named.clone();
        other.version = other.version.wrapping_add(1);
        if other.validate().is_ok() {
            assert!(trusted.verify(&other, &own).is_err(), "a signature of {named:?} verified for another version");
        }
    }
    if let Some(second) = rest.filter(|r| !r.starts_with(b"K")).and_then(|r| serde_json::from_slice::<Manifest>(r).ok()) {
        if let (Ok(a), Ok(b)) = (m.canonical(), second.canonical()) {
            assert_eq!(a == b, *m == second, "canonical text not injective: {m:?} vs {second:?}");
        }
    }
});
