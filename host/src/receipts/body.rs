//! The bytes of one terminal receipt (spec §4.1, §4.2) and their digest.
//!
//! The body is built once from the outbox entry and then kept in the store: every retry sends
//! the same bytes, so the `X-OrgX-Payload-Digest` the server binds its acknowledgement to never
//! changes (a `task.failed` body carries the time it was first written, which a rebuild would
//! change). Field order and presence follow the spec's tables exactly; `provider_id` and
//! `observed_provider_id` keep their three states (absent, `null`, a string).

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::protocol::{Completed, Failed, PeerMessage};

/// What `metadata.recovered_from` says: the SDK's value, which this peer writes (§4.2).
pub const RECOVERED_FROM: &str = "gateway_socket";

/// A terminal message that has no receipt body (anything but `task.completed` and
/// `task.failed`), or an outbox entry that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("outbox entry of run `{run_id}` is not a terminal message with a receipt ({why}); it waits for the socket")]
pub struct NoReceipt {
    pub run_id: String,
    pub why: String,
}

/// The receipt body for the terminal message `message_json`, serialised. `now` is the
/// ISO-8601 time of writing, used as `failed_at` (this peer's `task.failed` carries none).
pub fn build(run_id: &str, message_json: &str, now: &str) -> Result<Vec<u8>, NoReceipt> {
    let no = |why: String| NoReceipt { run_id: run_id.to_string(), why };
    let msg: PeerMessage = serde_json::from_str(message_json).map_err(|e| no(e.to_string()))?;
    let body = match msg {
        PeerMessage::Completed(c) => completed(&c),
        PeerMessage::Failed(f) => failed(&f, now),
        other => return Err(no(format!("a `{}`", other.kind()))),
    };
    Ok(serde_json::to_vec(&body).expect("JSON values always serialize"))
}

/// §4.1: no `kind`, no `run_id` (the run is in the path); `first_response_at` is `null` and
/// `saved_estimate_cents` `0` when the message has none.
fn completed(c: &Completed) -> Value {
    let mut b = Map::new();
    b.insert("provider".into(), json!(c.provider));
    if let Some(id) = &c.provider_id {
        b.insert("provider_id".into(), json!(id));
    }
    if let Some(id) = &c.observed_provider_id {
        b.insert("observed_provider_id".into(), json!(id));
    }
    b.insert("source_sub_type".into(), json!(c.source_sub_type));
    b.insert("source_driver".into(), json!(c.source_driver));
    b.insert("started_at".into(), json!(c.started_at));
    b.insert("first_response_at".into(), json!(c.first_response_at));
    b.insert("completed_at".into(), json!(c.completed_at));
    b.insert("tokens_used".into(), json!(c.tokens_used));
    b.insert("cost_estimate_cents".into(), json!(c.cost_estimate_cents));
    b.insert("saved_estimate_cents".into(), json!(c.saved_estimate_cents.unwrap_or(0)));
    b.insert("outcome_kind".into(), json!(c.outcome_kind));
    b.insert("metadata".into(), json!({ "recovered_from": RECOVERED_FROM }));
    Value::Object(b)
}

/// §4.2: the message itself, its reason redacted and cut to 2,000 characters, plus
/// `failed_at`.
fn failed(f: &Failed, now: &str) -> Value {
    json!({
        "kind": "task.failed",
        "run_id": f.run_id,
        "reason": crate::redact::reason(&f.reason),
        "recoverable": f.recoverable,
        "failed_at": now,
    })
}

