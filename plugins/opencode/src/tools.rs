//! What a `tool_use` part becomes: which step kind (one step per file for `apply_patch`), its
//! summary, and the text skill rules are matched against. Tool names and their "main
//! argument" come from the mapping contract; any tool not named there (`todowrite`, MCP tools
//! `<server>_<tool>`, tools newer than 1.18.33) is a plain `tool_call` with the compact JSON
//! of its input, so new CLI tools map without a release.

use serde_json::Value;

use orgx_peer_sdk::text::{cut_bytes, relative_to, summary};
use orgx_peer_sdk::types::{MatchSubject, RuleOn, Step, StepKind};

/// Match text of a `file_edit` is cut to this many bytes.
pub const MATCH_TEXT_MAX_BYTES: usize = 65_536;

/// The file headers of an `apply_patch` `patchText`.
const PATCH_HEADERS: [&str; 3] = ["*** Add File: ", "*** Update File: ", "*** Delete File: "];

/// The input key that holds a tool's main argument.
fn main_arg_key(tool: &str) -> Option<&'static str> {
    Some(match tool {
        "bash" => "command",
        "read" => "filePath",
        "glob" | "grep" => "pattern",
        "webfetch" => "url",
        "task" => "description",
        "invalid" => "tool",
        _ => return None,
    })
}

/// Compact JSON, keys in the order they arrived (the workspace enables `preserve_order`).
fn compact(input: &Value) -> String {
    serde_json::to_string(input).unwrap_or_default()
}

fn str_field<'a>(input: &'a Value, key: &str) -> Option<&'a str> {
    input.get(key).and_then(Value::as_str)
}

fn file_edit(tool: &str, path: &str, written: &str, evidence_ref: Option<String>) -> Step {
    let mut text = String::with_capacity(path.len() + 1 + written.len().min(MATCH_TEXT_MAX_BYTES));
    text.push_str(path);
    text.push('\n');
    text.push_str(written);
    Step {
        kind: StepKind::FileEdit,
        summary: summary(&format!("{tool} {path}")),
        evidence_ref,
        confidence: None,
        subject: Some(MatchSubject { on: RuleOn::FileEdit, text: cut_bytes(text, MATCH_TEXT_MAX_BYTES) }),
    }
}

/// One file of a patch: its header's path and the lines it adds.
#[derive(Debug, PartialEq, Eq)]
pub struct PatchFile {
    pub path: String,
    pub added: String,
}

/// The files of `patch_text` in header order. A section runs from its header to the next line
/// starting `*** ` (another header, `*** Move to:`, `*** End Patch`); only a header opens one.
pub fn patch_files(patch_text: &str, cwd: Option<&str>) -> Vec<PatchFile> {
    let mut files: Vec<PatchFile> = Vec::new();
    let mut open = false;
    let mut first_added = true;
    for line in patch_text.lines() {
        if line.starts_with("*** ") {
            open = false;
            if let Some(path) = PATCH_HEADERS.iter().find_map(|h| line.strip_prefix(h)) {
                files.push(PatchFile { path: patch_path(path.trim(), cwd), added: String::new() });
                open = true;
                first_added = true;
            }
        } else if let (true, Some(added), Some(file)) = (open, line.strip_prefix('+'), files.last_mut()) {
            if !first_added {
                file.added.push('\n');
            }
            file.added.push_str(added);
            first_added = false;
        }
    }
    files
}

/// A header's path: absolute paths relative to the run's directory when inside it, relative
/// ones as written but without a leading `./`.
fn patch_path(path: &str, cwd: Option<&str>) -> String {
    if path.starts_with('/') {
        return relative_to(path, cwd);
    }
    let mut rest = path;
    while let Some(r) = rest.strip_prefix("./") {
        rest = r.trim_start_matches('/');
    }
    rest.to_string()
}

