//! A matcher of WIT 0.2.0: `begin(run-id, rules)` per run. A rule fires when its pattern
//! occurs in the subject's text (a substring, not a regex), once per dedupe key per run, so
//! a test can tell exactly what the host's 0.2.0 conversions hand over and bring back.

wit_bindgen::generate!({ path: "../../../wit/v0.2.0", world: "matcher-component" });

use std::cell::RefCell;

use exports::orgx::peer::matcher::{Deviation, Guest, Rule, RuleWarning};
use orgx::peer::types::{MatchSubject, Severity};

thread_local! {
    static RUN: RefCell<(String, Vec<Rule>, Vec<String>)> = const { RefCell::new((String::new(), Vec::new(), Vec::new())) };
}

struct Legacy;

impl Guest for Legacy {
    fn begin(run_id: String, rules: Vec<Rule>) -> Vec<RuleWarning> {
        let warnings = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.pattern.is_empty())
            .map(|(i, _)| RuleWarning { index: i as u32, message: "empty pattern".into() })
            .collect();
        RUN.with(|r| *r.borrow_mut() = (run_id, rules, Vec::new()));
        warnings
    }

    fn check(subject: MatchSubject, evidence_ref: String) -> Vec<Deviation> {
        RUN.with(|r| {
            let (run_id, rules, fired) = &mut *r.borrow_mut();
            let mut out = Vec::new();
            for rule in rules.iter().filter(|r| r.on == subject.on && !r.pattern.is_empty() && subject.text.contains(&r.pattern)) {
                let key = format!("{}:{}:{run_id}", rule.skill_id, rule.dedupe_fingerprint);
                if !fired.contains(&key) {
                    fired.push(key.clone());
                    out.push(Deviation {
                        skill_id: rule.skill_id.clone(),
                        evidence_kind: rule.evidence_kind.clone(),
                        evidence_ref: evidence_ref.clone(),
                        dedupe_key: key,
                        severity: Some(Severity::Error),
                    });
                }
            }
            out
        })
    }
}

export!(Legacy);
