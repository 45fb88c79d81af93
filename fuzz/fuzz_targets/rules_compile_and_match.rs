//! `orgx_matcher_skill_rules::Matcher`: rules compiled from arbitrary JavaScript-regex
//! patterns, then checked against a subject text.
//!
//! Input: `pattern\npattern\n…\0subject` (up to 8 patterns), or without a NUL byte
//! `pattern\nsubject`. Every pattern becomes two rules, one per `on` kind, each with its own
//! dedupe key. Oracle: a check fires exactly the rules of that kind whose pattern, compiled
//! again on its own with `regress` (the JavaScript engine) and run without the literal
//! prefilter, finds the subject; a second check of the same text fires nothing (dedupe); and
//! the same prepared matcher, begun again as another run, fires again, under that run's keys.
//!
//! regress backtracks without a step limit, so the oracle runs it only where its work is
//! bounded: `(n + 1)^(q + 1)` steps for a text of n characters and a pattern with q
//! quantifiers (counted by their characters `* + ? {`, an over-count) at most `2^20`. The
//! matcher runs most patterns on a linear-time engine, whatever their shape: on the whole
//! subject, and compared with regress on the prefix regress can take. Rules the matcher runs
//! on regress itself (backreferences, lookaround) are polynomial, not linear, in the text
//! (docs/reliability.md F5), so for them the subject is cut to that bound first. Patterns
//! with a quantified group that holds a quantifier are not compared at all: regress can loop
//! forever on them (F8).
#![no_main]

use libfuzzer_sys::fuzz_target;
use orgx_matcher_skill_rules::{EngineKind, Matcher, Rule, RuleOn};

const MAX_PATTERNS: usize = 8;
/// Steps of backtracking the oracle may spend per pattern (see the module note).
const ORACLE_STEPS: u64 = 1 << 20;
/// Never compare on more than this many characters: nested quantifiers make regress
/// exponential (`(a+)+` takes about 2^n steps), which the bound above does not see.
const ORACLE_MAX_CHARS: usize = 12;

/// Whether a quantified group holds a quantifier (read textually; escapes and classes
/// skipped, a `{` always counted). regress 0.10.5 loops forever on some of these, whatever
/// the text: nested loops whose inner body can match nothing in two ways, `((||a)+)+a`,
/// `((a?|a?)+)+c` (F8 in docs/reliability.md). The matcher never runs them on regress (they
/// go to the linear engine, or are refused), so only the oracle has to keep away from them.
fn nested_quantifiers(pattern: &str) -> bool {
    let c: Vec<char> = pattern.chars().collect();
    // For each open group: whether it holds a quantifier so far.
    let mut open = vec![false];
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '\\' => i += 1,
            '[' => {
                i += 1;
                while i < c.len() && c[i] != ']' {
                    i += if c[i] == '\\' { 2 } else { 1 };
                }
            }
            '(' => {
                open.push(false);
                // `(?:`, `(?=`, `(?<name>`…: the `?` is not a quantifier.
                if c.get(i + 1) == Some(&'?') {
                    i += 1;
                }
            }
            ')' => {
                let inner = open.pop().unwrap_or(false);
                if open.is_empty() {
                    open.push(false);
                }
                let quantified = matches!(c.get(i + 1), Some('*' | '+' | '?' | '{'));
                if inner && quantified {
                    return true;
                }
                *open.last_mut().expect("the outermost level") |= inner || quantified;
            }
            '*' | '+' | '?' | '{' => *open.last_mut().expect("the outermost level") = true,
            _ => {}
        }
        i += 1;
    }
    false
}

fn quantifiers(pattern: &str) -> u32 {
    pattern.chars().filter(|c| matches!(c, '*' | '+' | '?' | '{')).count() as u32
}

