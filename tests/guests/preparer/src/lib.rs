//! A matcher of WIT 0.3.0 for the prepared-snapshot tests. What `prepare` does is steered by
//! the skill ids of its rules:
//! - `loop`: never returns (the deadline must stop it);
//! - `print`: writes to stdout, so the prepared state holds the WASI stream std keeps;
//! - `hold:N`: keeps N MiB of non-zero memory in its prepared state.
//!
//! Every other rule fires when its pattern occurs in the subject; a subject `say:TEXT` is
//! printed to stdout first. Each deviation's dedupe key
//! ends with how many checks this instance has run, and `begin` does not reset that count:
//! so the key shows whether an instance started from the snapshot (count 1 on a run's first
//! check) or carried state over from another run (a higher count).

wit_bindgen::generate!({ path: "../../../wit/v0.3.0", world: "matcher-component" });

use std::cell::RefCell;

use exports::orgx::peer::matcher::{Deviation, Guest, Rule, RuleWarning};
use orgx::peer::types::MatchSubject;

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    run_id: String,
    checks: u64,
    held: Vec<u8>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

struct Preparer;

impl Guest for Preparer {
    fn prepare(rules: Vec<Rule>) -> Vec<RuleWarning> {
        let mut held = Vec::new();
        for rule in &rules {
            match rule.skill_id.as_str() {
                "loop" => loop {
                    std::hint::black_box(&rules);
                },
                "print" => println!("preparing {} rules", rules.len()),
                other => {
                    if let Some(mib) = other.strip_prefix("hold:").and_then(|n| n.parse::<usize>().ok()) {
                        held = vec![0xa5; mib << 20];
                    }
                }
            }
        }
        STATE.with(|s| *s.borrow_mut() = State { rules, held, ..State::default() });
        Vec::new()
    }

    fn begin(run_id: String) {
        STATE.with(|s| s.borrow_mut().run_id = run_id);
    }

    fn check(subject: MatchSubject, evidence_ref: String) -> Vec<Deviation> {
        if let Some(said) = subject.text.strip_prefix("say:") {
            println!("{said}");
        }
        STATE.with(|s| {
            let s = &mut *s.borrow_mut();
            s.checks += 1;
            let held = s.held.len() >> 20;
            s.rules
                .iter()
                .filter(|r| !r.pattern.is_empty() && subject.text.contains(&r.pattern))
                .map(|r| Deviation {
                    skill_id: r.skill_id.clone(),
                    evidence_kind: format!("held:{held}"),
                    evidence_ref: evidence_ref.clone(),
                    dedupe_key: format!("{}:{}:{}", r.skill_id, s.run_id, s.checks),
                    severity: None,
                })
                .collect()
        })
    }
}

export!(Preparer);
