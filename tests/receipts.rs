//! Terminal receipts over HTTP (spec §4) and the handshake answer's subprotocol (§1.1), end
//! to end: the real `orgx-peer` binary against the recording OrgX stand-in, as in
//! `tests/daemon.rs`. Each test takes the socket away mid-run, so the run's terminal message
//! can only leave through the receipt endpoint, scripts that endpoint's answers, and checks
//! what was posted and when the record counted as settled.

mod common;

use std::time::Duration;

use common::peer::*;
use orgx_test_support::fake_orgx::{Echo, FakeOrgx, HttpCall, ReceiptReply};
use serde_json::json;
use sha2::Digest;

const RECEIPTS: &str = "/api/v1/runs/";

/// Start a run replaying `transcript` slowly, then take the socket away for good, so the run
/// ends while the socket is down.
async fn run_with_socket_down(server: &FakeOrgx, run_id: &str, transcript_name: &str) -> Peer {
    let repo = tempfile::tempdir().unwrap();
    let t = transcript(transcript_name);
    let peer = Peer::start(server, &[("FAKE_CLAUDE_MODE", "replay"), ("FAKE_CLAUDE_TRANSCRIPT", &t), ("FAKE_CLAUDE_DELAY_MS", "300")]);
    connected(server).await;
    assert!(server.send_json(dispatch(run_id, &format!("key-{run_id}"), repo.path(), None)));
    let id = run_id.to_string();
    server.wait_until("started", WAIT, move |s| !s.frames_for(&id).is_empty()).await;
    server.fail_handshakes(503, 10_000);
    assert!(server.drop_connection());
    // The repo outlives the run: the CLI's cwd.
    std::mem::forget(repo);
    peer
}

fn sha256(raw: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(raw)))
}

/// Every receipt POST carries the same bytes, their digest and the run id as its key.
fn assert_same_bytes_and_digest(calls: &[HttpCall], run_id: &str) {
    let first = &calls[0];
    for c in calls {
        assert_eq!((c.method.as_str(), c.path.as_str()), ("POST", format!("/api/v1/runs/{run_id}/receipt").as_str()));
        assert_eq!(c.raw, first.raw, "every retry sends the same bytes");
        assert_eq!(c.headers["x-orgx-payload-digest"], sha256(&c.raw), "the digest is SHA-256 of the exact body");
        assert_eq!(c.headers["idempotency-key"], run_id);
        assert_eq!(c.headers["authorization"], format!("Bearer {KEY}"));
        assert_eq!(c.headers["content-type"], "application/json");
    }
}

