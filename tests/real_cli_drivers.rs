//! The whole path for the Codex and opencode drivers, with the real CLIs (pinned in
//! `tests/node/`): the OrgX stand-in dispatches, the peer runs the real CLI in the task's
//! repo, the CLI talks to a scripted loopback stand-in of its model API (OpenAI Responses for
//! Codex, Chat Completions for opencode) and makes real tool calls, and every protocol
//! message comes back. Each test runs inside a private network namespace with only loopback
//! (`offline::run_isolated`) on top of every offline setting the specs name, so a missed
//! setting fails a test instead of sending a packet.

mod common;

use std::path::Path;
use std::time::Duration;

use common::peer::{Peer, KEY};
use orgx_test_support::fake_orgx::FakeOrgx;
use orgx_test_support::offline::{self, run_isolated, OfflineCli};
use orgx_test_support::{fake_chat, fake_responses};
use serde_json::{json, Value};

const RUN_WAIT: Duration = Duration::from_secs(120);

fn rules() -> Value {
    json!({"skills": [
        {"id": "no-txt", "rules": [{"pattern": "hello\\.txt", "on": "file_edit", "dedupe_fingerprint": "txt", "evidence_kind": "file"}]},
        {"id": "shell", "rules": [{"pattern": "cat hello", "on": "tool_call", "dedupe_fingerprint": "cat", "evidence_kind": "command"}]}
    ]})
}

/// A temporary git repository for the CLI to work in.
fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    assert!(std::process::Command::new("git").args(["init", "-q"]).current_dir(dir.path()).status().unwrap().success());
    dir
}

/// The peer's environment for one driver: the CLI's offline home and settings, the driver's
/// binary, and only that driver enabled.
fn peer_env(cli: &OfflineCli, bin_env: &str, extra_env: &str, extra_args: &[String], driver: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = cli.env.clone();
    env.push((bin_env.into(), cli.program.display().to_string()));
    env.push((extra_env.into(), extra_args.join(" ")));
    env.push(("ORGX_DRIVERS".into(), driver.into()));
    env.push(("ORGX_WORKSPACE_ID".into(), format!("ws-{driver}")));
    env
}

fn start_peer(server: &FakeOrgx, env: &[(String, String)]) -> Peer {
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Peer::start(server, &refs)
}

fn dispatch(run_id: &str, driver: &str, repo: &Path, title: &str) -> Value {
    json!({
        "kind": "task.dispatch", "run_id": run_id, "idempotency_key": format!("key-{run_id}"), "timeout_seconds": 110,
        "task": {"title": title, "repo_path": repo.display().to_string(), "driver": driver}
    })
}

async fn run_to_terminal(server: &FakeOrgx, d: Value) -> Vec<Value> {
    let run_id = d["run_id"].as_str().unwrap().to_string();
    server.wait_until("the peer connects and fetches rules", RUN_WAIT, |s| !s.calls("/api/v1/plan-skills").is_empty()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server.send_json(d));
    let id = run_id.clone();
    server
        .wait_until("the run's terminal message", RUN_WAIT, move |s| {
            s.frames_for(&id).iter().any(|f| f["kind"] == "task.completed" || f["kind"] == "task.failed")
        })
        .await;
    server.frames_for(&run_id)
}

/// `kind` (and for steps the step kind and summary, for deviations the dedupe key).
fn signature(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| match f["kind"].as_str().unwrap() {
            "task.step" => format!("step {} {}", f["step"]["kind"].as_str().unwrap(), f["step"]["summary"].as_str().unwrap()),
            "task.deviation" => format!("deviation {}", f["dedupe_key"].as_str().unwrap()),
            k => k.to_string(),
        })
        .collect()
}

/// Processes still carrying the run's id in their environment (zombies excluded).
fn run_processes(run_id: &str) -> Vec<i32> {
    let tag = format!("ORGX_RUN_ID={run_id}").into_bytes();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().starts_with('Z')));
            zombie == Some(false)
                && std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == tag))
        })
        .collect()
}

/// The terminal message goes out before the CLI has exited; within the exit and kill graces
/// (5 s + 3 s) every process of the run must be gone.
async fn no_process_left(run_id: &str) {
    let t0 = std::time::Instant::now();
    while !run_processes(run_id).is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(10), "left running after the run ended: {:?}", run_processes(run_id));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn codex_offline(scratch: &Path, base_url: &str) -> (OfflineCli, Vec<String>) {
    let cli = offline::codex(scratch, base_url);
    // The `-c` overrides before `exec` are the peer's extra arguments; the rest is the driver's.
    let exec = cli.args.iter().position(|a| a == "exec").unwrap();
    let extra = cli.args[..exec].to_vec();
    (cli, extra)
}

