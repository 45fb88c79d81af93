//! Line-level behaviour of the mapper: the run's state across lines (first sight, first
//! response, the terminal, the fallback reason) and lines that must map to nothing. Whole
//! transcripts are in `transcripts.rs`.

use super::*;

fn mapper() -> Mapper {
    Mapper::new(RunContext::new("r", Some("/w".into())))
}

fn feed(m: &mut Mapper, line: &str) -> Vec<Event> {
    m.map_line(line.as_bytes())
}

/// The summary and evidence_ref of every step in `events`, and whether a first response came.
fn steps(events: &[Event]) -> Vec<(String, Option<String>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Step(s) => Some((s.summary.clone(), s.evidence_ref.clone())),
            _ => None,
        })
        .collect()
}

fn step(summary: &str, id: &str) -> (String, Option<String>) {
    (summary.to_string(), Some(id.to_string()))
}

const STARTED: &str = r#"{"type":"thread.started","thread_id":"t-1"}"#;
const COMPLETED: &str = r#"{"type":"turn.completed","usage":{"input_tokens":10,"cached_input_tokens":4,"output_tokens":5}}"#;

fn cmd(phase: &str, id: &str, command: &str) -> String {
    let item = serde_json::json!({"id": id, "type": "command_execution", "command": command, "aggregated_output": "", "exit_code": null, "status": "in_progress"});
    serde_json::json!({"type": phase, "item": item}).to_string()
}

