//! `orgx-peer start` end to end: the real binary against a recording OrgX stand-in on
//! 127.0.0.1, driving a scripted `claude` (tests/support's `fake-claude`). Each test starts
//! its own server and peer, with fast timings, and asserts on what crossed the wire.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use orgx_test_support::fake_claude_bin;
use orgx_test_support::fake_orgx::FakeOrgx;
use orgx_peer::trust::Envelope;
use serde_json::{json, Value};

const KEY: &str = "oxk_test_9f8e7d6c5b4a";
const WAIT: Duration = Duration::from_secs(30);

struct Peer {
    child: Child,
    data: tempfile::TempDir,
    log: PathBuf,
}

impl Peer {
    fn start(server: &FakeOrgx, env: &[(&str, &str)]) -> Peer {
        let data = tempfile::tempdir().unwrap();
        Self::start_in(server, env, data)
    }

    fn start_in(server: &FakeOrgx, env: &[(&str, &str)], data: tempfile::TempDir) -> Peer {
        let log = data.path().join(format!("peer-{}.log", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_orgx-peer"));
        cmd.arg("start")
            .env("ORGX_API_KEY", KEY)
            .env("ORGX_WORKSPACE_ID", "ws-test")
            .env("ORGX_BASE_URL", server.base_url())
            .env("ORGX_CLAUDE_BIN", fake_claude_bin())
            .env("ORGX_PEER_DATA_DIR", data.path())
            .env("ORGX_PING_INTERVAL_MS", "200")
            .env("ORGX_DEAD_AFTER_MS", "1500")
            .env("ORGX_RECONNECT_FIRST_MS", "50")
            .env("ORGX_RECONNECT_CAP_MS", "400")
            .env("ORGX_PRESENCE_INTERVAL_MS", "500")
            .env("ORGX_RECEIPT_GRACE_MS", "300")
            .env("ORGX_LOG", "debug")
            .env("ORGX_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("orgx-peer starts");
        Peer { child, data, log }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if t0.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Every test's logs are scanned for the key: it must never appear.
        let logs = self.logs();
        assert!(!logs.contains(KEY), "the API key leaked into the logs of {}", self.log.display());
    }
}

fn rules() -> Value {
    serde_json::from_slice(&std::fs::read(common::fixtures_dir().join("rules/demo.json")).unwrap()).unwrap()
}

fn transcript(name: &str) -> String {
    common::transcripts_dir().join(name).display().to_string()
}

fn dispatch(run_id: &str, key: &str, repo: &Path, timeout: Option<u64>) -> Value {
    let mut d = json!({
        "kind": "task.dispatch", "run_id": run_id, "idempotency_key": key,
        "task": { "title": "Write hello.txt", "description": "and show it", "repo_path": repo.display().to_string(), "driver": "claude_code", "skill_ids": ["s1"] },
    });
    if let Some(t) = timeout {
        d["timeout_seconds"] = json!(t);
    }
    d
}

fn kinds(frames: &[Value]) -> Vec<String> {
    frames.iter().map(|f| f["kind"].as_str().unwrap_or("?").to_string()).collect()
}

fn terminal(server: &FakeOrgx, run_id: &str) -> Option<Value> {
    server.frames_for(run_id).into_iter().find(|f| f["kind"] == "task.completed" || f["kind"] == "task.failed")
}

async fn connected(server: &FakeOrgx) {
    server.wait_until("the peer connects", WAIT, |s| s.connections() >= 1).await;
}

async fn until_terminal(server: &FakeOrgx, run_id: &str) -> Value {
    let id = run_id.to_string();
    server.wait_until(&format!("terminal message of {run_id}"), WAIT, move |s| terminal(s, &id).is_some()).await;
    terminal(server, run_id).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_run_with_rules_heartbeats_and_handshake() {
    let server = FakeOrgx::start(KEY, rules()).await;
    let repo = tempfile::tempdir().unwrap();
    let t = transcript("success-tools.ndjson");
    let _peer = Peer::start(&server, &[("FAKE_CLAUDE_MODE", "replay"), ("FAKE_CLAUDE_TRANSCRIPT", &t)]);
    connected(&server).await;
    server.wait_until("plan-skills fetched", WAIT, |s| !s.calls("/api/v1/plan-skills").is_empty()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server.send_json(dispatch("run-ok", "key-ok", repo.path(), None)));
    let done = until_terminal(&server, "run-ok").await;
    let frames = server.frames_for("run-ok");
    assert_eq!(
        kinds(&frames),
        ["task.started", "task.step", "task.step", "task.deviation", "task.deviation", "task.step", "task.deviation", "task.step", "task.completed"]
    );
    assert_eq!(frames[0]["session_handle"], "87c32515-b74c-41fd-8287-4b0f42059a7b");
    assert_eq!(done["tokens_used"], 6190);
    assert_eq!(done["cost_estimate_cents"], 2);
    assert_eq!(frames[3]["dedupe_key"], "no-plaintext-notes:txt-file:run-ok");

    let (query, protocols) = server.handshakes()[0].clone();
    assert_eq!(protocols, ["orgx.v1".to_string(), format!("bearer.{KEY}")]);
    for want in ["workspace_id=ws-test", "plugin_id=%40useorgx%2Forgx-peer", "drivers=claude_code", "installation_id="] {
        assert!(query.contains(want), "{query} lacks {want}");
    }
    server.wait_until("license heartbeat", WAIT, |s| !s.calls("/api/v1/licenses/heartbeat").is_empty()).await;
    let lic = &server.calls("/api/v1/licenses/heartbeat")[0];
    assert_eq!(lic.headers["authorization"], format!("Bearer {KEY}"));
    assert_eq!(lic.body["workspace_id"], "ws-test");
    assert!(lic.body["manifest_fingerprint"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(lic.body["signature"], "");
    server.wait_until("presence heartbeat", WAIT, |s| !s.calls("/api/v1/gateway/heartbeat").is_empty()).await;
    let p = &server.calls("/api/v1/gateway/heartbeat")[0].body;
    assert_eq!(p["metadata"]["runtime"], "peer");
    assert_eq!(p["drivers_installed"], json!(["claude_code"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_dispatch_unknown_driver_and_bad_frames() {
    let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
    let repo = tempfile::tempdir().unwrap();
    let t = transcript("thinking-text.ndjson");
    let _peer = Peer::start(&server, &[("FAKE_CLAUDE_MODE", "replay"), ("FAKE_CLAUDE_TRANSCRIPT", &t)]);
    connected(&server).await;
    for bad in ["not json", "[1]", r#"{"kind":"task.explode"}"#, r#"{"kind":"task.dispatch","run_id":"x"}"#] {
        assert!(server.send_text(bad));
    }
    assert!(server.send_json(dispatch("run-a", "same-key", repo.path(), None)));
    assert!(server.send_json(dispatch("run-b", "same-key", repo.path(), None)));
    let mut other = dispatch("run-codex", "k2", repo.path(), None);
    other["task"]["driver"] = json!("codex");
    assert!(server.send_json(other));
    until_terminal(&server, "run-a").await;
    let failed = until_terminal(&server, "run-codex").await;
    assert_eq!(failed["recoverable"], false);
    assert!(failed["reason"].as_str().unwrap().contains("driver `codex`"));
    assert_eq!(kinds(&server.frames_for("run-codex")), ["task.started", "task.failed"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(server.frames_for("run-b").is_empty(), "a duplicate idempotency_key is a no-op");
    assert_eq!(server.connections(), 1, "bad frames do not drop the connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_kills_the_whole_group_within_the_grace() {
    let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
    let repo = tempfile::tempdir().unwrap();
    let pidfile = repo.path().join("pids");
    let pf = pidfile.display().to_string();
    let _peer = Peer::start(&server, &[("FAKE_CLAUDE_MODE", "ignore-sigterm"), ("FAKE_CLAUDE_PIDFILE", &pf)]);
    connected(&server).await;
    assert!(server.send_json(dispatch("run-c", "kc", repo.path(), None)));
    server.wait_until("task.started", WAIT, |s| !s.frames_for("run-c").is_empty()).await;
    let t0 = Instant::now();
    while !pidfile.exists() && t0.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pids: Vec<i32> = std::fs::read_to_string(&pidfile).unwrap().lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(pids.len(), 3);
    let t0 = Instant::now();
    assert!(server.send_json(json!({"kind": "task.cancel", "run_id": "run-c", "reason": "user asked"})));
    let failed = until_terminal(&server, "run-c").await;
    let took = t0.elapsed();
    assert_eq!(failed["reason"], "cancelled: user asked");
    assert_eq!(failed["recoverable"], false);
    assert!(took >= Duration::from_millis(2900) && took < Duration::from_secs(6), "SIGKILL after the 3 s grace: {took:?}");
    for pid in pids {
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ");
        assert!(!alive, "process {pid} survived the cancel");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_exit_without_result_and_missing_claude() {
    let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
    let repo = tempfile::tempdir().unwrap();
    let _peer = Peer::start(&server, &[("FAKE_CLAUDE_MODE", "hang")]);
    connected(&server).await;
    assert!(server.send_json(dispatch("run-t", "kt", repo.path(), Some(1))));
    let failed = until_terminal(&server, "run-t").await;
    assert_eq!(failed["reason"], "timed out after 1 s");
    assert_eq!(failed["recoverable"], true);

    let server2 = FakeOrgx::start(KEY, json!({"skills": []})).await;
    let _peer2 = Peer::start(&server2, &[("FAKE_CLAUDE_MODE", "no-result")]);
    connected(&server2).await;
    assert!(server2.send_json(dispatch("run-n", "kn", repo.path(), None)));
    let failed = until_terminal(&server2, "run-n").await;
    assert_eq!(failed["reason"], "claude exited without a result");
    assert_eq!(failed["recoverable"], false);
    assert_eq!(kinds(&server2.frames_for("run-n")), ["task.started", "task.step", "task.failed"]);

    let server3 = FakeOrgx::start(KEY, json!({"skills": []})).await;
    let _peer3 = Peer::start(&server3, &[("ORGX_CLAUDE_BIN", "/nonexistent/claude")]);
    connected(&server3).await;
    assert!(server3.send_json(dispatch("run-m", "km", repo.path(), None)));
    let failed = until_terminal(&server3, "run-m").await;
    assert!(failed["reason"].as_str().unwrap().contains("was not found"), "{failed}");
    assert_eq!(kinds(&server3.frames_for("run-m")), ["task.started", "task.failed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_passed_to_claude_lacks_the_key() {
    let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
    let repo = tempfile::tempdir().unwrap();
    let report = repo.path().join("env.json");
    let r = report.display().to_string();
    let _peer = Peer::start(&server, &[("FAKE_CLAUDE_MODE", "env-dump"), ("FAKE_CLAUDE_REPORT", &r)]);
    connected(&server).await;
    assert!(server.send_json(dispatch("run-env", "ke", repo.path(), None)));
    until_terminal(&server, "run-env").await;
    let env: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let keys: Vec<&str> = env["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
    assert!(!keys.contains(&"ORGX_API_KEY"));
    assert!(keys.contains(&"ORGX_WORKSPACE_ID"), "the rest of the environment is passed on");
    assert_eq!(env["run_id"], "run-env");
    assert_eq!(env["cwd"], repo.path().canonicalize().unwrap().display().to_string());
    let argv: Vec<&str> = env["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(&argv[..1], ["-p"]);
    assert!(argv[1].contains("Write hello.txt") && argv[1].contains("and show it") && argv[1].contains("s1"));
    assert_eq!(&argv[2..5], ["--output-format", "stream-json", "--verbose"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reconnect_after_4401_or_a_401_handshake() {
    let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
    let mut peer = Peer::start(&server, &[]);
    connected(&server).await;
    assert!(server.close_with(4401, "unauthorized"));
    assert_eq!(peer.wait_exit(WAIT), Some(1), "the peer stops, exit 1");
    assert_eq!(server.connections(), 1);
    assert!(peer.logs().contains("4401"), "says why");

    let server2 = FakeOrgx::start(KEY, json!({"skills": []})).await;
    server2.fail_handshakes(401, 100);
    let mut peer2 = Peer::start(&server2, &[]);
    assert_eq!(peer2.wait_exit(WAIT), Some(1));
    assert_eq!(server2.handshakes().len(), 1, "no second attempt after HTTP 401");
    assert!(peer2.logs().contains("401 Unauthorized"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_dropped_mid_run_delivers_every_message_once_in_order() {
    let server = FakeOrgx::start(KEY, rules()).await;
    let repo = tempfile::tempdir().unwrap();
    let t = transcript("long-session.ndjson");
    let _peer = Peer::start(&server, &[("FAKE_CLAUDE_MODE", "replay"), ("FAKE_CLAUDE_TRANSCRIPT", &t), ("FAKE_CLAUDE_DELAY_MS", "15")]);
    connected(&server).await;
    assert!(server.send_json(dispatch("run-d", "kd", repo.path(), None)));
    server.wait_until("some steps", WAIT, |s| s.frames_for("run-d").len() >= 20).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(server.drop_connection());
    until_terminal(&server, "run-d").await;
    let frames = server.frames_for("run-d");
    // 1 started + 121 steps + 1 completed, none lost, none twice, in order.
    assert_eq!(frames.len(), 123, "{:?}", kinds(&frames));
    let summaries: Vec<String> = frames.iter().filter(|f| f["kind"] == "task.step").map(|f| f["step"]["summary"].as_str().unwrap().to_string()).collect();
    let mut expected = Vec::new();
    for i in 1..=60 {
        expected.push(format!("Step {i} of 60: echoing {i}."));
        expected.push(format!("Bash echo {i}"));
    }
    expected.push("All 60 steps done.".into());
    assert_eq!(summaries, expected);
    assert!(server.connections() >= 2);
    assert!(server.frames().iter().any(|(c, f)| *c >= 2 && f["run_id"] == "run-d"), "the rest came on the new connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_run_in_flight_fails_it_and_exits_cleanly() {
    let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
    let repo = tempfile::tempdir().unwrap();
    let mut peer = Peer::start(&server, &[("FAKE_CLAUDE_MODE", "hang")]);
    connected(&server).await;
    assert!(server.send_json(dispatch("run-s", "ks", repo.path(), None)));
    server.wait_until("started", WAIT, |s| !s.frames_for("run-s").is_empty()).await;
    peer.signal(15);
    let failed = until_terminal(&server, "run-s").await;
    assert_eq!(failed["reason"], "cancelled: peer shutting down");
    assert_eq!(peer.wait_exit(WAIT), Some(0));
    assert_eq!(server.close_codes(), [1000], "the socket is closed with 1000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_then_restart_delivers_what_was_owed() {
    let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
    let repo = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let data_path = data.path().to_path_buf();
    let pidfile = repo.path().join("pids");
    let pf = pidfile.display().to_string();
    let mut peer = Peer::start_in(&server, &[("FAKE_CLAUDE_MODE", "ignore-sigterm"), ("FAKE_CLAUDE_PIDFILE", &pf)], data);
    connected(&server).await;
    assert!(server.send_json(dispatch("run-k", "kk", repo.path(), None)));
    server.wait_until("started", WAIT, |s| !s.frames_for("run-k").is_empty()).await;
    let t0 = Instant::now();
    while std::fs::read_to_string(&pidfile).map_or(true, |p| p.lines().count() < 3) && t0.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pids: Vec<i32> = std::fs::read_to_string(&pidfile).unwrap().lines().map(|l| l.parse().unwrap()).collect();
    peer.signal(9);
    peer.wait_exit(WAIT);
    let data = std::mem::replace(&mut peer.data, tempfile::tempdir().unwrap());
    drop(peer);
    assert_eq!(data.path(), data_path);
    let _again = Peer::start_in(&server, &[("FAKE_CLAUDE_MODE", "hang")], data);
    let failed = until_terminal(&server, "run-k").await;
    assert_eq!(failed["recoverable"], true);
    assert!(failed["reason"].as_str().unwrap().contains("peer stopped while the run was in flight"));
    assert_eq!(server.frames_for("run-k").iter().filter(|f| f["kind"] == "task.failed").count(), 1);
    // The driver died with the peer; its SIGTERM-proof grandchildren were reaped on restart.
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(stat.is_empty() || stat.contains(") Z "), "process {pid} outlived the killed peer: {stat}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chatty_stderr_never_blocks_the_run() {
    let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
    let repo = tempfile::tempdir().unwrap();
    let _peer = Peer::start(&server, &[("FAKE_CLAUDE_MODE", "chatty-stderr")]);
    connected(&server).await;
    let t0 = Instant::now();
    assert!(server.send_json(dispatch("run-e", "ke", repo.path(), None)));
    let done = until_terminal(&server, "run-e").await;
    assert_eq!(done["kind"], "task.completed", "50 MiB of stderr drained while stdout flowed");
    assert!(t0.elapsed() < Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_socket_is_noticed_and_replaced() {
    let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
    let _peer = Peer::start(&server, &[]);
    connected(&server).await;
    let t0 = Instant::now();
    assert!(server.go_silent());
    server.wait_until("a new connection", WAIT, |s| s.connections() >= 2).await;
    assert!(t0.elapsed() < Duration::from_secs(5), "noticed in {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mib_line_and_a_revoked_license_do_not_stop_anything() {
    let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
    server.set_status("/api/v1/licenses/heartbeat", 402);
    let repo = tempfile::tempdir().unwrap();
    let peer = Peer::start(&server, &[("FAKE_CLAUDE_MODE", "huge-line")]);
    connected(&server).await;
    assert!(server.send_json(dispatch("run-h", "kh", repo.path(), None)));
    let done = until_terminal(&server, "run-h").await;
    assert_eq!(done["kind"], "task.completed");
    assert_eq!(kinds(&server.frames_for("run-h")), ["task.started", "task.step", "task.completed"]);
    server.wait_until("402 logged", WAIT, |_| peer.logs().contains("degraded")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_finishing_while_the_socket_is_down_is_receipted_over_http_once() {
    let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
    let repo = tempfile::tempdir().unwrap();
    let t = transcript("success-tools.ndjson");
    let _peer = Peer::start(&server, &[("FAKE_CLAUDE_MODE", "replay"), ("FAKE_CLAUDE_TRANSCRIPT", &t), ("FAKE_CLAUDE_DELAY_MS", "300")]);
    connected(&server).await;
    assert!(server.send_json(dispatch("run-r", "kr", repo.path(), None)));
    server.wait_until("started", WAIT, |s| !s.frames_for("run-r").is_empty()).await;
    // The server goes away and refuses to come back until the run is over.
    server.fail_handshakes(503, 10_000);
    assert!(server.drop_connection());
    server.wait_until("the receipt", WAIT, |s| !s.calls("/api/v1/runs/").is_empty()).await;
    let receipt = &server.calls("/api/v1/runs/")[0];
    assert_eq!(receipt.path, "/api/v1/runs/run-r/receipt");
    assert_eq!(receipt.method, "POST");
    assert_eq!(receipt.headers["idempotency-key"], "run-r");
    assert_eq!(receipt.headers["authorization"], format!("Bearer {KEY}"));
    assert_eq!(receipt.body["outcome_kind"], "shipped");
    assert_eq!(receipt.body["tokens_used"], 6190);
    assert_eq!(receipt.body["source_driver"], "claude_code");
    // The socket comes back: the steps are delivered, the completion is not sent again.
    server.accept_handshakes();
    server.wait_until("steps flushed after reconnect", WAIT, |s| s.frames_for("run-r").iter().filter(|f| f["kind"] == "task.step").count() == 4).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(server.frames_for("run-r").iter().filter(|f| f["kind"] == "task.completed").count(), 0, "never twice for one run id");
    assert_eq!(server.calls("/api/v1/runs/").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_concurrency_limit_fails_recoverably_and_status_reports_runs() {
    let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
    let repo = tempfile::tempdir().unwrap();
    let peer = Peer::start(&server, &[("FAKE_CLAUDE_MODE", "hang"), ("ORGX_MAX_CONCURRENT_RUNS", "1")]);
    connected(&server).await;
    assert!(server.send_json(dispatch("run-1", "k1", repo.path(), None)));
    server.wait_until("first started", WAIT, |s| !s.frames_for("run-1").is_empty()).await;
    assert!(server.send_json(dispatch("run-2", "k2", repo.path(), None)));
    let failed = until_terminal(&server, "run-2").await;
    assert_eq!(failed["recoverable"], true);
    assert!(failed["reason"].as_str().unwrap().contains("limit of 1 concurrent runs"));

    let out = Command::new(env!("CARGO_BIN_EXE_orgx-peer")).args(["status", "--json", "--data-dir"]).arg(peer.data.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["link"], "connected");
    assert_eq!(status["runs_in_flight"], json!(["run-1"]));
    assert_eq!(status["components"][0]["name"], "claude-code");
    let human = Command::new(env!("CARGO_BIN_EXE_orgx-peer")).args(["status", "--data-dir"]).arg(peer.data.path()).output().unwrap();
    assert!(String::from_utf8_lossy(&human.stdout).contains("connection   connected"));
    let none = Command::new(env!("CARGO_BIN_EXE_orgx-peer")).args(["status", "--data-dir", "/nonexistent-orgx"]).output().unwrap();
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no orgx-peer is running"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_cached_for_a_restart_when_plan_skills_fails() {
    let server = FakeOrgx::start(KEY, rules()).await;
    let repo = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let t = transcript("success-tools.ndjson");
    let env = [("FAKE_CLAUDE_MODE", "replay"), ("FAKE_CLAUDE_TRANSCRIPT", t.as_str())];
    let mut first = Peer::start_in(&server, &env, data);
    server.wait_until("rules fetched", WAIT, |s| !s.calls("/api/v1/plan-skills").is_empty()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.signal(15);
    assert_eq!(first.wait_exit(WAIT), Some(0));
    let data = std::mem::replace(&mut first.data, tempfile::tempdir().unwrap());
    drop(first);

    let server2 = FakeOrgx::start(KEY, json!({"skills": []})).await;
    server2.set_status("/api/v1/plan-skills", 500);
    let _second = Peer::start_in(&server2, &env, data);
    server2.wait_until("plan-skills attempted", WAIT, |s| !s.calls("/api/v1/plan-skills").is_empty()).await;
    assert!(server2.send_json(dispatch("run-cached", "kc2", repo.path(), None)));
    until_terminal(&server2, "run-cached").await;
    let deviations = server2.frames_for("run-cached").iter().filter(|f| f["kind"] == "task.deviation").count();
    assert_eq!(deviations, 3, "the cached rules still fire");
}

#[test]
fn detect_and_missing_settings() {
    let out = Command::new(env!("CARGO_BIN_EXE_orgx-peer")).args(["detect", "--json", "--claude-bin"]).arg(fake_claude_bin()).output().unwrap();
    assert!(out.status.success());
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((d["installed"].clone(), d["version"].clone(), d["logged_in"].clone()), (json!(true), json!("2.1.330"), json!(true)));
    let out = Command::new(env!("CARGO_BIN_EXE_orgx-peer")).args(["detect", "--claude-bin", "/nonexistent/claude"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("set ORGX_CLAUDE_BIN"));

    for (missing, present) in [("ORGX_API_KEY", "ORGX_WORKSPACE_ID"), ("ORGX_WORKSPACE_ID", "ORGX_API_KEY")] {
        let out = Command::new(env!("CARGO_BIN_EXE_orgx-peer")).arg("start").env_remove(missing).env(present, "x").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{missing}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(missing));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_orgx-peer"))
        .arg("start")
        .env("ORGX_RUNNER_INSTANCE_ID", "-bad id")
        .env("ORGX_API_KEY", KEY)
        .env("ORGX_WORKSPACE_ID", "w")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ORGX_RUNNER_INSTANCE_ID") && !err.contains(KEY), "{err}");

    for (var, value) in [("ORGX_TRUSTED_KEYS", "ed25519:not-a-key"), ("ORGX_TRUSTED_KEYS_FILE", "/nonexistent/keys.pub")] {
        let out = Command::new(env!("CARGO_BIN_EXE_orgx-peer")).arg("start").env(var, value).env("ORGX_API_KEY", KEY).env("ORGX_WORKSPACE_ID", "w").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var) && !err.contains(KEY), "{err}");
    }
}

// ---------------------------------------------------------------------------------------
// Component push, the local directory, and restarts (docs/component-push.md).

fn peer_cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_orgx-peer")).args(args).output().unwrap()
}

fn status_json(peer: &Peer) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_orgx-peer")).args(["status", "--json", "--data-dir"]).arg(peer.data.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn push_frame(key: &orgx_peer::trust::SecretKey, push_id: &str, version: u64, bytes: &[u8], url: Option<&str>) -> Value {
    use base64::Engine as _;
    use sha2::Digest;
    let m = orgx_peer::trust::Manifest {
        slot: orgx_peer::trust::Slot::MapperClaudeCode,
        name: "tagged".into(),
        version,
        sha256: hex::encode(sha2::Sha256::digest(bytes)),
        size: bytes.len() as u64,
        world: "orgx:peer/mapper-component".into(),
        wit_version: "0.1.0".into(),
        key_id: key.public().id(),
    };
    let mut frame = json!({ "kind": "component.push", "push_id": push_id, "manifest": m, "signature": key.sign(&m).unwrap() });
    match url {
        Some(u) => frame["url"] = json!(u),
        None => frame["bytes_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes)),
    }
    frame
}

fn ack_for(server: &FakeOrgx, push_id: &str) -> Option<Value> {
    server.frames().into_iter().map(|(_, f)| f).find(|f| f["kind"] == "component.ack" && f["push_id"] == push_id)
}

async fn until_ack(server: &FakeOrgx, push_id: &str) -> (Value, Duration) {
    let t = Instant::now();
    let id = push_id.to_string();
    server.wait_until(&format!("ack of {push_id}"), WAIT, move |s| ack_for(s, &id).is_some()).await;
    (ack_for(server, push_id).unwrap(), t.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_components_swap_for_new_runs_and_survive_a_restart() {
    let server = FakeOrgx::start(KEY, rules()).await;
    let key = orgx_peer::trust::SecretKey::generate().unwrap();
    let trusted = key.public().to_text();
    let repo = tempfile::tempdir().unwrap();
    let t = transcript("success-tools.ndjson");
    let env = [("FAKE_CLAUDE_MODE", "replay"), ("FAKE_CLAUDE_TRANSCRIPT", t.as_str()), ("ORGX_TRUSTED_KEYS", trusted.as_str()), ("ORGX_LICENSE_INTERVAL_S", "3600")];
    let mut peer = Peer::start(&server, &env);
    connected(&server).await;
    server.wait_until("first license heartbeat", WAIT, |s| !s.calls("/api/v1/licenses/heartbeat").is_empty()).await;
    let first_fp = server.calls("/api/v1/licenses/heartbeat")[0].body["manifest_fingerprint"].clone();

    // Inline push: activated; the license heartbeat follows with a new fingerprint.
    let v1 = common::tagged_guest(1, "ok");
    assert!(server.send_json(push_frame(&key, "push-1", 1, &v1, None)));
    let (ack, took) = until_ack(&server, "push-1").await;
    assert_eq!(ack["status"], "activated", "{ack}");
    eprintln!("push -> activated ack over the socket: {took:?}");
    server.wait_until("license heartbeat after the swap", WAIT, |s| s.calls("/api/v1/licenses/heartbeat").len() >= 2).await;
    let second_fp = server.calls("/api/v1/licenses/heartbeat")[1].body["manifest_fingerprint"].clone();
    assert_ne!(first_fp, second_fp, "manifest_fingerprint must follow the active components");

    // New runs are mapped by the pushed component.
    assert!(server.send_json(dispatch("run-v1", "key-v1", repo.path(), None)));
    until_terminal(&server, "run-v1").await;
    let steps: Vec<String> = server.frames_for("run-v1").iter().filter(|f| f["kind"] == "task.step").map(|f| f["step"]["summary"].as_str().unwrap().to_string()).collect();
    assert!(!steps.is_empty() && steps.iter().all(|s| s.starts_with("v0001 ")), "{steps:?}");

    // A rollback is refused within a second, and v1 keeps serving.
    assert!(server.send_json(push_frame(&key, "push-old", 1, &common::tagged_guest(9, "ok"), None)));
    let (ack, took) = until_ack(&server, "push-old").await;
    assert_eq!((ack["status"].as_str(), ack["stage"].as_str()), (Some("rejected"), Some("version")), "{ack}");
    assert!(took < Duration::from_secs(1), "rejection acknowledged after {took:?}");

    // By URL on the same base, fetched with the peer's credentials.
    let v2 = common::tagged_guest(2, "ok");
    server.serve_bytes("/api/v1/components/v2.wasm", v2.clone());
    assert!(server.send_json(push_frame(&key, "push-2", 2, &v2, Some("/api/v1/components/v2.wasm"))));
    let (ack, _) = until_ack(&server, "push-2").await;
    assert_eq!(ack["status"], "activated", "{ack}");
    let fetch = server.calls("/api/v1/components/v2.wasm");
    assert_eq!(fetch.len(), 1);
    assert_eq!(fetch[0].headers.get("authorization").map(String::as_str), Some(format!("Bearer {KEY}").as_str()));
    let status = status_json(&peer);
    assert_eq!((status["components"][0]["version"].as_u64(), status["components"][0]["origin"].as_str()), (Some(2), Some("pushed")), "{status}");
    assert_eq!(status["components"][0]["key_id"], json!(key.public().id()));

    // A restart with the server gone: v2 serves before any connection.
    peer.signal(libc::SIGTERM);
    assert_eq!(peer.wait_exit(Duration::from_secs(15)), Some(0));
    let data = std::mem::replace(&mut peer.data, tempfile::tempdir().unwrap());
    let dead = "http://127.0.0.1:9";
    let mut cmd_env: Vec<(&str, &str)> = env.to_vec();
    cmd_env.push(("ORGX_BASE_URL", dead));
    let restarted = Peer::start_in(&server, &cmd_env, data);
    let deadline = Instant::now() + WAIT;
    let status = loop {
        let out = Command::new(env!("CARGO_BIN_EXE_orgx-peer")).args(["status", "--json", "--data-dir"]).arg(restarted.data.path()).output().unwrap();
        if out.status.success() {
            break serde_json::from_slice::<Value>(&out.stdout).unwrap();
        }
        assert!(Instant::now() < deadline, "restarted peer never answered status");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(status["link"], "connected");
    assert_eq!(status["components"][0]["version"].as_u64(), Some(2), "{status}");
}

/// The README walkthrough: keygen, sign the template matcher, drop it into the running
/// peer's components directory, see it active, and see it flag an `.env` edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_matcher_dropped_into_the_plugins_dir_serves_new_runs() {
    let server = FakeOrgx::start(KEY, rules()).await;
    let work = tempfile::tempdir().unwrap();
    let key_path = work.path().join("author.key");
    let out = peer_cli(&["plugin", "keygen", "--out", key_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let trusted_file = work.path().join("author.key.pub");
    assert!(trusted_file.is_file());

    let wasm = work.path().join("no-secrets.wasm");
    std::fs::write(&wasm, common::guest_wasm("orgx-matcher-template")).unwrap();
    let out = peer_cli(&["plugin", "sign", wasm.to_str().unwrap(), "--key", key_path.to_str().unwrap(), "--version", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = peer_cli(&["plugin", "verify", wasm.to_str().unwrap(), "--trusted-keys-file", trusted_file.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    // A transcript whose Write goes to `.env` instead of `hello.txt`.
    let t = std::fs::read_to_string(transcript("success-tools.ndjson")).unwrap().replace("hello.txt", ".env");
    let t_path = work.path().join("dotenv.ndjson");
    std::fs::write(&t_path, t).unwrap();
    let plugins = work.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let env = [
        ("FAKE_CLAUDE_MODE", "replay"),
        ("FAKE_CLAUDE_TRANSCRIPT", t_path.to_str().unwrap()),
        ("ORGX_TRUSTED_KEYS_FILE", trusted_file.to_str().unwrap()),
        ("ORGX_COMPONENTS_DIR", plugins.to_str().unwrap()),
        ("ORGX_COMPONENTS_POLL_MS", "100"),
    ];
    let peer = Peer::start(&server, &env);
    connected(&server).await;
    assert_eq!(status_json(&peer)["components"][1]["name"], "skill-rules");

    std::fs::copy(Envelope::sidecar_path(&wasm), plugins.join("no-secrets.wasm.sig")).unwrap();
    std::fs::copy(&wasm, plugins.join("no-secrets.wasm")).unwrap();
    let deadline = Instant::now() + WAIT;
    while status_json(&peer)["components"][1]["name"] != "no-secrets" {
        assert!(Instant::now() < deadline, "the dropped-in matcher never became active: {}", peer.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let repo = tempfile::tempdir().unwrap();
    assert!(server.send_json(dispatch("run-env", "key-env", repo.path(), None)));
    until_terminal(&server, "run-env").await;
    let deviations: Vec<Value> = server.frames_for("run-env").into_iter().filter(|f| f["kind"] == "task.deviation").collect();
    assert_eq!(deviations.len(), 1, "{deviations:?}");
    assert_eq!(deviations[0]["skill_id"], "no-dotenv-edits");
    assert_eq!(deviations[0]["dedupe_key"], "no-dotenv-edits:no-dotenv-edits:run-env");
}

/// The live path under swaps: runs dispatched between pushes each keep the version they were
/// dispatched with, and every one of their lines arrives once, in order, from that version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_runs_keep_their_version_across_swaps_and_lose_nothing() {
    const LINES: usize = 1500;
    let server = FakeOrgx::start(KEY, json!({ "skills": [] })).await;
    let key = orgx_peer::trust::SecretKey::generate().unwrap();
    let trusted = key.public().to_text();
    let work = tempfile::tempdir().unwrap();
    let t_path = work.path().join("load.ndjson");
    let mut body: String = (0..LINES).map(|i| format!("{{\"seq\":{i}}}\n")).collect();
    body.push_str("{\"type\":\"result\"}\n");
    std::fs::write(&t_path, body).unwrap();
    let env = [
        ("FAKE_CLAUDE_MODE", "replay"),
        ("FAKE_CLAUDE_TRANSCRIPT", t_path.to_str().unwrap()),
        ("ORGX_TRUSTED_KEYS", trusted.as_str()),
        ("ORGX_MAX_CONCURRENT_RUNS", "8"),
    ];
    let _peer = Peer::start(&server, &env);
    connected(&server).await;
    assert!(server.send_json(push_frame(&key, "p1", 1, &common::tagged_guest(1, "ok"), None)));
    assert_eq!(until_ack(&server, "p1").await.0["status"], "activated");

    let repo = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let mut runs = Vec::new();
    for v in 2..=4u32 {
        for n in 0..2 {
            let run_id = format!("load-v{}-{n}", v - 1);
            assert!(server.send_json(dispatch(&run_id, &run_id, repo.path(), None)));
            runs.push((run_id, v - 1));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let push_id = format!("p{v}");
        assert!(server.send_json(push_frame(&key, &push_id, v as u64, &common::tagged_guest(v, "ok"), None)));
        assert_eq!(until_ack(&server, &push_id).await.0["status"], "activated");
    }
    for (run_id, _) in &runs {
        until_terminal(&server, run_id).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    for (run_id, version) in &runs {
        let frames = server.frames_for(run_id);
        assert_eq!(frames.len(), LINES + 2, "{run_id}: every line once, plus started and completed");
        assert_eq!(frames[0]["kind"], "task.started", "{run_id}");
        assert_eq!(frames[LINES + 1]["kind"], "task.completed", "{run_id}");
        for (i, f) in frames[1..=LINES].iter().enumerate() {
            assert_eq!(f["step"]["summary"], format!("v{version:04} {{\"seq\":{i}}}"), "{run_id}: message {i}");
        }
    }
    let lines = runs.len() * (LINES + 1);
    eprintln!("live: {} runs, {lines} lines in {secs:.2} s ({:.0} lines/s) across 3 swaps", runs.len(), lines as f64 / secs);
}