#[test]
fn codex_writes_runs_and_edits_through_the_peer() {
    use fake_responses::{FakeResponses, Item, Turn};
    run_isolated(|isolated| async move {
        assert!(isolated || std::env::var_os("CI").is_none(), "CI runs the real CLIs in a private network namespace");
        let (repo, scratch) = (repo(), tempfile::tempdir().unwrap());
        let script = vec![
            Turn::new(vec![Item::Text("I'll create hello.txt first.".into()), Item::add_file("hello.txt", "Hello, world!")], 2100, 0, 60),
            Turn::new(vec![Item::Exec("cat hello.txt".into())], 2300, 2048, 25),
            Turn::new(vec![Item::update_file("hello.txt", "Hello, world!", "Hello, rig!")], 2400, 2048, 40),
            Turn::new(vec![Item::Text("Done: hello.txt says Hello, rig!".into())], 2500, 2304, 20),
        ];
        let expected_tokens: u64 = script.iter().map(Turn::tokens).sum();
        let model = FakeResponses::start(script).await;
        let server = FakeOrgx::start(KEY, rules()).await;
        let (cli, extra) = codex_offline(scratch.path(), &model.base_url());
        let peer = start_peer(&server, &peer_env(&cli, "ORGX_CODEX_BIN", "ORGX_CODEX_EXTRA_ARGS", &extra, "codex"));
        let frames =
            run_to_terminal(&server, dispatch("run-codex", "codex", repo.path(), "Create hello.txt, show it, then change it")).await;
        assert_eq!(
            signature(&frames),
            [
                "task.started",
                "step chat I'll create hello.txt first.",
                "step file_edit add hello.txt",
                "deviation no-txt:txt:run-codex",
                "step tool_call exec /bin/bash -lc 'cat hello.txt'",
                "deviation shell:cat:run-codex",
                "step file_edit update hello.txt",
                "step chat Done: hello.txt says Hello, rig!",
                "task.completed",
            ],
            "peer logs: {}",
            peer.logs()
        );
        let thread_id = frames[0]["session_handle"].as_str().expect("the session handle is the Codex thread id");
        assert!(thread_id.len() >= 32, "{thread_id}");
        let done = frames.last().unwrap();
        assert_eq!(done["tokens_used"], expected_tokens, "Codex's own usage: input + output of every request");
        assert_eq!((done["provider"].as_str(), done["source_driver"].as_str()), (Some("openai"), Some("codex")));
        // `codex login status` says nothing about a custom provider's key: user managed.
        assert_eq!(done["source_sub_type"], "user_managed");
        assert!(done.get("provider_id").is_none() && done.get("observed_provider_id").is_none(), "{done}");
        assert_eq!(done["cost_estimate_cents"], 0, "no pricing configured");
        assert_eq!(std::fs::read_to_string(repo.path().join("hello.txt")).unwrap(), "Hello, rig!\n", "the patches really applied");
        assert_eq!(model.turns_served(), 4);
        assert!(model.requests().iter().all(|r| !r.body.to_string().contains(KEY)), "the gateway key never reaches the CLI");
        no_process_left("run-codex").await;
    });
}

#[test]
fn codex_model_api_error_fails_the_run_and_a_missing_cli_is_named() {
    run_isolated(|_| async move {
        let (repo, scratch) = (repo(), tempfile::tempdir().unwrap());
        let model = fake_responses::FakeResponses::failing(401).await;
        let server = FakeOrgx::start(KEY, rules()).await;
        let (cli, extra) = codex_offline(scratch.path(), &model.base_url());
        let mut env = peer_env(&cli, "ORGX_CODEX_BIN", "ORGX_CODEX_EXTRA_ARGS", &extra, "codex");
        let peer = start_peer(&server, &env);
        let frames = run_to_terminal(&server, dispatch("run-401", "codex", repo.path(), "say hi")).await;
        let failed = frames.last().unwrap();
        assert_eq!(failed["kind"], "task.failed", "{frames:#?}");
        assert!(failed["reason"].as_str().unwrap().starts_with("unexpected status 401 Unauthorized"), "{failed}");
        assert_eq!(failed["recoverable"], false, "a 401 is not a passing cause");
        drop(peer);

        // The same driver with its binary gone: refused with the setting to fix.
        env.retain(|(k, _)| k != "ORGX_CODEX_BIN");
        env.push(("ORGX_CODEX_BIN".into(), "/nonexistent/codex".into()));
        let server = FakeOrgx::start(KEY, rules()).await;
        let _peer = start_peer(&server, &env);
        let frames = run_to_terminal(&server, dispatch("run-missing", "codex", repo.path(), "say hi")).await;
        assert_eq!(signature(&frames), ["task.started", "task.failed"]);
        let reason = frames[1]["reason"].as_str().unwrap();
        assert!(reason.contains("`/nonexistent/codex` was not found") && reason.contains("ORGX_CODEX_BIN"), "{reason}");
        assert_eq!(frames[1]["recoverable"], false);
    });
}

