//! Every real Codex transcript in `tests/fixtures/transcripts/codex/`, replayed line by line
//! and compared with the events the contract gives, written out by hand from the spec and the
//! transcript. A stream without a terminal line ends the way the capture did: its exit status
//! or signal from `NAME.meta.json`, and the last non-empty line of `NAME.stderr`.

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/transcripts/codex/");

/// The `line` of [`replay`]'s output that `end` answered.
const END: usize = 0;

const PRICE: Pricing = Pricing { input: 1.25, cached_input: 0.125, output: 10.0 };

fn read(name: &str, ext: &str) -> String {
    std::fs::read_to_string(format!("{DIR}{name}.{ext}")).unwrap_or_else(|e| panic!("{name}.{ext}: {e}"))
}

fn meta(name: &str) -> Value {
    serde_json::from_str(&read(name, "meta.json")).unwrap()
}

/// The working directory the capture ran in.
fn cwd(name: &str) -> String {
    meta(name)["cwd"].as_str().unwrap().to_string()
}

fn ctx_in_cwd(name: &str) -> RunContext {
    RunContext::new("run-1", Some(cwd(name)))
}

/// Each event with the 1-based number of the line that produced it (`END` for `end`).
fn replay(name: &str, ctx: RunContext) -> Vec<(usize, Event)> {
    let mut m = Mapper::new(ctx);
    let mut out = Vec::new();
    let stdout = read(name, "ndjson");
    for (i, line) in stdout.lines().enumerate() {
        out.extend(m.map_line(line.as_bytes()).into_iter().map(|e| (i + 1, e)));
    }
    if !out.iter().any(|(_, e)| matches!(e, Event::Terminal(_))) {
        let meta = meta(name);
        let exit = match meta["killed_by_signal"].as_str() {
            Some("SIGTERM") => ProcessExit::Signal(15),
            Some("SIGINT") => ProcessExit::Signal(2),
            Some("SIGKILL") => ProcessExit::Signal(9),
            Some(other) => panic!("{name}: signal {other} not in this table"),
            None => ProcessExit::Code(meta["exit_status"].as_i64().unwrap() as i32),
        };
        let stderr = read(name, "stderr");
        let tail = stderr.lines().rev().find(|l| !l.trim().is_empty()).map(str::to_string);
        out.push((END, Event::Terminal(m.end(EndReason::Exited(exit), tail))));
    }
    out
}

fn started(id: &str) -> Event {
    Event::Started(Some(id.into()))
}

fn chat(text: &str) -> Event {
    Event::Step(Step { kind: StepKind::Chat, summary: text.into(), evidence_ref: None, confidence: None, subject: None })
}

/// A `tool_call` whose summary is short enough to equal its match text.
fn tool(summary: &str, id: &str) -> Event {
    Event::Step(Step {
        kind: StepKind::ToolCall,
        summary: summary.into(),
        evidence_ref: Some(id.into()),
        confidence: None,
        subject: Some(MatchSubject { on: RuleOn::ToolCall, text: summary.into() }),
    })
}

fn exec(command: &str, id: &str) -> Event {
    tool(&format!("exec {command}"), id)
}

fn edit(kind: &str, path: &str, id: &str) -> Event {
    Event::Step(Step {
        kind: StepKind::FileEdit,
        summary: format!("{kind} {path}"),
        evidence_ref: Some(id.into()),
        confidence: None,
        subject: Some(MatchSubject { on: RuleOn::FileEdit, text: path.into() }),
    })
}

fn completed(tokens_used: u64, source_sub_type: SourceSubType, cost: u64, saved: Option<u64>) -> Event {
    Event::Terminal(Terminal::Completed(Completed {
        outcome_kind: OutcomeKind::Shipped,
        tokens_used,
        provider: Provider::Openai,
        provider_id: ProviderRef::Absent,
        observed_provider_id: ProviderRef::Absent,
        source_sub_type,
        source_driver: "codex".into(),
        cost_estimate_cents: cost,
        saved_estimate_cents: saved,
    }))
}

fn failed(reason: &str, recoverable: bool) -> Event {
    Event::Terminal(Terminal::Failed(Failed { reason: reason.into(), recoverable }))
}

fn check(name: &str, got: Vec<(usize, Event)>, want: Vec<(usize, Event)>) {
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "{name}: event {i}");
    }
    assert_eq!(got.len(), want.len(), "{name}: {got:#?}");
}

/// The transcripts this file replays; a new capture must get its expectations here.
const REPLAYED: [&str; 10] = [
    "api-error-401",
    "api-error-500",
    "cancel-sigterm-during-stream",
    "cancel-sigterm-during-tool",
    "long-session",
    "no-credentials",
    "resume",
    "sandbox-read-only-default",
    "success-tools",
    "tool-errors",
];

#[test]
fn every_transcript_is_replayed() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(DIR)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().unwrap().strip_suffix(".ndjson").map(str::to_string))
        .collect();
    assert_eq!(on_disk, REPLAYED.iter().map(|s| s.to_string()).collect());
}

