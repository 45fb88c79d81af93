//! `orgx-peer start` end to end: the real binary against a recording OrgX stand-in on
//! 127.0.0.1, driving a scripted `claude` (tests/support's `fake-claude`). Each test starts
//! its own server and peer, with fast timings, and asserts on what crossed the wire.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::peer::*;
use orgx_test_support::fake_claude_bin;
use orgx_test_support::fake_orgx::FakeOrgx;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_run_with_rules_heartbeats_and_handshake() {
    let server = FakeOrgx::start(KEY, rules()).await;
    let repo = tempfile::tempdir().unwrap();
    let t = transcript("success-tools.ndjson");
    let managed = [("ORGX_RUNNER_INSTANCE_ID", "runner-7"), ("ORGX_ACTIVATION_ATTEMPT_ID", "att-1"), ("ORGX_RUNNER_ROLE", "candidate")];
    let _peer = Peer::start(&server, &[&[("FAKE_CLAUDE_MODE", "replay"), ("FAKE_CLAUDE_TRANSCRIPT", &t)][..], &managed].concat());
    connected(&server).await;
    server.wait_until("plan-skills fetched", WAIT, |s| !s.calls("/api/v1/plan-skills").is_empty()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server.send_json(dispatch("run-ok", "key-ok", repo.path(), None)));
    let done = until_terminal(&server, "run-ok").await;
    let frames = server.frames_for("run-ok");
    assert_eq!(
        kinds(&frames),
        [
            "task.started",
            "task.step",
            "task.step",
            "task.deviation",
            "task.deviation",
            "task.step",
            "task.deviation",
            "task.step",
            "task.completed"
        ]
    );
    assert_eq!(frames[0]["session_handle"], "87c32515-b74c-41fd-8287-4b0f42059a7b");
    assert_eq!(done["tokens_used"], 6190);
    assert_eq!(done["cost_estimate_cents"], 2);
    assert_eq!(frames[3]["dedupe_key"], "no-plaintext-notes:txt-file:run-ok");

    let (query, protocols) = server.handshakes()[0].clone();
    assert_eq!(protocols, ["orgx.v3".to_string(), format!("bearer.{KEY}")], "v3 by default (ORGX_PROTOCOL_VERSION)");
    for want in [
        "workspace_id=ws-test",
        "plugin_id=%40useorgx%2Forgx-peer",
        "drivers=claude_code",
        "installation_id=",
        "runner_instance_id=runner-7",
    ] {
        assert!(query.contains(want), "{query} lacks {want}");
    }
    assert!(!query.contains("att-1") && !query.contains("candidate"), "the activation is never sent on the socket: {query}");
    server.wait_until("license heartbeat", WAIT, |s| !s.calls("/api/v1/licenses/heartbeat").is_empty()).await;
    let lic = &server.calls("/api/v1/licenses/heartbeat")[0];
    assert_eq!(lic.headers["authorization"], format!("Bearer {KEY}"));
    assert_eq!(lic.body["workspace_id"], "ws-test");
    assert!(lic.body["manifest_fingerprint"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(lic.body["signature"], "");
    let fields: Vec<&str> = lic.body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(fields, ["workspace_id", "plugin_name", "version", "manifest_fingerprint", "signature"], "exactly five fields");
    server.wait_until("presence heartbeat", WAIT, |s| !s.calls("/api/v1/gateway/heartbeat").is_empty()).await;
    let p = &server.calls("/api/v1/gateway/heartbeat")[0].body;
    assert_eq!(p["metadata"]["runtime"], "peer");
    assert_eq!(p["drivers_installed"], json!(["claude_code"]));
    assert_eq!((&p["protocol_version"], &p["plan_tier"]), (&json!(3), &Value::Null), "the offered version, as a number");
    assert_eq!(
        (&p["runner_instance_id"], &p["activation_attempt_id"], &p["runner_role"]),
        (&json!("runner-7"), &json!("att-1"), &json!("candidate"))
    );
    assert_eq!((&p["metadata"]["auth_status"], &p["metadata"]["probe_version"]), (&json!("authenticated"), &json!("2.1.330")));
    assert!(p["metadata"]["queue_depth"].is_u64(), "runs in flight: {p}");
    assert_eq!(p["metadata"]["drivers"]["claude_code"]["installed"], true);
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
    // Enabled by name, the missing binary is named with the setting that fixes it.
    let _peer3 = Peer::start(&server3, &[("ORGX_CLAUDE_BIN", "/nonexistent/claude"), ("ORGX_DRIVERS", "claude_code")]);
    connected(&server3).await;
    assert!(server3.send_json(dispatch("run-m", "km", repo.path(), None)));
    let failed = until_terminal(&server3, "run-m").await;
    assert!(
        failed["reason"].as_str().unwrap().contains("was not found") && failed["reason"].as_str().unwrap().contains("ORGX_CLAUDE_BIN"),
        "{failed}"
    );
    assert_eq!(kinds(&server3.frames_for("run-m")), ["task.started", "task.failed"]);
    drop(_peer3);
    // Left to detection, a driver whose CLI is missing is not offered at all.
    let server4 = FakeOrgx::start(KEY, json!({"skills": []})).await;
    let _peer4 = Peer::start(&server4, &[("ORGX_CLAUDE_BIN", "/nonexistent/claude")]);
    connected(&server4).await;
    assert!(server4.handshakes().iter().all(|(url, _)| !url.contains("drivers=claude_code")), "{:?}", server4.handshakes());
    assert!(server4.send_json(dispatch("run-o", "ko", repo.path(), None)));
    let failed = until_terminal(&server4, "run-o").await;
    assert_eq!(
        failed["reason"],
        "driver `claude_code` is not available on this peer (no driver CLI was found at start; see `orgx-peer detect`)"
    );
    assert_eq!(failed["recoverable"], false);
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
    let summaries: Vec<String> =
        frames.iter().filter(|f| f["kind"] == "task.step").map(|f| f["step"]["summary"].as_str().unwrap().to_string()).collect();
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
    // The driver itself is tied to the peer (`PR_SET_PDEATHSIG`, which the peer's exec step
    // sets without forking the peer): it dies with it, before any restart, though it ignores
    // SIGTERM. Dead is gone or a zombie (an orphan's reaper may never come in a container).
    let dead = |pid: i32| std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "));
    let t0 = Instant::now();
    while !dead(pids[0]) && t0.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(dead(pids[0]), "the driver {} outlived the SIGKILLed peer", pids[0]);
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

/// Group commit under load: four runs stream 2,000 numbered lines a second each, the peer is
/// SIGKILLed mid-stream, and a restarted peer owes and sends the rest. Every message it had
/// committed arrives (each run's steps are a gap-free prefix, resent ones at most twice), and
/// each run's terminal arrives exactly once, last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_committed_message() {
    const RUNS: usize = 4;
    const LINES: usize = 6000;
    let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
    let repo = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut corpus = String::from(r#"{"type":"system","subtype":"init","cwd":"/tmp","session_id":"s","tools":["Bash"]}"#);
    for i in 1..=LINES {
        corpus.push_str(&format!("\n{{\"type\":\"assistant\",\"message\":{{\"content\":[{{\"type\":\"text\",\"text\":\"n {i}\"}}]}}}}"));
    }
    corpus.push('\n');
    let path = repo.path().join("numbered.ndjson");
    std::fs::write(&path, corpus).unwrap();
    let t = path.display().to_string();
    let env = [
        ("FAKE_CLAUDE_MODE", "replay"),
        ("FAKE_CLAUDE_TRANSCRIPT", t.as_str()),
        ("FAKE_CLAUDE_RATE", "2000"),
        ("ORGX_MAX_CONCURRENT_RUNS", "8"),
    ];
    let mut peer = Peer::start_in(&server, &env, data);
    connected(&server).await;
    let ids: Vec<String> = (0..RUNS).map(|i| format!("load-{i}")).collect();
    for id in &ids {
        assert!(server.send_json(dispatch(id, &format!("k-{id}"), repo.path(), None)));
    }
    server.wait_until("frames under load", WAIT, |s| s.frame_count() >= 1500).await;
    peer.signal(9);
    let status = peer.child.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
    let before = server.frame_count();
    let data = std::mem::replace(&mut peer.data, tempfile::tempdir().unwrap());
    drop(peer);
    let _again = Peer::start_in(&server, &[("FAKE_CLAUDE_MODE", "hang")], data);
    for id in &ids {
        until_terminal(&server, id).await;
    }
    let frames = server.frames();
    assert!(frames.len() > before, "the restarted peer sent what it owed");
    for id in &ids {
        let run: Vec<&Value> = frames.iter().map(|(_, f)| f).filter(|f| f["run_id"] == id.as_str()).collect();
        let terminals: Vec<usize> =
            run.iter().enumerate().filter(|(_, f)| f["kind"] == "task.failed" || f["kind"] == "task.completed").map(|(i, _)| i).collect();
        assert_eq!(terminals, [run.len() - 1], "{id}: exactly one terminal, last");
        assert_eq!(run[terminals[0]]["kind"], "task.failed", "{id} was cut off by the kill");
        let mut seen = vec![0u32; LINES + 1];
        let mut highest = 0;
        for f in run.iter().filter(|f| f["kind"] == "task.step") {
            let n: usize =
                f["step"]["summary"].as_str().and_then(|s| s.strip_prefix("n ")).and_then(|n| n.parse().ok()).expect("a numbered step");
            assert!(n <= highest + 1, "{id}: step {n} arrived before step {}", highest + 1);
            highest = highest.max(n);
            seen[n] += 1;
        }
        assert!(highest > 0, "{id} streamed before the kill");
        assert!((1..=highest).all(|n| (1..=2).contains(&seen[n])), "{id}: every step up to {highest} arrived, none more than twice");
    }
}

/// Protocol v2 (spec §7): an invalid envelope fails with the validation message, a valid one
/// is refused for want of verification evidence — both before any CLI starts, and neither is
/// remembered for dedupe (a redelivery is validated again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_dispatches_are_validated_then_refused_before_the_cli_starts() {
    let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
    let repo = tempfile::tempdir().unwrap();
    let report = repo.path().join("cli-ran.json");
    let r = report.display().to_string();
    let _peer = Peer::start(&server, &[("FAKE_CLAUDE_MODE", "env-dump"), ("FAKE_CLAUDE_REPORT", &r)]);
    connected(&server).await;
    let cases: Value = serde_json::from_slice(&std::fs::read(common::fixtures_dir().join("envelope/cases.json")).unwrap()).unwrap();
    let mut envelope = cases[0]["value"].clone();
    envelope["workRef"]["workspaceId"] = json!("ws-test");
    envelope["digest"] = json!(orgx_peer::envelope::digest::contract_digest(&envelope).unwrap());
    let v2 = |run_id: &str, envelope: &Value| {
        let mut d = dispatch(run_id, "key-v2", repo.path(), None);
        d["run_id"] = json!(run_id);
        d["protocol_version"] = json!(2);
        d["execution_envelope"] = envelope.clone();
        d
    };
    let mut valid = envelope.clone();
    valid["runId"] = json!("run-v2");
    valid["digest"] = json!(orgx_peer::envelope::digest::contract_digest(&valid).unwrap());
    assert!(server.send_json(v2("run-v2", &valid)));
    let failed = until_terminal(&server, "run-v2").await;
    assert_eq!(failed["recoverable"], false);
    assert_eq!(
        failed["reason"],
        "protocol v2 finalization is not supported by the claude_code driver: a CLI run yields no verification evidence"
    );
    assert_eq!(kinds(&server.frames_for("run-v2")), ["task.started", "task.failed"]);

    let mut tampered = valid.clone();
    tampered["runId"] = json!("run-v2b");
    tampered["digest"] = json!(orgx_peer::envelope::digest::contract_digest(&tampered).unwrap());
    tampered["nodeId"] = json!("changed after digesting");
    // The same idempotency key again: not deduplicated, validated again.
    assert!(server.send_json(v2("run-v2b", &tampered)));
    let failed = until_terminal(&server, "run-v2b").await;
    assert_eq!(failed["reason"], "execution envelope digest does not match its contents");

    let mut other = valid.clone();
    other["runId"] = json!("run-v2c");
    other["schemaVersion"] = json!("9.9.9");
    assert!(server.send_json(v2("run-v2c", &other)));
    assert_eq!(until_terminal(&server, "run-v2c").await["reason"], "execution envelope schema version unsupported");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!report.exists(), "no CLI was started for a v2 dispatch");
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
    server
        .wait_until("steps flushed after reconnect", WAIT, |s| {
            s.frames_for("run-r").iter().filter(|f| f["kind"] == "task.step").count() == 4
        })
        .await;
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

    let out =
        Command::new(env!("CARGO_BIN_EXE_orgx-peer")).args(["status", "--json", "--data-dir"]).arg(peer.data.path()).output().unwrap();
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

/// `orgx-peer status --json` of a running peer.
fn status_of(peer: &Peer) -> Value {
    let out =
        Command::new(env!("CARGO_BIN_EXE_orgx-peer")).args(["status", "--json", "--data-dir"]).arg(peer.data.path()).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Until the peer serves `n` rules and has decided how runs get them; that decision.
async fn rules_start(peer: &Peer, n: u64) -> String {
    let t0 = Instant::now();
    loop {
        let s = status_of(peer);
        if s["rules"] == n && s["rules_start"].as_str().is_some_and(|r| r != "pending") {
            return s["rules_start"].as_str().unwrap().to_string();
        }
        assert!(t0.elapsed() < WAIT, "the peer never settled its {n} rules: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A rule set large enough to be worth it is prepared once, in the matcher's snapshot, and
/// every run starts from it: each run's deviations carry its own run id and fire again (no
/// run inherits another's dedupe state), exactly as the small set's per-run compile does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_rule_set_is_prepared_once_and_every_run_starts_from_it() {
    let mut body = rules();
    let extra = common::plan_skills(&common::generated_rules(2_000));
    body["skills"].as_array_mut().unwrap().extend(extra["skills"].as_array().unwrap().iter().cloned());
    let demo = rules()["skills"].as_array().unwrap().iter().map(|s| s["rules"].as_array().unwrap().len() as u64).sum::<u64>();
    let t = transcript("success-tools.ndjson");
    let env = [("FAKE_CLAUDE_MODE", "replay"), ("FAKE_CLAUDE_TRANSCRIPT", t.as_str())];
    let repo = tempfile::tempdir().unwrap();
    let mut keys_by_size = Vec::new();
    for (body, n, want) in [(body, demo + 2_000, "snapshot"), (rules(), demo, "per-run")] {
        let server = FakeOrgx::start(KEY, body).await;
        let peer = Peer::start(&server, &env);
        connected(&server).await;
        assert_eq!(rules_start(&peer, n).await, want);
        let mut keys = Vec::new();
        for run in ["run-1", "run-2"] {
            assert!(server.send_json(dispatch(run, &format!("key-{run}"), repo.path(), None)));
            assert_eq!(until_terminal(&server, run).await["kind"], "task.completed");
            let deviations: Vec<String> = server
                .frames_for(run)
                .iter()
                .filter(|f| f["kind"] == "task.deviation")
                .map(|f| f["dedupe_key"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(deviations.len(), 3, "{run}: {deviations:?}");
            assert!(deviations.iter().all(|k| k.ends_with(&format!(":{run}"))), "{deviations:?}");
            keys.extend(deviations);
        }
        keys_by_size.push(keys);
        let logs = peer.logs();
        let started: Vec<&str> = logs.lines().filter(|l| l.contains("run started")).collect();
        let from = if want == "snapshot" { "snapshot" } else { "compiled-per-run" };
        assert!(started.len() == 2 && started.iter().all(|l| l.contains(from)), "{started:#?}");
    }
    assert_eq!(keys_by_size[0], keys_by_size[1], "the snapshot fires what the per-run compile fires");
}

#[test]
fn detect_and_missing_settings() {
    let detect = |args: &[&str], claude: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_orgx-peer"))
            .arg("detect")
            .args(args)
            .env("ORGX_CLAUDE_BIN", claude)
            .env("ORGX_CODEX_BIN", "/nonexistent/codex")
            .env("ORGX_OPENCODE_BIN", "/nonexistent/opencode")
            .output()
            .unwrap()
    };
    let out = detect(&["--json"], &fake_claude_bin());
    assert!(out.status.success());
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &all["claude_code"];
    assert_eq!((d["installed"].clone(), d["version"].clone(), d["logged_in"].clone()), (json!(true), json!("2.1.330"), json!(true)));
    for missing in ["codex", "opencode"] {
        assert_eq!(all[missing]["installed"], json!(false), "{missing}");
    }
    assert!(all["codex"]["hint"].as_str().unwrap().contains("set ORGX_CODEX_BIN"), "{all}");
    let out = detect(&["--driver", "claude_code"], std::path::Path::new("/nonexistent/claude"));
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
        let out = Command::new(env!("CARGO_BIN_EXE_orgx-peer"))
            .arg("start")
            .env(var, value)
            .env("ORGX_API_KEY", KEY)
            .env("ORGX_WORKSPACE_ID", "w")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var) && !err.contains(KEY), "{err}");
    }
}
