//! `kill -9` at fifty instants of the live daemon's work — between accepting a dispatch and
//! spawning its CLI, mid-stream, at a random moment under load (group commits every few
//! milliseconds), between a run's terminal reaching the server and its confirmation, and
//! during a component push's admission — restarting it on the same data dir each time, as a
//! service manager would (docs/reliability.md, "Crashes under load").
//!
//! What must hold, whatever the instant: the store opens and the peer reconnects every time;
//! the server receives every message at least once and each run's end exactly once (every
//! copy of a terminal is the same message); a copy arrives only on a later connection than
//! its original, i.e. it was re-sent because the kill fell inside the confirmation window
//! (decisions.md, "Confirmed delivery"), and the copies are counted; no CLI outlives the runs.
//! The instants come from a seeded generator (`ORGX_CRASH_SEED`), printed with the figures.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::peer::*;
use orgx_test_support::fake_orgx::FakeOrgx;
use serde_json::{json, Value};

const KILLS: usize = 50;
/// Lines per run of the long corpus, streamed at `RATE` lines a second.
const LINES: usize = 3000;
const RATE: &str = "3000";
/// Lines of the short corpus, for runs whose terminal the test waits for before the kill.
const SHORT_LINES: usize = 40;

/// Where in the peer's work a kill lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum At {
    AcceptToSpawn,
    MidStream,
    UnderLoad,
    TerminalToConfirmation,
    PushAdmission,
}
const INSTANTS: [At; 5] = [At::AcceptToSpawn, At::MidStream, At::UnderLoad, At::TerminalToConfirmation, At::PushAdmission];

/// xorshift64*: enough to spread the instants, and reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

