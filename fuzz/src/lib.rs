//! Invariants shared by the mapper fuzz targets: what every run of a mapper must satisfy,
//! whatever the lines it is fed.

use orgx_peer_sdk::text;
use orgx_peer_sdk::types::{EndReason, Event, ProcessExit, RuleOn, Step, StepKind, Terminal};

/// Summaries: at most 200 characters, one line (`text::summary`).
pub const SUMMARY_MAX_CHARS: usize = 200;
/// `task.failed` reasons: at most 300 characters (`REASON_MAX_CHARS` of every mapper).
pub const REASON_MAX_CHARS: usize = 300;
/// `file_edit` match text: at most 64 KiB (`MATCH_TEXT_MAX_BYTES`).
pub const MATCH_TEXT_MAX_BYTES: usize = 65_536;

/// What a mapper promises about its terminal reasons beyond their length.
#[derive(Clone, Copy)]
pub struct Policy {
    /// Reasons are built with `text::reason` (or from fixed one-line words): one line, and
    /// already redacted.
    pub reasons_one_line_redacted: bool,
}

fn is_line_break(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}')
}

pub fn check_step(step: &Step) {
    let n = step.summary.chars().count();
    assert!(n <= SUMMARY_MAX_CHARS, "summary of {n} chars: {:?}", step.summary);
    assert!(!step.summary.contains(is_line_break), "summary with a line break: {:?}", step.summary);
    match (step.kind, &step.subject) {
        (StepKind::FileEdit, Some(s)) => {
            assert_eq!(s.on, RuleOn::FileEdit, "file_edit step with a {:?} subject", s.on);
            assert!(s.text.len() <= MATCH_TEXT_MAX_BYTES, "file_edit match text of {} bytes", s.text.len());
        }
        (StepKind::ToolCall, Some(s)) => assert_eq!(s.on, RuleOn::ToolCall, "tool_call step with a {:?} subject", s.on),
        (StepKind::Chat, Some(_)) => panic!("chat step with a match subject: {step:?}"),
        (StepKind::Chat, None) => assert!(!step.summary.is_empty(), "empty chat step"),
        _ => {}
    }
}

pub fn check_terminal(t: &Terminal, policy: Policy) {
    if let Terminal::Failed(f) = t {
        let n = f.reason.chars().count();
        assert!(n <= REASON_MAX_CHARS, "reason of {n} chars: {:?}", f.reason);
        if policy.reasons_one_line_redacted {
            assert!(!f.reason.contains(is_line_break), "reason with a line break: {:?}", f.reason);
            assert_eq!(text::redact_credentials(&f.reason), f.reason, "reason not redacted");
        }
    }
}

/// The run's ending, chosen from the input so that every `end` path is reached.
pub fn end_reason(data: &[u8]) -> (EndReason, Option<String>) {
    let tail = data.rsplit(|&b| b == b'\n').nth(1).map(|l| String::from_utf8_lossy(l).into_owned());
    match data.len() % 6 {
        0 => (EndReason::Exited(ProcessExit::Code(0)), None),
        1 => (EndReason::Exited(ProcessExit::Code(1)), tail),
        2 => (EndReason::Exited(ProcessExit::Code(2)), None),
        3 => (EndReason::Exited(ProcessExit::Signal(15)), None),
        4 => (EndReason::Cancelled("user".into()), None),
        _ => (EndReason::TimedOut(60), None),
    }
}

/// Per-run counters of the events that may occur at most once.
#[derive(Default)]
pub struct RunCheck {
    started: usize,
    first_response: usize,
    terminal: usize,
}

impl RunCheck {
    /// Check one `map_line` result; `policy` says what the mapper promises of its reasons.
    pub fn events(&mut self, events: &[Event], policy: Policy) {
        for e in events {
            assert_eq!(self.terminal, 0, "an event after the terminal: {e:?}");
            match e {
                Event::Started(_) => self.started += 1,
                Event::FirstResponse => self.first_response += 1,
                Event::Step(s) => check_step(s),
                Event::Terminal(t) => {
                    self.terminal += 1;
                    check_terminal(t, policy);
                }
                Event::Suspended(_) => {}
            }
        }
        assert!(self.started <= 1, "task.started {} times", self.started);
        assert!(self.first_response <= 1, "first_response {} times", self.first_response);
        assert!(self.terminal <= 1, "{} terminals", self.terminal);
    }
}

/// Lines of the input, as the host splits stdout (without the newline).
pub fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == b'\n')
}
