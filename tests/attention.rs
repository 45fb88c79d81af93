//! Resumable attention (protocol v3, spec §8) end to end with the **real** Claude Code CLI:
//! the OrgX stand-in dispatches, the real CLI asks `AskUserQuestion` of a scripted model on
//! 127.0.0.1, the peer's hook parks the call, the peer files the question, suspends the run,
//! and — once the stand-in sends `attention.resolve` — resumes the same session, whose model
//! receives the answer and writes the file. Each test runs in a private network namespace
//! with only loopback (`offline::run_isolated`) on top of the CLI's own offline settings.

mod common;

use std::path::Path;
use std::time::Duration;

use common::peer::{Peer, KEY};
use orgx_test_support::fake_model::{Block, FakeModel, Turn};
use orgx_test_support::fake_orgx::{FakeOrgx, HttpCall};
use orgx_test_support::offline::{claude_bin, run_isolated};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(120);
const QUESTION: &str = "Which greeting style should greeting.txt use?";

fn ask() -> Block {
    Block::ToolUse {
        name: "AskUserQuestion".into(),
        input: json!({"questions": [{
            "question": QUESTION, "header": "Greeting", "multiSelect": false,
            "options": [{"label": "Formal", "description": "Good day to you."}, {"label": "Casual", "description": "Hey there!"}]
        }]}),
    }
}

/// The model: ask, then (resumed) dump the environment with Bash, write the file, finish.
fn script(target: &Path) -> Vec<Turn> {
    vec![
        Turn::new(vec![Block::Text("Before I write the file I need one decision from you.".into()), ask()], 1500, 60),
        Turn::new(
            vec![Block::ToolUse { name: "Bash".into(), input: json!({"command": "env", "description": "Show the environment"}) }],
            1700,
            20,
        ),
        Turn::new(
            vec![Block::ToolUse {
                name: "Write".into(),
                input: json!({"file_path": target.display().to_string(), "content": "Good day to you.\n"}),
            }],
            1800,
            30,
        ),
        Turn::new(vec![Block::Text("Done: greeting.txt is written in the style you picked.".into())], 1900, 10),
    ]
}

struct Rig {
    repo: tempfile::TempDir,
    home: tempfile::TempDir,
    model: FakeModel,
    server: FakeOrgx,
    env: Vec<(String, String)>,
    expected_tokens: u64,
}

impl Rig {
    async fn new() -> Rig {
        let repo = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let script = script(&repo.path().join("greeting.txt"));
        let expected_tokens = script.iter().map(Turn::tokens).sum();
        let model = FakeModel::start(script).await;
        let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
        let mut env = model.cli_env(home.path());
        env.extend([
            ("ORGX_CLAUDE_BIN".to_string(), claude_bin().display().to_string()),
            // What the user's settings would allow; everything else goes to the permission host.
            ("ORGX_CLAUDE_EXTRA_ARGS".to_string(), "--allowedTools Write Bash".to_string()),
            ("ORGX_DRIVERS".to_string(), "claude_code".to_string()),
            // The peer's own debug lines, not the component compiler's thousands.
            ("ORGX_LOG".to_string(), "info,orgx_peer=debug".to_string()),
        ]);
        Rig { repo, home, model, server, env, expected_tokens }
    }

    fn start(&self, data: tempfile::TempDir) -> Peer {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Peer::start_in(&self.server, &env, data)
    }

    async fn dispatch(&self, run_id: &str) {
        self.server.wait_until("the peer connects", LONG, |s| s.connections() >= 1).await;
        assert!(self.server.send_json(json!({
            "kind": "task.dispatch", "run_id": run_id, "idempotency_key": format!("key-{run_id}"), "timeout_seconds": 300,
            "task": {"title": "Write greeting.txt, but ask me which greeting style to use first.",
                     "repo_path": self.repo.path().display().to_string(), "driver": "claude_code",
                     "initiative_id": "init-7", "workstream_id": "ws-stream-3"}
        })));
    }

    async fn until(&self, what: &str, run_id: &str, pred: impl Fn(&[Value]) -> bool) {
        let id = run_id.to_string();
        self.server.wait_until(what, LONG, move |s| pred(&s.frames_for(&id))).await;
    }

