//! The real `orgx-peer` binary against a recording OrgX stand-in on 127.0.0.1, driving a
//! scripted `claude` (tests/support's `fake-claude`, unless `ORGX_CLAUDE_BIN` is given): the
//! helpers the daemon and real-CLI tests share. Every peer's log is scanned for the key.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use orgx_test_support::fake_claude_bin;
use orgx_test_support::fake_orgx::FakeOrgx;
use serde_json::{json, Value};

pub const KEY: &str = "oxk_test_9f8e7d6c5b4a";
pub const WAIT: Duration = Duration::from_secs(30);

pub struct Peer {
    pub child: Child,
    pub data: tempfile::TempDir,
    pub log: PathBuf,
}

impl Peer {
    pub fn start(server: &FakeOrgx, env: &[(&str, &str)]) -> Peer {
        let data = tempfile::tempdir().unwrap();
        Self::start_in(server, env, data)
    }

    pub fn start_in(server: &FakeOrgx, env: &[(&str, &str)], data: tempfile::TempDir) -> Peer {
        let log = data
            .path()
            .join(format!("peer-{}.log", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()));
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

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
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

pub fn rules() -> Value {
    serde_json::from_slice(&std::fs::read(super::fixtures_dir().join("rules/demo.json")).unwrap()).unwrap()
}

pub fn transcript(name: &str) -> String {
    super::transcripts_dir().join(name).display().to_string()
}

pub fn dispatch(run_id: &str, key: &str, repo: &Path, timeout: Option<u64>) -> Value {
    let mut d = json!({
        "kind": "task.dispatch", "run_id": run_id, "idempotency_key": key,
        "task": { "title": "Write hello.txt", "description": "and show it", "repo_path": repo.display().to_string(), "driver": "claude_code", "skill_ids": ["s1"] },
    });
    if let Some(t) = timeout {
        d["timeout_seconds"] = json!(t);
    }
    d
}

pub fn kinds(frames: &[Value]) -> Vec<String> {
    frames.iter().map(|f| f["kind"].as_str().unwrap_or("?").to_string()).collect()
}

pub fn terminal(server: &FakeOrgx, run_id: &str) -> Option<Value> {
    server.frames_for(run_id).into_iter().find(|f| f["kind"] == "task.completed" || f["kind"] == "task.failed")
}

pub async fn connected(server: &FakeOrgx) {
    server.wait_until("the peer connects", WAIT, |s| s.connections() >= 1).await;
}

pub async fn until_terminal(server: &FakeOrgx, run_id: &str) -> Value {
    let id = run_id.to_string();
    server.wait_until(&format!("terminal message of {run_id}"), WAIT, move |s| terminal(s, &id).is_some()).await;
    terminal(server, run_id).unwrap()
}

/// The `status` entry of one component slot (`mapper:claude_code`, `matcher`, …).
pub fn component<'a>(status: &'a Value, slot: &str) -> &'a Value {
    status["components"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["slot"] == slot))
        .unwrap_or_else(|| panic!("no slot `{slot}` in {status}"))
}
