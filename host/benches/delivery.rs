//! Figures, not pass/fail: `cargo bench --bench delivery` starts the real daemon (the release
//! `orgx-peer`), the scripted `fake-claude` and the OrgX stand-in, all on 127.0.0.1, and
//! prints in one run:
//! 1. idle RSS (first start, and a restart from cached code) and the binary's size;
//! 2. line → frame latency at 1,000 lines/s for one run, p50 / p99 / max, with the store on
//!    disk and — the cost of durability — on tmpfs, where fsync is free (a throwaway run, not
//!    a setting), rounds alternating so machine noise hits both alike;
//! 3. 16 runs × 2,000 lines/s of the real long-session corpus (8,000 lines each): wall time
//!    against the ideal, the peer's own CPU (`/proc/<pid>/stat`, every thread, not the CLIs),
//!    peak RSS, and every frame checked exactly once and in order against an in-process replay;
//! 4. store commits (one fdatasync each) per message at 10,000 messages/s;
//! 5. dispatch → first mapped line at 10 and 10,000 rules.
//!
//! Needs `fake-claude` (`cargo build --release -p orgx-test-support --bins`; `scripts/bench`
//! builds it). `BENCH_QUICK=1` shortens every phase (a smoke run, figures not meaningful);
//! `BENCH_ONLY=footprint,latency,concurrent,commits,start` runs only those phases.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[path = "../../tests/common/mod.rs"]
mod common;

use common::peer::{dispatch, Peer};
use orgx_peer::protocol::PeerMessage;
use orgx_peer::run::pipeline::{RunPipeline, RunSpec};
use orgx_peer::sandbox::{Limits, Sandbox};
use orgx_test_support::fake_orgx::FakeOrgx;
use serde_json::{json, Value};

const KEY: &str = common::peer::KEY;
const LONG: Duration = Duration::from_secs(300);

fn quick() -> bool {
    std::env::var_os("BENCH_QUICK").is_some()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        let work = tempfile::tempdir().unwrap();
        let only = std::env::var("BENCH_ONLY").unwrap_or_default();
        let runs = |phase: &str| only.is_empty() || only.split(',').any(|p| p == phase);
        if runs("footprint") {
            footprint().await;
        }
        if runs("latency") {
            latency(work.path()).await;
        }
        if runs("concurrent") {
            concurrent_runs(work.path()).await;
        }
        if runs("commits") {
            commits_per_message(work.path()).await;
        }
        if runs("start") {
            run_start(work.path()).await;
        }
    });
}

/// The peer as the benches run it: quiet logs (a user's), every run allowed at once.
fn start_peer(server: &FakeOrgx, data: tempfile::TempDir, extra: &[(&str, &str)]) -> Peer {
    // BENCH_LOGS=1 keeps the peer's logs (JSON, timestamped) for looking into a figure.
    let format = if std::env::var_os("BENCH_LOGS").is_some() { "json" } else { "human" };
    let mut env =
        vec![("ORGX_LOG", "info"), ("ORGX_LOG_FORMAT", format), ("ORGX_MAX_CONCURRENT_RUNS", "32"), ("ORGX_DRIVERS", "claude_code")];
    env.extend_from_slice(extra);
    Peer::start_in(server, &env, data)
}

async fn connected(server: &FakeOrgx, want: usize) {
    server.wait_until("the peer connects", LONG, |s| s.connections() >= want).await;
}

