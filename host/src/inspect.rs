//! `orgx-peer plugin inspect`: what a component is and what it would be allowed to do.
//!
//! The report is for auditors, so it lists every import with its verdict and the limits the
//! component would run under, and the caller exits non-zero when anything is refused.

use serde_json::json;

use crate::sandbox::{ComponentInfo, Limits};

/// A human-readable report.
pub fn render_text(info: &ComponentInfo, limits: &Limits) -> String {
    let mut s = String::new();
    let world = info.world.map_or("none (exports no orgx:peer interface)", |w| w.wit_name());
    s.push_str(&format!("component  {}\n", info.name));
    s.push_str(&format!("sha256     {}\n", info.sha256));
    s.push_str(&format!("size       {} bytes\n", info.size));
    s.push_str(&format!("world      {world}\n"));
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
    if info.refused_imports.is_empty() && info.world.is_some() {
        s.push_str("verdict    loadable\n");
    } else {
        s.push_str("verdict    REFUSED\n");
    }
    s
}

/// The same report as JSON.
pub fn render_json(info: &ComponentInfo, limits: &Limits) -> serde_json::Value {
    json!({
        "name": info.name,
        "sha256": info.sha256,
        "size": info.size,
        "world": info.world.map(|w| w.wit_name()),
        "imports": info.imports.iter().map(|i| {
            let refused = info.refused_imports.iter().find(|r| &r.import == i);
            json!({ "name": i, "allowed": refused.is_none(), "why": refused.map(|r| r.why) })
        }).collect::<Vec<_>>(),
        "exports": info.exports,
        "limits": {
            "max_memory_bytes": limits.max_memory_bytes,
            "call_deadline_ms": limits.call_deadline.as_millis() as u64,
            "setup_deadline_ms": limits.setup_deadline.as_millis() as u64,
            "max_output_bytes": limits.max_output_bytes,
            "max_log_bytes": limits.max_log_bytes,
        },
        "loadable": info.refused_imports.is_empty() && info.world.is_some(),
    })
}
