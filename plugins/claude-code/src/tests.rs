//! Line-level behaviour of the mapper (the transcript-level contract is tested end to end,
//! through the sandbox, in the workspace's `tests/replay.rs`).

use super::*;

fn mapper() -> Mapper {
    Mapper::new(RunContext::new("r", None))
}

const INIT: &str = r#"{"type":"system","subtype":"init","cwd":"/w","session_id":"s1","apiKeySource":"none","tools":[]}"#;

#[test]
fn init_starts_once_and_sets_subscription() {
    let mut m = mapper();
    assert_eq!(m.map_line(INIT.as_bytes()), vec![Event::Started(Some("s1".into()))]);
    assert!(m.map_line(INIT.as_bytes()).is_empty());
    let result = br#"{"total_cost_usd":0.1,"usage":{"input_tokens":1},"type":"result","subtype":"success","is_error":false}"#;
    match m.map_line(result).as_slice() {
        [Event::Terminal(Terminal::Completed(c))] => {
            assert_eq!(c.source_sub_type, SourceSubType::Subscription);
            assert_eq!((c.cost_estimate_cents, c.saved_estimate_cents), (0, Some(10)));
        }
        other => panic!("{other:?}"),
    }
    assert!(m.map_line(INIT.as_bytes()).is_empty(), "nothing after the terminal event");
}

#[test]
fn first_assistant_line_sets_first_response_before_its_step() {
    let mut m = mapper();
    m.map_line(INIT.as_bytes());
    let line = br#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t1","name":"Write","input":{"file_path":"/w/a.txt","content":"x"}}]}}"#;
    let events = m.map_line(line);
    assert_eq!(events[0], Event::FirstResponse);
    assert!(matches!(&events[1], Event::Step(s) if s.summary == "Write a.txt"));
    let again = m.map_line(line);
    assert_eq!(again.len(), 1, "first response only once");
}

