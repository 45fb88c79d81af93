//! Every shared transcript of the real Claude Code CLI, replayed through the live pipeline
//! and the built-in components, compared message by message with what the mapping and rule
//! contracts (`shared/spec/claude-stream-json.md`) say. The `orgx-peer replay` binary is run
//! too, to show the command prints exactly the pipeline's messages.

mod common;

use std::path::Path;

use common::{fixtures_dir, transcripts_dir};
use orgx_peer::protocol::PeerMessage;
use orgx_peer::rules::{Rule, RuleSet};
use orgx_peer::run::replay::{replay, ReplayOptions};
use orgx_peer::sandbox::{Limits, Sandbox};

/// A message as a compact line: kind and every field the contract decides (times excluded;
/// they are checked separately).
fn signature(m: &PeerMessage) -> String {
    match m {
        PeerMessage::Started(s) => format!("started {}", s.session_handle.as_deref().unwrap_or("-")),
        PeerMessage::Step(s) => {
            let kind = serde_json::to_value(s.step.kind).unwrap();
            format!("step {} {:?} {}", kind.as_str().unwrap(), s.step.summary, s.step.evidence_ref.as_deref().unwrap_or("-"))
        }
        PeerMessage::Deviation(d) => {
            format!("deviation {} {} {} {} {:?}", d.skill_id, d.evidence_kind, d.evidence_ref, d.dedupe_key, d.severity)
        }
        PeerMessage::Completed(c) => format!(
            "completed {:?} tokens={} cents={} saved={:?} {:?} {:?} {}",
            c.outcome_kind, c.tokens_used, c.cost_estimate_cents, c.saved_estimate_cents, c.source_sub_type, c.provider, c.source_driver
        ),
        PeerMessage::Failed(f) => format!("failed recoverable={} {:?}", f.recoverable, f.reason),
        other => panic!("a run produced a non-run message: {}", other.to_json()),
    }
}

fn load_rules(name: &str) -> Vec<Rule> {
    let body = std::fs::read(fixtures_dir().join("rules").join(name)).unwrap();
    RuleSet::from_plan_skills(&body).unwrap().rules
}

async fn replay_file(path: &Path, rules: &[Rule], run_id: &str) -> Vec<PeerMessage> {
    let sandbox = Sandbox::new(Limits::default()).unwrap();
    let components = common::defaults(&sandbox);
    let opts = ReplayOptions {
        transcript: path.to_path_buf(),
        driver: "claude_code".into(),
        run_id: run_id.to_string(),
        cwd: None,
        max_line_bytes: orgx_peer::run::DEFAULT_MAX_LINE_BYTES,
        limits: Limits::default(),
    };
    let mut out = Vec::new();
    replay(&components, rules, &opts, |m| out.push(m.clone())).await.unwrap();
    out
}

/// Deviations that follow one step may come in any order (the contract says so): sort
/// each such group before comparing.
fn normalized(sigs: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut group: Vec<String> = Vec::new();
    for s in sigs {
        if s.starts_with("deviation ") {
            group.push(s);
        } else {
            group.sort();
            out.append(&mut group);
            out.push(s);
        }
    }
    group.sort();
    out.extend(group);
    out
}

/// The invariants every run keeps, whatever its content.
fn assert_well_formed(msgs: &[PeerMessage], run_id: &str) {
    assert!(matches!(msgs.first(), Some(PeerMessage::Started(_))), "first is task.started");
    assert!(msgs.last().is_some_and(PeerMessage::is_terminal), "last is terminal");
    assert_eq!(msgs.iter().filter(|m| matches!(m, PeerMessage::Started(_))).count(), 1);
    assert_eq!(msgs.iter().filter(|m| m.is_terminal()).count(), 1);
    assert!(msgs.iter().all(|m| m.run_id() == run_id));
    let started_at = match &msgs[0] {
        PeerMessage::Started(s) => s.started_at.clone(),
        _ => unreachable!(),
    };
    assert!(humantime::parse_rfc3339(&started_at).is_ok(), "ISO-8601: {started_at}");
    if let Some(PeerMessage::Completed(c)) = msgs.last() {
        assert_eq!(c.started_at, started_at);
        assert!(c.completed_at >= started_at);
        if let Some(first) = &c.first_response_at {
            assert!(first >= &started_at && first <= &c.completed_at);
        }
    }
}

