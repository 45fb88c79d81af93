//! What an `item` becomes: when its step is due, which step kind, its summary, its
//! `evidence_ref`, and the text skill rules are matched against. Item types the contract does
//! not name (and `reasoning`, `error`) map to nothing, so new CLI items never break a run.

use serde_json::Value;

use orgx_peer_sdk::text::{one_line, relative_to, summary};
use orgx_peer_sdk::types::{MatchSubject, RuleOn, Step, StepKind};

/// Which line of an item produces its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// The first line that shows the item's id (normally `item.started`): a run cancelled in
    /// the middle of a tool still shows the attempt.
    FirstSight,
    /// `item.completed`: `web_search` starts with an empty query, and `agent_message` is whole
    /// only when completed.
    AtCompletion,
    Never,
}

pub fn timing(kind: &str) -> Timing {
    match kind {
        "command_execution" | "file_change" | "mcp_tool_call" => Timing::FirstSight,
        "web_search" | "agent_message" => Timing::AtCompletion,
        _ => Timing::Never,
    }
}

fn str_field<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A `tool_call` whose match text is the summary before shortening.
fn tool_call(full: String, id: Option<&str>) -> Step {
    Step {
        kind: StepKind::ToolCall,
        summary: summary(&full),
        evidence_ref: id.map(str::to_string),
        confidence: None,
        subject: Some(MatchSubject { on: RuleOn::ToolCall, text: full }),
    }
}

