//! What an answer to a receipt POST means (spec §4.2): settled, superseded, or retry.
//!
//! A 2xx alone proves nothing — a proxy's HTML page, a server older than the acknowledgement
//! and a server that stored something else all answer 2xx. Only an `ack` that names the exact
//! operation (`Idempotency-Key`) and the exact digest sent proves these bytes were stored, so
//! that is the only answer that settles a record, besides `409 run_already_terminal` (another
//! terminal for the run won; retrying cannot help). Everything else is a [`Failure`] whose
//! kind the poster logs once per record.

use reqwest::StatusCode;
use serde_json::Value;

/// The answer settles the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// `ack.disposition` `persisted`: the server stored this receipt.
    Persisted,
    /// `ack.disposition` `duplicate`: the server already had it.
    Duplicate,
    /// `409 {"reason":"run_already_terminal"}`: another terminal for the run won.
    Superseded,
}

/// Why a receipt stays pending. The kind (not the detail) is what is logged once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("network error: {0}")]
    Network(String),
    #[error("no answer within {0} s")]
    Timeout(u64),
    #[error("HTTP {0}")]
    Status(u16),
    #[error("HTTP {0} without an acknowledgement (a server or proxy older than §4.2?)")]
    NoAck(u16),
    #[error("the acknowledgement names another operation")]
    OtherOperation,
    #[error("the acknowledgement names another payload digest")]
    OtherDigest,
    #[error("the acknowledgement's disposition is not `persisted` or `duplicate`")]
    OtherDisposition,
}

impl Failure {
    /// The same key for every failure of one kind (statuses apart), for log-once.
    pub fn kind(&self) -> String {
        match self {
            Failure::Network(_) => "network".into(),
            Failure::Timeout(_) => "timeout".into(),
            Failure::Status(s) => format!("status-{s}"),
            Failure::NoAck(s) => format!("no-ack-{s}"),
            Failure::OtherOperation => "other-operation".into(),
            Failure::OtherDigest => "other-digest".into(),
            Failure::OtherDisposition => "other-disposition".into(),
        }
    }
}

/// Judge the answer `status` + `body` to a POST sent with `operation_id` (the
/// `Idempotency-Key`) and `digest` (the `X-OrgX-Payload-Digest`).
pub fn judge(status: StatusCode, body: &str, operation_id: &str, digest: &str) -> Result<Settled, Failure> {
    let json: Option<Value> = serde_json::from_str(body).ok();
    if status == StatusCode::CONFLICT {
        return match json.as_ref().and_then(|j| j.get("reason")).and_then(Value::as_str) {
            Some("run_already_terminal") => Ok(Settled::Superseded),
            _ => Err(Failure::Status(409)),
        };
    }
    if !status.is_success() {
        return Err(Failure::Status(status.as_u16()));
    }
    let Some(ack) = json.as_ref().and_then(|j| j.get("ack")).filter(|a| a.is_object()) else {
        return Err(Failure::NoAck(status.as_u16()));
    };
    if ack.get("operation_id").and_then(Value::as_str) != Some(operation_id) {
        return Err(Failure::OtherOperation);
    }
    if ack.get("payload_digest").and_then(Value::as_str) != Some(digest) {
        return Err(Failure::OtherDigest);
    }
    match ack.get("disposition").and_then(Value::as_str) {
        Some("persisted") => Ok(Settled::Persisted),
        Some("duplicate") => Ok(Settled::Duplicate),
        _ => Err(Failure::OtherDisposition),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OP: &str = "run-1";
    const DIGEST: &str = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn ack(op: &str, digest: &str, disposition: &str) -> String {
        serde_json::json!({"ack": {"operation_id": op, "payload_digest": digest, "disposition": disposition}}).to_string()
    }

    #[test]
    fn every_acknowledgement_case_of_4_2() {
        let other_digest = DIGEST.replace("ba78", "0000");
        let table: Vec<(u16, String, Result<Settled, Failure>)> = vec![
            // Settled.
            (200, ack(OP, DIGEST, "persisted"), Ok(Settled::Persisted)),
            (201, ack(OP, DIGEST, "persisted"), Ok(Settled::Persisted)),
            (200, ack(OP, DIGEST, "duplicate"), Ok(Settled::Duplicate)),
            (409, r#"{"reason":"run_already_terminal"}"#.into(), Ok(Settled::Superseded)),
            (409, r#"{"reason":"run_already_terminal","code":"x"}"#.into(), Ok(Settled::Superseded)),
            // A 2xx without an ack.
            (200, "{}".into(), Err(Failure::NoAck(200))),
            (201, r#"{"receipt_id":"rc_1"}"#.into(), Err(Failure::NoAck(201))),
            (200, "<html><body>proxy</body></html>".into(), Err(Failure::NoAck(200))),
            (204, "".into(), Err(Failure::NoAck(204))),
            (200, r#"{"ack":null}"#.into(), Err(Failure::NoAck(200))),
            (200, r#"{"ack":"persisted"}"#.into(), Err(Failure::NoAck(200))),
            (200, r#"[{"ack":{}}]"#.into(), Err(Failure::NoAck(200))),
            // An ack for something else.
            (200, ack("run-2", DIGEST, "persisted"), Err(Failure::OtherOperation)),
            (200, ack("RUN-1", DIGEST, "persisted"), Err(Failure::OtherOperation)),
            (200, r#"{"ack":{"payload_digest":"x","disposition":"persisted"}}"#.into(), Err(Failure::OtherOperation)),
            (200, ack(OP, &other_digest, "persisted"), Err(Failure::OtherDigest)),
            (200, ack(OP, &DIGEST.to_uppercase(), "persisted"), Err(Failure::OtherDigest)),
            (200, ack(OP, DIGEST.trim_start_matches("sha256:"), "persisted"), Err(Failure::OtherDigest)),
            (200, ack(OP, DIGEST, "rejected"), Err(Failure::OtherDisposition)),
            (200, ack(OP, DIGEST, "Persisted"), Err(Failure::OtherDisposition)),
            (200, r#"{"ack":{"operation_id":"run-1","payload_digest":"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}}"#.into(), Err(Failure::OtherDisposition)),
            // Any other status, even with a valid-looking ack.
            (409, r#"{"reason":"conflict"}"#.into(), Err(Failure::Status(409))),
            (409, "".into(), Err(Failure::Status(409))),
            (400, r#"{"reason":"run_already_terminal"}"#.into(), Err(Failure::Status(400))),
            (401, "{}".into(), Err(Failure::Status(401))),
            (404, ack(OP, DIGEST, "persisted"), Err(Failure::Status(404))),
            (500, ack(OP, DIGEST, "persisted"), Err(Failure::Status(500))),
            (503, "".into(), Err(Failure::Status(503))),
            (302, ack(OP, DIGEST, "persisted"), Err(Failure::Status(302))),
        ];
        for (status, body, want) in table {
            let got = judge(StatusCode::from_u16(status).unwrap(), &body, OP, DIGEST);
            assert_eq!(got, want, "{status} {body}");
        }
    }

    #[test]
    fn failure_kinds_group_details_not_statuses() {
        assert_eq!(Failure::Network("a".into()).kind(), Failure::Network("b".into()).kind());
        assert_ne!(Failure::Status(500).kind(), Failure::Status(503).kind());
        assert_ne!(Failure::Status(200).kind(), Failure::NoAck(200).kind());
    }
}