/// Map one `tool_use` part to its steps: one for most tools, one per file for `apply_patch`
/// (none when its patch names no file). The status does not matter: a failed or refused call
/// is still the attempt, and the evidence. A part that names no tool is not a call at all.
pub fn tool_steps(part: &Value, cwd: Option<&str>) -> Vec<Step> {
    let Some(tool) = str_field(part, "tool") else { return Vec::new() };
    let evidence_ref = str_field(part, "callID").map(str::to_string);
    let input = part.get("state").and_then(|s| s.get("input")).unwrap_or(&Value::Null);
    match tool {
        "write" | "edit" => {
            let path = relative_to(str_field(input, "filePath").unwrap_or(""), cwd);
            let written = str_field(input, if tool == "write" { "content" } else { "newString" }).unwrap_or("");
            vec![file_edit(tool, &path, written, evidence_ref)]
        }
        // `metadata.files` is absent when the tool failed, so the patch text is the source.
        "apply_patch" => patch_files(str_field(input, "patchText").unwrap_or(""), cwd)
            .into_iter()
            .map(|f| file_edit(tool, &f.path, &f.added, evidence_ref.clone()))
            .collect(),
        "skill" => {
            let name = str_field(input, "name").map_or_else(|| compact(input), str::to_string);
            vec![Step {
                kind: StepKind::SkillFire,
                summary: summary(&format!("skill {name}")),
                evidence_ref,
                confidence: None,
                subject: None,
            }]
        }
        _ => {
            let arg = main_arg_key(tool).and_then(|k| str_field(input, k)).map_or_else(|| compact(input), str::to_string);
            let full = format!("{tool} {arg}");
            vec![Step {
                kind: StepKind::ToolCall,
                summary: summary(&full),
                evidence_ref,
                confidence: None,
                subject: Some(MatchSubject { on: RuleOn::ToolCall, text: full }),
            }]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn steps(tool: &str, status: &str, input: Value) -> Vec<Step> {
        let part = json!({"type": "tool", "tool": tool, "callID": "call_1", "state": {"status": status, "input": input}});
        tool_steps(&part, Some("/w"))
    }

    fn one(tool: &str, input: Value) -> Step {
        let mut s = steps(tool, "completed", input);
        assert_eq!(s.len(), 1, "{tool}");
        s.remove(0)
    }

    fn subject(s: &Step) -> &str {
        &s.subject.as_ref().expect("a subject").text
    }

    #[test]
    fn write_and_edit_are_file_edits_with_relative_paths_and_written_text() {
        let s = one("write", json!({"filePath": "/w/src/a.py", "content": "x = 1\n"}));
        assert_eq!((s.kind, s.summary.as_str(), s.evidence_ref.as_deref()), (StepKind::FileEdit, "write src/a.py", Some("call_1")));
        assert_eq!(s.subject.as_ref().map(|m| m.on), Some(RuleOn::FileEdit));
        assert_eq!(subject(&s), "src/a.py\nx = 1\n");
        let s = one("edit", json!({"filePath": "/w/a.py", "oldString": "old", "newString": "new"}));
        assert_eq!((s.summary.as_str(), subject(&s)), ("edit a.py", "a.py\nnew"));
        let s = one("edit", json!({"filePath": "/elsewhere/a.py", "newString": "n"}));
        assert_eq!((s.summary.as_str(), subject(&s)), ("edit /elsewhere/a.py", "/elsewhere/a.py\nn"));
        let s = one("write", json!({"filePath": "/w/x", "content": 7}));
        assert_eq!(subject(&s), "x\n");
    }

    #[test]
    fn relative_path_and_title_are_never_used() {
        let part = json!({"tool": "write", "callID": "c", "state": {"status": "completed", "input": {"filePath": "/w/a.txt", "content": ""},
            "title": "w/a.txt", "metadata": {"filepath": "/w/a.txt", "files": [{"relativePath": "w/a.txt"}]}}});
        assert_eq!(tool_steps(&part, Some("/w"))[0].summary, "write a.txt");
        let part = json!({"tool": "write", "callID": "c", "state": {"input": {"filePath": "/w/a.txt"}}});
        assert_eq!(tool_steps(&part, None)[0].summary, "write /w/a.txt", "no cwd: the path as given");
    }

    #[test]
    fn a_refused_or_failed_file_edit_still_gets_its_step() {
        let s = steps("write", "error", json!({"filePath": "/w/h.txt", "content": "hi"}));
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].summary.as_str(), subject(&s[0])), ("write h.txt", "h.txt\nhi"));
    }

    #[test]
    fn apply_patch_gives_one_step_per_file_header_in_order() {
        let patch = "*** Begin Patch\n\
                     *** Add File: /w/new.txt\n\
                     +first\n\
                     +second\n\
                     *** Update File: ./src/lib.rs\n\
                     @@ fn a()\n\
                     -old\n\
                     +new\n\
                     \x20context\n\
                     +++ plus kept\n\
                     *** Delete File: /other/gone.txt\n\
                     *** Update File: /w/moved.rs\n\
                     *** Move to: /w/renamed.rs\n\
                     +after move header\n\
                     *** Update File: rel/x.rs\n\
                     +\n\
                     +tail\n\
                     *** End Patch";
        let s = steps("apply_patch", "completed", json!({ "patchText": patch }));
        let got: Vec<(&str, &str, Option<&str>)> = s.iter().map(|s| (s.summary.as_str(), subject(s), s.evidence_ref.as_deref())).collect();
        assert_eq!(
            got,
            vec![
                ("apply_patch new.txt", "new.txt\nfirst\nsecond", Some("call_1")),
                ("apply_patch src/lib.rs", "src/lib.rs\nnew\n++ plus kept", Some("call_1")),
                ("apply_patch /other/gone.txt", "/other/gone.txt\n", Some("call_1")),
                ("apply_patch moved.rs", "moved.rs\n", Some("call_1")),
                ("apply_patch rel/x.rs", "rel/x.rs\n\ntail", Some("call_1")),
            ]
        );
        assert!(s.iter().all(|s| s.kind == StepKind::FileEdit));
    }

    #[test]
    fn apply_patch_reads_the_patch_even_when_the_tool_failed() {
        let s = steps("apply_patch", "error", json!({"patchText": "*** Begin Patch\r\n*** Add File: a.txt\r\n+x\r\n*** End Patch\r\n"}));
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].summary.as_str(), subject(&s[0])), ("apply_patch a.txt", "a.txt\nx"));
        assert!(steps("apply_patch", "error", json!({"patchText": "garbage"})).is_empty());
        assert!(steps("apply_patch", "error", json!({})).is_empty());
    }

    #[test]
    fn patch_paths() {
        let table = [
            ("*** Add File: ./a.txt", "a.txt"),
            ("*** Add File: .//a.txt", "a.txt"),
            ("*** Add File: ././a.txt", "a.txt"),
            ("*** Add File: ../a.txt", "../a.txt"),
            ("*** Add File: /w/d/a.txt", "d/a.txt"),
            ("*** Add File: /wx/a.txt", "/wx/a.txt"),
            ("*** Add File:   spaced.txt  ", "spaced.txt"),
        ];
        for (header, want) in table {
            assert_eq!(patch_files(header, Some("/w")), vec![PatchFile { path: want.into(), added: String::new() }], "{header}");
        }
    }

    #[test]
    fn file_edit_match_text_is_cut_at_64_kib_on_a_char_boundary() {
        let s = one("write", json!({"filePath": "/w/big", "content": "é".repeat(40_000)}));
        let text = subject(&s);
        // "big\n" is 4 bytes, then 2-byte characters: 65,532 bytes of them fit exactly.
        assert_eq!(text.len(), MATCH_TEXT_MAX_BYTES);
        let s = one("write", json!({"filePath": "/w/bigger", "content": "é".repeat(40_000)}));
        assert_eq!(subject(&s).len(), MATCH_TEXT_MAX_BYTES - 1, "\"bigger\\n\" is 7 bytes: the last é does not fit");
        assert!(subject(&s).starts_with("bigger\né"));
        let patch = format!("*** Add File: p\n+{}\n", "😀".repeat(20_000));
        let s = steps("apply_patch", "completed", json!({ "patchText": patch }));
        assert_eq!(subject(&s[0]).len(), 2 + 16_383 * 4, "64 KiB less the path, in whole 4-byte characters");
        let s = one("edit", json!({"filePath": "/w/s", "newString": "small"}));
        assert_eq!(subject(&s), "s\nsmall");
    }

    #[test]
    fn tool_calls_use_the_main_argument_or_compact_json() {
        let table = [
            ("bash", json!({"command": "ls -la", "description": "List"}), "bash ls -la"),
            ("read", json!({"filePath": "/w/a.py"}), "read /w/a.py"),
            ("glob", json!({"pattern": "**/*.rs", "path": "/w"}), "glob **/*.rs"),
            ("grep", json!({"pattern": "fn \\w+"}), "grep fn \\w+"),
            ("webfetch", json!({"url": "https://x.test", "format": "text"}), "webfetch https://x.test"),
            ("task", json!({"description": "explore", "prompt": "p"}), "task explore"),
            ("invalid", json!({"tool": "no_such_tool", "error": "e"}), "invalid no_such_tool"),
            ("todowrite", json!({"todos": [{"id": "1", "content": "a b"}]}), r#"todowrite {"todos":[{"id":"1","content":"a b"}]}"#),
            ("rigtools_add", json!({"b": 40, "a": 2}), r#"rigtools_add {"b":40,"a":2}"#),
            ("my_server_my_tool", json!({}), "my_server_my_tool {}"),
            ("bash", json!({"command": ["ls"]}), r#"bash {"command":["ls"]}"#),
            ("Bash", json!({"command": "ls"}), r#"Bash {"command":"ls"}"#),
            ("list", Value::Null, "list null"),
        ];
        for (tool, input, want) in table {
            let s = one(tool, input);
            assert_eq!(s.kind, StepKind::ToolCall, "{tool}");
            assert_eq!(s.summary, want, "{tool}");
            assert_eq!(s.subject, Some(MatchSubject { on: RuleOn::ToolCall, text: want.into() }));
            assert_eq!(s.evidence_ref.as_deref(), Some("call_1"));
        }
    }

    #[test]
    fn tool_call_match_text_is_not_shortened_but_the_summary_is() {
        let cmd = format!("echo {}\necho done", "x".repeat(300));
        let s = one("bash", json!({ "command": cmd }));
        assert_eq!(s.summary, format!("bash echo {}", "x".repeat(190)));
        assert_eq!(subject(&s), format!("bash {cmd}"));
        let s = one("read", json!({"filePath": "/w/in/cwd.py"}));
        assert_eq!(subject(&s), "read /w/in/cwd.py", "only file_edit paths are made relative");
    }

    #[test]
    fn skill_is_a_skill_fire_without_subject() {
        let s = one("skill", json!({"name": "code-review"}));
        assert_eq!((s.kind, s.summary.as_str(), s.evidence_ref.as_deref()), (StepKind::SkillFire, "skill code-review", Some("call_1")));
        assert!(s.subject.is_none());
        let s = one("skill", json!({"skill": "x", "args": 1}));
        assert_eq!(s.summary, r#"skill {"skill":"x","args":1}"#);
    }

    #[test]
    fn a_part_without_call_id_still_maps_one_without_tool_does_not() {
        let s = tool_steps(&json!({"tool": "list", "state": {"input": {"k": "v"}}}), None);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].summary.as_str(), s[0].evidence_ref.as_deref()), (r#"list {"k":"v"}"#, None));
        assert!(tool_steps(&json!({"callID": "c", "state": {"input": {"command": "ls"}}}), None).is_empty());
        assert!(tool_steps(&json!({"tool": 7, "callID": "c"}), None).is_empty());
        assert!(tool_steps(&json!(7), None).is_empty());
    }
}
