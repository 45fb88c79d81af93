//! A matcher that floods: a subject whose text starts `flood:N` gets N deviations, each
//! with its own dedupe key, as a hostile (validly signed) matcher could. The host must cap
//! one call's list and the whole run's messages, and fault the run naming the limit.

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "matcher-component" });

use exports::orgx::peer::matcher::{Deviation, Guest, Rule, RuleWarning};
use orgx::peer::types::MatchSubject;

struct Flooder;

impl Guest for Flooder {
    fn begin(_run_id: String, _rules: Vec<Rule>) -> Vec<RuleWarning> {
        Vec::new()
    }

    fn check(subject: MatchSubject, evidence_ref: String) -> Vec<Deviation> {
        let n: usize = subject.text.strip_prefix("flood:").and_then(|n| n.trim().parse().ok()).unwrap_or(0);
        (0..n)
            .map(|i| Deviation {
                skill_id: "flood".into(),
                evidence_kind: "tool_call".into(),
                evidence_ref: evidence_ref.clone(),
                dedupe_key: format!("{evidence_ref}:{i}"),
                severity: None,
            })
            .collect()
    }
}

export!(Flooder);