#[test]
fn success_tools() {
    let want = vec![
        (1, started("01a23314-5400-7df0-a028-d8214de1218a")),
        (3, Event::FirstResponse),
        (4, chat("I'll create hello.txt first.")),
        (5, edit("add", "hello.txt", "item_2")),
        (7, exec("/bin/bash -lc 'cat hello.txt'", "item_3")),
        (9, edit("update", "hello.txt", "item_4")),
        (11, exec("/bin/bash -lc 'cat hello.txt && wc -c hello.txt'", "item_5")),
        (13, chat("Done. hello.txt now contains \"Hello, rig!\".")),
        // 11900 + 175, the same 12,075 opencode counts for this session
        (14, completed(12_075, SourceSubType::UserManaged, 0, None)),
    ];
    check("success-tools", replay("success-tools", ctx_in_cwd("success-tools")), want);
}

#[test]
fn success_tools_on_an_api_key_with_pricing() {
    let ctx = RunContext {
        detection: Some(Detection { source_sub_type: Some(SourceSubType::ApiKey), auth_method: Some("api_key".into()) }),
        pricing: Some(PRICE),
        ..ctx_in_cwd("success-tools")
    };
    let got = replay("success-tools", ctx);
    // (3196 × 1.25 + 8704 × 0.125 + 175 × 10) / 10^6 USD = 0.6833 cents → 1
    assert_eq!(got.last().unwrap(), &(14, completed(12_075, SourceSubType::ApiKey, 1, None)));
}

#[test]
fn sandbox_read_only_default() {
    // The refused patches printed nothing (only stderr lines): no file_edit, and still shipped.
    let want = vec![
        (1, started("01a23314-69dc-76a0-b354-4dc32420425e")),
        (3, Event::FirstResponse),
        (4, chat("I'll create hello.txt first.")),
        (5, exec("/bin/bash -lc 'cat hello.txt'", "item_2")),
        (7, exec("/bin/bash -lc 'cat hello.txt && wc -c hello.txt'", "item_3")),
        (9, chat("Done. hello.txt now contains \"Hello, rig!\".")),
        (10, completed(12_075, SourceSubType::UserManaged, 0, None)),
    ];
    check("sandbox-read-only-default", replay("sandbox-read-only-default", ctx_in_cwd("sandbox-read-only-default")), want);
}

#[test]
fn tool_errors() {
    let want = vec![
        (1, started("01a23314-7417-7fa2-b5d5-92c3b4278040")),
        (3, Event::FirstResponse),
        (3, chat("Let me look around first.")),
        (4, exec("/bin/bash -lc 'ls does-not-exist'", "item_1")),
        (6, exec("/bin/bash -lc 'echo partial output; echo oops >&2; exit 3'", "item_2")),
        (8, chat("Several steps failed: ls found nothing, missing.txt does not exist, and the script exited 3.")),
        (9, completed(5_250, SourceSubType::UserManaged, 0, None)),
    ];
    check("tool-errors", replay("tool-errors", ctx_in_cwd("tool-errors")), want);
}

#[test]
fn api_error_500() {
    let want = vec![
        (1, started("01a23314-8190-7bb0-a1db-efd02398080c")),
        (9, failed("We’re currently experiencing high demand, which may cause temporary errors.", true)),
    ];
    check("api-error-500", replay("api-error-500", ctx_in_cwd("api-error-500")), want);
}

#[test]
fn api_error_401() {
    // `sk-test....` has fewer than 8 key characters, so it is not a credential to redact.
    let reason = "unexpected status 401 Unauthorized: Incorrect API key provided: sk-test.... (fake server), url: http://127.0.0.1:35845/v1/responses, request id: req_fake_000012";
    let want = vec![(1, started("01a23314-eb62-7063-88b5-a6ecce1d7c10")), (9, failed(reason, false))];
    check("api-error-401", replay("api-error-401", ctx_in_cwd("api-error-401")), want);
}

#[test]
fn no_credentials() {
    let want =
        vec![(1, started("01a23315-24c3-7b13-86cb-37e0e588acb7")), (4, failed("Missing environment variable: `OPENAI_API_KEY`.", false))];
    check("no-credentials", replay("no-credentials", ctx_in_cwd("no-credentials")), want);
}

#[test]
fn cancel_sigterm_during_stream() {
    let want = vec![(1, started("01a23315-54f3-7eb1-a168-a487d144d1ac")), (END, failed("codex killed by SIGTERM", true))];
    check("cancel-sigterm-during-stream", replay("cancel-sigterm-during-stream", ctx_in_cwd("cancel-sigterm-during-stream")), want);
}

#[test]
fn cancel_sigterm_during_tool() {
    // The command never completed, yet it shows: its step came at item.started.
    let want = vec![
        (1, started("01a23315-379e-7f00-93dd-ae550bbeebe7")),
        (3, Event::FirstResponse),
        (3, chat("Running a long command.")),
        (4, exec("/bin/bash -lc 'sleep 30; echo never'", "item_1")),
        (END, failed("codex killed by SIGTERM", true)),
    ];
    check("cancel-sigterm-during-tool", replay("cancel-sigterm-during-tool", ctx_in_cwd("cancel-sigterm-during-tool")), want);
}

