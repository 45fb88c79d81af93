//! Disk faults against the real `orgx-peer start`: a data dir on a filesystem that fills up
//! during a run, a read-only data dir, a damaged store file and a store from a newer peer.
//!
//! The faults are real, not simulated: each test mounts its own small tmpfs (the tests run as
//! root, or with CAP_SYS_ADMIN) and fills it, remounts it read-only, or writes the bytes of
//! the file itself. Where `mount` is not permitted the test fails and says why — a disk-fault
//! test that skips itself would prove nothing. docs/reliability.md ("Disk faults") lists what
//! each one shows.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::peer::*;
use orgx_test_support::fake_claude_bin;
use orgx_test_support::fake_orgx::FakeOrgx;
use serde_json::json;
use sha2::{Digest, Sha256};

/// A tmpfs mounted at a fresh directory for one test; unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"]).arg(&dir).output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "these tests mount a tmpfs to make real disk faults, and `mount` was refused ({}): run them as root or with CAP_SYS_ADMIN (e.g. a privileged container)",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => panic!("these tests need the `mount` command to make real disk faults: {e}"),
        }
        Tmpfs { dir, _parent: parent }
    }

    fn remount(&self, opts: &str) {
        let ok = Command::new("mount").args(["-o", opts]).arg(&self.dir).status().unwrap().success();
        assert!(ok, "mount -o {opts} {}", self.dir.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Write a file into `dir` until the filesystem has no room left; its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xa5u8; 4096];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
    let _ = f.sync_all();
    path
}

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// `orgx-peer start` on `data_dir`, expected to stop by itself: its exit status and stderr.
fn start_expecting_exit(data_dir: &Path) -> (Option<i32>, String) {
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_orgx-peer"))
        .arg("start")
        .env("ORGX_API_KEY", KEY)
        .env("ORGX_WORKSPACE_ID", "ws-test")
        // Never reached: every fault here stops the peer before it connects.
        .env("ORGX_BASE_URL", "http://127.0.0.1:9")
        .env("ORGX_CLAUDE_BIN", fake_claude_bin())
        .env("ORGX_PEER_DATA_DIR", data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err.reopen().unwrap())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if t0.elapsed() > WAIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(err.path()).unwrap();
    assert!(!stderr.contains(KEY), "the key leaked: {stderr}");
    (code, stderr)
}

/// The one `error:` line of a refusal, checked to name `path` and `fix`.
fn refusal(stderr: &str, path: &Path, fix: &str) -> String {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line, got:\n{stderr}");
    assert!(!stderr.contains("panicked"), "no panic:\n{stderr}");
    let line = errors[0];
    assert!(line.contains(&path.display().to_string()), "the error names `{}`: {line}", path.display());
    assert!(line.contains(fix), "the error says `{fix}`: {line}");
    line.to_string()
}