/// The steps of one item (`id` read last-key-wins, as the line was parsed).
pub fn steps(kind: &str, id: Option<&str>, item: &Value, cwd: Option<&str>) -> Vec<Step> {
    match kind {
        "agent_message" => {
            let text = summary(one_line(str_field(item, "text")).trim());
            if text.is_empty() {
                return Vec::new();
            }
            vec![Step { kind: StepKind::Chat, summary: text, evidence_ref: None, confidence: None, subject: None }]
        }
        "command_execution" => vec![tool_call(format!("exec {}", str_field(item, "command")), id)],
        "file_change" => {
            let Some(changes) = item.get("changes").and_then(Value::as_array) else { return Vec::new() };
            changes
                .iter()
                .map(|change| {
                    let path = relative_to(str_field(change, "path"), cwd);
                    Step {
                        kind: StepKind::FileEdit,
                        summary: summary(&format!("{} {path}", str_field(change, "kind"))),
                        evidence_ref: id.map(str::to_string),
                        confidence: None,
                        // Codex prints no content, so the path alone is the match text.
                        subject: Some(MatchSubject { on: RuleOn::FileEdit, text: path }),
                    }
                })
                .collect()
        }
        "mcp_tool_call" => {
            // The same name Claude Code gives MCP tools, so one rule covers both CLIs.
            let name = format!("mcp__{}__{}", str_field(item, "server"), str_field(item, "tool"));
            let arguments = serde_json::to_string(item.get("arguments").unwrap_or(&Value::Null)).unwrap_or_default();
            vec![tool_call(format!("{name} {arguments}"), id)]
        }
        "web_search" => {
            let query = match str_field(item, "query") {
                "" => item.get("action").map(|a| str_field(a, "query")).unwrap_or(""),
                q => q,
            };
            vec![tool_call(format!("web_search {query}"), id)]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(kind: &str, item: Value, cwd: Option<&str>) -> Step {
        let mut steps = steps(kind, Some("item_1"), &item, cwd);
        assert_eq!(steps.len(), 1, "{item}");
        steps.remove(0)
    }

    #[test]
    fn timings() {
        let table = [
            ("command_execution", Timing::FirstSight),
            ("file_change", Timing::FirstSight),
            ("mcp_tool_call", Timing::FirstSight),
            ("web_search", Timing::AtCompletion),
            ("agent_message", Timing::AtCompletion),
            ("reasoning", Timing::Never),
            ("error", Timing::Never),
            ("todo_list", Timing::Never),
            ("", Timing::Never),
        ];
        for (kind, want) in table {
            assert_eq!(timing(kind), want, "{kind}");
        }
    }

    #[test]
    fn commands_keep_the_shell_wrapper_and_are_never_rewritten() {
        let command = r#"/bin/bash -lc "python3 -c 'import calc; print(calc.mul.__doc__)'""#;
        let s = one("command_execution", json!({"command": command}), Some("/home/dev/repo"));
        assert_eq!(s.kind, StepKind::ToolCall);
        assert_eq!(s.summary, format!("exec {command}"));
        assert_eq!(s.evidence_ref.as_deref(), Some("item_1"));
        assert_eq!(s.subject, Some(MatchSubject { on: RuleOn::ToolCall, text: format!("exec {command}") }));
        let s = one("command_execution", json!({"command": "/bin/bash -lc 'cat /home/dev/repo/a.txt'"}), Some("/home/dev/repo"));
        assert_eq!(s.summary, "exec /bin/bash -lc 'cat /home/dev/repo/a.txt'");
    }

    #[test]
    fn long_commands_shorten_the_summary_but_not_the_match_text() {
        let command = format!("/bin/bash -lc 'echo {}\necho done'", "é".repeat(300));
        let s = one("command_execution", json!({ "command": command }), None);
        assert_eq!(s.summary.chars().count(), 200);
        assert!(s.summary.starts_with("exec /bin/bash -lc 'echo éé"));
        assert!(!s.summary.contains('\n'));
        assert_eq!(s.subject.unwrap().text, format!("exec {command}"));
    }

    #[test]
    fn file_changes_give_one_edit_per_change_with_relative_paths() {
        let item = json!({"changes": [
            {"path": "/home/dev/repo/src/a.rs", "kind": "update"},
            {"path": "/home/dev/repo/new.txt", "kind": "add"},
            {"path": "/home/dev/repository/x.rs", "kind": "delete"},
            {"path": "/etc/hosts", "kind": "update"},
        ]});
        let got: Vec<(StepKind, String, Option<String>, String)> = steps("file_change", Some("item_4"), &item, Some("/home/dev/repo"))
            .into_iter()
            .map(|s| (s.kind, s.summary, s.evidence_ref, s.subject.map(|m| m.text).unwrap()))
            .collect();
        let want = [
            ("update src/a.rs", "src/a.rs"),
            ("add new.txt", "new.txt"),
            ("delete /home/dev/repository/x.rs", "/home/dev/repository/x.rs"),
            ("update /etc/hosts", "/etc/hosts"),
        ]
        .map(|(summary, path)| (StepKind::FileEdit, summary.to_string(), Some("item_4".to_string()), path.to_string()));
        assert_eq!(got, want);
    }

    #[test]
    fn file_change_paths_stay_absolute_without_a_cwd() {
        let s = one("file_change", json!({"changes": [{"path": "/w/hello.txt", "kind": "add"}]}), None);
        assert_eq!(s.summary, "add /w/hello.txt");
        assert_eq!(s.subject, Some(MatchSubject { on: RuleOn::FileEdit, text: "/w/hello.txt".into() }));
    }

    #[test]
    fn file_change_without_changes_is_nothing() {
        assert!(steps("file_change", Some("item_1"), &json!({"changes": []}), None).is_empty());
        assert!(steps("file_change", Some("item_1"), &json!({"changes": "x"}), None).is_empty());
        assert!(steps("file_change", Some("item_1"), &json!({}), None).is_empty());
    }

    #[test]
    fn mcp_calls_use_compact_json_in_arrival_order() {
        let line = r#"{"server":"rig","tool":"t","arguments":{"z": 1, "a": {"y": [1, 2], "b": "x y"}}}"#;
        let item: Value = serde_json::from_str(line).unwrap();
        let s = one("mcp_tool_call", item, None);
        let want = r#"mcp__rig__t {"z":1,"a":{"y":[1,2],"b":"x y"}}"#;
        assert_eq!((s.kind, s.summary.as_str()), (StepKind::ToolCall, want));
        assert_eq!(s.subject.unwrap().text, want);
        let s = one("mcp_tool_call", json!({"server": "s", "tool": "t", "arguments": {}}), None);
        assert_eq!(s.summary, "mcp__s__t {}");
    }

    #[test]
    fn web_search_uses_the_query_else_the_action_query() {
        let s = one("web_search", json!({"query": "pep 257", "action": {"type": "search", "query": "other"}}), None);
        assert_eq!(s.summary, "web_search pep 257");
        let s = one("web_search", json!({"query": "", "action": {"type": "search", "query": "from action"}}), None);
        assert_eq!(s.summary, "web_search from action");
        let s = one("web_search", json!({"action": {"type": "search", "query": "no query key"}}), None);
        assert_eq!(s.subject.unwrap().text, "web_search no query key");
    }

    #[test]
    fn agent_messages_are_one_line_chats_of_at_most_200_chars() {
        let s = one("agent_message", json!({"text": "\n Line one\r\nline two \u{2028} end "}), None);
        assert_eq!(
            s,
            Step { kind: StepKind::Chat, summary: "Line one line two   end".into(), evidence_ref: None, confidence: None, subject: None }
        );
        let s = one("agent_message", json!({"text": "漢".repeat(250)}), None);
        assert_eq!(s.summary.chars().count(), 200);
        assert!(steps("agent_message", Some("item_1"), &json!({"text": " \n\t "}), None).is_empty());
        assert!(steps("agent_message", Some("item_1"), &json!({}), None).is_empty());
    }

    #[test]
    fn other_items_map_to_nothing() {
        for kind in ["reasoning", "error", "todo_list", "collab_tool_call", ""] {
            assert!(steps(kind, Some("item_1"), &json!({"text": "x", "message": "y"}), None).is_empty(), "{kind}");
        }
    }
}
