//! `orgx-peer component inspect`: what a component is and what it would be allowed to do.
//!
//! The report is for auditors, so it lists every import with its verdict and the limits the
//! component would run under, the verdict of the same checks loading runs (imports, world,
//! link), and the caller exits non-zero when anything is refused.

use std::path::Path;

use serde_json::json;

use crate::sandbox::{Inspection, Limits};
use crate::trust::Envelope;

/// What the `.sig` next to a component says (not verified here: `component verify` does that
/// against the trusted keys).
pub enum SignatureInfo {
    Unsigned,
    Signed(Envelope),
    Unreadable(String),
}

pub fn read_signature(wasm: &Path) -> SignatureInfo {
    match Envelope::read_sidecar(wasm) {
        Ok(None) => SignatureInfo::Unsigned,
        Ok(Some(env)) => SignatureInfo::Signed(env),
        Err(e) => SignatureInfo::Unreadable(e.to_string()),
    }
}

fn signature_text(sig: &SignatureInfo, sha256: &str) -> String {
    match sig {
        SignatureInfo::Unsigned => "unsigned (no .sig file; peers accept it only in dev mode, from the local directory)".into(),
        SignatureInfo::Unreadable(e) => format!("UNREADABLE: {e}"),
        SignatureInfo::Signed(env) => {
            let m = &env.manifest;
            let matches = if m.sha256 == sha256 { "" } else { " — DIGEST MISMATCH: the .sig is for other bytes" };
            format!("key {} for slot {} as {} v{}{matches} (check with `component verify`)", m.key_id, m.slot, m.name, m.version)
        }
    }
}

/// A human-readable report.
pub fn render_text(inspection: &Inspection, limits: &Limits, sig: &SignatureInfo) -> String {
    let info = &inspection.info;
    let mut s = String::new();
    let world = info.world_name();
    s.push_str(&format!("component  {}\n", info.name));
    s.push_str(&format!("sha256     {}\n", info.sha256));
    s.push_str(&format!("size       {} bytes\n", info.size));
    s.push_str(&format!("world      {world}\n"));
    s.push_str(&format!("signer     {}\n", signature_text(sig, &info.sha256)));
    s.push_str("imports\n");
    for import in &info.imports {
        let refused = info.refused_imports.iter().find(|r| &r.import == import);
        match refused {
            Some(r) => s.push_str(&format!("  REFUSED  {import}  ({})\n", r.why)),
            None => s.push_str(&format!("  allowed  {import}\n")),
        }
    }
    s.push_str("exports\n");
    for export in &info.exports {
        s.push_str(&format!("  {export}\n"));
    }
    s.push_str(&format!(
        "limits     memory {} MiB, {} ms per line call, {} ms per setup call, output {} MiB per call, log {} KiB\n",
        limits.max_memory_bytes >> 20,
        limits.call_deadline.as_millis(),
        limits.setup_deadline.as_millis(),
        limits.max_output_bytes >> 20,
        limits.max_log_bytes >> 10
    ));
    s.push_str("context    no files, no environment, no arguments, no network; stdin empty; stdout/stderr to the peer's log\n");
    match &inspection.refusal {
        None => s.push_str("verdict    loadable\n"),
        Some(e) => s.push_str(&format!("verdict    REFUSED at stage `{}`: {}\n", e.stage.as_str(), e.message)),
    }
    s
}

/// The same report as JSON.
pub fn render_json(inspection: &Inspection, limits: &Limits, sig: &SignatureInfo) -> serde_json::Value {
    let info = &inspection.info;
    json!({
        "name": info.name,
        "sha256": info.sha256,
        "size": info.size,
        "world": info.world.is_some().then(|| info.world_name()),
        "imports": info.imports.iter().map(|i| {
            let refused = info.refused_imports.iter().find(|r| &r.import == i);
            json!({ "name": i, "allowed": refused.is_none(), "why": refused.map(|r| r.why) })
        }).collect::<Vec<_>>(),
        "exports": info.exports,
        "signature": match sig {
            SignatureInfo::Unsigned => json!(null),
            SignatureInfo::Unreadable(e) => json!({ "error": e }),
            SignatureInfo::Signed(env) => json!({
                "key_id": env.manifest.key_id,
                "slot": env.manifest.slot,
                "name": env.manifest.name,
                "version": env.manifest.version,
                "digest_matches": env.manifest.sha256 == info.sha256,
            }),
        },
        "limits": {
            "max_memory_bytes": limits.max_memory_bytes,
            "call_deadline_ms": limits.call_deadline.as_millis() as u64,
            "setup_deadline_ms": limits.setup_deadline.as_millis() as u64,
            "max_output_bytes": limits.max_output_bytes,
            "max_log_bytes": limits.max_log_bytes,
        },
        "loadable": inspection.refusal.is_none(),
        "refused": inspection.refusal.as_ref().map(|e| json!({ "stage": e.stage.as_str(), "reason": e.message })),
    })
}
