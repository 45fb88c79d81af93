//! The whole path with the real Claude Code CLI (npm `@anthropic-ai/claude-code`, pinned in
//! `tests/node/`): the OrgX stand-in dispatches, the peer runs the real CLI, the CLI talks to
//! a scripted stand-in of the Anthropic API on 127.0.0.1 and makes real tool calls (the file
//! is really written, the command really runs), and every protocol message comes back.

mod common;

use std::time::Duration;

use common::peer::{Peer, KEY};
use orgx_test_support::fake_model::{Block, FakeModel, Turn};
use orgx_test_support::fake_orgx::FakeOrgx;
use orgx_test_support::offline::claude_bin;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_cli_write_and_bash_through_the_peer() {
    let repo = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let target = repo.path().join("hello.txt");
    let script = vec![
        Turn::new(
            vec![
                Block::Text("I'll create the file.".into()),
                Block::ToolUse {
                    name: "Write".into(),
                    input: json!({"file_path": target.display().to_string(), "content": "hello from the fake model\n"}),
                },
            ],
            1000,
            30,
        ),
        Turn::new(
            vec![Block::ToolUse { name: "Bash".into(), input: json!({"command": "cat hello.txt", "description": "Show hello.txt"}) }],
            1200,
            20,
        ),
        Turn::new(vec![Block::Text("Done: hello.txt is written.".into())], 1300, 10),
    ];
    let expected_tokens: u64 = script.iter().map(Turn::tokens).sum();
    let model = FakeModel::start(script).await;
    let rules = json!({"skills": [
        {"id": "no-txt", "rules": [{"pattern": "\\.txt\\nhello", "on": "file_edit", "dedupe_fingerprint": "txt", "evidence_kind": "file"}]},
        {"id": "shell", "rules": [{"pattern": "^Bash cat ", "on": "tool_call", "dedupe_fingerprint": "cat", "evidence_kind": "command"}]}
    ]});
    let server = FakeOrgx::start(KEY, rules).await;
    let claude = claude_bin();
    let model_env = model.cli_env(home.path());
    let mut env: Vec<(&str, &str)> = model_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.extend([
        ("ORGX_WORKSPACE_ID", "ws-real"),
        ("ORGX_CLAUDE_BIN", claude.to_str().unwrap()),
        ("ORGX_CLAUDE_EXTRA_ARGS", "--dangerously-skip-permissions"),
    ]);
    let mut peer = Peer::start_in(&server, &env, data);
    let log = peer.log.clone();
    server.wait_until("the peer connects and fetches rules", Duration::from_secs(60), |s| !s.calls("/api/v1/plan-skills").is_empty()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server.send_json(json!({
        "kind": "task.dispatch", "run_id": "run-real", "idempotency_key": "real-1", "timeout_seconds": 120,
        "task": {"title": "Create hello.txt and show it", "repo_path": repo.path().display().to_string(), "driver": "claude_code"}
    })));
    server
        .wait_until("the run's terminal message", Duration::from_secs(120), |s| {
            s.frames_for("run-real").iter().any(|f| f["kind"] == "task.completed" || f["kind"] == "task.failed")
        })
        .await;
    let _ = peer.child.kill();
    let _ = peer.child.wait();
    let frames = server.frames_for("run-real");
    let sig: Vec<String> = frames
        .iter()
        .map(|f| match f["kind"].as_str().unwrap() {
            "task.step" => format!("step {} {}", f["step"]["kind"].as_str().unwrap(), f["step"]["summary"].as_str().unwrap()),
            "task.deviation" => format!("deviation {}", f["dedupe_key"].as_str().unwrap()),
            k => k.to_string(),
        })
        .collect();
    assert_eq!(
        sig,
        [
            "task.started",
            "step chat I'll create the file.",
            "step file_edit Write hello.txt",
            "deviation no-txt:txt:run-real",
            "step tool_call Bash cat hello.txt",
            "deviation shell:cat:run-real",
            "step chat Done: hello.txt is written.",
            "task.completed",
        ],
        "logs: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(frames[0]["session_handle"].as_str().is_some_and(|s| !s.is_empty()));
    let done: &Value = frames.last().unwrap();
    assert_eq!(done["tokens_used"], expected_tokens, "the real token counts");
    assert_eq!(done["source_sub_type"], "api_key");
    assert!(done["first_response_at"].is_string());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "hello from the fake model\n", "the Write really happened");
    assert_eq!(model.turns_served(), 3);
    assert!(!std::fs::read_to_string(&log).unwrap().contains(KEY));
}
