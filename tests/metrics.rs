//! Prometheus metrics through the real `orgx-peer start` (docs/observability.md): one run
//! against the OrgX stand-in, then a scrape of `ORGX_METRICS_ADDR`, read with the strict
//! OpenMetrics reader of tests/support; and a non-loopback address refused at start.

mod common;

use std::io::{Read, Write};
use std::process::Command;

use common::peer::*;
use orgx_test_support::fake_orgx::FakeOrgx;
use orgx_test_support::openmetrics;
use serde_json::json;

fn scrape(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("the metrics endpoint answers");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    body.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_counted_and_scraped_in_the_exposition_format() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
    let repo = tempfile::tempdir().unwrap();
    let t = transcript("success-tools.ndjson");
    let lines = std::fs::read_to_string(&t).unwrap().lines().count();
    let peer = Peer::start(&server, &[("FAKE_CLAUDE_MODE", "replay"), ("FAKE_CLAUDE_TRANSCRIPT", &t), ("ORGX_METRICS_ADDR", &addr)]);
    connected(&server).await;
    assert!(server.send_json(dispatch("run-m", "key-m", repo.path(), None)));
    assert_eq!(until_terminal(&server, "run-m").await["kind"], "task.completed");
    server.wait_until("a presence heartbeat", WAIT, |s| !s.calls("/api/v1/gateway/heartbeat").is_empty()).await;
    let mut text = String::new();
    for _ in 0..100 {
        text = scrape(&addr);
        let s = openmetrics::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        // The run is counted when its pipeline ends and leaves the in-flight gauge when its
        // task does, a moment later: scrape until both say so.
        if s.value("orgx_peer_runs_total", &[("driver", "claude_code"), ("outcome", "completed")]) == Ok(1.0)
            && s.value("orgx_peer_heartbeats_total", &[("kind", "presence"), ("outcome", "ok")]).is_ok_and(|n| n >= 1.0)
            && s.value("orgx_peer_runs_in_flight", &[]) == Ok(0.0)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let s = openmetrics::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(s.value("orgx_peer_runs_total", &[("driver", "claude_code"), ("outcome", "completed")]), Ok(1.0), "{text}");
    assert_eq!(s.value("orgx_peer_lines_read_total", &[]), Ok(lines as f64), "{text}");
    let sent = s.value("orgx_peer_frames_sent_total", &[]).unwrap();
    assert!(sent >= server.frames_for("run-m").len() as f64, "{sent} frames counted: {text}");
    assert!(s.value("orgx_peer_heartbeats_total", &[("kind", "presence"), ("outcome", "ok")]).unwrap() >= 1.0, "{text}");
    assert_eq!(s.value("orgx_peer_runs_in_flight", &[]), Ok(0.0), "{text}");
    assert!(!text.contains(KEY));
    drop(peer);
}

#[test]
fn a_metrics_address_that_is_not_loopback_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_orgx-peer"))
        .args(["start"])
        .env("ORGX_API_KEY", KEY)
        .env("ORGX_WORKSPACE_ID", "ws-test")
        .env("ORGX_BASE_URL", "http://127.0.0.1:9")
        .env("ORGX_PEER_DATA_DIR", data.path())
        .env("ORGX_METRICS_ADDR", "0.0.0.0:9464")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("ORGX_METRICS_ALLOW_REMOTE"), "{err}");
    assert!(!err.contains(KEY));
}