#[test]
fn resume() {
    let want = vec![
        (1, started("01a23315-765c-73c0-bb44-3a6e43908366")),
        (3, Event::FirstResponse),
        (3, edit("add", "note.txt", "item_0")),
        (5, chat("Created note.txt.")),
        (6, completed(2_100, SourceSubType::UserManaged, 0, None)),
    ];
    check("resume", replay("resume", ctx_in_cwd("resume")), want);
    assert_eq!(meta("resume")["session_id"], "01a23315-765c-73c0-bb44-3a6e43908366", "the handle is the resumed session");
}

#[test]
fn resume_on_a_subscription_reports_savings() {
    let ctx = RunContext {
        detection: Some(Detection { source_sub_type: Some(SourceSubType::Subscription), auth_method: Some("chatgpt".into()) }),
        pricing: Some(Pricing { input: 2.5, cached_input: 0.25, output: 25.0 }),
        ..ctx_in_cwd("resume")
    };
    // (2000 × 2.5 + 100 × 25) / 10^6 USD = 0.75 cents → 1, saved rather than spent
    assert_eq!(replay("resume", ctx).last().unwrap(), &(6, completed(2_100, SourceSubType::Subscription, 0, Some(1))));
}

fn long_session_want(path: impl Fn(&str) -> String) -> Vec<(usize, Event)> {
    vec![
        (1, started("01a23315-633f-70a3-80eb-1961cb401c5b")),
        (3, Event::FirstResponse),
        (4, chat("Plan: scaffold calc.py, add a test, run it, then tidy up.")),
        (5, edit("add", &path("calc.py"), "item_2")),
        (7, edit("add", &path("test_calc.py"), "item_3")),
        (9, exec("/bin/bash -lc 'python3 test_calc.py'", "item_4")),
        (11, chat("Tests pass. Checking the files in parallel.")),
        // parallel: two starts, then the completions in the other order (no steps)
        (12, exec("/bin/bash -lc 'wc -l calc.py'", "item_6")),
        (13, exec("/bin/bash -lc 'ls -1'", "item_7")),
        (16, edit("update", &path("calc.py"), "item_8")),
        (18, exec("/bin/bash -lc 'sed -n 1,10p calc.py'", "item_9")),
        (20, tool(r#"mcp__rigtools__echo {"text":"hello from the rig"}"#, "item_10")),
        (22, tool(r#"mcp__rigtools__add {"a":2,"b":40}"#, "item_11")),
        // the tool answered isError: still a step, the attempt is the evidence
        (24, tool(r#"mcp__rigtools__fail {"reason":"demo failure"}"#, "item_12")),
        // at item.completed, with the second (last) "id" of the line
        (27, tool("web_search python docstring conventions PEP 257", "ws_t10_0")),
        (28, exec(r#"/bin/bash -lc "python3 -c 'import calc; print(calc.mul.__doc__)'""#, "item_14")),
        (30, exec("/bin/bash -lc 'python3 test_calc.py && git --version >/dev/null 2>&1; echo done'", "item_15")),
        (
            33,
            chat("Done. calc.py has add() and mul() (now documented), test_calc.py passes, and the MCP tools answered (echo, add=42; fail reported an error as expected)."),
        ),
        // 57000 + 650: cached input and reasoning output are already inside
        (34, completed(57_650, SourceSubType::UserManaged, 0, None)),
    ]
}

#[test]
fn long_session() {
    check("long-session", replay("long-session", ctx_in_cwd("long-session")), long_session_want(|p| p.to_string()));
}

#[test]
fn long_session_without_a_cwd_keeps_absolute_paths() {
    // Codex reports no cwd in its stream, so without the host's there is nothing to cut.
    let abs = |p: &str| format!("/home/dev/rig/runs/codex/long-session/work/{p}");
    check("long-session (no cwd)", replay("long-session", RunContext::new("run-1", None)), long_session_want(abs));
}

#[test]
fn long_session_on_a_subscription_with_pricing() {
    let ctx = RunContext {
        detection: Some(Detection { source_sub_type: Some(SourceSubType::Subscription), auth_method: Some("chatgpt".into()) }),
        pricing: Some(PRICE),
        ..ctx_in_cwd("long-session")
    };
    // (5800 × 1.25 + 51200 × 0.125 + 650 × 10) / 10^6 USD = 2.015 cents → 2
    assert_eq!(replay("long-session", ctx).last().unwrap(), &(34, completed(57_650, SourceSubType::Subscription, 0, Some(2))));
}

#[test]
fn cancelled_and_timed_out_runs_end_as_the_host_says() {
    for (end, want) in [
        (EndReason::Cancelled("user stopped it".into()), failed("cancelled: user stopped it", false)),
        (EndReason::TimedOut(120), failed("timed out after 120 s", true)),
    ] {
        let mut m = Mapper::new(ctx_in_cwd("cancel-sigterm-during-tool"));
        for line in read("cancel-sigterm-during-tool", "ndjson").lines() {
            m.map_line(line.as_bytes());
        }
        assert_eq!(Event::Terminal(m.end(end, Some("Reading additional input from stdin...".into()))), want);
    }
}