/// `sha256:<64 lowercase hex>` of exactly `body`.
pub fn digest(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-12-02T16:00:00.000Z";

    fn completed_json(extra: Value) -> String {
        let mut m = json!({
            "kind": "task.completed", "run_id": "run-1", "outcome_kind": "shipped",
            "started_at": "2026-12-02T15:00:00.000Z", "completed_at": "2026-12-02T15:01:00.000Z",
            "tokens_used": 6190, "provider": "anthropic", "source_sub_type": "subscription",
            "source_driver": "claude_code", "cost_estimate_cents": 2,
        });
        m.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        m.to_string()
    }

    fn body(json: &str) -> Value {
        serde_json::from_slice(&build("run-1", json, NOW).unwrap()).unwrap()
    }

    #[test]
    fn completed_body_is_the_sdks_exactly() {
        let b = build("run-1", &completed_json(json!({})), NOW).unwrap();
        assert_eq!(
            String::from_utf8(b).unwrap(),
            r#"{"provider":"anthropic","source_sub_type":"subscription","source_driver":"claude_code","started_at":"2026-12-02T15:00:00.000Z","first_response_at":null,"completed_at":"2026-12-02T15:01:00.000Z","tokens_used":6190,"cost_estimate_cents":2,"saved_estimate_cents":0,"outcome_kind":"shipped","metadata":{"recovered_from":"gateway_socket"}}"#
        );
    }

    /// A message's optional fields, the fields the body must carry, and those it must not.
    type Case<'a> = (Value, &'a [(&'a str, Value)], &'a [&'a str]);

    #[test]
    fn optional_fields_keep_their_exact_state() {
        let table: &[Case] = &[
            (json!({}), &[], &["provider_id", "observed_provider_id", "kind", "run_id"]),
            (json!({"provider_id": null}), &[("provider_id", Value::Null)], &["observed_provider_id"]),
            (
                json!({"provider_id": "p1", "observed_provider_id": null}),
                &[("provider_id", json!("p1")), ("observed_provider_id", Value::Null)],
                &[],
            ),
            (json!({"observed_provider_id": "anthropic"}), &[("observed_provider_id", json!("anthropic"))], &["provider_id"]),
            (
                json!({"first_response_at": "2026-12-02T15:00:01.000Z", "saved_estimate_cents": 40}),
                &[("first_response_at", json!("2026-12-02T15:00:01.000Z")), ("saved_estimate_cents", json!(40))],
                &[],
            ),
        ];
        for (extra, present, absent) in table {
            let b = body(&completed_json(extra.clone()));
            for (k, v) in *present {
                assert_eq!(b.get(*k), Some(v), "{extra}: {k}");
            }
            for k in *absent {
                assert!(b.get(*k).is_none(), "{extra}: {k} must be absent in {b}");
            }
            assert_eq!(b["metadata"], json!({"recovered_from": "gateway_socket"}));
        }
    }

    #[test]
    fn failed_body_is_redacted_cut_and_stamped() {
        let reason = format!("Bearer oxk_live_1 refused {}", "x".repeat(3000));
        let msg = json!({"kind": "task.failed", "run_id": "run-1", "reason": reason, "recoverable": true}).to_string();
        let b = body(&msg);
        let keys: Vec<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["kind", "run_id", "reason", "recoverable", "failed_at"]);
        assert_eq!(
            (&b["kind"], &b["run_id"], &b["recoverable"], &b["failed_at"]),
            (&json!("task.failed"), &json!("run-1"), &json!(true), &json!(NOW))
        );
        let r = b["reason"].as_str().unwrap();
        assert!(r.starts_with("Bearer [redacted] refused") && !r.contains("oxk_live_1"), "{r}");
        assert_eq!(r.chars().count(), 2000);
    }

    #[test]
    fn other_messages_and_garbage_have_no_receipt() {
        for bad in [r#"{"kind":"task.started","run_id":"run-1","started_at":"x"}"#, "not json", r#"{"kind":"task.completed"}"#] {
            let err = build("run-1", bad, NOW).unwrap_err().to_string();
            assert!(err.contains("run `run-1`") && err.contains("waits for the socket"), "{err}");
        }
    }

    #[test]
    fn digest_is_sha256_of_the_exact_bytes() {
        // SHA-256("abc") from FIPS 180-2.
        assert_eq!(digest(b"abc"), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(digest(b""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_ne!(digest(b"{\"a\":1}"), digest(b"{\"a\": 1}"), "bytes, not JSON meaning");
    }
}