fn opencode_env(cli: &OfflineCli) -> Vec<(String, String)> {
    let mut env = peer_env(cli, "ORGX_OPENCODE_BIN", "ORGX_OPENCODE_EXTRA_ARGS", &[], "opencode");
    env.push(("ORGX_OPENCODE_MODEL".into(), offline::OPENCODE_MODEL.into()));
    env
}

#[test]
fn opencode_writes_runs_and_edits_through_the_peer() {
    use fake_chat::{FakeChat, Part, Turn};
    run_isolated(|isolated| async move {
        assert!(isolated || std::env::var_os("CI").is_none(), "CI runs the real CLIs in a private network namespace");
        let (repo, scratch) = (repo(), tempfile::tempdir().unwrap());
        let file = repo.path().join("hello.txt").display().to_string();
        let script = vec![
            Turn::new(vec![Part::Text("I'll create hello.txt first.".into()), Part::write(&file, "Hello, world!\n")], 2100, 0, 60),
            Turn::new(vec![Part::bash("cat hello.txt")], 2300, 2048, 25),
            Turn::new(vec![Part::edit(&file, "Hello, world!", "Hello, rig!")], 2400, 2048, 40),
            Turn::new(vec![Part::Text("Done: hello.txt says Hello, rig!".into())], 2500, 2304, 20),
        ];
        let expected_tokens: u64 = script.iter().map(Turn::tokens).sum();
        let model = FakeChat::start(script).await;
        let server = FakeOrgx::start(KEY, rules()).await;
        let cli = offline::opencode(scratch.path(), &model.base_url());
        let peer = start_peer(&server, &opencode_env(&cli));
        let frames =
            run_to_terminal(&server, dispatch("run-opencode", "opencode", repo.path(), "Create hello.txt, show it, then change it")).await;
        assert_eq!(
            signature(&frames),
            [
                "task.started",
                "step chat I'll create hello.txt first.",
                "step file_edit write hello.txt",
                "deviation no-txt:txt:run-opencode",
                "step tool_call bash cat hello.txt",
                "deviation shell:cat:run-opencode",
                "step file_edit edit hello.txt",
                "step chat Done: hello.txt says Hello, rig!",
                "task.completed",
            ],
            "model requests: {:#?}; peer: {}",
            model.requests().iter().map(|r| (r.path.clone(), r.body.get("tools").is_some())).collect::<Vec<_>>(),
            peer.logs().lines().filter(|l| l.contains("run-opencode") || l.contains("orgx_peer")).collect::<Vec<_>>().join("\n")
        );
        drop(peer);
        assert!(frames[0]["session_handle"].as_str().is_some_and(|s| s.starts_with("ses_")), "{}", frames[0]);
        let done = frames.last().unwrap();
        assert_eq!(done["tokens_used"], expected_tokens, "Σ step_finish tokens.total");
        assert_eq!((done["provider"].as_str(), done["source_driver"].as_str()), (Some("other"), Some("opencode")));
        assert_eq!(done["source_sub_type"], "user_managed");
        assert_eq!(done["observed_provider_id"], "fake", "the provider part of ORGX_OPENCODE_MODEL");
        assert!(done.get("provider_id").is_none(), "{done}");
        assert!(done["cost_estimate_cents"].as_u64().is_some());
        assert_eq!(done["outcome_kind"], "shipped");
        assert_eq!(std::fs::read_to_string(repo.path().join("hello.txt")).unwrap(), "Hello, rig!\n", "the edit really happened");
        assert_eq!(model.turns_served(), 4);
        no_process_left("run-opencode").await;
    });
}