/// The longest text (at most `cap` characters) regress may search for `pattern` within
/// `ORACLE_STEPS`.
fn oracle_chars(pattern: &str, cap: usize) -> usize {
    let q = quantifiers(pattern).min(40);
    let within = |n: usize| (n as u64 + 1).checked_pow(q + 1).is_some_and(|s| s <= ORACLE_STEPS);
    let mut n = ((ORACLE_STEPS as f64).powf(1.0 / f64::from(q + 1)) as usize).min(cap);
    while n > 0 && !within(n) {
        n -= 1;
    }
    n
}

fn prefix(text: &str, chars: usize) -> &str {
    text.char_indices().nth(chars).map_or(text, |(i, _)| &text[..i])
}

/// Check `subject` once per kind with `matcher` (fresh, of `rules`); compare the rules for
/// which `compare(i)` with regress (`regexes[i]`), and check dedupe.
fn check(matcher: &mut Matcher, rules: &[Rule], regexes: &[Option<regress::Regex>], subject: &str, compare: impl Fn(usize) -> bool) {
    for on in [RuleOn::ToolCall, RuleOn::FileEdit] {
        let deviations = matcher.check(on, subject, "ev");
        let suffix = format!(":{}", matcher.run_id());
        assert!(deviations.iter().all(|d| d.dedupe_key.ends_with(&suffix)), "keys of another run: {deviations:?}");
        let got: Vec<String> = deviations.into_iter().map(|d| d.skill_id).collect();
        for (i, rule) in rules.iter().enumerate() {
            let Some(re) = regexes[i].as_ref().filter(|_| rule.on == on && compare(i)) else { continue };
            let fired = got.contains(&rule.skill_id);
            assert_eq!(fired, re.find(subject).is_some(), "{on:?}: rule {i} {:?} on {subject:?} (fired: {got:?})", rule.pattern);
        }
        assert!(matcher.check(on, subject, "ev").is_empty(), "a dedupe key fired twice");
    }
}

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
    // Each accepted pattern compiled on its own; a disabled rule has no engine.
    let regexes: Vec<Option<regress::Regex>> = rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            assert_eq!(matcher.engine(i).is_none(), disabled[i], "rule {i}: engine {:?}", matcher.engine(i));
            let own = regress::Regex::with_flags(&rule.pattern, "");
            let own =
                (!disabled[i]).then(|| own.unwrap_or_else(|e| panic!("rule {i} accepted, but {:?} does not compile: {e}", rule.pattern)));
            // Not run by the oracle where regress may loop forever (F8).
            own.filter(|_| !nested_quantifiers(&rule.pattern))
        })
        .collect();
    let engines: Vec<Option<EngineKind>> = (0..rules.len()).map(|i| matcher.engine(i)).collect();
    let backtracking = |i: usize| engines[i] == Some(EngineKind::Backtracking);

    // The whole subject, cut to what the backtracked rules can take; regress compared for
    // those, and for linear rules where it is short enough.
    let cut = (0..rules.len()).filter(|&i| backtracking(i)).map(|i| oracle_chars(&rules[i].pattern, usize::MAX >> 1)).min();
    let whole = cut.map_or(&*subject, |n| prefix(&subject, n));
    let whole_chars = whole.chars().count();
    check(&mut matcher, &rules, &regexes, whole, |i| backtracking(i) || whole_chars <= oracle_chars(&rules[i].pattern, ORACLE_MAX_CHARS));
    // The prefix regress can take for every rule: every accepted rule compared.
    let short = (0..rules.len()).filter(|&i| regexes[i].is_some()).map(|i| oracle_chars(&rules[i].pattern, ORACLE_MAX_CHARS)).min();
    if let Some(n) = short.filter(|&n| n < whole_chars) {
        // The same prepared matcher, started again as another run (what each run's snapshot
        // is): nothing has fired for it yet, whatever fired for the first.
        matcher.begin("run-2");
        check(&mut matcher, &rules, &regexes, prefix(whole, n), |_| true);
    }
});
