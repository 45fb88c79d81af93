//! `orgx-peer hook pre-tool-use`: the plugin's `PreToolUse` hook on `AskUserQuestion`, run by
//! the CLI with the hook input on stdin (claude-stream-json.md, "Resumable attention").
//!
//! - An answers file for the call (`plugin::answers_path`, under `$CLAUDE_PLUGIN_ROOT`) →
//!   `allow` with `updatedInput` = the tool input plus `answers`: the resumed process goes on.
//! - None yet → `defer`: the CLI parks the call and ends the process with
//!   `stop_reason: "tool_deferred"`; the daemon turns that into an OrgX question.
//! - Anything else (not JSON, another tool, no plugin root, an unreadable or malformed answers
//!   file) → print nothing and exit 0, so the CLI goes on with its own flow (failing open).
//!
//! It runs inside the CLI's process tree: no network, no key, nothing on stdout but the answer.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use serde_json::{json, Map, Value};

use super::plugin;

/// The most of stdin the hook reads; a longer input is not ours to judge (fail open).
pub const MAX_INPUT_BYTES: u64 = 4 << 20;
/// The largest answers file the hook reads.
pub const MAX_ANSWERS_BYTES: u64 = 1 << 20;

pub const ALLOW_REASON: &str = "answered in OrgX";
pub const DEFER_REASON: &str = "question sent to OrgX; the run resumes when a person answers";

/// The hook's answer to `stdin` (one hook input), or `None` to say nothing.
pub fn decide(stdin: &[u8], plugin_root: Option<&Path>) -> Option<String> {
    let input: Value = serde_json::from_slice(stdin).ok()?;
    if input.get("tool_name")?.as_str()? != "AskUserQuestion" {
        return None;
    }
    let tool_input = input.get("tool_input")?.as_object()?;
    let id = input.get("tool_use_id")?.as_str()?;
    let path = plugin::answers_path(plugin_root?, id)?;
    let answer = match read_bounded(&path) {
        Ok(bytes) => {
            let answers = parse_answers(&bytes)?;
            let mut updated = tool_input.clone();
            updated.insert("answers".into(), Value::Object(answers));
            json!({"hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": "allow",
                "permissionDecisionReason": ALLOW_REASON,
                "updatedInput": updated,
            }})
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => json!({"hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "defer",
            "permissionDecisionReason": DEFER_REASON,
        }}),
        Err(_) => return None,
    };
    Some(answer.to_string())
}

/// `{"answers":{question: label, …}}` with string labels only.
fn parse_answers(bytes: &[u8]) -> Option<Map<String, Value>> {
    let file: Value = serde_json::from_slice(bytes).ok()?;
    let answers = file.get("answers")?.as_object()?;
    answers.values().all(Value::is_string).then(|| answers.clone())
}

fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::fs::File::open(path)?.take(MAX_ANSWERS_BYTES + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_ANSWERS_BYTES {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "answers file too large"));
    }
    Ok(buf)
}