async fn check(transcript: &str, rules: &str, expected: &[&str]) -> Vec<PeerMessage> {
    let rules = if rules.is_empty() { Vec::new() } else { load_rules(rules) };
    let run_id = format!("run-{transcript}");
    let msgs = replay_file(&transcripts_dir().join(format!("{transcript}.ndjson")), &rules, &run_id).await;
    assert_well_formed(&msgs, &run_id);
    let got = normalized(msgs.iter().map(signature).collect());
    let want = normalized(expected.iter().map(|s| s.replace("{run}", &run_id)).collect());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "{transcript}: message #{i} differs");
    }
    assert_eq!(got.len(), want.len(), "{transcript}: message count; got {got:#?}");
    msgs
}

fn first_response_set(msgs: &[PeerMessage]) -> bool {
    matches!(msgs.last(), Some(PeerMessage::Completed(c)) if c.first_response_at.is_some())
}

/// success-tools and partial-messages are the same scripted session, with and without
/// `--include-partial-messages`: they map alike (stream events map to nothing).
fn write_and_bash_session(session: &str) -> Vec<String> {
    let mut v = vec![format!("started {session}")];
    v.extend(
        [
            r#"step chat "I'll create the file." -"#,
            r#"step file_edit "Write hello.txt" toolu_fake_0_1_1"#,
            "deviation no-plaintext-notes file_path toolu_fake_0_1_1 no-plaintext-notes:txt-file:{run} Some(Warn)",
            "deviation greeting-style content toolu_fake_0_1_1 greeting-style:fake-model:{run} Some(Warn)",
            r#"step tool_call "Bash cat hello.txt" toolu_fake_1_3_0"#,
            "deviation shell-review bash_command toolu_fake_1_3_0 shell-review:pager:{run} Some(Warn)",
            r#"step chat "Done: hello.txt contains 'hello from the fake model'." -"#,
            // 3900 + 90 + 0 + 2200 tokens; 0.01784 USD → 1.784 cents → 2.
            "completed Shipped tokens=6190 cents=2 saved=None ApiKey Anthropic claude_code",
        ]
        .map(String::from),
    );
    v
}

#[tokio::test]
async fn success_tools_with_demo_rules() {
    let expected = write_and_bash_session("87c32515-b74c-41fd-8287-4b0f42059a7b");
    let refs: Vec<&str> = expected.iter().map(String::as_str).collect();
    let msgs = check("success-tools", "demo.json", &refs).await;
    assert!(first_response_set(&msgs));
}

#[tokio::test]
async fn partial_messages_map_like_the_plain_stream() {
    let expected = write_and_bash_session("dad9f82c-cab5-4cbe-80db-294eeb33e3cb");
    let refs: Vec<&str> = expected.iter().map(String::as_str).collect();
    check("partial-messages", "demo.json", &refs).await;
}