#[test]
fn blank_text_and_thinking_map_to_nothing_but_count_as_a_response() {
    let mut m = mapper();
    let events = m.map_line(br#"{"type":"assistant","message":{"content":[{"type":"text","text":"  \n "}]}}"#);
    assert_eq!(events, vec![Event::FirstResponse]);
    assert!(m.map_line(br#"{"type":"assistant","message":{"content":[{"type":"thinking","thinking":"hm"}]}}"#).is_empty());
}

#[test]
fn chat_summary_is_one_trimmed_line() {
    let mut m = mapper();
    let events = m.map_line(
        "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"\\n  Hello\\r\\nworld \\u2028 ok  \"}]}}"
            .as_bytes(),
    );
    assert!(matches!(&events[1], Event::Step(s) if s.summary == "Hello world   ok" && s.kind == StepKind::Chat));
}

#[test]
fn bad_lines_map_to_nothing() {
    let mut m = mapper();
    let huge = format!("{{\"type\":\"user\",\"x\":\"{}\"}}", "y".repeat(10 << 20));
    let lines: Vec<&[u8]> = vec![
        b"",
        b"not json",
        b"{\"type\":\"assistant\",\"message\":{\"content\":[",
        b"\xff\xfe",
        b"[1,2]",
        b"\"str\"",
        b"{\"type\":7}",
        b"{\"type\":\"assistant\",\"message\":7}",
        b"{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"tool_use\",\"name\":5}]}}",
        b"{\"type\":\"stream_event\",\"event\":{}}",
        b"{\"type\":\"system\",\"subtype\":\"vcs_state_changed\"}",
        b"{\"type\":\"brand_new\"}",
        huge.as_bytes(),
    ];
    for line in lines {
        let events = m.map_line(line);
        assert!(
            events.iter().all(|e| matches!(e, Event::FirstResponse)),
            "{:?} gave {events:?}",
            String::from_utf8_lossy(&line[..line.len().min(60)])
        );
    }
    // The run still works afterwards.
    assert_eq!(m.map_line(INIT.as_bytes()), vec![Event::Started(Some("s1".into()))]);
}

#[test]
fn relative_paths_use_the_context_cwd_over_init() {
    let mut m = Mapper::new(RunContext::new("r", Some("/repo".into())));
    m.map_line(INIT.as_bytes());
    let events = m.map_line(br#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t","name":"Edit","input":{"file_path":"/repo/x.rs","new_string":"y"}}]}}"#);
    assert!(matches!(&events[1], Event::Step(s) if s.summary == "Edit x.rs"));
}

#[test]
fn subagent_messages_count_too() {
    let mut m = mapper();
    let events = m.map_line(br#"{"type":"assistant","parent_tool_use_id":"toolu_p","message":{"content":[{"type":"tool_use","id":"t2","name":"Bash","input":{"command":"ls"}}]}}"#);
    assert!(matches!(&events[1], Event::Step(s) if s.summary == "Bash ls" && s.evidence_ref.as_deref() == Some("t2")));
}

const ATTENTION: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/transcripts/attention/");

/// Every event of a real transcript, line by line.
fn replay(path: &str) -> Vec<Event> {
    let text = std::fs::read_to_string(format!("{ATTENTION}{path}")).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut m = mapper();
    text.lines().flat_map(|l| m.map_line(l.as_bytes())).collect()
}

fn last(events: &[Event]) -> &Event {
    events.last().expect("the transcript maps to events")
}

#[test]
fn a_deferred_question_suspends_and_never_completes() {
    // (transcript, session, tokens of this process, cents of this process)
    let table: &[(&str, &str, u64, u64)] = &[
        ("2.1.330/ask-defer.ndjson", "e001cdf9-10b2-4a00-b006-13711e656180", 1560, 1),
        ("2.1.197/ask-defer.ndjson", "", 0, 1),
        ("2.1.330/ask-parallel-sibling.ndjson", "", 0, 1),
        // A second deferral on resume: no API call, and 2.1.330's cumulative total is not
        // this process's money.
        ("2.1.330/ask-defer-again-empty-resume-prompt-resume.ndjson", "", 0, 0),
    ];
    for &(path, session, tokens, cents) in table {
        let events = replay(path);
        assert!(!events.iter().any(|e| matches!(e, Event::Terminal(_))), "{path}: a deferral is not a terminal");
        let Event::Suspended(s) = last(&events) else { panic!("{path}: {:?}", last(&events)) };
        assert_eq!((s.tool_name.as_str(), s.tool_use_id.is_empty()), ("AskUserQuestion", false), "{path}");
        let input: Value = serde_json::from_str(&s.tool_input).unwrap();
        assert!(input["questions"][0]["question"].is_string(), "{path}: {input}");
        if !session.is_empty() {
            assert_eq!(s.session_handle.as_deref(), Some(session), "{path}");
            assert_eq!(s.tokens_used, tokens, "{path}");
        }
        assert_eq!(s.cost_estimate_cents, cents, "{path}");
    }
}

#[test]
fn a_resumed_process_reports_its_own_money() {
    // 2.1.330's resumed `total_cost_usd` (0.023) covers the whole session; this process's is
    // 0.0158 (2 cents), so first + resumed = 1 + 2 cents, not 1 + 2.3. 2.1.197 reports the
    // resumed process alone (0.0205).
    let table: &[(&str, u64, u64)] = &[("2.1.330/ask-defer-resume.ndjson", 6560, 2), ("2.1.197/ask-defer-resume.ndjson", 0, 2)];
    for &(path, tokens, cents) in table {
        let events = replay(path);
        let Event::Terminal(Terminal::Completed(c)) = last(&events) else { panic!("{path}: {:?}", last(&events)) };
        if tokens > 0 {
            assert_eq!(c.tokens_used, tokens, "{path}");
        }
        assert_eq!(c.cost_estimate_cents, cents, "{path}");
        assert!(events.iter().any(|e| matches!(e, Event::Started(Some(_)))), "{path}: init still starts the mapping");
    }
}
