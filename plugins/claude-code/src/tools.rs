//! What a `tool_use` block becomes: which step kind, its summary, and the text skill rules
//! are matched against. Tool names and their "main argument" come from the mapping contract;
//! any tool not named there is a plain `tool_call`, so new CLI tools map without a release.

use serde_json::{Map, Value};

use orgx_peer_sdk::text::{cut_bytes, relative_to, summary};
use orgx_peer_sdk::types::{MatchSubject, RuleOn, Step, StepKind};

/// Match text of a `file_edit` is cut to this many bytes.
pub const MATCH_TEXT_MAX_BYTES: usize = 65_536;

/// The input key that holds a tool's main argument.
fn main_arg_key(tool: &str) -> Option<&'static str> {
    Some(match tool {
        "Bash" => "command",
        "Grep" | "Glob" => "pattern",
        "Read" => "file_path",
        "WebFetch" => "url",
        "WebSearch" => "query",
        "Task" | "Agent" => "description",
        "Skill" => "skill",
        _ => return None,
    })
}

fn str_field<'a>(input: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    input.get(key).and_then(Value::as_str)
}

/// Compact JSON of `input`, keys in the order they arrived.
fn compact(input: &Value) -> String {
    serde_json::to_string(input).unwrap_or_default()
}

/// The text a file edit writes: Write content, Edit new_string, every MultiEdit new_string
/// (joined with newlines), NotebookEdit new_source.
fn written_text(tool: &str, input: &Map<String, Value>) -> String {
    match tool {
        "Write" => str_field(input, "content").unwrap_or_default().to_string(),
        "Edit" => str_field(input, "new_string").unwrap_or_default().to_string(),
        "NotebookEdit" => str_field(input, "new_source").unwrap_or_default().to_string(),
        "MultiEdit" => input
            .get("edits")
            .and_then(Value::as_array)
            .map(|edits| edits.iter().filter_map(|e| e.get("new_string").and_then(Value::as_str)).collect::<Vec<_>>().join("\n"))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// Map one `tool_use` block to its step.
pub fn tool_step(id: Option<&str>, name: &str, input: &Value, cwd: Option<&str>) -> Step {
    let empty = Map::new();
    let fields = input.as_object().unwrap_or(&empty);
    let evidence_ref = id.map(str::to_string);
    match name {
        "Write" | "Edit" | "MultiEdit" | "NotebookEdit" => {
            let key = if name == "NotebookEdit" { "notebook_path" } else { "file_path" };
            let path = relative_to(str_field(fields, key).unwrap_or_default(), cwd);
            let mut text = String::with_capacity(path.len() + 1);
            text.push_str(&path);
            text.push('\n');
            text.push_str(&written_text(name, fields));
            Step {
                kind: StepKind::FileEdit,
                summary: summary(&format!("{name} {path}")),
                evidence_ref,
                confidence: None,
                subject: Some(MatchSubject { on: RuleOn::FileEdit, text: cut_bytes(text, MATCH_TEXT_MAX_BYTES) }),
            }
        }
        _ => {
            let arg = main_arg_key(name).and_then(|k| str_field(fields, k));
            let arg = match arg {
                Some(a) => a.to_string(),
                None => compact(input),
            };
            let full = format!("{name} {arg}");
            if name == "Skill" {
                return Step { kind: StepKind::SkillFire, summary: summary(&full), evidence_ref, confidence: None, subject: None };
            }
            Step {
                kind: StepKind::ToolCall,
                summary: summary(&full),
                evidence_ref,
                confidence: None,
                subject: Some(MatchSubject { on: RuleOn::ToolCall, text: full }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(name: &str, input: Value) -> Step {
        tool_step(Some("toolu_1"), name, &input, Some("/w"))
    }

    #[test]
    fn file_edits_name_tool_and_relative_path_and_carry_written_text() {
        let s = step("Write", json!({"file_path": "/w/src/a.rs", "content": "fn main() {}"}));
        assert_eq!((s.kind, s.summary.as_str()), (StepKind::FileEdit, "Write src/a.rs"));
        assert_eq!(s.subject.unwrap().text, "src/a.rs\nfn main() {}");
        let s = step("MultiEdit", json!({"file_path": "/w/a", "edits": [{"new_string": "x"}, {"old_string": "q"}, {"new_string": "y"}]}));
        assert_eq!(s.subject.unwrap().text, "a\nx\ny");
        let s = step("NotebookEdit", json!({"notebook_path": "/w/n.ipynb", "new_source": "print(1)"}));
        assert_eq!(s.summary, "NotebookEdit n.ipynb");
        assert_eq!(s.subject.unwrap().text, "n.ipynb\nprint(1)");
        let s = step("Edit", json!({}));
        assert_eq!(s.summary, "Edit ");
        assert_eq!(s.subject.unwrap().text, "\n");
    }

    #[test]
    fn file_edit_match_text_is_cut_at_64_kib() {
        let s = step("Write", json!({"file_path": "/w/big", "content": "é".repeat(40_000)}));
        let text = s.subject.unwrap().text;
        assert!(text.len() <= MATCH_TEXT_MAX_BYTES && text.len() > MATCH_TEXT_MAX_BYTES - 2);
        assert!(text.starts_with("big\n"));
    }

    #[test]
    fn tool_calls_use_the_main_argument_or_compact_json() {
        let table = [
            ("Bash", json!({"command": "ls -la", "description": "x"}), "Bash ls -la"),
            ("Grep", json!({"pattern": "fn \\w+", "path": "/w"}), "Grep fn \\w+"),
            ("Glob", json!({"pattern": "**/*.rs"}), "Glob **/*.rs"),
            ("Read", json!({"file_path": "/w/a.rs"}), "Read /w/a.rs"),
            ("WebFetch", json!({"url": "https://x", "prompt": "p"}), "WebFetch https://x"),
            ("WebSearch", json!({"query": "q"}), "WebSearch q"),
            ("Task", json!({"description": "explore", "prompt": "p"}), "Task explore"),
            ("Agent", json!({"description": "plan"}), "Agent plan"),
            (
                "ToolSearch",
                json!({"query": "select:NotebookEdit", "max_results": 1}),
                r#"ToolSearch {"query":"select:NotebookEdit","max_results":1}"#,
            ),
            ("TodoWrite", json!({"todos": [{"b": 1, "a": 2}]}), r#"TodoWrite {"todos":[{"b":1,"a":2}]}"#),
            ("Bash", json!({"command": 7}), r#"Bash {"command":7}"#),
            ("mcp__x__y", json!({}), "mcp__x__y {}"),
        ];
        for (name, input, want) in table {
            let s = step(name, input);
            assert_eq!(s.kind, StepKind::ToolCall, "{name}");
            assert_eq!(s.summary, want, "{name}");
            assert_eq!(s.subject.as_ref().unwrap().text, want);
            assert_eq!(s.evidence_ref.as_deref(), Some("toolu_1"));
        }
    }

    #[test]
    fn tool_call_match_text_is_not_shortened_but_the_summary_is() {
        let cmd = format!("echo {}\necho done", "x".repeat(300));
        let s = step("Bash", json!({ "command": cmd }));
        assert_eq!(s.summary.chars().count(), 200);
        assert!(!s.summary.contains('\n'));
        assert_eq!(s.subject.unwrap().text, format!("Bash {cmd}"));
    }

    #[test]
    fn skill_is_a_skill_fire_without_subject() {
        let s = step("Skill", json!({"skill": "code-review"}));
        assert_eq!((s.kind, s.summary.as_str()), (StepKind::SkillFire, "Skill code-review"));
        assert!(s.subject.is_none());
    }
}