#[tokio::test]
async fn edit_tools_with_the_contract_rules() {
    check(
        "edit-tools",
        "contract.json",
        &[
            "started d7297f9d-159b-4a24-b89b-10f0051a1e67",
            r#"step chat "I'll create the app and a test." -"#,
            r#"step file_edit "Write src/app.py" toolu_fake_0_1_1"#,
            "deviation paths path toolu_fake_0_1_1 paths:src-py:{run} Some(Warn)",
            "deviation content content toolu_fake_0_1_1 content:reuse:{run} Some(Warn)",
            "deviation dup path toolu_fake_0_1_1 dup:same:{run} Some(Warn)",
            r#"step file_edit "Write tests/test_app.py" toolu_fake_0_1_2"#,
            "deviation paths path toolu_fake_0_1_2 paths:tests:{run} Some(Warn)",
            r#"step file_edit "Edit src/app.py" toolu_fake_1_3_0"#,
            "deviation content content toolu_fake_1_3_0 content:fstring:{run} Some(Warn)",
            // MultiEdit fails on 2.1.330, but the attempt is the evidence.
            r#"step file_edit "MultiEdit src/app.py" toolu_fake_2_5_0"#,
            "deviation content content toolu_fake_2_5_0 content:comment:{run} Some(Warn)",
            r#"step chat "MultiEdit isn't available here; applying the two edits with Edit." -"#,
            r#"step file_edit "Edit src/app.py" toolu_fake_3_7_1"#,
            r#"step file_edit "Edit src/app.py" toolu_fake_3_7_2"#,
            // Only file_edit paths are made relative.
            r#"step tool_call "Read /home/dev/rig/runs/extra/edit-tools/work/src/app.py" toolu_fake_4_9_0"#,
            "deviation reads tool toolu_fake_4_9_0 reads:read-app:{run} Some(Warn)",
            r#"step tool_call "Grep def \\w+" toolu_fake_5_11_0"#,
            "deviation search tool toolu_fake_5_11_0 search:grep-def:{run} Some(Warn)",
            r#"step tool_call "Glob **/*.py" toolu_fake_6_13_0"#,
            "deviation search tool toolu_fake_6_13_0 search:glob:{run} Some(Warn)",
            r#"step chat "Done: src/app.py edited (greeting, argv, comment); Grep found 3 functions; Glob found 2 Python files." -"#,
            // 4500 + 330 + 0 + 2000; 0.025 USD = 2.5 cents, rounded half up.
            "completed Shipped tokens=6830 cents=3 saved=None ApiKey Anthropic claude_code",
        ],
    )
    .await;
}

#[tokio::test]
async fn tool_errors_still_give_their_steps() {
    check(
        "tool-errors",
        "contract.json",
        &[
            "started 28536e99-c8fa-4cc7-a873-1213649f0f7c",
            r#"step tool_call "Bash echo out; echo err >&2; exit 3" toolu_fake_0_1_0"#,
            "deviation never tool toolu_fake_0_1_0 never:bash:{run} Some(Warn)",
            r#"step tool_call "Read /home/dev/rig/runs/tool-errors/work/does-not-exist.txt" toolu_fake_1_3_0"#,
            r#"step chat "Both tools failed as expected." -"#,
            "completed Shipped tokens=360 cents=0 saved=None ApiKey Anthropic claude_code",
        ],
    )
    .await;
}

#[tokio::test]
async fn thinking_maps_to_nothing() {
    let msgs = check(
        "thinking-text",
        "",
        &[
            "started 7ba7ff44-d1e7-4ad2-be4c-219a391bb6ce",
            r#"step chat "Hi there! How can I help you today?" -"#,
            "completed Shipped tokens=525 cents=0 saved=None ApiKey Anthropic claude_code",
        ],
    )
    .await;
    assert!(first_response_set(&msgs), "a thinking line is an assistant line too");
}

#[tokio::test]
async fn max_turns_fails_recoverably() {
    check(
        "max-turns",
        "",
        &[
            "started ab84ded3-2b75-4cdc-96be-aab6c5532ce1",
            r#"step tool_call "Bash echo turn1" toolu_fake_0_1_0"#,
            r#"failed recoverable=true "Reached maximum number of turns (1)""#,
        ],
    )
    .await;
}

#[tokio::test]
async fn api_error_500_is_recoverable() {
    let text = "API Error: 500 Internal server error (fake). This is a server-side issue, usually temporary — try again in a moment. If it persists, check your inference gateway (127.0.0.1:33831).";
    check(
        "api-error-500",
        "",
        &["started edd0999f-c673-4834-a6c0-c23d708f5989", &format!("step chat {text:?} -"), &format!("failed recoverable=true {text:?}")],
    )
    .await;
}

#[tokio::test]
async fn api_error_401_is_not_recoverable() {
    check(
        "api-error-401",
        "",
        &[
            "started c6c27b26-b993-4590-8ed1-693cadd8b994",
            r#"step chat "Invalid API key · Fix external API key" -"#,
            r#"failed recoverable=false "Invalid API key · Fix external API key""#,
        ],
    )
    .await;
}

#[tokio::test]
async fn no_credentials_is_not_recoverable() {
    check(
        "no-credentials",
        "",
        &[
            "started fe0b5d25-685e-4f21-9db4-666c60a7b3b5",
            r#"step chat "Not logged in · Please run /login" -"#,
            r#"failed recoverable=false "Not logged in · Please run /login""#,
        ],
    )
    .await;
}