#[test]
fn thread_started_starts_once() {
    let mut m = mapper();
    assert_eq!(feed(&mut m, STARTED), vec![Event::Started(Some("t-1".into()))]);
    assert!(feed(&mut m, STARTED).is_empty());
    let mut m = mapper();
    assert_eq!(feed(&mut m, r#"{"type":"thread.started"}"#), vec![Event::Started(None)]);
    let mut m = mapper();
    assert_eq!(feed(&mut m, r#"{"type":"thread.started","thread_id":7}"#), vec![Event::Started(None)]);
}

#[test]
fn first_response_comes_once_before_the_step_of_its_line() {
    let mut m = mapper();
    let events = feed(&mut m, &cmd("item.started", "item_0", "/bin/bash -lc ls"));
    assert_eq!(events.len(), 2);
    assert_eq!(events[0], Event::FirstResponse);
    assert!(matches!(&events[1], Event::Step(s) if s.summary == "exec /bin/bash -lc ls"));
    let events = feed(&mut m, &cmd("item.started", "item_1", "/bin/bash -lc pwd"));
    assert_eq!(steps(&events), vec![step("exec /bin/bash -lc pwd", "item_1")]);
    assert!(!events.contains(&Event::FirstResponse));
}

#[test]
fn error_items_do_not_set_first_response_but_reasoning_does() {
    let mut m = mapper();
    let warning = r#"{"type":"item.completed","item":{"id":"item_0","type":"error","message":"Model metadata for `x` not found. Defaulting to fallback metadata"}}"#;
    assert!(feed(&mut m, warning).is_empty());
    assert!(feed(&mut m, r#"{"type":"error","message":"Reconnecting... 1/5 (x)"}"#).is_empty());
    assert!(feed(&mut m, r#"{"type":"turn.started"}"#).is_empty());
    let reasoning = r#"{"type":"item.completed","item":{"id":"item_1","type":"reasoning","text":"**Planning**"}}"#;
    assert_eq!(feed(&mut m, reasoning), vec![Event::FirstResponse]);
    let unknown = r#"{"type":"item.completed","item":{"id":"item_2","type":"todo_list","items":[]}}"#;
    assert!(feed(&mut m, unknown).is_empty());
}

#[test]
fn unknown_item_types_still_count_as_a_response() {
    let mut m = mapper();
    let unknown = r#"{"type":"item.started","item":{"id":"item_0","type":"collab_tool_call"}}"#;
    assert_eq!(feed(&mut m, unknown), vec![Event::FirstResponse]);
}

#[test]
fn a_tool_item_steps_at_first_sight_only() {
    let mut m = mapper();
    feed(&mut m, STARTED);
    assert_eq!(
        steps(&feed(&mut m, &cmd("item.started", "item_3", "/bin/bash -lc 'cat a'"))),
        vec![step("exec /bin/bash -lc 'cat a'", "item_3")]
    );
    assert!(feed(&mut m, &cmd("item.completed", "item_3", "/bin/bash -lc 'cat a'")).is_empty());
    assert!(feed(&mut m, &cmd("item.started", "item_3", "/bin/bash -lc 'other'")).is_empty(), "the id decides, not the content");
    // An item first seen at its completion steps there.
    assert_eq!(steps(&feed(&mut m, &cmd("item.completed", "item_4", "/bin/bash -lc b"))), vec![step("exec /bin/bash -lc b", "item_4")]);
}

#[test]
fn parallel_tool_items_step_in_start_order_and_completions_add_nothing() {
    let mut m = mapper();
    feed(&mut m, STARTED);
    let mut all = Vec::new();
    for line in [
        cmd("item.started", "item_6", "/bin/bash -lc 'wc -l calc.py'"),
        cmd("item.started", "item_7", "/bin/bash -lc 'ls -1'"),
        cmd("item.completed", "item_7", "/bin/bash -lc 'ls -1'"),
        cmd("item.completed", "item_6", "/bin/bash -lc 'wc -l calc.py'"),
    ] {
        all.push(steps(&feed(&mut m, &line)));
    }
    assert_eq!(
        all,
        vec![
            vec![step("exec /bin/bash -lc 'wc -l calc.py'", "item_6")],
            vec![step("exec /bin/bash -lc 'ls -1'", "item_7")],
            vec![],
            vec![]
        ]
    );
}

#[test]
fn file_changes_and_mcp_calls_dedupe_by_id_too() {
    let mut m = mapper();
    let fc = |phase: &str| {
        format!(
            r#"{{"type":"{phase}","item":{{"id":"item_2","type":"file_change","changes":[{{"path":"/w/a.py","kind":"add"}},{{"path":"/w/b.py","kind":"update"}}],"status":"in_progress"}}}}"#
        )
    };
    assert_eq!(steps(&feed(&mut m, &fc("item.started"))), vec![step("add a.py", "item_2"), step("update b.py", "item_2")]);
    assert!(feed(&mut m, &fc("item.completed")).is_empty());
    let mcp = |phase: &str, status: &str| {
        format!(
            r#"{{"type":"{phase}","item":{{"id":"item_3","type":"mcp_tool_call","server":"rig","tool":"fail","arguments":{{"reason":"demo"}},"result":null,"error":null,"status":"{status}"}}}}"#
        )
    };
    assert_eq!(steps(&feed(&mut m, &mcp("item.started", "in_progress"))), vec![step(r#"mcp__rig__fail {"reason":"demo"}"#, "item_3")]);
    assert!(feed(&mut m, &mcp("item.completed", "failed")).is_empty());
}

/// Line 26 and 27 of the long-session transcript, verbatim: the item has `"id"` twice.
const WS_STARTED: &str =
    r#"{"type":"item.started","item":{"id":"item_13","type":"web_search","id":"ws_t10_0","query":"","action":{"type":"other"}}}"#;
const WS_COMPLETED: &str = r#"{"type":"item.completed","item":{"id":"item_13","type":"web_search","id":"ws_t10_0","query":"python docstring conventions PEP 257","action":{"type":"search","query":"python docstring conventions PEP 257"}}}"#;

#[test]
fn web_search_waits_for_completion_and_takes_the_last_id() {
    let mut m = mapper();
    feed(&mut m, STARTED);
    assert_eq!(feed(&mut m, WS_STARTED), vec![Event::FirstResponse], "no step while the query is empty");
    let events = feed(&mut m, WS_COMPLETED);
    let want = Step {
        kind: StepKind::ToolCall,
        summary: "web_search python docstring conventions PEP 257".into(),
        evidence_ref: Some("ws_t10_0".into()),
        confidence: None,
        subject: Some(MatchSubject { on: RuleOn::ToolCall, text: "web_search python docstring conventions PEP 257".into() }),
    };
    assert_eq!(events, vec![Event::Step(want)]);
    assert!(feed(&mut m, WS_COMPLETED).is_empty(), "a repeated completion is the same item");
}

#[test]
fn duplicate_keys_parse_last_key_wins() {
    let value: serde_json::Value = serde_json::from_str(WS_COMPLETED).unwrap();
    assert_eq!(WS_COMPLETED.matches(r#""id":"#).count(), 2);
    assert_eq!(value["item"]["id"], "ws_t10_0");
    assert_eq!(value["item"].as_object().unwrap().keys().filter(|k| *k == "id").count(), 1);
}

#[test]
fn blank_agent_messages_are_not_chats_and_every_other_one_is() {
    let mut m = mapper();
    let msg = |id: &str, text: &str| {
        serde_json::json!({"type": "item.completed", "item": {"id": id, "type": "agent_message", "text": text}}).to_string()
    };
    assert_eq!(feed(&mut m, &msg("item_0", " \n ")), vec![Event::FirstResponse]);
    assert_eq!(steps(&feed(&mut m, &msg("item_1", "after a failed command"))), vec![("after a failed command".to_string(), None)]);
    assert_eq!(steps(&feed(&mut m, &msg("item_2", "again"))), vec![("again".to_string(), None)]);
    let started = r#"{"type":"item.started","item":{"id":"item_3","type":"agent_message","text":"par"}}"#;
    assert!(feed(&mut m, started).is_empty(), "a message is a chat once completed");
    assert_eq!(steps(&feed(&mut m, &msg("item_3", "partial no more"))), vec![("partial no more".to_string(), None)]);
}

#[test]
fn paths_outside_the_cwd_stay_absolute() {
    let mut m = Mapper::new(RunContext::new("r", Some("/home/dev/repo".into())));
    let line = r#"{"type":"item.started","item":{"id":"item_0","type":"file_change","changes":[{"path":"/home/dev/repo/src/a.rs","kind":"update"},{"path":"/home/dev/repo-other/b.rs","kind":"add"},{"path":"/tmp/c.rs","kind":"delete"}],"status":"in_progress"}}"#;
    let events = feed(&mut m, line);
    let got: Vec<(&str, &str)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Step(s) => Some((s.summary.as_str(), s.subject.as_ref().unwrap().text.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        got,
        [
            ("update src/a.rs", "src/a.rs"),
            ("add /home/dev/repo-other/b.rs", "/home/dev/repo-other/b.rs"),
            ("delete /tmp/c.rs", "/tmp/c.rs")
        ]
    );
}

#[test]
fn bad_lines_map_to_nothing_and_never_end_the_run() {
    let mut m = mapper();
    let huge = format!(r#"{{"type":"item.completed","item":{{"id":"item_9","type":"reasoning","text":"{}"}}"#, "y".repeat(10 << 20));
    let lines: Vec<&[u8]> = vec![
        b"",
        b"   ",
        b"not json",
        b"{\"type\":\"turn.completed\",\"usage\":{",
        b"\xff\xfe",
        b"{\"type\":\"thread.started\",\"thread_id\":\"\xff\"}",
        b"[1,2]",
        b"\"turn.completed\"",
        b"null",
        b"{\"type\":7}",
        b"{\"type\":null}",
        b"{\"type\":\"item.started\"}",
        b"{\"type\":\"item.started\",\"item\":7}",
        b"{\"type\":\"item.completed\",\"item\":[\"x\"]}",
        b"{\"type\":\"item.updated\",\"item\":{\"id\":\"item_0\",\"type\":\"command_execution\",\"command\":\"x\"}}",
        b"{\"type\":\"turn.started\"}",
        b"{\"type\":\"brand.new\"}",
        b"{\"kind\":\"turn.completed\"}",
        b"{\"type\":\"turn.completed\"} trailing",
        huge.as_bytes(),
    ];
    for line in lines {
        let events = m.map_line(line);
        assert!(events.is_empty(), "{:?} gave {events:?}", String::from_utf8_lossy(&line[..line.len().min(60)]));
    }
    assert_eq!(feed(&mut m, STARTED), vec![Event::Started(Some("t-1".into()))], "the run still works afterwards");
    assert!(matches!(feed(&mut m, COMPLETED).as_slice(), [Event::Terminal(Terminal::Completed(c))] if c.tokens_used == 15));
}

#[test]
fn tool_items_with_odd_fields_still_map() {
    let mut m = mapper();
    let line = r#"{"type":"item.started","item":{"id":"item_0","type":"command_execution","command":null}}"#;
    assert_eq!(steps(&feed(&mut m, line)), vec![step("exec ", "item_0")]);
    let line = r#"{"type":"item.started","item":{"type":"command_execution","command":"a"}}"#;
    assert_eq!(steps(&feed(&mut m, line)), vec![("exec a".to_string(), None)], "no id: no evidence_ref");
}

#[test]
fn lines_after_the_terminal_map_to_nothing() {
    for terminal in [COMPLETED, r#"{"type":"turn.failed","error":{"message":"boom"}}"#] {
        let mut m = mapper();
        feed(&mut m, STARTED);
        assert!(matches!(feed(&mut m, terminal).as_slice(), [Event::Terminal(_)]));
        for line in
            [STARTED, COMPLETED, WS_COMPLETED, &cmd("item.started", "item_5", "x"), r#"{"type":"turn.failed","error":{"message":"x"}}"#]
        {
            assert!(feed(&mut m, line).is_empty(), "{line}");
        }
    }
    let mut m = mapper();
    m.end(EndReason::Exited(ProcessExit::Code(0)), None);
    assert!(feed(&mut m, COMPLETED).is_empty());
}

#[test]
fn turn_failed_uses_its_own_message_over_the_error_lines() {
    let mut m = mapper();
    feed(&mut m, r#"{"type":"error","message":"Reconnecting... 5/5 (stream disconnected before completion)"}"#);
    let events = feed(&mut m, r#"{"type":"turn.failed","error":{"message":"unexpected status 401 Unauthorized: Bearer abc"}}"#);
    assert_eq!(
        events,
        vec![Event::Terminal(Terminal::Failed(Failed {
            reason: "unexpected status 401 Unauthorized: Bearer [redacted]".into(),
            recoverable: false
        }))]
    );
}

#[test]
fn the_last_error_line_is_the_reason_of_a_non_zero_exit() {
    let mut m = mapper();
    feed(&mut m, STARTED);
    feed(&mut m, r#"{"type":"error","message":"Reconnecting... 1/5 (first)"}"#);
    feed(&mut m, r#"{"type":"error","message":"unexpected status 503 Service Unavailable, url: http://x, sk-abcdefghijk"}"#);
    feed(&mut m, r#"{"type":"error","message":"  "}"#);
    feed(&mut m, r#"{"type":"item.completed","item":{"id":"item_0","type":"error","message":"an item warning is not an error line"}}"#);
    let end = m.end(EndReason::Exited(ProcessExit::Code(1)), Some("stderr tail".into()));
    // Not recoverable: rule 7 decides a non-zero exit, whatever the message says.
    assert_eq!(
        end,
        Terminal::Failed(Failed {
            reason: "unexpected status 503 Service Unavailable, url: http://x, sk-[redacted]".into(),
            recoverable: false
        })
    );
    let mut m = mapper();
    assert_eq!(
        m.end(EndReason::Exited(ProcessExit::Code(1)), Some("failed to record rollout items: x".into())),
        Terminal::Failed(Failed { reason: "failed to record rollout items: x".into(), recoverable: false })
    );
}

#[test]
fn end_after_a_signal_or_host_action() {
    let table = [
        (EndReason::Exited(ProcessExit::Signal(9)), "codex killed by SIGKILL", true),
        (EndReason::Exited(ProcessExit::Signal(11)), "codex killed by SIGSEGV", true),
        (EndReason::Cancelled("stop".into()), "cancelled: stop", false),
        (EndReason::TimedOut(30), "timed out after 30 s", true),
        (EndReason::Exited(ProcessExit::Code(0)), "codex exited without a turn result", false),
        (EndReason::Exited(ProcessExit::Code(1)), "only for non-zero exits", false),
    ];
    for (reason, want, recoverable) in table {
        let mut m = mapper();
        feed(&mut m, r#"{"type":"error","message":"only for non-zero exits"}"#);
        assert_eq!(m.end(reason.clone(), None), Terminal::Failed(Failed { reason: want.into(), recoverable }), "{reason:?}");
    }
    let mut m = mapper();
    assert_eq!(
        m.end(EndReason::Exited(ProcessExit::Code(1)), None),
        Terminal::Failed(Failed { reason: "codex exited 1".into(), recoverable: false })
    );
}