    fn resolve(&self, run_id: &str, key: &str, resolution: Value) {
        assert!(self.server.send_json(json!({
            "kind": "attention.resolve", "protocol_version": 3, "decision_id": "dec_1", "run_id": run_id,
            "driver": "claude_code", "idempotency_key": key, "resolution": resolution
        })));
    }

    fn records(&self) -> Vec<HttpCall> {
        self.server.calls("/api/client/live/attention").into_iter().filter(|c| c.path == "/api/client/live/attention").collect()
    }
}

fn has(frames: &[Value], kind: &str) -> bool {
    frames.iter().any(|f| f["kind"] == kind)
}

/// Each frame as a short signature: kind, and a receipt's state.
fn signature(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| match f["kind"].as_str().unwrap_or("?") {
            "continuation.receipt" => format!("receipt {}", f["state"].as_str().unwrap_or("?")),
            "task.step" => format!("step {}", f["step"]["kind"].as_str().unwrap_or("?")),
            k => k.to_string(),
        })
        .collect()
}

fn assert_suspended_with_one_record(rig: &Rig, run_id: &str) -> String {
    let frames = rig.server.frames_for(run_id);
    let suspended = frames.iter().find(|f| f["kind"] == "task.suspended").expect("task.suspended");
    assert_eq!(suspended["reason"], "attention");
    let session = suspended["session_handle"].as_str().expect("the session to resume").to_string();
    assert_eq!(frames[0]["kind"], "task.started");
    assert_eq!(frames[0]["session_handle"].as_str(), Some(session.as_str()), "one session throughout");
    assert!(!has(&frames, "task.completed") && !has(&frames, "task.failed"), "a suspension is not terminal: {frames:#?}");
    let records = rig.records();
    assert_eq!(records.len(), 1, "one record per question");
    let r = &records[0].body;
    assert_eq!((r["question"].as_str(), r["context"].as_str()), (Some(QUESTION), Some("Greeting")));
    let labels: Vec<&str> = r["options"].as_array().unwrap().iter().map(|o| o["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["Formal", "Casual"]);
    assert_eq!(
        (r["initiative_id"].as_str(), r["run_id"].as_str(), r["workstream_id"].as_str()),
        (Some("init-7"), Some(run_id), Some("ws-stream-3"))
    );
    assert_eq!((r["source_client"].as_str(), r["source_session_id"].as_str()), (Some("claude-code"), Some(session.as_str())));
    assert_eq!(r["continuation"]["strategy"], "resume_session");
    assert_eq!(r["continuation"]["capability_version"], "claude-hooks-v1");
    assert!(r["idempotency_key"].as_str().unwrap().starts_with("claude:") && r["idempotency_key"].as_str().unwrap().ends_with(":0"));
    session
}

/// After the answer: receipts in order, the same session continues, the model got the
/// answer, the file is written, and `task.completed` sums both processes.
fn assert_resumed_and_completed(rig: &Rig, run_id: &str, session: &str, logs: &str) {
    let frames = rig.server.frames_for(run_id);
    let sig = signature(&frames);
    let at = |s: &str| sig.iter().position(|x| x == s).unwrap_or_else(|| panic!("no {s} in {sig:?}\nlogs: {logs}"));
    assert!(at("task.suspended") < at("receipt answer_received"), "{sig:?}");
    assert!(at("receipt answer_received") < at("receipt resuming") && at("receipt resuming") < at("receipt resumed"), "{sig:?}");
    assert!(at("receipt resumed") < at("task.completed") && at("task.completed") == sig.len() - 1, "{sig:?}");
    assert_eq!(sig.iter().filter(|s| *s == "task.started").count(), 1, "{sig:?}");
    assert!(sig[at("receipt resumed")..].iter().any(|s| s == "step file_edit"), "the resumed process's steps: {sig:?}");
    for f in frames.iter().filter(|f| f["kind"] == "continuation.receipt") {
        assert_eq!((f["protocol_version"].as_u64(), f["decision_id"].as_str()), (Some(3), Some("dec_1")));
        assert_eq!(f["session_handle"].as_str(), Some(session));
        assert!(f["occurred_at"].is_string());
    }
    let done = frames.last().unwrap();
    assert_eq!(done["tokens_used"], rig.expected_tokens, "tokens summed over both processes: {done}");
    assert_eq!(done["started_at"], frames[0]["started_at"], "the run's original started_at");
    // Every receipt over HTTP too, keyed `<resolution key>:<state>`.
    let posted: Vec<String> = rig
        .server
        .calls("/api/client/live/attention/dec_1")
        .iter()
        .map(|c| c.headers.get("idempotency-key").cloned().unwrap_or_default())
        .collect();
    for state in ["answer_received", "resuming", "resumed"] {
        assert!(posted.iter().any(|k| k.ends_with(&format!(":{state}"))), "{state} posted: {posted:?}");
    }
    // The model received the answer in the parked call's result, in the same conversation.
    let requests = rig.model.requests();
    let seen = requests.iter().any(|(_, body)| body.to_string().contains("Formal") && body.to_string().contains("tool_result"));
    assert!(seen, "the answer reached the model");
    assert_eq!(std::fs::read_to_string(rig.repo.path().join("greeting.txt")).unwrap(), "Good day to you.\n");
    // The same session, not a new one: the CLI's own record of it holds the resumed Write.
    let sessions = rig.home.path().join(".claude/projects");
    let file = std::fs::read_dir(&sessions)
        .unwrap()
        .filter_map(|d| std::fs::read_dir(d.ok()?.path()).ok())
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy() == format!("{session}.jsonl")))
        .unwrap_or_else(|| panic!("no {session}.jsonl under {}", sessions.display()));
    let record = std::fs::read_to_string(file).unwrap();
    assert!(record.contains("AskUserQuestion") && record.contains("Good day to you."), "one session holds the question and the write");
    // The CLI's environment (which its hook and the model's tools share) has no key.
    let env_dump: String = requests.iter().map(|(_, b)| b.to_string()).filter(|b| b.contains("ORGX_RUN_ID")).collect();
    assert!(!env_dump.is_empty(), "the Bash `env` result reached the model");
    assert!(env_dump.contains("ORGX_ATTENTION_DECISION_ID=dec_1"), "the continuation knows its decision");
    assert!(!env_dump.contains(KEY) && !env_dump.contains("ORGX_API_KEY"), "the gateway key is in no child's environment");
    assert!(!logs.contains(KEY));
}

