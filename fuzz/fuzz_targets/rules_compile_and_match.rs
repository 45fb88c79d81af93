//! `orgx_matcher_skill_rules::Matcher`: rules compiled from arbitrary JavaScript-regex
//! patterns, then checked against a subject text.
//!
//! Input: `pattern\npattern\n…\0subject` (up to 8 patterns), or without a NUL byte
//! `pattern\nsubject`. Every pattern becomes two rules, one per `on` kind, each with its own
//! dedupe key. Oracle: the literal prefilter must never hide a match, so the deviations of a
//! check are exactly the rules of that kind whose regex (compiled again, on its own, with
//! `regress`) finds the subject; a second check of the same text fires nothing (dedupe).
#![no_main]

use libfuzzer_sys::fuzz_target;
use orgx_matcher_skill_rules::{Matcher, Rule, RuleOn};

const MAX_PATTERNS: usize = 8;

fuzz_target!(|data: &[u8]| {
    let (patterns, subject): (Vec<&[u8]>, &[u8]) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (data[..nul].split(|&b| b == b'\n').take(MAX_PATTERNS).collect(), &data[nul + 1..]),
        None => match data.iter().position(|&b| b == b'\n') {
            Some(nl) => (vec![&data[..nl]], &data[nl + 1..]),
            None => (vec![data], &[][..]),
        },
    };
    let patterns: Vec<String> = patterns.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect();
    let subject = String::from_utf8_lossy(subject);

    let mut rules = Vec::new();
    for (i, pattern) in patterns.iter().enumerate() {
        for (on, tag) in [(RuleOn::ToolCall, "t"), (RuleOn::FileEdit, "f")] {
            rules.push(Rule {
                skill_id: format!("s{i}{tag}"),
                pattern: pattern.clone(),
                on,
                dedupe_fingerprint: format!("fp{i}{tag}"),
                evidence_kind: "k".into(),
            });
        }
    }
    let (mut matcher, warnings) = Matcher::new("run", rules.clone());
    let mut disabled = vec![false; rules.len()];
    for w in &warnings {
        let i = w.index as usize;
        assert!(i < rules.len(), "warning for rule {i} of {}", rules.len());
        assert!(!disabled[i], "two warnings for rule {i}");
        disabled[i] = true;
    }
    // The oracle: each accepted pattern compiled on its own, matched without the prefilter.
    let mut expected: Vec<(RuleOn, String)> = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let own = regress::Regex::with_flags(&rule.pattern, "");
        if disabled[i] {
            continue;
        }
        let own = own.unwrap_or_else(|e| panic!("rule {i} accepted, but {:?} does not compile: {e}", rule.pattern));
        if own.find(&subject).is_some() {
            expected.push((rule.on, rule.skill_id.clone()));
        }
    }
    for on in [RuleOn::ToolCall, RuleOn::FileEdit] {
        let got: Vec<String> = matcher.check(on, &subject, "ev").into_iter().map(|d| d.skill_id).collect();
        let want: Vec<String> = expected.iter().filter(|(o, _)| *o == on).map(|(_, s)| s.clone()).collect();
        assert_eq!(got, want, "{on:?} deviations of {patterns:?} on {subject:?}");
        assert!(matcher.check(on, &subject, "ev").is_empty(), "a dedupe key fired twice");
    }
});
