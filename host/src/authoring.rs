//! What rule authors and auditors run offline: `component keygen | sign | verify | test`.
//!
//! Each command is the peer's own code path, not a look-alike: `sign` writes the manifest the
//! registry verifies, `verify` runs the admission pipeline every peer runs (manifest,
//! signature, bytes, compile, link, world, instantiate, self-test), and `test`
//! replays transcripts through the live run pipeline under the production limits. So what
//! passes here is what the peer will accept and do.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::components::{admission, world_slot, ActiveComponents, Origin, Serving};
use crate::fsutil::write_atomic;
use crate::rules::Rule;
use crate::run::replay::{replay, ReplayOptions};
use crate::sandbox::{Limits, Sandbox, World};
use crate::trust::{Envelope, Manifest, SecretKey, Slot, TrustedKeys};

/// Make a signing key pair: `out` (secret, mode 0600, never overwritten) and `out.pub`.
pub fn keygen(out: &Path) -> anyhow::Result<(String, String)> {
    let secret = SecretKey::generate().map_err(anyhow::Error::msg)?;
    let public = secret.public();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(out).with_context(|| format!("cannot create `{}` (it is never overwritten)", out.display()))?;
    f.write_all(format!("{}\n", secret.to_text()).as_bytes())?;
    f.sync_all()?;
    let pub_path = out.with_file_name(format!("{}.pub", file_name(out)));
    std::fs::write(&pub_path, format!("{}\n", public.to_text())).with_context(|| format!("cannot write `{}`", pub_path.display()))?;
    Ok((public.id(), pub_path.display().to_string()))
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Sign `wasm` for a slot at `version`; writes `wasm.sig` and returns the envelope.
pub fn sign(wasm: &Path, key: &Path, version: u64, slot: Option<Slot>, name: Option<String>) -> anyhow::Result<Envelope> {
    let secret_text = std::fs::read_to_string(key).with_context(|| format!("cannot read the signing key `{}`", key.display()))?;
    let secret = SecretKey::parse(&secret_text).map_err(|e| anyhow::anyhow!("signing key `{}`: {e}", key.display()))?;
    let bytes = std::fs::read(wasm).with_context(|| format!("cannot read `{}`", wasm.display()))?;
    let sandbox = Sandbox::new(Limits::default())?;
    let default_name = wasm.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let loaded = sandbox
        .load(&default_name, &bytes)
        .with_context(|| format!("`{}` would be refused by the peer; not signing it", wasm.display()))?;
    let slot = slot.unwrap_or_else(|| world_slot(loaded.world()));
    admission::check_world(&loaded, slot, None).with_context(|| format!("`{}` cannot serve slot `{slot}`", wasm.display()))?;
    let manifest = Manifest {
        slot,
        name: name.unwrap_or(default_name),
        version,
        sha256: hex::encode(Sha256::digest(&bytes)),
        size: bytes.len() as u64,
        world: slot.world().to_string(),
        wit_version: loaded.wit_version().to_string(),
        key_id: secret.public().id(),
    };
    let signature = secret.sign(&manifest).map_err(anyhow::Error::msg)?;
    let envelope = Envelope { manifest, signature };
    let sig_path = Envelope::sidecar_path(wasm);
    write_atomic(&sig_path, &serde_json::to_vec_pretty(&envelope)?).with_context(|| format!("cannot write `{}`", sig_path.display()))?;
    Ok(envelope)
}

/// Check `wasm` against its `.sig` as the peer would: manifest, signature by a trusted key,
/// bytes, and that the bytes load and implement the signed slot's world. Returns the envelope.
pub fn verify(wasm: &Path, trusted: &TrustedKeys, max_bytes: u64) -> anyhow::Result<Envelope> {
    let envelope = Envelope::read_sidecar(wasm)?
        .with_context(|| format!("`{}` has no signature file (sign it with `orgx-peer component sign`)", wasm.display()))?;
    let bytes = std::fs::read(wasm).with_context(|| format!("cannot read `{}`", wasm.display()))?;
    let m = &envelope.manifest;
    // The peer's own pipeline, every stage, against a slot that has only its built-in: a
    // peer's version floor is not known here.
    admission::precheck(m, &envelope.signature, trusted, max_bytes, Some(admission::FRESH_SLOT)).map_err(anyhow::Error::msg)?;
    let sandbox = Sandbox::new(Limits::default())?;
    let loader = admission::Loader { sandbox: &sandbox, cache: None, max_bytes };
    admission::load(&loader, admission::Path::Verify, Some(m), &m.name, &bytes, false).map_err(anyhow::Error::msg)?;
    Ok(envelope)
}

/// Mark the fields that differ on every run (wall-clock times) so outputs compare.
pub fn normalize(message_json: &str) -> String {
    let Ok(mut v) = serde_json::from_str::<Value>(message_json) else { return message_json.to_string() };
    for field in ["started_at", "first_response_at", "completed_at"] {
        if let Some(x) = v.get_mut(field) {
            *x = Value::String("<time>".into());
        }
    }
    v.to_string()
}

/// What `component test` found.
pub struct TestOutcome {
    pub lines: Vec<String>,
    /// The first difference from the expectation: (line number, expected, actual).
    pub mismatch: Option<(usize, String, String)>,
}

/// Replay `transcripts` with `component` in its slot (the built-in in the other), under the
/// production limits, and compare with `expect` (a file of lines as this command prints them).
pub async fn test(
    component: &Path,
    driver: &str,
    transcripts: &[PathBuf],
    rules: &[Rule],
    expect: Option<&Path>,
) -> anyhow::Result<TestOutcome> {
    let limits = Limits::default();
    let sandbox = Sandbox::new(limits)?;
    let bytes = std::fs::read(component).with_context(|| format!("cannot read `{}`", component.display()))?;
    let name = component.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let loaded = sandbox.load(&name, &bytes)?;
    let slot = match loaded.world() {
        World::Mapper => Slot::Mapper(crate::driver::by_id(driver).with_context(|| format!("unknown driver `{driver}`"))?.id),
        World::Matcher => Slot::Matcher,
    };
    let mut active = ActiveComponents::load(&sandbox, driver, None, None)?;
    active.set(slot, Serving { component: loaded, version: 0, origin: Origin::File, key_id: None });
    let mut lines = Vec::new();
    for (n, transcript) in transcripts.iter().enumerate() {
        let opts = ReplayOptions {
            transcript: transcript.clone(),
            driver: driver.to_string(),
            run_id: format!("test-{}", n + 1),
            cwd: None,
            max_line_bytes: crate::run::DEFAULT_MAX_LINE_BYTES,
            limits,
        };
        replay(&active, rules, &opts, |m| lines.push(normalize(&m.to_json())))
            .await
            .with_context(|| format!("transcript `{}`", transcript.display()))?;
    }
    let mismatch = match expect {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read expectations `{}`", path.display()))?;
            let expected: Vec<String> = text.lines().filter(|l| !l.trim().is_empty()).map(normalize).collect();
            let n = expected.len().max(lines.len());
            (0..n).find_map(|i| {
                let (e, a) = (
                    expected.get(i).cloned().unwrap_or_else(|| "<nothing>".into()),
                    lines.get(i).cloned().unwrap_or_else(|| "<nothing>".into()),
                );
                (e != a).then_some((i + 1, e, a))
            })
        }
    };
    Ok(TestOutcome { lines, mismatch })
}
