//! The mapper against every real opencode transcript in `tests/fixtures/transcripts/opencode`,
//! line by line, with the events each line must give written out from the contract; then the
//! line-level behaviour (first lines, first response, bad lines) the transcripts do not cover.
//! The transcript's meta file gives what the host would pass: the working directory, the
//! provider of `-m` or of the configured `model`, and how the process ended.

use std::path::PathBuf;

use serde_json::Value;

use super::*;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/transcripts/opencode")
}

/// Every transcript this file replays; `every_transcript_is_replayed` keeps it complete.
const TRANSCRIPTS: [&str; 9] = [
    "api-error-401",
    "api-error-500",
    "cancel-sigterm-during-tool",
    "long-session",
    "permission-ask-rejected",
    "resume",
    "success-tools",
    "tool-errors",
    "unknown-model",
];

struct Transcript {
    lines: Vec<Vec<u8>>,
    ctx: RunContext,
    reason: EndReason,
    stderr_last: Option<String>,
}

fn load(name: &str) -> Transcript {
    let read = |ext: &str| std::fs::read(fixtures().join(format!("{name}.{ext}"))).unwrap_or_else(|e| panic!("{name}.{ext}: {e}"));
    let stdout = read("ndjson");
    let lines = stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect();
    let meta: Value = serde_json::from_slice(&read("meta.json")).expect("meta.json");
    let argv: Vec<&str> = meta["argv"].as_array().expect("argv").iter().filter_map(Value::as_str).collect();
    let config: Value = serde_json::from_str(meta["config"].as_str().expect("config")).expect("config JSON");
    // The model the run used: `-m` when given, else the configuration's `model`.
    let model = argv.windows(2).find(|w| w[0] == "-m").map(|w| w[1]).or(config["model"].as_str()).expect("a model");
    let (provider, model) = model.split_once('/').expect("<provider>/<model>");
    let ctx = RunContext {
        run_id: format!("run-{name}"),
        cwd: meta["cwd"].as_str().map(str::to_string),
        driver: "opencode".into(),
        detection: None,
        provider_id: Some(provider.into()),
        model: Some(model.into()),
        pricing: None,
    };
    let reason = match meta["killed_by_signal"].as_str() {
        Some("SIGTERM") => EndReason::Exited(ProcessExit::Signal(15)),
        Some("SIGINT") => EndReason::Exited(ProcessExit::Signal(2)),
        Some("SIGKILL") => EndReason::Exited(ProcessExit::Signal(9)),
        Some(other) => panic!("{name}: add {other} to the test's signal table"),
        None => EndReason::Exited(ProcessExit::Code(meta["exit_status"].as_i64().expect("exit_status") as i32)),
    };
    let stderr = String::from_utf8(read("stderr")).expect("UTF-8 stderr");
    let stderr_last = stderr.lines().rev().find(|l| !l.trim().is_empty()).map(str::to_string);
    Transcript { lines, ctx, reason, stderr_last }
}

/// Replay `name`: line `i` must give exactly `expected[i]` (absent: nothing), then `end`
/// must give `terminal`.
fn replay(name: &str, expected: Vec<(usize, Vec<Event>)>, terminal: Terminal) {
    let t = load(name);
    for (i, _) in &expected {
        assert!(*i < t.lines.len(), "{name}: line {i} expected, the transcript has {}", t.lines.len());
    }
    let mut m = Mapper::new(t.ctx);
    for (i, line) in t.lines.iter().enumerate() {
        let want = expected.iter().find(|(j, _)| *j == i).map(|(_, e)| e.clone()).unwrap_or_default();
        assert_eq!(m.map_line(line), want, "{name}: line {i}: {}", String::from_utf8_lossy(line));
    }
    assert_eq!(m.end(t.reason, t.stderr_last), terminal, "{name}: terminal");
}

fn started(session: &str) -> Event {
    Event::Started(Some(session.into()))
}

fn chat(summary: &str) -> Event {
    Event::Step(Step { kind: StepKind::Chat, summary: summary.into(), evidence_ref: None, confidence: None, subject: None })
}