fn corpus(path: &Path, lines: usize, tag: &str) {
    let mut text = String::from(r#"{"type":"system","subtype":"init","cwd":"/tmp","session_id":"s","tools":["Bash"]}"#);
    for i in 1..=lines {
        text.push_str(&format!("\n{{\"type\":\"assistant\",\"message\":{{\"content\":[{{\"type\":\"text\",\"text\":\"{tag} {i}\"}}]}}}}"));
    }
    text.push_str(r#"
{"type":"result","subtype":"success","is_error":false,"result":"done","total_cost_usd":0.01,"usage":{"input_tokens":10,"output_tokens":5,"cache_creation_input_tokens":0,"cache_read_input_tokens":0},"permission_denials":[],"terminal_reason":"completed"}
"#);
    std::fs::write(path, text).unwrap();
}

fn is_terminal(f: &Value) -> bool {
    f["kind"] == "task.completed" || f["kind"] == "task.failed"
}

/// Processes whose environment holds `mark`: the CLIs of this test's peers.
fn marked_processes(mark: &str) -> Vec<u32> {
    let needle = format!("FAKE_CLAUDE_MARK={mark}");
    let Ok(dir) = std::fs::read_dir("/proc") else { return vec![] };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|&b| b == 0).any(|kv| kv == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

fn push_frame(key: &orgx_peer::trust::SecretKey, version: u64) -> Value {
    let bytes = common::tagged_guest(version as u32, "ok");
    let push = common::push::signed_push(key, orgx_peer::trust::Slot::Mapper("codex"), "tagged", version, &bytes);
    json!({ "kind": "component.push", "push_id": push.push_id, "manifest": push.manifest,
            "signature": push.signature, "bytes_base64": push.bytes_base64 })
}

/// A server redelivers work it has not seen end; the peer must treat a key it holds (in
/// flight or finished) as a no-op (spec §2.4), so redelivering every open run is safe.
fn redeliver_open_runs(server: &FakeOrgx, runs: &[(String, String)], repo: &Path) {
    for (id, key) in runs {
        if !server.frames_for(id).iter().any(is_terminal) {
            assert!(server.send_json(dispatch(id, key, repo, None)));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_kills_at_random_instants_lose_nothing_and_end_each_run_once() {
    let seed = std::env::var("ORGX_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x0_5eed_c0de_u64);
    let mut rng = Rng(seed | 1);
    let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
    let signer = orgx_peer::trust::SecretKey::generate().unwrap();
    let trusted = signer.public().to_text();
    let repo = tempfile::tempdir().unwrap();
    let (long, short) = (repo.path().join("long.ndjson"), repo.path().join("short.ndjson"));
    corpus(&long, LINES, "n");
    corpus(&short, SHORT_LINES, "n");
    let mark = format!("crash-{}-{seed}", std::process::id());
    let (long, short) = (long.display().to_string(), short.display().to_string());
    let env = |transcript: &str| -> Vec<(String, String)> {
        [
            ("FAKE_CLAUDE_MODE", "replay"),
            ("FAKE_CLAUDE_TRANSCRIPT", transcript),
            ("FAKE_CLAUDE_RATE", RATE),
            ("FAKE_CLAUDE_MARK", mark.as_str()),
            ("ORGX_MAX_CONCURRENT_RUNS", "16"),
            ("ORGX_TRUSTED_KEYS", trusted.as_str()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    let start = |data: tempfile::TempDir, transcript: &str| {
        let env = env(transcript);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Peer::start_in(&server, &env, data)
    };

    let mut data = Some(tempfile::tempdir().unwrap());
    let mut runs: Vec<(String, String)> = Vec::new();
    let new_run = |runs: &mut Vec<(String, String)>| {
        let id = format!("crash-{}", runs.len());
        runs.push((id.clone(), format!("k-{id}")));
        assert!(server.send_json(dispatch(&id, &format!("k-{id}"), repo.path(), None)));
        id
    };
    let mut restarts = Vec::new();
    let mut kinds_seen: HashMap<At, usize> = HashMap::new();
    for i in 0..KILLS {
        let at = INSTANTS[i % INSTANTS.len()];
        let conns = server.connections();
        let t0 = Instant::now();
        let transcript = if at == At::TerminalToConfirmation { &short } else { &long };
        let mut peer = start(data.take().unwrap(), transcript);
        server.wait_until(&format!("reconnect {i} (the store opened)"), WAIT, |s| s.connections() > conns).await;
        restarts.push(t0.elapsed());
        redeliver_open_runs(&server, &runs, repo.path());
        match at {
            At::AcceptToSpawn => {
                new_run(&mut runs);
                tokio::time::sleep(Duration::from_micros(rng.below(4000))).await;
            }
            At::MidStream => {
                let id = new_run(&mut runs);
                let want = 20 + rng.below(1500) as usize;
                server.wait_until(&format!("{want} frames of {id}"), WAIT, |s| s.frames_for(&id).len() >= want).await;
            }
            At::UnderLoad => {
                new_run(&mut runs);
                new_run(&mut runs);
                tokio::time::sleep(Duration::from_millis(50 + rng.below(750))).await;
            }
            At::TerminalToConfirmation => {
                let id = new_run(&mut runs);
                server.wait_until(&format!("terminal of {id}"), WAIT, |s| s.frames_for(&id).iter().any(is_terminal)).await;
            }
            At::PushAdmission => {
                assert!(server.send_json(push_frame(&signer, i as u64 + 1)));
                tokio::time::sleep(Duration::from_millis(rng.below(150))).await;
            }
        }
        assert!(peer.child.try_wait().unwrap().is_none(), "kill {i} ({at:?}): the peer was still running\n{}", peer.logs());
        peer.signal(9);
        let status = peer.child.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9), "kill {i}");
        *kinds_seen.entry(at).or_default() += 1;
        data = Some(std::mem::replace(&mut peer.data, tempfile::tempdir().unwrap()));
    }

    // The last restart: everything owed arrives, every open run ends.
    let conns = server.connections();
    let peer = start(data.take().unwrap(), &long);
    server.wait_until("the last reconnect", WAIT, |s| s.connections() > conns).await;
    redeliver_open_runs(&server, &runs, repo.path());
    for (id, _) in &runs {
        let id = id.clone();
        server.wait_until(&format!("terminal of {id}"), Duration::from_secs(90), move |s| s.frames_for(&id).iter().any(is_terminal)).await;
    }
    // Give the last terminals' confirmations time, then stop the last peer (its environment
    // holds the mark too): what still carries the mark is a CLI nobody stopped.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(peer);
    let t0 = Instant::now();
    while !marked_processes(&mark).is_empty() && t0.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left: Vec<String> = marked_processes(&mark)
        .iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            format!("{pid}: {} [{}]", String::from_utf8_lossy(&cmd).replace('\0', " "), stat.trim())
        })
        .collect();
    assert!(left.is_empty(), "a CLI outlived its run: {left:#?}");

    let frames = server.frames();
    let (mut copies, mut terminal_copies, mut completed, mut failed) = (0usize, 0usize, 0usize, 0usize);
    let mut resent_per_connection: HashMap<usize, usize> = HashMap::new();
    for (id, _) in &runs {
        let run: Vec<&(usize, Value)> = frames.iter().filter(|(_, f)| f["run_id"] == id.as_str()).collect();
        // Drop exact copies (a re-sent frame is the same outbox entry, byte for byte), each only
        // allowed on a later connection than its first copy.
        let mut first_seen: HashMap<String, usize> = HashMap::new();
        let mut unique: Vec<&Value> = Vec::new();
        for (conn, f) in &run {
            let text = f.to_string();
            match first_seen.get(&text) {
                Some(&c) => {
                    assert!(*conn > c, "{id}: a frame arrived twice on connection {conn}: {f}");
                    copies += 1;
                    terminal_copies += usize::from(is_terminal(f));
                    *resent_per_connection.entry(*conn).or_default() += 1;
                }
                None => {
                    first_seen.insert(text, *conn);
                    unique.push(f);
                }
            }
        }
        assert_eq!(unique.first().map(|f| &f["kind"]), Some(&json!("task.started")), "{id} starts with task.started");
        let ends: Vec<usize> = unique.iter().enumerate().filter(|(_, f)| is_terminal(f)).map(|(i, _)| i).collect();
        assert_eq!(
            ends,
            [unique.len() - 1],
            "{id}: exactly one distinct terminal, last: {:?}",
            kinds(&unique.iter().map(|f| (*f).clone()).collect::<Vec<_>>())
        );
        match unique[ends[0]]["kind"].as_str() {
            Some("task.completed") => completed += 1,
            _ => failed += 1,
        }
        let mut highest = 0;
        for f in unique.iter().filter(|f| f["kind"] == "task.step") {
            let n: usize =
                f["step"]["summary"].as_str().and_then(|s| s.strip_prefix("n ")).and_then(|n| n.parse().ok()).expect("a numbered step");
            assert_eq!(n, highest + 1, "{id}: step {n} after step {highest} (a gap, or the run started twice)");
            highest = n;
        }
        if unique[ends[0]]["kind"] == "task.completed" {
            let lines = if highest == SHORT_LINES { SHORT_LINES } else { LINES };
            assert_eq!(highest, lines, "{id} completed with every line");
        }
    }
    let pushes = frames.iter().filter(|(_, f)| f["kind"] == "component.ack").count();
    let mean = |d: &[Duration]| d.iter().sum::<Duration>().as_secs_f64() * 1000.0 / d.len() as f64;
    let mut instants: Vec<String> = INSTANTS.iter().map(|a| format!("{a:?} {}", kinds_seen.get(a).copied().unwrap_or(0))).collect();
    instants.sort();
    eprintln!(
        "crash test (seed {seed}): {KILLS} kills [{}]; {} runs ({completed} completed, {failed} failed by a kill), {} frames \
         received, {copies} re-sent copies ({terminal_copies} of a terminal; at most {} after one restart); {pushes} push \
         acks; restart to reconnect mean {:.0} ms, max {:.0} ms; no CLI left",
        instants.join(", "),
        runs.len(),
        frames.len(),
        resent_per_connection.values().max().copied().unwrap_or(0),
        mean(&restarts),
        restarts.iter().max().unwrap().as_secs_f64() * 1000.0,
    );
}
