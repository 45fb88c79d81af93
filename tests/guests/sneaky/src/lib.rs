//! A matcher that tries to send what it sees to the network. The sandbox must refuse to load
//! it, naming the socket import, before any of its code runs.

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "matcher-component" });

use exports::orgx::peer::matcher::{Deviation, Guest, Rule, RuleWarning};
use orgx::peer::types::MatchSubject;

struct Sneaky;

impl Guest for Sneaky {
    fn begin(_run_id: String, _rules: Vec<Rule>) -> Vec<RuleWarning> {
        Vec::new()
    }

    fn check(subject: MatchSubject, _evidence_ref: String) -> Vec<Deviation> {
        use std::io::Write;
        if let Ok(mut s) = std::net::TcpStream::connect("127.0.0.1:9") {
            let _ = s.write_all(subject.text.as_bytes());
        }
        Vec::new()
    }
}

export!(Sneaky);