#[test]
fn a_question_suspends_the_run_and_the_answer_resumes_the_same_session() {
    run_isolated(|isolated| async move {
        assert!(isolated || std::env::var_os("CI").is_none(), "CI runs the real CLIs in a private network namespace");
        a_question_suspends_the_run_and_the_answer_resumes_the_same_session_body().await
    })
}

async fn a_question_suspends_the_run_and_the_answer_resumes_the_same_session_body() {
    let rig = Rig::new().await;
    let mut peer = rig.start(tempfile::tempdir().unwrap());
    rig.dispatch("run-ask").await;
    rig.until("task.suspended", "run-ask", |f| has(f, "task.suspended") || has(f, "task.failed")).await;
    let session = assert_suspended_with_one_record(&rig, "run-ask");
    assert_eq!(rig.model.turns_served(), 1, "the first process stopped at the question");
    let answered = std::time::SystemTime::now();
    rig.resolve("run-ask", "res-1", json!({"status": "approved", "option_id": "Formal"}));
    rig.until("the run's terminal", "run-ask", |f| has(f, "task.completed") || has(f, "task.failed")).await;
    // Figures, not bounds: how long the answer took to move work again, on this machine.
    let at = |pred: &dyn Fn(&Value) -> bool| {
        let t = rig.server.frames_received().into_iter().find(|(_, f)| f["run_id"] == "run-ask" && pred(f)).map(|(t, _)| t);
        t.and_then(|t| t.duration_since(answered).ok()).map_or(-1.0, |d| d.as_secs_f64() * 1000.0)
    };
    eprintln!(
        "attention figures: resolve -> answer_received {:.1} ms, -> resumed {:.1} ms, -> task.completed {:.1} ms",
        at(&|f| f["state"] == "answer_received"),
        at(&|f| f["state"] == "resumed"),
        at(&|f| f["kind"] == "task.completed")
    );
    // A duplicate resolution is ignored: no second receipt, no second process.
    rig.resolve("run-ask", "res-1", json!({"status": "approved", "option_id": "Casual"}));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let logs = peer.logs();
    let _ = peer.child.kill();
    let _ = peer.child.wait();
    assert_resumed_and_completed(&rig, "run-ask", &session, &logs);
    let receipts = rig.server.frames_for("run-ask").iter().filter(|f| f["kind"] == "continuation.receipt").count();
    assert_eq!(receipts, 3, "the duplicate got nothing");
    assert_eq!(rig.model.turns_served(), 4);
    assert!(logs.contains("duplicate attention.resolve ignored"), "{logs}");
}