fn status(peer: &Peer) -> Value {
    let out =
        Command::new(env!("CARGO_BIN_EXE_orgx-peer")).args(["status", "--json", "--data-dir"]).arg(peer.data.path()).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Until the peer serves `rules` rules, and has decided how runs get them (from their
/// prepared snapshot, or each compiling its own when that is cheaper).
async fn wait_ready(peer: &Peer, rules: usize) {
    let t0 = Instant::now();
    loop {
        let s = status(peer);
        if s["rules"].as_u64() == Some(rules as u64) && s["rules_start"].as_str().is_some_and(|r| r != "pending") {
            return;
        }
        assert!(t0.elapsed() < LONG, "the peer never prepared its {rules} rules: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn proc_field(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

fn mib_of_kib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// CPU seconds the process itself used (user + system, all threads, not its children).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based, proc(5)).
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0) + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

async fn footprint() {
    let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_path_buf();
    let mut peer = start_peer(&server, data, &[]);
    connected(&server, 1).await;
    wait_ready(&peer, 0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let first = proc_field(peer.child.id(), "VmRSS:");
    peer.signal(15);
    peer.wait_exit(LONG);
    let data = std::mem::replace(&mut peer.data, tempfile::tempdir().unwrap());
    drop(peer);
    assert_eq!(data.path(), dir);
    let peer = start_peer(&server, data, &[]);
    connected(&server, 2).await;
    wait_ready(&peer, 0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let warm = proc_field(peer.child.id(), "VmRSS:");
    let threads = proc_field(peer.child.id(), "Threads:");
    let size = std::fs::metadata(env!("CARGO_BIN_EXE_orgx-peer")).map(|m| m.len()).unwrap_or(0);
    println!("footprint (built-in components, connected, idle)");
    println!("  idle RSS, first start (components compiled now)  {:>7.1} MiB   target <= 25 MiB", mib_of_kib(first));
    println!("  idle RSS, restart (compiled code from the cache)  {:>7.1} MiB   target <= 25 MiB   ({threads} threads)", mib_of_kib(warm));
    println!("  binary (cargo build --release)                    {:>7.1} MiB   target <= 30 MiB", size as f64 / (1 << 20) as f64);
    // Beside them, what a large prepared rules version adds (its snapshot's code and memory).
    for n in [1_000usize, 10_000] {
        let server = FakeOrgx::start(KEY, common::plan_skills(&common::generated_rules(n))).await;
        let peer = start_peer(&server, tempfile::tempdir().unwrap(), &[]);
        connected(&server, 1).await;
        wait_ready(&peer, n).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss = proc_field(peer.child.id(), "VmRSS:");
        let how = status(&peer)["rules_start"].as_str().unwrap_or("?").to_string();
        println!("  idle RSS with {n:>6} rules ({how})             {:>7.1} MiB   (no target: what the rules hold)", mib_of_kib(rss));
    }
}

const INIT: &str = r#"{"type":"system","subtype":"init","cwd":"/tmp","session_id":"bench-session","tools":["Bash"]}"#;
const RESULT: &str = r#"{"type":"result","subtype":"success","is_error":false,"result":"done","total_cost_usd":0.01,"usage":{"input_tokens":10,"output_tokens":5}}"#;

/// A stand-in transcript of `n` assistant lines, each stamped with the time it is printed.
fn tick_corpus(dir: &Path, n: usize) -> PathBuf {
    let mut s = format!("{INIT}\n");
    for _ in 0..n {
        s.push_str(r#"{"type":"assistant","message":{"content":[{"type":"text","text":"tick @NOW@"}]}}"#);
        s.push('\n');
    }
    s.push_str(RESULT);
    s.push('\n');
    let path = dir.join(format!("ticks-{n}.ndjson"));
    std::fs::write(&path, s).unwrap();
    path
}

fn nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

async fn until_terminals(server: &FakeOrgx, runs: &[String], timeout: Duration) -> Instant {
    let t0 = Instant::now();
    loop {
        // Counted in place: cloning every frame each poll would stall the stand-in's socket.
        let done = server.count_frames(|f| {
            matches!(f["kind"].as_str(), Some("task.completed" | "task.failed")) && runs.iter().any(|r| f["run_id"] == r.as_str())
        });
        if done == runs.len() {
            return Instant::now();
        }
        assert!(t0.elapsed() < timeout, "only {done} of {} runs ended within {timeout:?}", runs.len());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One run of the stamped corpus; the latency of every step frame.
async fn one_latency_round(server: &FakeOrgx, run: &str, repo: &Path) -> Vec<Duration> {
    let mut d = dispatch(run, &format!("k-{run}"), repo, None);
    d["task"]["title"] = json!("bench");
    assert!(server.send_json(d));
    until_terminals(server, &[run.to_string()], LONG).await;
    let mut out = Vec::new();
    for (at, f) in server.frames_received() {
        if f["run_id"] != run || f["kind"] != "task.step" {
            continue;
        }
        let Some(stamp) = f["step"]["summary"].as_str().and_then(|s| s.strip_prefix("tick ")).and_then(|n| n.parse::<u128>().ok()) else {
            continue;
        };
        out.push(Duration::from_nanos(nanos(at).saturating_sub(stamp) as u64));
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn latency(work: &Path) {
    let lines = if quick() { 300 } else { 3000 };
    let corpus = tick_corpus(work, lines);
    let t = corpus.display().to_string();
    let rounds = if quick() { 1 } else { 2 };
    let env = [("FAKE_CLAUDE_MODE", "replay"), ("FAKE_CLAUDE_TRANSCRIPT", t.as_str()), ("FAKE_CLAUDE_RATE", "1000")];
    let shm = Path::new("/dev/shm");
    let mut disk = Vec::new();
    let mut tmpfs = Vec::new();
    for round in 0..rounds {
        for volatile in [false, true] {
            if volatile && !shm.is_dir() {
                continue;
            }
            let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
            let data = if volatile { tempfile::tempdir_in(shm).unwrap() } else { tempfile::tempdir_in(work).unwrap() };
            let peer = start_peer(&server, data, &env);
            connected(&server, 1).await;
            wait_ready(&peer, 0).await;
            let repo = tempfile::tempdir().unwrap();
            let got = one_latency_round(&server, &format!("lat-{round}-{volatile}"), repo.path()).await;
            assert!(got.len() >= lines * 9 / 10, "only {} of {lines} steps arrived", got.len());
            let warm = &got[got.len().min(100)..];
            if volatile {
                tmpfs.extend_from_slice(warm)
            } else {
                disk.extend_from_slice(warm)
            }
            drop(peer);
        }
    }
    disk.sort();
    tmpfs.sort();
    println!("line -> frame latency, one run at 1,000 lines/s ({lines} lines x {rounds} rounds, first 100 of each skipped)");
    let row = |name: &str, v: &[Duration]| {
        println!(
            "  {name:<34} p50 {:>6.2} ms   p99 {:>6.2} ms   max {:>6.2} ms",
            ms(percentile(v, 0.5)),
            ms(percentile(v, 0.99)),
            ms(*v.last().unwrap())
        );
    };
    row("store on disk (fsync'd)", &disk);
    println!("  target p99 <= 2 ms");
    if !tmpfs.is_empty() {
        row("store on tmpfs (fsync free)", &tmpfs);
        println!(
            "  cost of durability (disk / tmpfs): p50 {:.2}x   p99 {:.2}x",
            ms(percentile(&disk, 0.5)) / ms(percentile(&tmpfs, 0.5)),
            ms(percentile(&disk, 0.99)) / ms(percentile(&tmpfs, 0.99))
        );
    }
}

/// The real long-session transcript stretched to `n` lines: its init, its middle lines
/// repeated, its result.
fn long_corpus(work: &Path, n: usize) -> (PathBuf, Vec<Vec<u8>>) {
    let text = std::fs::read_to_string(common::transcripts_dir().join("long-session.ndjson")).unwrap();
    let all: Vec<&str> = text.lines().collect();
    let (init, body, result) = (all[0], &all[1..all.len() - 1], all[all.len() - 1]);
    let mut lines = vec![init.to_string()];
    lines.extend(body.iter().cycle().take(n - 2).map(|l| l.to_string()));
    lines.push(result.to_string());
    let path = work.join(format!("long-{n}.ndjson"));
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    (path, lines.into_iter().map(String::into_bytes).collect())
}

/// What the peer must send for `lines` in run `run_id` at `cwd`: the same pipeline and
/// built-in components, in process. Only the parts that are not wall-clock times.
fn expected_frames(lines: &[Vec<u8>], cwd: &str) -> Vec<String> {
    let sandbox = Sandbox::new(Limits::default()).unwrap();
    let components = common::defaults(&sandbox);
    let (mut run, mut out) = RunPipeline::start(RunSpec {
        context: orgx_peer::sandbox::convert::run_context("expected", Some(cwd.to_string()), "claude_code"),
        mapper: &components.mapper("claude_code").component,
        matcher: &components.matcher.component,
        rules: &[],
        prepared: None,
        started_at: SystemTime::now(),
        limits: Limits::default(),
    });
    for l in lines {
        if !run.is_done() {
            out.extend(run.on_line(l));
        }
    }
    out.iter().map(|m: &PeerMessage| fingerprint(&serde_json::to_value(m).unwrap())).collect()
}

/// A frame without its run id and wall-clock fields, to compare runs with each other.
fn fingerprint(f: &Value) -> String {
    let mut f = f.clone();
    if let Some(o) = f.as_object_mut() {
        for k in ["run_id", "started_at", "first_response_at", "completed_at"] {
            o.remove(k);
        }
    }
    f.to_string()
}

async fn concurrent_runs(work: &Path) {
    let (runs, per_run, rate) = if quick() { (4, 800, 2000) } else { (16, 8000, 2000) };
    let (corpus, lines) = long_corpus(work, per_run);
    let t = corpus.display().to_string();
    let rate_s = rate.to_string();
    let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
    let peer = start_peer(
        &server,
        tempfile::tempdir_in(work).unwrap(),
        &[("FAKE_CLAUDE_MODE", "replay"), ("FAKE_CLAUDE_TRANSCRIPT", &t), ("FAKE_CLAUDE_RATE", &rate_s)],
    );
    connected(&server, 1).await;
    wait_ready(&peer, 0).await;
    let repo = tempfile::tempdir().unwrap();
    let cwd = repo.path().display().to_string();
    let expected = expected_frames(&lines, &cwd);
    let pid = peer.child.id();
    let cpu0 = cpu_seconds(pid);
    let ids: Vec<String> = (0..runs).map(|i| format!("many-{i}")).collect();
    let t0 = Instant::now();
    for id in &ids {
        let mut d = dispatch(id, &format!("k-{id}"), repo.path(), None);
        d["task"]["title"] = json!("bench");
        assert!(server.send_json(d));
    }
    let end = until_terminals(&server, &ids, LONG).await;
    let wall = end - t0;
    let cpu = cpu_seconds(pid) - cpu0;
    let peak = proc_field(pid, "VmHWM:");
    let frames = server.frames();
    let mut bad = 0;
    for id in &ids {
        let got: Vec<String> = frames.iter().filter(|(_, f)| f["run_id"] == id.as_str()).map(|(_, f)| fingerprint(f)).collect();
        if got != expected {
            bad += 1;
            let first_diff = got.iter().zip(&expected).position(|(a, b)| a != b);
            eprintln!("  run {id}: {} frames, expected {}; first difference at {first_diff:?}", got.len(), expected.len());
        }
    }
    let ideal = Duration::from_secs_f64(per_run as f64 / rate as f64);
    println!("{runs} runs x {per_run} lines at {rate} lines/s each (the real long-session corpus)");
    println!(
        "  wall {:>6.2} s vs ideal {:.2} s: {:+.1} %   target within 10 %",
        wall.as_secs_f64(),
        ideal.as_secs_f64(),
        (wall.as_secs_f64() / ideal.as_secs_f64() - 1.0) * 100.0
    );
    println!("  peer CPU {:.2} s = {:.2} cores over the wall   target <= 1 core", cpu, cpu / wall.as_secs_f64());
    println!("  peak RSS {:.1} MiB", mib_of_kib(peak));
    println!("  frames {} per run; runs with a lost, doubled or out-of-order frame: {bad} of {runs}", expected.len());
}

async fn commits_per_message(work: &Path) {
    let (runs, per_run) = if quick() { (5, 1000) } else { (5, 6000) };
    let corpus = tick_corpus(work, per_run);
    let t = corpus.display().to_string();
    let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
    let peer = start_peer(
        &server,
        tempfile::tempdir_in(work).unwrap(),
        &[("FAKE_CLAUDE_MODE", "replay"), ("FAKE_CLAUDE_TRANSCRIPT", &t), ("FAKE_CLAUDE_RATE", "2000")],
    );
    connected(&server, 1).await;
    wait_ready(&peer, 0).await;
    let before = status(&peer);
    let repo = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..runs).map(|i| format!("sync-{i}")).collect();
    let t0 = Instant::now();
    for id in &ids {
        assert!(server.send_json(dispatch(id, &format!("k-{id}"), repo.path(), None)));
    }
    let end = until_terminals(&server, &ids, LONG).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = status(&peer);
    let delta = |k: &str| after[k].as_u64().unwrap_or(0) - before[k].as_u64().unwrap_or(0);
    let (commits, messages) = (delta("store_commits"), delta("messages_stored"));
    let rate = messages as f64 / (end - t0).as_secs_f64();
    println!("group commit: {runs} runs at 2,000 lines/s = {rate:.0} messages/s offered");
    println!(
        "  {messages} messages, {commits} store commits (each one fdatasync, deliveries included): {:.4} per message   target <= 0.01",
        commits as f64 / messages.max(1) as f64
    );
}

async fn run_start(work: &Path) {
    let corpus = tick_corpus(work, 5);
    let t = corpus.display().to_string();
    let rounds = if quick() { 1 } else { 15 };
    let mut rows = Vec::new();
    for n in [10usize, 10_000] {
        let rules = common::generated_rules(n);
        let server = FakeOrgx::start(KEY, common::plan_skills(&rules)).await;
        let peer =
            start_peer(&server, tempfile::tempdir_in(work).unwrap(), &[("FAKE_CLAUDE_MODE", "replay"), ("FAKE_CLAUDE_TRANSCRIPT", &t)]);
        connected(&server, 1).await;
        wait_ready(&peer, n).await;
        let repo = tempfile::tempdir().unwrap();
        let mut took = Vec::new();
        for r in 0..rounds {
            let id = format!("start-{n}-{r}");
            let t0 = SystemTime::now();
            assert!(server.send_json(dispatch(&id, &format!("k-{id}"), repo.path(), None)));
            server
                .wait_until("the first step", LONG, |s| s.count_frames(|f| f["run_id"] == id.as_str() && f["kind"] == "task.step") > 0)
                .await;
            let first =
                server.frames_received().into_iter().find(|(_, f)| f["run_id"] == id.as_str() && f["kind"] == "task.step").unwrap().0;
            took.push(first.duration_since(t0).unwrap_or_default());
            until_terminals(&server, std::slice::from_ref(&id), LONG).await;
        }
        took.sort();
        rows.push((n, took[took.len() / 2]));
        if std::env::var_os("BENCH_LOGS").is_some() {
            eprintln!("{}", peer.logs());
        }
    }
    println!("dispatch -> first mapped line (CLI start included, median)");
    for (n, d) in rows {
        println!("  {n:>6} rules  {:>8.1} ms   target <= 10 ms at 10,000", ms(d));
    }
}
