//! `gateway::frames::ServerFrame::parse`, the decoder of every frame the server sends, then
//! what a dispatch frame goes through next: the v2 execution envelope's checks and its
//! canonical JSON (`envelope`).
//!
//! Input: the frame's text. Besides "no panic, hang or OOM" it asserts that the kind-first
//! decoder never disagrees with a whole-value parse: a frame it accepts is valid JSON, an
//! object, and of the kind that value names (no kind confusion, whatever duplicate keys or
//! escapes the text holds); a known frame's own checks hold; an unknown kind is reported cut
//! to 64 characters; and the envelope's canonical text reads back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orgx_peer::envelope::{self, digest, Dispatched};
use orgx_peer::gateway::frames::{FrameError, ServerFrame};
use serde_json::Value;

fn kind_of(frame: &ServerFrame) -> &'static str {
    match frame {
        ServerFrame::Dispatch(_) => "task.dispatch",
        ServerFrame::Cancel(_) => "task.cancel",
        ServerFrame::Resolve(_) => "attention.resolve",
        ServerFrame::ComponentPush(_) => "component.push",
    }
}

/// The canonical text of `v` is a fixed point: read back and written again, the same text.
fn canonical_is_stable(v: &Value) {
    let Ok(text) = digest::canonical(v) else { return };
    let again: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("canonical text is not JSON ({e}): {text:?}"));
    assert_eq!(digest::canonical(&again).as_deref(), Ok(text.as_str()), "canonical text not stable for {v}");
    assert!(digest::contract_digest(v).is_ok(), "canonical but not digestible: {v}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let whole = serde_json::from_str::<Value>(text);
    let parsed = ServerFrame::parse(text);
    if let Ok(frame) = &parsed {
        match &whole {
            Ok(value) => assert_eq!(value.get("kind").and_then(Value::as_str), Some(kind_of(frame)), "kind confusion on {text:?}"),
            // JSON by its grammar that `Value` cannot hold: a number beyond f64 in a field
            // the decoder does not know and rightly skips (finding S1). Nothing else.
            Err(e) => {
                assert!(e.to_string().contains("number out of range"), "accepted a frame that is not JSON ({e}): {text:?}");
                assert!(serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok(), "accepted a frame that is not JSON: {text:?}");
            }
        }
    }
    let whole = whole.ok();
    if whole.as_ref().is_some_and(|v| !v.is_object()) {
        assert!(matches!(parsed, Err(FrameError::NotJson(_))), "a JSON non-object not refused as such: {parsed:?}");
    }
    match parsed {
        Ok(ServerFrame::Dispatch(d)) => {
            let env = d.execution_envelope.as_ref();
            let dispatched = Dispatched {
                run_id: &d.run_id,
                idempotency_key: &d.idempotency_key,
                workspace_id: d.task.workspace_id.as_deref().unwrap_or("ws"),
                initiative_id: d.task.initiative_id.as_deref(),
                workstream_id: d.task.workstream_id.as_deref(),
            };
            let refusal = envelope::refusal(env, &dispatched, "claude_code");
            assert!(!refusal.is_empty() && !refusal.contains('\n'), "refusal {refusal:?}");
            if let Some(env) = env {
                canonical_is_stable(env);
            }
        }
        Ok(ServerFrame::Resolve(r)) => {
            assert!(![&r.decision_id, &r.run_id, &r.idempotency_key].iter().any(|f| f.is_empty()), "{r:?}");
        }
        Ok(ServerFrame::ComponentPush(p)) => assert!((1..=128).contains(&p.push_id.len()), "push_id {:?}", p.push_id),
        Ok(ServerFrame::Cancel(_)) => {}
        Err(FrameError::UnknownKind(k)) => assert!(k.chars().count() <= 64, "unknown kind shown uncut: {k:?}"),
        Err(_) => {}
    }
    if let Some(v) = &whole {
        canonical_is_stable(v);
    }
});