#[tokio::test]
async fn a_transcript_without_result_ends_like_a_process_that_exited_without_one() {
    check(
        "cancelled-sigterm-during-tool",
        "",
        &[
            "started 54076225-1fe9-4f87-8625-2c22482f67cb",
            r#"step chat "Running a long command." -"#,
            r#"step tool_call "Bash echo started; sleep 30; echo finished" toolu_fake_0_1_1"#,
            r#"failed recoverable=false "claude exited without a result""#,
        ],
    )
    .await;
}

#[tokio::test]
async fn long_session() {
    let mut expected = vec!["started 13afcc81-a0dd-4c41-9d99-b7aa1901e661".to_string()];
    for i in 1..=60 {
        expected.push(format!(r#"step chat "Step {i} of 60: echoing {i}." -"#));
        let turn = i - 1;
        let id = format!("toolu_fake_{turn}_{}_1", 2 * turn + 1);
        expected.push(format!(r#"step tool_call "Bash echo {i}" {id}"#));
    }
    expected.push(r#"step chat "All 60 steps done." -"#.to_string());
    // 133300 + 1520 + 0 + 127200; 0.58904 USD → 58.904 cents → 59.
    expected.push("completed Shipped tokens=262020 cents=59 saved=None ApiKey Anthropic claude_code".to_string());
    let refs: Vec<&str> = expected.iter().map(String::as_str).collect();
    check("long-session", "", &refs).await;
}

#[tokio::test]
async fn every_shared_transcript_replays_to_a_well_formed_run() {
    let rules = load_rules("contract.json");
    let mut seen = 0;
    for entry in std::fs::read_dir(transcripts_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "ndjson") {
            let msgs = replay_file(&path, &rules, "run-all").await;
            assert_well_formed(&msgs, "run-all");
            seen += 1;
        }
    }
    assert!(seen >= 11, "all shared transcripts replayed ({seen})");
}

#[tokio::test]
async fn malformed_lines_never_end_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.ndjson");
    let good = std::fs::read(transcripts_dir().join("success-tools.ndjson")).unwrap();
    let mut lines: Vec<&[u8]> = good.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    let huge = {
        let mut v = b"{\"type\":\"assistant\",\"junk\":\"".to_vec();
        v.extend(std::iter::repeat_n(b'x', 10 << 20));
        v.extend(b"\"}");
        v
    };
    let bad: Vec<&[u8]> = vec![
        b"not json at all",
        b"{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"trunc",
        b"\xff\xfe\xfd invalid utf-8 \xc3\x28",
        b"{\"type\":\"from_the_future\",\"x\":1}",
        b"[1,2,3]",
        b"42",
        b"null",
        b"",
        &huge,
    ];
    let result = lines.pop().unwrap();
    lines.splice(2..2, bad.iter().copied());
    lines.push(result);
    std::fs::write(&path, lines.join(&b'\n')).unwrap();
    let msgs = replay_file(&path, &load_rules("demo.json"), "run-bad").await;
    assert_well_formed(&msgs, "run-bad");
    assert!(matches!(msgs.last(), Some(PeerMessage::Completed(c)) if c.tokens_used == 6190));
    assert_eq!(msgs.iter().filter(|m| matches!(m, PeerMessage::Step(_))).count(), 4);
}

#[test]
fn the_replay_command_prints_the_pipeline_messages() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_orgx-peer"))
        .args(["replay", "--run-id", "cli-run", "--rules"])
        .arg(fixtures_dir().join("rules/demo.json"))
        .arg(fixtures_dir().join("demo/success-tools.ndjson"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let msgs: Vec<PeerMessage> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(msgs.len(), 9, "{stdout}");
    assert_well_formed(&msgs, "cli-run");
    let kinds: Vec<&str> = msgs.iter().map(PeerMessage::kind).collect();
    assert_eq!(
        kinds,
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
}

#[test]
fn the_replay_command_reports_a_missing_transcript_clearly() {
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_orgx-peer")).args(["replay", "/nonexistent/transcript.ndjson"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot open transcript `/nonexistent/transcript.ndjson`"), "{err}");
}

/// `orgx-peer replay --driver D` on a real transcript of that driver: its own mapper, the same
/// pipeline, and the attribution a replay has (nothing detected).
fn replay_driver(driver: &str, transcript: &str) -> Vec<serde_json::Value> {
    let cwd = format!("/home/dev/rig/runs/{driver}/success-tools/work");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_orgx-peer"))
        .args(["replay", "--driver", driver, "--run-id", "cli-run", "--cwd", &cwd, "--rules"])
        .arg(fixtures_dir().join("rules/contract.json"))
        .arg(transcripts_dir().join(transcript))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn the_replay_command_runs_codex_and_opencode_transcripts_through_their_own_mappers() {
    let codex = replay_driver("codex", "codex/success-tools.ndjson");
    assert_eq!(codex.first().unwrap()["kind"], "task.started");
    assert!(codex[0]["session_handle"].as_str().is_some_and(|h| !h.is_empty()));
    let done = codex.last().unwrap();
    assert_eq!((done["kind"].as_str(), done["source_driver"].as_str()), (Some("task.completed"), Some("codex")));
    assert_eq!(done["tokens_used"], 11_900 + 175, "input_tokens + output_tokens of turn.completed");
    assert_eq!(done["source_sub_type"], "user_managed", "replay detects nothing");
    let edits: Vec<&str> =
        codex.iter().filter(|m| m["step"]["kind"] == "file_edit").filter_map(|m| m["step"]["summary"].as_str()).collect();
    assert_eq!(edits, ["add hello.txt", "update hello.txt"], "paths relative to --cwd");

    let opencode = replay_driver("opencode", "opencode/success-tools.ndjson");
    assert_eq!(opencode.first().unwrap()["kind"], "task.started");
    let done = opencode.last().unwrap();
    assert_eq!((done["kind"].as_str(), done["source_driver"].as_str()), (Some("task.completed"), Some("opencode")));
    assert_eq!(done["observed_provider_id"], serde_json::Value::Null, "no model is known in a replay: explicitly unknown");
    // Σ step_finish tokens.total, read straight off the transcript.
    let text = std::fs::read_to_string(transcripts_dir().join("opencode/success-tools.ndjson")).unwrap();
    let total: u64 = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "step_finish")
        .filter_map(|v| v["part"]["tokens"]["total"].as_u64())
        .sum();
    assert!(total > 0);
    assert_eq!(done["tokens_used"], total);
    let edits: Vec<&str> =
        opencode.iter().filter(|m| m["step"]["kind"] == "file_edit").filter_map(|m| m["step"]["summary"].as_str()).collect();
    assert!(!edits.is_empty() && edits.iter().all(|e| !e.contains("/home/dev")), "paths relative to --cwd: {edits:?}");
}

#[tokio::test]
async fn a_deferred_question_replays_to_task_suspended_and_its_resume_to_task_completed() {
    let dir = transcripts_dir().join("attention");
    // (transcript, the last message's kind): every version's first and resumed processes.
    let table = [
        ("2.1.330/ask-defer.ndjson", "task.suspended"),
        ("2.1.330/ask-defer-resume.ndjson", "task.completed"),
        ("2.1.330/ask-parallel-sibling.ndjson", "task.suspended"),
        ("2.1.197/ask-defer.ndjson", "task.suspended"),
        ("2.1.197/ask-defer-resume.ndjson", "task.completed"),
        // 2.1.88 cannot park a call: its run just ends.
        ("2.1.88/ask-defer-unsupported.ndjson", "task.completed"),
    ];
    for (name, last) in table {
        let msgs = replay_file(&dir.join(name), &[], "run-ask").await;
        let kinds: Vec<&str> = msgs.iter().map(PeerMessage::kind).collect();
        assert_eq!((kinds.first().copied(), kinds.last().copied()), (Some("task.started"), Some(last)), "{name}: {kinds:?}");
        let ends = kinds.iter().filter(|k| matches!(**k, "task.completed" | "task.failed" | "task.suspended")).count();
        assert_eq!(ends, 1, "{name}: one end, and a suspension is never followed by a terminal: {kinds:?}");
    }
}
