//! The WebAssembly face of the matcher: wit-bindgen glue. One instance serves one run; the
//! run's `Matcher` lives in a thread-local of the instance.

use std::cell::RefCell;

use crate::types as n;

wit_bindgen::generate!({ path: "../../wit", world: "matcher-component" });

use exports::orgx::peer::matcher::{Deviation, Guest, Rule, RuleWarning};
use orgx::peer::types::{MatchSubject, RuleOn, Severity};

thread_local! {
    static MATCHER: RefCell<Option<crate::Matcher>> = const { RefCell::new(None) };
}

fn on(o: RuleOn) -> n::RuleOn {
    match o {
        RuleOn::FileEdit => n::RuleOn::FileEdit,
        RuleOn::ToolCall => n::RuleOn::ToolCall,
    }
}

struct Component;

impl Guest for Component {
    fn begin(run_id: String, rules: Vec<Rule>) -> Vec<RuleWarning> {
        let rules = rules
            .into_iter()
            .map(|r| n::Rule { skill_id: r.skill_id, pattern: r.pattern, on: on(r.on), dedupe_fingerprint: r.dedupe_fingerprint, evidence_kind: r.evidence_kind })
            .collect();
        let (matcher, warnings) = crate::Matcher::new(&run_id, rules);
        MATCHER.with(|m| *m.borrow_mut() = Some(matcher));
        warnings.into_iter().map(|w| RuleWarning { index: w.index, message: w.message }).collect()
    }

    fn check(subject: MatchSubject, evidence_ref: String) -> Vec<Deviation> {
        MATCHER.with(|m| match m.borrow_mut().as_mut() {
            Some(matcher) => matcher
                .check(on(subject.on), &subject.text, &evidence_ref)
                .into_iter()
                .map(|d| Deviation {
                    skill_id: d.skill_id,
                    evidence_kind: d.evidence_kind,
                    evidence_ref: d.evidence_ref,
                    dedupe_key: d.dedupe_key,
                    severity: d.severity.map(|s| match s {
                        n::Severity::Info => Severity::Info,
                        n::Severity::Warn => Severity::Warn,
                        n::Severity::Error => Severity::Error,
                    }),
                })
                .collect(),
            None => Vec::new(),
        })
    }
}

export!(Component);