#[test]
fn opencode_cancelled_mid_command_leaves_nothing_running() {
    use fake_chat::{FakeChat, Part, Turn};
    run_isolated(|_| async move {
        let (repo, scratch) = (repo(), tempfile::tempdir().unwrap());
        let script = vec![
            Turn::new(vec![Part::bash("sleep 30; echo never")], 1000, 0, 10),
            Turn::new(vec![Part::Text("unreachable".into())], 10, 0, 1),
        ];
        let model = FakeChat::start(script).await;
        let server = FakeOrgx::start(KEY, rules()).await;
        let cli = offline::opencode(scratch.path(), &model.base_url());
        let peer = start_peer(&server, &opencode_env(&cli));
        server.wait_until("the peer connects and fetches rules", RUN_WAIT, |s| !s.calls("/api/v1/plan-skills").is_empty()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(server.send_json(dispatch("run-cancel", "opencode", repo.path(), "Wait a while")));
        // The shell tool runs in a session of its own (opencode's `setsid`): wait for it.
        wait_for_sleep("run-cancel", &peer).await;
        assert!(server.send_json(json!({"kind": "task.cancel", "run_id": "run-cancel", "reason": "user stopped it"})));
        let frames = {
            server
                .wait_until("the cancelled run's terminal", Duration::from_secs(30), |s| {
                    s.frames_for("run-cancel").iter().any(|f| f["kind"] == "task.failed")
                })
                .await;
            server.frames_for("run-cancel")
        };
        let failed = frames.last().unwrap();
        assert_eq!(
            (failed["reason"].as_str(), failed["recoverable"].as_bool()),
            (Some("cancelled: user stopped it"), Some(false)),
            "{frames:#?}"
        );
        // Every process of the run is gone — the escaped `sleep` included — within the grace.
        no_process_left("run-cancel").await;
    });
}

#[test]
fn codex_cancelled_mid_command_leaves_nothing_running() {
    use fake_responses::{FakeResponses, Item, Turn};
    run_isolated(|_| async move {
        let (repo, scratch) = (repo(), tempfile::tempdir().unwrap());
        let model = FakeResponses::start(vec![Turn::new(vec![Item::Exec("sleep 30; echo never".into())], 1000, 0, 10)]).await;
        let server = FakeOrgx::start(KEY, rules()).await;
        let (cli, extra) = codex_offline(scratch.path(), &model.base_url());
        let peer = start_peer(&server, &peer_env(&cli, "ORGX_CODEX_BIN", "ORGX_CODEX_EXTRA_ARGS", &extra, "codex"));
        server.wait_until("the peer connects and fetches rules", RUN_WAIT, |s| !s.calls("/api/v1/plan-skills").is_empty()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(server.send_json(dispatch("run-codex-cancel", "codex", repo.path(), "Wait a while")));
        wait_for_sleep("run-codex-cancel", &peer).await;
        // Codex shows a command when it starts: the step is there before the cancel.
        let id = "run-codex-cancel";
        server.wait_until("the command's step", RUN_WAIT, move |s| s.frames_for(id).iter().any(|f| f["step"]["kind"] == "tool_call")).await;
        assert!(server.send_json(json!({"kind": "task.cancel", "run_id": id, "reason": "user stopped it"})));
        server
            .wait_until("the cancelled run's terminal", Duration::from_secs(30), move |s| {
                s.frames_for(id).iter().any(|f| f["kind"] == "task.failed")
            })
            .await;
        let failed = server.frames_for(id).into_iter().find(|f| f["kind"] == "task.failed").unwrap();
        assert_eq!((failed["reason"].as_str(), failed["recoverable"].as_bool()), (Some("cancelled: user stopped it"), Some(false)));
        no_process_left(id).await;
    });
}

#[test]
fn opencode_model_api_error_fails_the_run_and_a_missing_cli_is_named() {
    run_isolated(|_| async move {
        let (repo, scratch) = (repo(), tempfile::tempdir().unwrap());
        let model = fake_chat::FakeChat::failing(401).await;
        let server = FakeOrgx::start(KEY, rules()).await;
        let cli = offline::opencode(scratch.path(), &model.base_url());
        let mut env = opencode_env(&cli);
        let peer = start_peer(&server, &env);
        let frames = run_to_terminal(&server, dispatch("run-oc-401", "opencode", repo.path(), "say hi")).await;
        let failed = frames.last().unwrap();
        assert_eq!(failed["kind"], "task.failed", "{frames:#?}");
        assert!(failed["reason"].as_str().unwrap().contains("Incorrect API key provided"), "{failed}");
        assert_eq!(failed["recoverable"], false, "opencode says isRetryable: false for a 401");
        drop(peer);

        env.retain(|(k, _)| k != "ORGX_OPENCODE_BIN");
        env.push(("ORGX_OPENCODE_BIN".into(), "/nonexistent/opencode".into()));
        let server = FakeOrgx::start(KEY, rules()).await;
        let _peer = start_peer(&server, &env);
        let frames = run_to_terminal(&server, dispatch("run-oc-missing", "opencode", repo.path(), "say hi")).await;
        assert_eq!(signature(&frames), ["task.started", "task.failed"]);
        let reason = frames[1]["reason"].as_str().unwrap();
        assert!(reason.contains("`/nonexistent/opencode` was not found") && reason.contains("ORGX_OPENCODE_BIN"), "{reason}");
    });
}

/// Until the model's `sleep` runs as a process of the run.
async fn wait_for_sleep(run_id: &str, peer: &Peer) {
    let t0 = std::time::Instant::now();
    let sleeping = || {
        run_processes(run_id).into_iter().any(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep\0")))
    };
    while !sleeping() {
        assert!(t0.elapsed() < RUN_WAIT, "the model's `sleep 30` never started; peer logs: {}", peer.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