/// A transcript of `n` assistant messages numbered `disk-line-0000…`, each `pad` bytes long,
/// framed by the init and result lines of a real one.
fn numbered_transcript(dir: &Path, n: usize, pad: usize) -> PathBuf {
    let real = std::fs::read_to_string(transcript("thinking-text.ndjson")).unwrap();
    let lines: Vec<&str> = real.lines().collect();
    let text_at = lines.iter().position(|l| l.contains(r#""type":"text""#)).expect("a text message");
    let template: serde_json::Value = serde_json::from_str(lines[text_at]).unwrap();
    let mut out: Vec<String> = lines[..text_at].iter().map(|l| l.to_string()).collect();
    for i in 0..n {
        let mut m = template.clone();
        m["message"]["content"][0]["text"] = json!(format!("disk-line-{i:04} {}", "x".repeat(pad)));
        out.push(m.to_string());
    }
    out.extend(lines[text_at + 1..].iter().map(|l| l.to_string()));
    let path = dir.join("numbered.ndjson");
    std::fs::write(&path, out.join("\n") + "\n").unwrap();
    path
}

/// The `disk-line-NNNN` numbers of a run's frames, in the order the server received them.
fn numbers(frames: &[serde_json::Value]) -> Vec<usize> {
    frames
        .iter()
        .filter_map(|f| {
            let text = f.to_string();
            let at = text.find("disk-line-")? + "disk-line-".len();
            text.get(at..at + 4)?.parse().ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_mid_run_holds_messages_until_space_returns() {
    const LINES: usize = 400;
    let fs = Tmpfs::mount("8m");
    let work = tempfile::tempdir().unwrap();
    let t = numbered_transcript(work.path(), LINES, 2048);
    let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
    let repo = tempfile::tempdir().unwrap();
    let data = fs.dir.display().to_string();
    let t = t.display().to_string();
    // The log goes to the peer's temporary dir, not the tmpfs: it must survive the fault.
    let peer = Peer::start(
        &server,
        &[
            ("FAKE_CLAUDE_MODE", "replay"),
            ("FAKE_CLAUDE_TRANSCRIPT", &t),
            ("FAKE_CLAUDE_RATE", "80"),
            ("ORGX_PEER_DATA_DIR", &data),
            // The terminal goes over the socket once it is back, not as an HTTP receipt: one path
            // to count it on.
            ("ORGX_RECEIPT_GRACE_MS", "600000"),
        ],
    );
    connected(&server).await;
    assert!(server.send_json(dispatch("run-disk", "k-disk", repo.path(), None)));
    server.wait_until("the run's first steps", WAIT, |s| numbers(&s.frames_for("run-disk")).len() >= 20).await;
    // Socket down, so the outbox has to grow on disk; then no room left to grow into.
    server.fail_handshakes(503, usize::MAX);
    assert!(server.drop_connection());
    let filler = fill(&fs.dir);
    let t0 = Instant::now();
    while !peer.logs().contains("cannot store outgoing messages") {
        assert!(t0.elapsed() < WAIT, "the peer never met the full disk:\n{}", peer.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let during = numbers(&server.frames_for("run-disk")).len();
    assert!(during < LINES, "the fault came mid-run ({during} of {LINES} lines were out)");
    assert!(terminal(&server, "run-disk").is_none(), "no terminal while the run's messages cannot be stored");
    let error_line = peer.logs().lines().find(|l| l.contains("cannot store outgoing messages")).unwrap().to_string();
    assert!(error_line.contains("free disk space") && error_line.contains(&data), "names the path and the fix: {error_line}");

    server.accept_handshakes();
    std::fs::remove_file(&filler).unwrap();
    let done = until_terminal(&server, "run-disk").await;
    assert_eq!(done["kind"], "task.completed", "{done}");
    let frames = server.frames_for("run-disk");
    assert_eq!(numbers(&frames), (0..LINES).collect::<Vec<_>>(), "every message once, in order");
    let terminals = frames.iter().filter(|f| f["kind"] == "task.completed" || f["kind"] == "task.failed").count();
    assert_eq!(terminals, 1, "one terminal");
    server.wait_until("the outbox drained", WAIT, |_| peer.logs().contains("nothing was lost")).await;
}

#[test]
fn full_disk_at_start_exits_1_so_the_service_manager_retries() {
    let fs = Tmpfs::mount("4m");
    fill(&fs.dir);
    let (code, stderr) = start_expecting_exit(&fs.dir);
    refusal(&stderr, &fs.dir.join("peer.redb"), "the filesystem is full");
    assert_eq!(code, Some(1), "a full disk may pass: restarted with backoff\n{stderr}");
    // Nothing half-written is left behind: once there is room, the store opens.
    std::fs::remove_file(fs.dir.join("filler")).unwrap();
    drop(orgx_peer::store::Store::open(&fs.dir.join("peer.redb")).expect("the store opens once space is freed"));
}

#[test]
fn read_only_data_dir_is_refused_with_exit_3() {
    // With a store in it (a peer that ran before), and without (a first start).
    for with_store in [true, false] {
        let fs = Tmpfs::mount("4m");
        let store = fs.dir.join("peer.redb");
        if with_store {
            drop(orgx_peer::store::Store::open(&store).unwrap());
        }
        let before = with_store.then(|| sha256(&store));
        fs.remount("remount,ro");
        let (code, stderr) = start_expecting_exit(&fs.dir);
        let line = refusal(&stderr, &fs.dir, "make it writable");
        assert!(line.contains("ORGX_PEER_DATA_DIR"), "{line}");
        assert_eq!(code, Some(3), "not restarted in a loop\n{stderr}");
        assert_eq!(before, with_store.then(|| sha256(&store)));
    }
}

#[test]
fn damaged_store_is_refused_with_exit_3_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("peer.redb");
    {
        let s = orgx_peer::store::Store::open(&store).unwrap();
        s.set_cached_rules(&vec![b'r'; 256 << 10]).unwrap();
    }
    let good = std::fs::read(&store).unwrap();
    let cases: [(&str, Vec<u8>); 3] = [
        ("garbage bytes", (0..good.len()).map(|i| (i * 7 + 3) as u8).collect()),
        ("truncated to half", good[..good.len() / 2].to_vec()),
        ("truncated inside the header", good[..100].to_vec()),
    ];
    for (name, bytes) in cases {
        std::fs::write(&store, &bytes).unwrap();
        let (code, stderr) = start_expecting_exit(dir.path());
        let line = refusal(&stderr, &store, "move it aside");
        assert!(line.contains(&format!("mv {}", store.display())), "{name}: {line}");
        assert_eq!(code, Some(3), "{name}: not restarted in a loop\n{stderr}");
        assert!(std::fs::read(&store).unwrap() == bytes, "{name}: the refused file is unchanged");
    }
}

#[test]
fn store_from_a_newer_peer_is_refused_with_exit_3_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("peer.redb");
    drop(orgx_peer::store::Store::open(&store).unwrap());
    {
        // What a newer peer writes: the same record, a larger number.
        let db = redb::Database::create(&store).unwrap();
        let w = db.begin_write().unwrap();
        let format: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("format");
        w.open_table(format).unwrap().insert("store", orgx_peer::store::FORMAT + 1).unwrap();
        w.commit().unwrap();
    }
    let before = sha256(&store);
    let (code, stderr) = start_expecting_exit(dir.path());
    let line = refusal(&stderr, &store, "written by a newer orgx-peer");
    assert!(line.contains(&format!("store format {}", orgx_peer::store::FORMAT + 1)) && line.contains("ORGX_PEER_DATA_DIR"), "{line}");
    assert_eq!(code, Some(3), "not restarted in a loop\n{stderr}");
    assert_eq!(sha256(&store), before, "the refused store is left byte for byte");
}
