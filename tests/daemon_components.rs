//! Pushed components and the local plugins directory through the real `orgx-peer` binary
//! (docs/component-push.md): pushes over the socket, restarts, the author walkthrough, and
//! runs under swaps.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::peer::*;
use orgx_peer::trust::Envelope;
use orgx_test_support::fake_orgx::FakeOrgx;
use serde_json::{json, Value};

fn peer_cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_orgx-peer")).args(args).output().unwrap()
}

fn status_json(peer: &Peer) -> Value {
    let out =
        Command::new(env!("CARGO_BIN_EXE_orgx-peer")).args(["status", "--json", "--data-dir"]).arg(peer.data.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn push_frame(key: &orgx_peer::trust::SecretKey, push_id: &str, version: u64, bytes: &[u8], url: Option<&str>) -> Value {
    let mut push = common::push::signed_push(key, orgx_peer::trust::Slot::Mapper("claude_code"), "tagged", version, bytes);
    push.push_id = push_id.to_string();
    if let Some(u) = url {
        push.bytes_base64 = None;
        push.url = Some(u.to_string());
    }
    let mut frame = json!({ "kind": "component.push", "push_id": push.push_id, "manifest": push.manifest, "signature": push.signature });
    match (push.bytes_base64, push.url) {
        (Some(b64), _) => frame["bytes_base64"] = json!(b64),
        (None, url) => frame["url"] = json!(url),
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
    let env = [
        ("FAKE_CLAUDE_MODE", "replay"),
        ("FAKE_CLAUDE_TRANSCRIPT", t.as_str()),
        ("ORGX_TRUSTED_KEYS", trusted.as_str()),
        ("ORGX_LICENSE_INTERVAL_S", "3600"),
    ];
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
    let steps: Vec<String> = server
        .frames_for("run-v1")
        .iter()
        .filter(|f| f["kind"] == "task.step")
        .map(|f| f["step"]["summary"].as_str().unwrap().to_string())
        .collect();
    assert!(!steps.is_empty() && steps.iter().all(|s| s.starts_with("v0001 ")), "{steps:?}");

    // A rollback is refused, and v1 keeps serving.
    assert!(server.send_json(push_frame(&key, "push-old", 1, &common::tagged_guest(9, "ok"), None)));
    let (ack, _) = until_ack(&server, "push-old").await;
    assert_eq!((ack["status"].as_str(), ack["stage"].as_str()), (Some("rejected"), Some("version")), "{ack}");

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
    assert_eq!(
        (status["components"][0]["version"].as_u64(), status["components"][0]["origin"].as_str()),
        (Some(2), Some("pushed")),
        "{status}"
    );
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
        let out = Command::new(env!("CARGO_BIN_EXE_orgx-peer"))
            .args(["status", "--json", "--data-dir"])
            .arg(restarted.data.path())
            .output()
            .unwrap();
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
    // The old subcommand name, `plugin`, still works (an alias of `component`).
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
    assert_eq!(common::peer::component(&status_json(&peer), "matcher")["name"], "skill-rules");

    std::fs::copy(Envelope::sidecar_path(&wasm), plugins.join("no-secrets.wasm.sig")).unwrap();
    std::fs::copy(&wasm, plugins.join("no-secrets.wasm")).unwrap();
    let deadline = Instant::now() + WAIT;
    while common::peer::component(&status_json(&peer), "matcher")["name"] != "no-secrets" {
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

/// A pushed mapper that faults in three runs in a row is quarantined: the server is told,
/// and the next run is mapped by the fallback (here the built-in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulting_pushed_mapper_is_quarantined_and_reported() {
    let server = FakeOrgx::start(KEY, json!({ "skills": [] })).await;
    let key = orgx_peer::trust::SecretKey::generate().unwrap();
    let trusted = key.public().to_text();
    let work = tempfile::tempdir().unwrap();
    let t_path = work.path().join("boom.ndjson");
    std::fs::write(&t_path, "{\"seq\":0}\nboom\n{\"type\":\"result\"}\n").unwrap();
    let env =
        [("FAKE_CLAUDE_MODE", "replay"), ("FAKE_CLAUDE_TRANSCRIPT", t_path.to_str().unwrap()), ("ORGX_TRUSTED_KEYS", trusted.as_str())];
    let peer = Peer::start(&server, &env);
    connected(&server).await;
    let bad = common::tagged_guest(1, "qb");
    assert!(server.send_json(push_frame(&key, "p-bad", 1, &bad, None)));
    assert_eq!(until_ack(&server, "p-bad").await.0["status"], "activated", "it passes the self-test");

    let repo = tempfile::tempdir().unwrap();
    for n in 0..3 {
        let run_id = format!("boom-{n}");
        assert!(server.send_json(dispatch(&run_id, &run_id, repo.path(), None)));
        let end = until_terminal(&server, &run_id).await;
        assert_eq!(end["kind"], "task.failed", "{end}");
        assert!(end["reason"].as_str().unwrap().contains("tagged@sha256:"), "{end}");
    }
    server.wait_until("component.quarantined", WAIT, |s| s.frames().iter().any(|(_, f)| f["kind"] == "component.quarantined")).await;
    let q = server.frames().into_iter().map(|(_, f)| f).find(|f| f["kind"] == "component.quarantined").unwrap();
    assert_eq!((q["slot"].as_str(), q["version"].as_u64(), q["faults"].as_u64()), (Some("mapper:claude_code"), Some(1), Some(3)), "{q}");
    assert_eq!((q["fallback"]["name"].as_str(), q["fallback"]["version"].as_u64()), (Some("claude-code"), Some(0)), "{q}");
    let status = status_json(&peer);
    assert_eq!(status["components"][0]["origin"], "built-in", "{status}");
    assert_eq!(status["quarantined"].as_array().map(Vec::len), Some(1), "{status}");
}

/// `bytes` (a component) grown to `size` bytes by a trailing custom section: still a valid
/// component, which compiles as fast as the original.
fn padded_component(mut bytes: Vec<u8>, size: usize) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            out.push(if n == 0 { byte } else { byte | 0x80 });
            if n == 0 {
                break;
            }
        }
    }
    let name = b"orgx-padding";
    // Section id, size (up to 5 LEB bytes), name length + name, payload: solve for the payload.
    let payload = size - bytes.len() - 1 - 4 - 1 - name.len();
    let mut contents = Vec::new();
    leb(name.len(), &mut contents);
    contents.extend_from_slice(name);
    contents.resize(contents.len() + payload, 0);
    bytes.push(0);
    let mut len = Vec::new();
    leb(contents.len(), &mut len);
    bytes.extend_from_slice(&len);
    bytes.extend_from_slice(&contents);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_inline_push_up_to_the_frame_limit_is_answered_and_a_larger_frame_ends_the_connection() {
    let server = FakeOrgx::start(KEY, rules()).await;
    let key = orgx_peer::trust::SecretKey::generate().unwrap();
    let trusted = key.public().to_text();
    let peer = Peer::start(&server, &[("ORGX_TRUSTED_KEYS", trusted.as_str())]);
    connected(&server).await;

    // 15 MiB: its base64 frame (~20 MiB) was over the WebSocket library's 16 MiB frame limit.
    let big = padded_component(common::tagged_guest(1, "ok"), 15 << 20);
    assert_eq!(big.len(), 15 << 20);
    assert!(server.send_json(push_frame(&key, "p-15mib", 1, &big, None)));
    let (ack, took) = until_ack(&server, "p-15mib").await;
    assert_eq!(ack["status"], "activated", "{ack}");
    eprintln!("15 MiB inline push -> activated in {took:?}");

    // Over the 16 MiB component limit: refused at `size`, answered on the same connection.
    let over = padded_component(common::tagged_guest(2, "ok"), 17 << 20);
    assert!(server.send_json(push_frame(&key, "p-17mib", 2, &over, None)));
    let (ack, _) = until_ack(&server, "p-17mib").await;
    assert_eq!((ack["status"].as_str(), ack["stage"].as_str()), (Some("rejected"), Some("size")), "{ack}");
    assert_eq!(server.connections(), 1, "the socket stayed up");

    // A frame over the 64 MiB frame limit cannot be read to be answered: the peer ends the
    // connection, says why once, reconnects and goes on serving.
    assert!(server.send_text(&"x".repeat((64 << 20) + 1)));
    let deadline = Instant::now() + WAIT;
    while server.connections() < 2 {
        assert!(Instant::now() < deadline, "no reconnect after the oversize frame\n{}", peer.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = peer.logs();
    assert!(logs.contains("over this peer's 67108864-byte limit"), "{logs}");
    assert_eq!(status_json(&peer)["components"][0]["version"].as_u64(), Some(1), "the 15 MiB push still serves");
}