fn edit(summary: &str, call: &str, subject: &str) -> Event {
    let subject = Some(MatchSubject { on: RuleOn::FileEdit, text: subject.into() });
    Event::Step(Step { kind: StepKind::FileEdit, summary: summary.into(), evidence_ref: Some(call.into()), confidence: None, subject })
}

/// A `tool_call` whose summary is its whole match text (under 200 characters, one line).
fn call(text: &str, call_id: &str) -> Event {
    long_call(text, call_id, text)
}

fn long_call(summary: &str, call_id: &str, subject: &str) -> Event {
    let subject = Some(MatchSubject { on: RuleOn::ToolCall, text: subject.into() });
    Event::Step(Step { kind: StepKind::ToolCall, summary: summary.into(), evidence_ref: Some(call_id.into()), confidence: None, subject })
}

/// The transcripts ran against the provider `fake` (model `fake/fake-coder`).
fn completed(outcome_kind: OutcomeKind, tokens_used: u64, cost_estimate_cents: u64) -> Terminal {
    Terminal::Completed(Completed {
        outcome_kind,
        tokens_used,
        provider: Provider::Other,
        provider_id: ProviderRef::Absent,
        observed_provider_id: ProviderRef::Id("fake".into()),
        source_sub_type: SourceSubType::UserManaged,
        source_driver: "opencode".into(),
        cost_estimate_cents,
        saved_estimate_cents: None,
    })
}

fn failed(reason: &str, recoverable: bool) -> Terminal {
    Terminal::Failed(Failed { reason: reason.into(), recoverable })
}

#[test]
fn every_transcript_is_replayed() {
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .expect("the opencode fixtures")
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.strip_suffix(".ndjson").map(str::to_string))
        .collect();
    names.sort();
    assert_eq!(names, TRANSCRIPTS);
}

#[test]
fn transcript_success_tools() {
    replay(
        "success-tools",
        vec![
            (0, vec![started("ses_dccea5bb4ffeQdBNI7t0KNjX57")]),
            (1, vec![Event::FirstResponse, chat("I'll create hello.txt first.")]),
            (2, vec![edit("write hello.txt", "call_t0_0", "hello.txt\nHello, world!\n")]),
            (5, vec![call("bash cat hello.txt", "call_t1_0")]),
            (8, vec![edit("edit hello.txt", "call_t2_0", "hello.txt\nHello, rig!")]),
            (11, vec![call("bash cat hello.txt && wc -c hello.txt", "call_t3_0")]),
            (14, vec![chat("Done. hello.txt now contains \"Hello, rig!\".")]),
        ],
        // 2160 + 2325 + 2440 + 2530 + 2620 tokens (the spec's 12,075); $0.006833 → 1 cent.
        completed(OutcomeKind::Shipped, 12_075, 1),
    );
}

#[test]
fn transcript_tool_errors() {
    replay(
        "tool-errors",
        vec![
            (0, vec![started("ses_dcce9ffb8ffeRo6tIBttwW7c6Y")]),
            (1, vec![Event::FirstResponse, chat("Let me look around first.")]),
            (2, vec![call("bash ls does-not-exist", "call_t0_0")]),
            // The edit failed (file not found): still its step.
            (5, vec![edit("edit missing.txt", "call_t1_0", "missing.txt\nbeta")]),
            (8, vec![call("bash echo partial output; echo oops >&2; exit 3", "call_t2_0")]),
            (11, vec![call("invalid no_such_tool", "call_t3_0")]),
            (14, vec![chat("Several steps failed: ls found nothing, missing.txt does not exist, and the script exited 3.")]),
        ],
        // 5 × 1050 tokens; 5 × $0.00175 = $0.00875 → 1 cent.
        completed(OutcomeKind::Shipped, 5_250, 1),
    );
}

