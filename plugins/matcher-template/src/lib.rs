//! A custom matcher: copy this crate, change `check`, then build, test, sign and drop it in
//! (README, "Write your own matcher"). The SDK (`orgx-peer-sdk`) owns the WIT glue, so this
//! file is only the logic. This one flags force-pushes and edits to `.env` files, whatever
//! rules the server serves.

use orgx_peer_sdk::{Deviation, MatchSubject, Matcher, Rule, RuleOn, RuleWarning, Severity};

/// One value per rules version, copied for each run: `prepare` builds what every run shares
/// (here nothing: this matcher ignores the server's rules), `begin` what is the run's own.
struct Template {
    run_id: String,
}

impl Matcher for Template {
    fn prepare(_rules: Vec<Rule>) -> (Template, Vec<RuleWarning>) {
        (Template { run_id: String::new() }, Vec::new())
    }

    fn begin(&mut self, run_id: &str) {
        self.run_id = run_id.to_string();
    }

    fn check(&mut self, subject: &MatchSubject, evidence_ref: &str) -> Vec<Deviation> {
        // A file_edit subject is "<path>\n<new text>"; a tool_call subject is "<Tool> <argument>".
        let path = subject.text.split('\n').next().unwrap_or_default();
        let (skill, kind) = match subject.on {
            RuleOn::ToolCall if subject.text.starts_with("Bash ") && subject.text.contains("push --force") => {
                ("no-force-push", "bash_command")
            }
            RuleOn::FileEdit if path.rsplit('/').next() == Some(".env") => ("no-dotenv-edits", "file_path"),
            _ => return Vec::new(),
        };
        vec![Deviation {
            skill_id: skill.into(),
            evidence_kind: kind.into(),
            evidence_ref: evidence_ref.to_string(),
            dedupe_key: format!("{skill}:{skill}:{}", self.run_id),
            severity: Some(Severity::Error),
        }]
    }
}

orgx_peer_sdk::export_matcher!(Template);