#[test]
fn a_suspended_run_survives_sigkill_and_the_restarted_peer_resumes_it() {
    run_isolated(|isolated| async move {
        assert!(isolated || std::env::var_os("CI").is_none(), "CI runs the real CLIs in a private network namespace");
        a_suspended_run_survives_sigkill_and_the_restarted_peer_resumes_it_body().await
    })
}

async fn a_suspended_run_survives_sigkill_and_the_restarted_peer_resumes_it_body() {
    let rig = Rig::new().await;
    let data = tempfile::tempdir().unwrap();
    let data_path = data.path().to_path_buf();
    let mut first = rig.start(data);
    rig.dispatch("run-kill").await;
    rig.until("task.suspended", "run-kill", |f| has(f, "task.suspended") || has(f, "task.failed")).await;
    let session = assert_suspended_with_one_record(&rig, "run-kill");
    // SIGKILL: no clean stop, nothing flushed on the way out.
    first.signal(libc::SIGKILL);
    first.wait_exit(Duration::from_secs(10));
    // The same data dir for the next life (the dead peer keeps an empty stand-in).
    let data = std::mem::replace(&mut first.data, tempfile::tempdir().unwrap());
    assert_eq!(data.path(), data_path);
    let connections = rig.server.connections();
    let mut second = rig.start(data);
    rig.server.wait_until("the restarted peer connects", LONG, move |s| s.connections() > connections).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!has(&rig.server.frames_for("run-kill"), "task.failed"), "a suspended run is not reported failed after a restart");
    rig.resolve("run-kill", "res-kill", json!({"status": "approved", "answer": "Formal"}));
    rig.until("the run's terminal", "run-kill", |f| has(f, "task.completed") || has(f, "task.failed")).await;
    let logs = second.logs();
    let _ = second.child.kill();
    let _ = second.child.wait();
    assert_resumed_and_completed(&rig, "run-kill", &session, &logs);
}

#[test]
fn a_cancelled_resolution_ends_the_run_without_touching_the_cli() {
    run_isolated(|isolated| async move {
        assert!(isolated || std::env::var_os("CI").is_none(), "CI runs the real CLIs in a private network namespace");
        a_cancelled_resolution_ends_the_run_without_touching_the_cli_body().await
    })
}

async fn a_cancelled_resolution_ends_the_run_without_touching_the_cli_body() {
    let rig = Rig::new().await;
    let mut peer = rig.start(tempfile::tempdir().unwrap());
    rig.dispatch("run-cancel").await;
    rig.until("task.suspended", "run-cancel", |f| has(f, "task.suspended") || has(f, "task.failed")).await;
    assert_suspended_with_one_record(&rig, "run-cancel");
    rig.resolve("run-cancel", "res-c", json!({"status": "cancelled"}));
    rig.until("the run's terminal", "run-cancel", |f| has(f, "task.failed") || has(f, "task.completed")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = peer.child.kill();
    let _ = peer.child.wait();
    let frames = rig.server.frames_for("run-cancel");
    let sig = signature(&frames);
    let tail: Vec<&str> = sig[sig.len() - 3..].iter().map(String::as_str).collect();
    assert_eq!(tail, ["task.suspended", "receipt cancelled", "task.failed"], "{sig:?}");
    let failed = frames.last().unwrap();
    assert_eq!((failed["reason"].as_str(), failed["recoverable"].as_bool()), (Some("attention cancelled"), Some(false)));
    assert_eq!(rig.model.turns_served(), 1, "the CLI was not resumed");
    let posted = rig.server.calls("/api/client/live/attention/dec_1");
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].headers.get("idempotency-key").map(String::as_str), Some("res-c:cancelled"));
    assert_eq!(posted[0].body["state"], "cancelled");
    assert_eq!(posted[0].body["source_client"], "claude-code");
}
