//! A matcher that asks for more memory at start than the sandbox allows: 300 MiB of zeroed
//! statics make its initial linear memory larger than the 256 MiB limit. It compiles and
//! links, so only instantiation (the admission stage `instantiate`) can refuse it.

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "matcher-component" });

use exports::orgx::peer::matcher::{Deviation, Guest, Rule, RuleWarning};
use orgx::peer::types::MatchSubject;

static mut HOARD: [u8; 300 << 20] = [0; 300 << 20];

struct Greedy;

impl Guest for Greedy {
    fn begin(_run_id: String, _rules: Vec<Rule>) -> Vec<RuleWarning> {
        Vec::new()
    }

    fn check(subject: MatchSubject, _evidence_ref: String) -> Vec<Deviation> {
        // SAFETY: single-threaded guest; the write keeps the static from being optimized out.
        unsafe {
            let p = std::ptr::addr_of_mut!(HOARD) as *mut u8;
            std::ptr::write_volatile(p.add(subject.text.len() % (300 << 20)), 1);
        }
        Vec::new()
    }
}

export!(Greedy);
