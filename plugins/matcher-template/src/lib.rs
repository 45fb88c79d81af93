//! A custom matcher in under 50 lines: copy this crate, change `check`, then build, test,
//! sign and drop it in (README, "Write your own matcher"). This one flags force-pushes and
//! edits to `.env` files, whatever rules the server serves.

wit_bindgen::generate!({ path: "../../wit", world: "matcher-component" });

use exports::orgx::peer::matcher::{Deviation, Guest, Rule, RuleWarning};
use orgx::peer::types::{MatchSubject, RuleOn, Severity};
use std::cell::RefCell;

thread_local! {
    // One instance serves one run, so per-run state is plain globals.
    static RUN_ID: RefCell<String> = const { RefCell::new(String::new()) };
}

struct Template;

impl Guest for Template {
    fn begin(run_id: String, _rules: Vec<Rule>) -> Vec<RuleWarning> {
        RUN_ID.with(|r| *r.borrow_mut() = run_id);
        Vec::new()
    }

    fn check(subject: MatchSubject, evidence_ref: String) -> Vec<Deviation> {
        // A file_edit subject is "<path>\n<new text>"; a tool_call subject is "<Tool> <argument>".
        let path = subject.text.split('\n').next().unwrap_or_default();
        let (skill, kind) = match subject.on {
            RuleOn::ToolCall if subject.text.starts_with("Bash ") && subject.text.contains("push --force") => ("no-force-push", "bash_command"),
            RuleOn::FileEdit if path.rsplit('/').next() == Some(".env") => ("no-dotenv-edits", "file_path"),
            _ => return Vec::new(),
        };
        let run_id = RUN_ID.with(|r| r.borrow().clone());
        vec![Deviation {
            skill_id: skill.into(),
            evidence_kind: kind.into(),
            evidence_ref,
            dedupe_key: format!("{skill}:{skill}:{run_id}"),
            severity: Some(Severity::Error),
        }]
    }
}

export!(Template);