#[test]
fn transcript_long_session() {
    const TODOS_1: &str = r#"todowrite {"todos":[{"id":"1","content":"Create calc.py","status":"in_progress","priority":"high"},{"id":"2","content":"Add and run a test","status":"pending","priority":"high"},{"id":"3","content":"Report","status":"pending","priority":"low"}]}"#;
    const TODOS_2: &str = r#"todowrite {"todos":[{"id":"1","content":"Create calc.py","status":"completed","priority":"high"},{"id":"2","content":"Add and run a test","status":"completed","priority":"high"},{"id":"3","content":"Report","status":"in_progress","priority":"low"}]}"#;
    replay(
        "long-session",
        vec![
            (0, vec![started("ses_dcce6e0eeffeqgZ1Zu2i0x8vb4")]),
            // `--thinking`: the reasoning is the first response, and no step.
            (1, vec![Event::FirstResponse]),
            (
                2,
                vec![long_call(
                    r#"todowrite {"todos":[{"id":"1","content":"Create calc.py","status":"in_progress","priority":"high"},{"id":"2","content":"Add and run a test","status":"pending","priority":"high"},{"id":"3","content":"R"#,
                    "call_t0_0",
                    TODOS_1,
                )],
            ),
            (3, vec![chat("Plan: scaffold calc.py, add a test, run it, then tidy up.")]),
            (4, vec![edit("write calc.py", "call_t0_1", "calc.py\ndef add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n")]),
            (
                7,
                vec![edit(
                    "write test_calc.py",
                    "call_t1_0",
                    "test_calc.py\nfrom calc import add, mul\n\nassert add(2, 3) == 5\nassert mul(2, 3) == 6\nprint('ok')\n",
                )],
            ),
            (10, vec![call("bash python3 test_calc.py", "call_t2_0")]),
            (13, vec![chat("Tests pass. Checking the files in parallel.")]),
            // Parallel calls of one step: one line, one step each.
            (14, vec![call("bash wc -l calc.py", "call_t3_0")]),
            (15, vec![call("bash ls -1", "call_t3_1")]),
            (18, vec![edit("edit calc.py", "call_t4_0", "calc.py\ndef mul(a, b):\n    \"\"\"Multiply two numbers.\"\"\"\n    return a * b")]),
            // `read` is not a file edit: its path stays as given.
            (21, vec![call("read /home/dev/rig/runs/opencode/long-session/work/calc.py", "call_t5_0")]),
            (24, vec![call(r#"rigtools_echo {"text":"hello from the rig"}"#, "call_t6_0")]),
            (27, vec![call(r#"rigtools_add {"a":2,"b":40}"#, "call_t7_0")]),
            // The MCP tool answered isError: still a call.
            (30, vec![call(r#"rigtools_fail {"reason":"demo failure"}"#, "call_t8_0")]),
            (
                33,
                vec![long_call(
                    r#"todowrite {"todos":[{"id":"1","content":"Create calc.py","status":"completed","priority":"high"},{"id":"2","content":"Add and run a test","status":"completed","priority":"high"},{"id":"3","content":"R"#,
                    "call_t9_0",
                    TODOS_2,
                )],
            ),
            (36, vec![call("bash python3 -c 'import calc; print(calc.mul.__doc__)'", "call_t10_0")]),
            (39, vec![call("bash python3 test_calc.py && git --version >/dev/null 2>&1; echo done", "call_t11_0")]),
            (
                43,
                vec![chat(
                    "Done. calc.py has add() and mul() (now documented), test_calc.py passes, and the MCP tools answered (echo, add=42; fail reported an error as expected).",
                )],
            ),
        ],
        // Σ total over 13 steps; Σ cost $0.02015 → 2 cents.
        completed(OutcomeKind::Shipped, 57_650, 2),
    );
}

#[test]
fn transcript_resume() {
    replay(
        "resume",
        vec![
            (0, vec![started("ses_dcce69e04ffee6BRENB4uIgOfQ")]),
            (1, vec![Event::FirstResponse, edit("write note.txt", "call_t0_0", "note.txt\nremember the milk\n")]),
            (4, vec![chat("Created note.txt.")]),
        ],
        // 2 × 1050 tokens; 2 × $0.00175 = 0.35 cents → 0.
        completed(OutcomeKind::Shipped, 2_100, 0),
    );
}

#[test]
fn transcript_permission_ask_rejected_exits_0_blocked() {
    replay(
        "permission-ask-rejected",
        vec![
            (0, vec![started("ses_dcce7df60ffeG43AjZQEqKLpC2")]),
            (1, vec![Event::FirstResponse, chat("I'll create hello.txt first.")]),
            // Refused, yet the attempt is the evidence.
            (2, vec![edit("write hello.txt", "call_t0_0", "hello.txt\nHello, world!\n")]),
        ],
        // The last step ended with "tool-calls", exit 0, a refusal: blocked. $0.003225 → 0 cents.
        completed(OutcomeKind::Blocked, 2_160, 0),
    );
}

#[test]
fn transcript_cancel_sigterm_during_tool() {
    // The running bash call never finished, so it never got a line, nor a step.
    replay(
        "cancel-sigterm-during-tool",
        vec![(0, vec![started("ses_dcce77dc7ffeXy8Ga22V7FncsR")]), (1, vec![Event::FirstResponse, chat("Running a long command.")])],
        failed("opencode killed by SIGTERM", true),
    );
}

#[test]
fn transcript_api_error_401() {
    // `sk-test` is followed by only four key characters: no credential to redact.
    replay(
        "api-error-401",
        vec![(0, vec![started("ses_dcce8a2bcffe8vIVu0a10mKs80")])],
        failed("Incorrect API key provided: sk-test.... (fake server)", false),
    );
}

#[test]
fn transcript_api_error_500() {
    replay(
        "api-error-500",
        vec![(0, vec![started("ses_dcce9cf5affeyO8P5bTa5pGwl7")])],
        failed("The server had an error while processing your request. Sorry about that!", true),
    );
}

#[test]
fn transcript_unknown_model() {
    // UnknownError: neither isRetryable nor statusCode.
    replay(
        "unknown-model",
        vec![(0, vec![started("ses_dcce80375ffeWynhS3X07Kqt8h")])],
        failed("Unexpected server error. Check server logs for details.", false),
    );
}

#[test]
fn the_unknown_model_run_is_attributed_to_the_provider_of_its_m_flag() {
    let t = load("unknown-model");
    assert_eq!(t.ctx.provider_id.as_deref(), Some("nosuch"));
    let mut m = Mapper::new(t.ctx);
    m.map_line(br#"{"type":"step_finish","sessionID":"s","part":{"reason":"stop","tokens":{"total":1},"cost":0}}"#);
    let Terminal::Completed(c) = m.end(EndReason::Exited(ProcessExit::Code(0)), None) else { panic!("completed") };
    assert_eq!((c.provider, c.observed_provider_id), (Provider::Other, ProviderRef::Id("nosuch".into())));
}

// Line-level behaviour.

fn mapper() -> Mapper {
    Mapper::new(RunContext::new("r", Some("/w".into())))
}

const STEP_START: &[u8] =
    br#"{"type":"step_start","timestamp":1,"sessionID":"ses_1","part":{"id":"p","messageID":"m","sessionID":"ses_1","type":"step-start"}}"#;

fn text_line(text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"type": "text", "sessionID": "ses_1", "part": {"type": "text", "text": text}})).unwrap()
}

fn finish_line(reason: &str, tokens: &str, cost: f64) -> Vec<u8> {
    format!(r#"{{"type":"step_finish","sessionID":"ses_1","part":{{"reason":"{reason}","type":"step-finish","tokens":{tokens},"cost":{cost}}}}}"#)
        .into_bytes()
}

#[test]
fn the_first_line_of_any_type_starts_the_run_once() {
    let mut m = mapper();
    assert_eq!(m.map_line(STEP_START), vec![started("ses_1")]);
    assert!(m.map_line(STEP_START).is_empty());
    let mut m = mapper();
    let error = br#"{"type":"error","sessionID":"ses_e","error":{"name":"UnknownError","data":{"message":"x"}}}"#;
    assert_eq!(m.map_line(error), vec![started("ses_e")]);
    let mut m = mapper();
    assert_eq!(m.map_line(br#"{"type":"done"}"#), vec![Event::Started(None)], "no session on the line: started without a handle");
    assert!(m.map_line(STEP_START).is_empty());
    let mut m = mapper();
    assert_eq!(m.map_line(&text_line("hi")), vec![started("ses_1"), Event::FirstResponse, chat("hi")]);
}

#[test]
fn the_first_response_comes_once_before_its_step() {
    let mut m = mapper();
    m.map_line(STEP_START);
    let tool = br#"{"type":"tool_use","sessionID":"ses_1","part":{"type":"tool","tool":"bash","callID":"c1","state":{"status":"completed","input":{"command":"ls"}}}}"#;
    assert_eq!(m.map_line(tool), vec![Event::FirstResponse, call("bash ls", "c1")]);
    assert_eq!(m.map_line(tool), vec![call("bash ls", "c1")]);
    assert_eq!(m.map_line(&text_line("ok")), vec![chat("ok")]);
    let mut m = mapper();
    m.map_line(STEP_START);
    assert_eq!(m.map_line(br#"{"type":"reasoning","part":{"type":"reasoning","text":"hm"}}"#), vec![Event::FirstResponse]);
    assert!(m.map_line(br#"{"type":"reasoning","part":{"type":"reasoning","text":"hm"}}"#).is_empty());
}

#[test]
fn blank_text_is_a_response_without_a_step() {
    let mut m = mapper();
    m.map_line(STEP_START);
    assert_eq!(m.map_line(&text_line(" \n\t ")), vec![Event::FirstResponse]);
    assert!(m.map_line(&text_line("")).is_empty());
    assert!(m.map_line(br#"{"type":"text","part":{"text":7}}"#).is_empty());
    assert!(m.map_line(br#"{"type":"text"}"#).is_empty());
}

#[test]
fn chat_summaries_are_one_line_of_at_most_200_characters() {
    let mut m = mapper();
    m.map_line(STEP_START);
    m.map_line(&text_line("x"));
    assert_eq!(m.map_line(&text_line("\n  Hello\r\nworld\u{2028}ok  ")), vec![chat("Hello world ok")]);
    let long = "é".repeat(150) + "\n" + &"z".repeat(100);
    assert_eq!(m.map_line(&text_line(&long)), vec![chat(&("é".repeat(150) + " " + &"z".repeat(49)))]);
}

#[test]
fn steps_start_and_finish_give_no_steps() {
    let mut m = mapper();
    m.map_line(STEP_START);
    assert!(m.map_line(STEP_START).is_empty());
    assert!(m.map_line(&finish_line("stop", r#"{"total":5}"#, 0.0)).is_empty());
    assert!(m.map_line(br#"{"type":"error","error":{"name":"APIError","data":{"message":"m"}}}"#).is_empty());
}

#[test]
fn exit_0_without_a_final_stop_fails_with_the_last_reason() {
    let mut m = mapper();
    m.map_line(STEP_START);
    m.map_line(&finish_line("stop", r#"{"total":5}"#, 0.0));
    m.map_line(&finish_line("length", r#"{"total":5}"#, 0.0));
    assert_eq!(
        m.end(EndReason::Exited(ProcessExit::Code(0)), None),
        failed("opencode stopped before the turn finished (last step: length)", false)
    );
    let mut m = mapper();
    m.map_line(STEP_START);
    assert_eq!(
        m.end(EndReason::Exited(ProcessExit::Code(0)), Some(String::new())),
        failed("opencode stopped before the turn finished (last step: none)", false)
    );
}

#[test]
fn permission_rejection_then_exit_0_is_blocked() {
    let mut m = mapper();
    m.map_line(STEP_START);
    let refused = br#"{"type":"tool_use","sessionID":"ses_1","part":{"type":"tool","tool":"bash","callID":"c9","state":{"status":"error","input":{"command":"rm -rf x","description":"d"},"error":"The user rejected permission to use this specific tool call."}}}"#;
    assert_eq!(m.map_line(refused), vec![Event::FirstResponse, call("bash rm -rf x", "c9")]);
    m.map_line(&finish_line("tool-calls", r#"{"input":100,"output":20,"reasoning":5,"cache":{"read":1000,"write":3}}"#, 0.004_999));
    let Terminal::Completed(c) =
        m.end(EndReason::Exited(ProcessExit::Code(0)), Some("! permission requested: bash; auto-rejecting".into()))
    else {
        panic!("completed")
    };
    // No `total`: the five-way sum; $0.004999 → 0.4999 cents → 0.
    assert_eq!((c.outcome_kind, c.tokens_used, c.cost_estimate_cents), (OutcomeKind::Blocked, 1_128, 0));
    // Replay passes no provider: explicitly unknown.
    assert_eq!((c.provider, c.observed_provider_id), (Provider::Other, ProviderRef::Unknown));
}

#[test]
fn tokens_and_cents_accumulate_over_steps() {
    let mut m = mapper();
    m.map_line(STEP_START);
    m.map_line(&finish_line("tool-calls", r#"{"total":1000,"input":1,"output":1,"reasoning":1,"cache":{"read":1,"write":1}}"#, 0.0025));
    m.map_line(&finish_line("tool-calls", r#"{"input":10,"output":20,"reasoning":30,"cache":{"read":40,"write":50}}"#, 0.0025));
    m.map_line(&finish_line("stop", r#"{"input":7}"#, 0.0));
    let Terminal::Completed(c) = m.end(EndReason::Exited(ProcessExit::Code(0)), None) else { panic!("completed") };
    // $0.005 is exactly half a cent: up.
    assert_eq!((c.outcome_kind, c.tokens_used, c.cost_estimate_cents), (OutcomeKind::Shipped, 1_157, 1));
}

#[test]
fn bad_lines_map_to_nothing() {
    let mut m = mapper();
    let huge = format!("{{\"x\":\"{}\"", "y".repeat(1 << 20));
    let lines: Vec<&[u8]> = vec![
        b"",
        b"   ",
        b"not json",
        b"{\"type\":\"text\",\"part\":{",
        b"\xff\xfe",
        b"{\"type\":\"text\",\"sessionID\":\"s\",\"part\":{\"text\":\"\xff\"}}",
        b"[1,2]",
        b"\"str\"",
        b"null",
        b"42",
        huge.as_bytes(),
    ];
    for line in &lines {
        assert!(m.map_line(line).is_empty(), "{:?}", String::from_utf8_lossy(&line[..line.len().min(60)]));
    }
    // Lines of the right shape with fields of the wrong types read as absent.
    assert_eq!(m.map_line(br#"{"type":7,"sessionID":["s"]}"#), vec![Event::Started(None)]);
    let odd: Vec<&[u8]> = vec![
        br#"{"type":"done"}"#,
        br#"{"type":"brand_new","part":{"tool":"bash"}}"#,
        br#"{"type":"step_finish","part":7}"#,
        br#"{"type":"step_finish"}"#,
        br#"{"type":"step_finish","part":{"tokens":"many","cost":"lots","reason":1}}"#,
        br#"{"type":"tool_use","part":7}"#,
        br#"{"type":"tool_use"}"#,
    ];
    for line in odd {
        let events = m.map_line(line);
        assert!(events.iter().all(|e| *e == Event::FirstResponse), "{}: {events:?}", String::from_utf8_lossy(line));
    }
    // The run still works afterwards, and the odd lines added nothing.
    assert_eq!(m.map_line(&text_line("still here")), vec![chat("still here")]);
    m.map_line(&finish_line("stop", r#"{"total":3}"#, 0.01));
    let Terminal::Completed(c) = m.end(EndReason::Exited(ProcessExit::Code(0)), None) else { panic!("completed") };
    assert_eq!((c.tokens_used, c.cost_estimate_cents), (3, 1));
}

#[test]
fn nothing_maps_after_the_end() {
    let mut m = mapper();
    m.map_line(STEP_START);
    assert_eq!(m.end(EndReason::Cancelled("stop now".into()), None), failed("cancelled: stop now", false));
    assert!(m.map_line(&text_line("late")).is_empty());
}