/// The subcommand: stdin (at most [`MAX_INPUT_BYTES`]) and `$CLAUDE_PLUGIN_ROOT` in, the
/// answer out. Always exits 0: exit 2 would make the CLI block the call.
pub fn main() -> ExitCode {
    let mut input = Vec::new();
    if std::io::stdin().lock().take(MAX_INPUT_BYTES + 1).read_to_end(&mut input).is_err() || input.len() as u64 > MAX_INPUT_BYTES {
        return ExitCode::SUCCESS;
    }
    let root = std::env::var_os("CLAUDE_PLUGIN_ROOT").filter(|r| !r.is_empty()).map(std::path::PathBuf::from);
    if let Some(answer) = decide(&input, root.as_deref()) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{answer}").and_then(|()| out.flush());
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the real CLI 2.1.330 wrote to the hook's stdin (the rig's `_rig` notes removed).
    fn real_stdin(name: &str) -> Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/transcripts/attention/2.1.330").join(name);
        let calls: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let mut call = calls[0].clone();
        call.as_object_mut().unwrap().remove("_rig");
        call
    }

    fn decision(answer: &Option<String>) -> Option<Value> {
        answer.as_ref().map(|a| serde_json::from_str(a).expect("the answer is JSON"))
    }

    fn formal() -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("Which greeting style should greeting.txt use?".into(), json!("Formal"));
        m
    }

    #[test]
    fn defers_until_answered_then_allows_with_the_answers() {
        for fixture in ["ask-defer.hook-stdin.json", "ask-defer-resume.hook-stdin.json"] {
            let stdin = real_stdin(fixture);
            let bytes = serde_json::to_vec(&stdin).unwrap();
            let tmp = tempfile::tempdir().unwrap();
            let root = tmp.path();

            let deferred = decision(&decide(&bytes, Some(root))).expect("an answer");
            assert_eq!(
                deferred,
                json!({"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "defer", "permissionDecisionReason": DEFER_REASON}}),
                "{fixture}"
            );

            plugin::write_answers(root, "toolu_attn_ask_0001", &formal()).unwrap();
            let allowed = decision(&decide(&bytes, Some(root))).expect("an answer");
            let mut updated = stdin["tool_input"].clone();
            updated["answers"] = json!({"Which greeting style should greeting.txt use?": "Formal"});
            assert_eq!(
                allowed,
                json!({"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "allow", "permissionDecisionReason": ALLOW_REASON, "updatedInput": updated}}),
                "{fixture}"
            );
            // The original input comes first, unchanged, as the rig's answer had it.
            let keys: Vec<&String> = allowed["hookSpecificOutput"]["updatedInput"].as_object().unwrap().keys().collect();
            assert_eq!(keys, ["questions", "answers"]);
        }
    }

    #[test]
    fn fails_open_on_anything_unexpected() {
        let good = real_stdin("ask-defer.hook-stdin.json");
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let with = |f: &dyn Fn(&mut Value)| {
            let mut v = good.clone();
            f(&mut v);
            serde_json::to_vec(&v).unwrap()
        };
        let cases: Vec<(&str, Vec<u8>, Option<&Path>)> = vec![
            ("no plugin root", serde_json::to_vec(&good).unwrap(), None),
            ("empty stdin", Vec::new(), Some(root)),
            ("not JSON", b"{\"tool_name\":".to_vec(), Some(root)),
            ("not an object", b"[1,2]".to_vec(), Some(root)),
            ("another tool", with(&|v| v["tool_name"] = json!("Bash")), Some(root)),
            ("tool name not a string", with(&|v| v["tool_name"] = json!(7)), Some(root)),
            ("no tool_name", with(&|v| drop(v.as_object_mut().unwrap().remove("tool_name"))), Some(root)),
            ("no tool_input", with(&|v| drop(v.as_object_mut().unwrap().remove("tool_input"))), Some(root)),
            ("tool_input not an object", with(&|v| v["tool_input"] = json!("questions")), Some(root)),
            ("no tool_use_id", with(&|v| drop(v.as_object_mut().unwrap().remove("tool_use_id"))), Some(root)),
            ("traversing tool_use_id", with(&|v| v["tool_use_id"] = json!("../../etc/passwd")), Some(root)),
            ("empty tool_use_id", with(&|v| v["tool_use_id"] = json!("")), Some(root)),
            ("numeric tool_use_id", with(&|v| v["tool_use_id"] = json!(1)), Some(root)),
        ];
        for (what, stdin, root) in cases {
            assert_eq!(decide(&stdin, root), None, "{what}");
        }
    }

    #[test]
    fn a_bad_answers_file_fails_open() {
        let bytes = serde_json::to_vec(&real_stdin("ask-defer.hook-stdin.json")).unwrap();
        let cases: &[(&str, &[u8])] = &[
            ("empty", b""),
            ("not JSON", b"{\"answers\":"),
            ("no answers", b"{}"),
            ("answers not an object", b"{\"answers\":[\"Formal\"]}"),
            ("a label not a string", b"{\"answers\":{\"q\":1}}"),
        ];
        for (what, content) in cases {
            let tmp = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(tmp.path().join("answers")).unwrap();
            std::fs::write(tmp.path().join("answers/toolu_attn_ask_0001.json"), content).unwrap();
            assert_eq!(decide(&bytes, Some(tmp.path())), None, "{what}");
        }
        // A directory where the file should be: unreadable.
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("answers/toolu_attn_ask_0001.json")).unwrap();
        assert_eq!(decide(&bytes, Some(tmp.path())), None, "a directory");
        // Too large.
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("answers")).unwrap();
        let big = format!("{{\"answers\":{{\"q\":\"{}\"}}}}", "x".repeat(MAX_ANSWERS_BYTES as usize));
        std::fs::write(tmp.path().join("answers/toolu_attn_ask_0001.json"), big).unwrap();
        assert_eq!(decide(&bytes, Some(tmp.path())), None, "too large");
    }

    #[test]
    fn an_empty_answer_map_is_still_an_answer() {
        let bytes = serde_json::to_vec(&real_stdin("ask-defer.hook-stdin.json")).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        plugin::write_answers(tmp.path(), "toolu_attn_ask_0001", &Map::new()).unwrap();
        let v = decision(&decide(&bytes, Some(tmp.path()))).unwrap();
        assert_eq!(v["hookSpecificOutput"]["permissionDecision"], "allow");
        assert_eq!(v["hookSpecificOutput"]["updatedInput"]["answers"], json!({}));
    }
}