/// After the socket is back and the run's steps are flushed, no more receipts are posted and
/// the socket never carries the terminal: the record was settled exactly once.
async fn assert_settled(server: &FakeOrgx, run_id: &str, receipts: usize, steps: usize) {
    server.accept_handshakes();
    let id = run_id.to_string();
    server
        .wait_until("steps flushed after reconnect", WAIT, move |s| {
            s.frames_for(&id).iter().filter(|f| f["kind"] == "task.step").count() == steps
        })
        .await;
    // Let a confused peer show itself: one more receipt round or a terminal on the socket.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let terminals = server.frames_for(run_id).iter().filter(|f| f["kind"] == "task.completed" || f["kind"] == "task.failed").count();
    assert_eq!(terminals, 0, "a settled terminal never goes out again");
    assert_eq!(server.calls(RECEIPTS).len(), receipts, "no receipt after the settling answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_is_retried_until_the_digest_bound_ack_and_then_settled() {
    let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
    // Answers that a 2xx-is-enough peer would take as settled, then the §4.2 acknowledgement.
    server.script_receipts([
        ReceiptReply::Raw(200, "{}"),
        ReceiptReply::Raw(201, r#"{"receipt_id":"rc_1"}"#),
        ReceiptReply::Raw(200, "<html><body>gateway ok</body></html>"),
        ReceiptReply::AckOtherOperation,
        ReceiptReply::AckOtherDigest,
        ReceiptReply::Ack("stored"),
        ReceiptReply::Raw(503, "unavailable"),
        ReceiptReply::Ack("persisted"),
    ]);
    let peer = run_with_socket_down(&server, "run-ack", "success-tools.ndjson").await;
    server.wait_until("eight receipt POSTs", WAIT, |s| s.calls(RECEIPTS).len() >= 8).await;
    assert_eq!(server.receipt_script_left(), 0);
    let calls = server.calls(RECEIPTS);
    assert_same_bytes_and_digest(&calls, "run-ack");
    let body = &calls[0].body;
    let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "provider",
            "source_sub_type",
            "source_driver",
            "started_at",
            "first_response_at",
            "completed_at",
            "tokens_used",
            "cost_estimate_cents",
            "saved_estimate_cents",
            "outcome_kind",
            "metadata"
        ],
        "the SDK's body: no kind, no run_id, optional ids absent as on the message"
    );
    assert_eq!(
        (&body["outcome_kind"], &body["tokens_used"], &body["source_driver"]),
        (&json!("shipped"), &json!(6190), &json!("claude_code"))
    );
    assert_eq!(body["metadata"], json!({"recovered_from": "gateway_socket"}));
    assert!(body["first_response_at"].is_string() || body["first_response_at"].is_null());
    assert_settled(&server, "run-ack", 8, 4).await;
    let logs = peer.logs();
    // Logged once per kind of failure, not once per retry.
    assert_eq!(logs.matches("without an acknowledgement").count(), 2, "HTTP 200 and 201 without an ack: {logs}");
    assert_eq!(logs.matches("names another operation").count(), 1);
    assert_eq!(logs.matches("terminal receipt settled over HTTP: persisted").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_is_receipted_and_409_run_already_terminal_settles_it() {
    let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
    server.script_receipts([
        ReceiptReply::Raw(409, r#"{"reason":"conflict"}"#),
        ReceiptReply::Raw(500, "{}"),
        ReceiptReply::AlreadyTerminal,
    ]);
    let peer = run_with_socket_down(&server, "run-fail", "api-error-500.ndjson").await;
    server.wait_until("three receipt POSTs", WAIT, |s| s.calls(RECEIPTS).len() >= 3).await;
    let calls = server.calls(RECEIPTS);
    assert_same_bytes_and_digest(&calls, "run-fail");
    let body = &calls[0].body;
    let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["kind", "run_id", "reason", "recoverable", "failed_at"]);
    assert_eq!((&body["kind"], &body["run_id"], &body["recoverable"]), (&json!("task.failed"), &json!("run-fail"), &json!(true)));
    assert!(body["reason"].as_str().unwrap().starts_with("API Error: 500"), "{body}");
    let failed_at = body["failed_at"].as_str().unwrap();
    assert!(failed_at.len() == 24 && failed_at.ends_with('Z'), "ISO-8601 with milliseconds: {failed_at}");
    assert_settled(&server, "run-fail", 3, 1).await;
    assert!(peer.logs().contains("superseded"), "says why it stopped retrying");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_survives_a_restart_with_the_same_bytes() {
    let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
    server.script_receipts(std::iter::repeat_n(ReceiptReply::Raw(502, "bad gateway"), 10_000));
    let mut peer = run_with_socket_down(&server, "run-restart", "success-tools.ndjson").await;
    server.wait_until("a receipt retried", WAIT, |s| s.calls(RECEIPTS).len() >= 2).await;
    peer.signal(libc::SIGKILL);
    peer.wait_exit(WAIT);
    let before = server.calls(RECEIPTS);
    // A fresh script: the next answer acknowledges.
    server.clear_receipt_script();
    let data = std::mem::replace(&mut peer.data, tempfile::tempdir().unwrap());
    drop(peer);
    let _again = Peer::start_in(&server, &[], data);
    server.wait_until("the receipt after the restart", WAIT, |s| s.calls(RECEIPTS).len() > before.len()).await;
    let calls = server.calls(RECEIPTS);
    assert_eq!(calls.last().unwrap().raw, before[0].raw, "the kept bytes, not a rebuilt body");
    assert_same_bytes_and_digest(&calls, "run-restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_answer_without_a_subprotocol_is_accepted() {
    let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
    server.set_echo(Echo::Nothing);
    let repo = tempfile::tempdir().unwrap();
    let t = transcript("success-tools.ndjson");
    let _peer = Peer::start(&server, &[("FAKE_CLAUDE_MODE", "replay"), ("FAKE_CLAUDE_TRANSCRIPT", &t)]);
    connected(&server).await;
    assert!(server.send_json(dispatch("run-noecho", "k-noecho", repo.path(), None)));
    let done = until_terminal(&server, "run-noecho").await;
    assert_eq!(done["kind"], "task.completed");
    assert_eq!(server.handshakes()[0].1, ["orgx.v3".to_string(), format!("bearer.{KEY}")], "the offer is unchanged");
    assert_eq!(server.connections(), 1, "one connection served the run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_answer_selecting_anything_but_the_version_is_refused() {
    for (echo, says) in [
        (Echo::Other("orgx.v1".into()), "subprotocol `orgx.v1`, which this peer did not offer"),
        (Echo::Other(format!("bearer.{KEY}")), "`bearer.` credential entry"),
    ] {
        let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
        server.set_echo(echo.clone());
        let mut peer = Peer::start(&server, &[]);
        assert_eq!(peer.wait_exit(WAIT), Some(1), "{echo:?}: the peer stops");
        assert_eq!(server.handshakes().len(), 1, "{echo:?}: not retried");
        let logs = peer.logs();
        assert!(logs.contains(says), "{echo:?}: {logs}");
        // `Peer`'s drop checks that the key is nowhere in the logs.
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_version_one_is_offered_alone_and_4000_stops_the_peer_naming_the_setting() {
    // (ORGX_PROTOCOL_VERSION, the one entry offered, the presence heartbeat's number)
    for (setting, offered, number) in [("1", "orgx.v1", 1), ("3", "orgx.v3", 3)] {
        let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
        let mut peer = Peer::start(&server, &[("ORGX_PROTOCOL_VERSION", setting)]);
        connected(&server).await;
        assert_eq!(server.handshakes()[0].1, [offered.to_string(), format!("bearer.{KEY}")], "one version, no other");
        server.wait_until("presence heartbeat", WAIT, |s| !s.calls("/api/v1/gateway/heartbeat").is_empty()).await;
        assert_eq!(server.calls("/api/v1/gateway/heartbeat")[0].body["protocol_version"], number);
        assert!(server.close_with(4000, "protocol-version-unsupported"));
        assert_eq!(peer.wait_exit(WAIT), Some(1), "{setting}: 4000 is final");
        assert_eq!(server.connections(), 1, "{setting}: no retry, no fallback to another version");
        let logs = peer.logs();
        assert!(logs.contains(&format!("ORGX_PROTOCOL_VERSION={setting}")), "{setting}: the message names the setting: {logs}");
    }
    let mut peer = Peer::start(&FakeOrgx::start(KEY, json!({"skills": []})).await, &[("ORGX_PROTOCOL_VERSION", "2")]);
    assert_eq!(peer.wait_exit(WAIT), Some(2), "2 is never offered: a settings error");
    assert!(peer.logs().contains("recognised per dispatch"), "{}", peer.logs());
}
