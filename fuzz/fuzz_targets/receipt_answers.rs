//! Terminal receipts over HTTP (`receipts`, spec §4): the body built from a stored terminal
//! message, and the judgement of the server's answer to its POST.
//!
//! Input: two bytes of HTTP status, then NUL-separated: the operation id, the digest, the
//! answer body, and a stored outbox message. Asserts, against an independent reading of
//! §4.2: an answer settles a record only when it is `409 run_already_terminal`, or a 2xx
//! whose `ack` names exactly this operation and this digest with disposition `persisted` or
//! `duplicate` — never a 2xx alone, another operation, another digest; and a receipt body is
//! built only from `task.completed` / `task.failed`, is a JSON object, is the same bytes
//! every time, and a `task.failed` reason in it is the stored one redacted and cut to at most
//! 2,000 characters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orgx_peer::receipts::{build_body, digest, judge, Settled};
use reqwest::StatusCode;
use serde_json::Value;

fn field<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fuzz_target!(|data: &[u8]| {
    let Some((status, rest)) = data.split_first_chunk::<2>() else { return };
    let Ok(status) = StatusCode::from_u16(100 + u16::from_be_bytes(*status) % 500) else { return };
    let text = String::from_utf8_lossy(rest);
    let mut parts = text.splitn(4, '\0');
    let (op, dig, body, stored) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next());

    let answer: Option<Value> = serde_json::from_str(body).ok();
    match judge(status, body, op, dig) {
        Ok(Settled::Superseded) => {
            assert_eq!(status, StatusCode::CONFLICT);
            assert_eq!(answer.as_ref().and_then(|a| field(a, &["reason"])), Some("run_already_terminal"));
        }
        Ok(how) => {
            assert!(status.is_success(), "settled by HTTP {status}");
            let a = answer.as_ref().expect("settled by a body that is not JSON");
            assert_eq!(field(a, &["ack", "operation_id"]), Some(op), "settled naming another operation");
            assert_eq!(field(a, &["ack", "payload_digest"]), Some(dig), "settled naming another digest");
            let want = if how == Settled::Persisted { "persisted" } else { "duplicate" };
            assert_eq!(field(a, &["ack", "disposition"]), Some(want));
        }
        Err(_) => {}
    }

    if let Some(stored) = stored {
        let now = "2026-12-03T00:00:00Z";
        if let Ok(b) = build_body("run-1", stored, now) {
            assert_eq!(build_body("run-1", stored, now).ok().as_deref(), Some(b.as_slice()), "body not stable");
            let v: Value = serde_json::from_slice(&b).expect("a receipt body is JSON");
            assert!(v.is_object());
            let kind = serde_json::from_str::<Value>(stored).ok().and_then(|m| m.get("kind").and_then(Value::as_str).map(str::to_owned));
            assert!(matches!(kind.as_deref(), Some("task.completed" | "task.failed")), "a body from a {kind:?}");
            if let Some(reason) = field(&v, &["reason"]) {
                // §4.2 asks "redacted, at most 2,000 characters", not one line: the reason is
                // the stored message's, which the mappers already keep to one line (finding R1
                // was this oracle asking more than the spec).
                let stored_reason =
                    serde_json::from_str::<Value>(stored).ok().and_then(|m| m.get("reason").and_then(Value::as_str).map(str::to_owned));
                assert!(reason.chars().count() <= 2000, "reason of {} chars", reason.chars().count());
                assert_eq!(
                    Some(reason.to_string()),
                    stored_reason.map(|r| orgx_peer::redact::reason(&r)),
                    "reason not the stored one, redacted"
                );
            }
            assert!(digest(&b).starts_with("sha256:") && digest(&b).len() == 71);
        }
    }
});
