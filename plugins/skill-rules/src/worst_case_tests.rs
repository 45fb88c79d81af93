//! F5 (docs/reliability.md): no rule pattern makes a check take exponential time. The
//! classic catastrophic-backtracking patterns run on the linear engine and answer on long
//! texts that would keep a backtracker busy for longer than the universe has existed; the
//! same shapes with a backreference or lookaround, which only the backtracker can run, are
//! refused with a warning. No test here measures time: each asserts which engine runs a
//! rule and what it answers (the long texts would hang these tests before the fix).

use super::*;

fn rule(pattern: &str, fp: &str) -> Rule {
    Rule { skill_id: "s".into(), pattern: pattern.into(), on: RuleOn::ToolCall, dedupe_fingerprint: fp.into(), evidence_kind: "k".into() }
}

/// A fuzz input as `rules_compile_and_match` splits it: patterns, then the subject.
fn fuzz_input(data: &[u8]) -> (Vec<String>, String) {
    let (patterns, subject): (Vec<&[u8]>, &[u8]) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (data[..nul].split(|&b| b == b'\n').take(8).collect(), &data[nul + 1..]),
        None => match data.iter().position(|&b| b == b'\n') {
            Some(nl) => (vec![&data[..nl]], &data[nl + 1..]),
            None => (vec![data], &[][..]),
        },
    };
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (patterns.into_iter().map(lossy).collect(), lossy(subject))
}

const FOUND_BY_FUZZING: &[u8] =
    include_bytes!("../../../fuzz/regressions/rules_compile_and_match/timeout-1b607b210c5b65e094c9d09bcf951a16d22bd77c");
const NESTED_QUANTIFIER: &[u8] = include_bytes!("../../../fuzz/regressions/rules_compile_and_match/timeout-redos-nested-quantifier");

/// 64 KiB, the largest `file_edit` match text a mapper sends.
const LONG: usize = 65_536;

/// (pattern, subject, does it match). Each subject makes a backtracker try every way of
/// splitting a long run between the pattern's loops before it can answer.
fn adversarial() -> Vec<(String, String, bool)> {
    let a = |n: usize| "a".repeat(n);
    let mut table: Vec<(String, String, bool)> = vec![
        ("(a+)+$".into(), a(LONG) + "b", false),
        ("(a+)+$".into(), a(LONG), true),
        ("(a*)*b".into(), a(LONG), false),
        ("(a*)*b".into(), a(LONG) + "b", true),
        // Matches the empty string at the end of any text, but a backtracker first tries
        // 2ⁿ ways to match the run of `a` from its start.
        ("(a|a)*$".into(), a(LONG) + "b", true),
        ("(a|aa)+$".into(), a(LONG) + "b", false),
        ("(a|aa)+$".into(), a(LONG), true),
        ("(\\w+\\s?)+$".into(), "word ".repeat(LONG / 5) + "!", false),
        ("(\\w+\\s?)+$".into(), "word ".repeat(LONG / 5), true),
        // Polynomial for a backtracker: n²⁰.
        ("(.*a){20}".into(), a(19) + &"b".repeat(LONG), false),
        ("(.*a){20}".into(), "ba".repeat(20) + &"b".repeat(LONG), true),
    ];
    for (repro, last) in [(FOUND_BY_FUZZING, '\u{FFFD}'), (NESTED_QUANTIFIER, 'a')] {
        let (patterns, subject) = fuzz_input(repro);
        // `(x+)+$` matches exactly the texts that end with an x.
        let want = subject.ends_with(last);
        table.push((patterns[0].clone(), subject.repeat(500), want));
        table.push((patterns[0].clone(), subject, want));
    }
    table
}

#[test]
fn fuzz_reproducers_are_the_patterns_they_were() {
    let (patterns, subject) = fuzz_input(FOUND_BY_FUZZING);
    assert_eq!(patterns, ["(\u{FFFD}+)+$"]);
    assert!(subject.chars().filter(|&c| c == '\u{FFFD}').count() > 100, "{subject:?}");
    let (patterns, subject) = fuzz_input(NESTED_QUANTIFIER);
    assert_eq!((patterns[0].as_str(), subject), ("(a+)+$", "a".repeat(24) + "b"));
}

#[test]
fn catastrophic_patterns_run_linearly_on_long_texts() {
    for (pattern, subject, want) in adversarial() {
        // The engine alone, without the literal prefilter (which would skip `(a*)*b` on a
        // text without a `b`): it really runs on the whole text.
        let engine = engine::compile(&pattern).unwrap();
        assert_eq!((engine.kind(), engine.is_match(&pattern, &subject)), (EngineKind::Linear, want), "{pattern:?}");
        let (mut m, w) = Matcher::new("r", vec![rule(&pattern, "f")]);
        assert!(w.is_empty(), "{pattern:?}: {w:?}");
        assert_eq!(m.engine(0), Some(EngineKind::Linear), "{pattern:?}");
        let fired = !m.check(RuleOn::ToolCall, &subject, "e").is_empty();
        assert_eq!(fired, want, "{pattern:?} on {} chars", subject.chars().count());
    }
}

#[test]
fn catastrophic_patterns_agree_with_regress_where_it_can_answer() {
    // The same patterns on texts short enough for regress to backtrack through.
    let texts = ["", "a", "aaaaaaab", "aaaaaaaa", "b", "word word !", "word word ", "baaaaaaaaaaaa", "\u{FFFD}\u{FFFD}", "\u{FFFD}x"];
    for (pattern, _, _) in adversarial() {
        let re = regress::Regex::with_flags(&pattern, "").unwrap();
        for text in texts {
            let (mut m, _) = Matcher::new("r", vec![rule(&pattern, "f")]);
            let fired = !m.check(RuleOn::ToolCall, text, "e").is_empty();
            assert_eq!(fired, re.find(text).is_some(), "{pattern:?} on {text:?}");
        }
    }
}

#[test]
fn catastrophic_shapes_that_need_backtracking_are_refused() {
    let refused = [
        "(?=a)(a+)+$",
        "(a*)*b\\1",
        "(?<!x)(a|a)*$",
        "(a|aa)+$(?!b)",
        "(\\w+\\s?)+$(?<=x)",
        "(.*a){20}\\1",
        "(?=.)(\u{FFFD}+)+$",
        "(?=(a+)+$)x",
        "(?:(a)|a\\1)+",
        "(?:x|\\1(a))*",
        "(?:(a)|)+\\1",
        "(\\w+)(?:\\s*\\1)+",
    ];
    let mut rules: Vec<Rule> = refused.iter().enumerate().map(|(i, p)| rule(p, &format!("r{i}"))).collect();
    rules.push(rule("ok", "ok"));
    let (m, warnings) = Matcher::new("r", rules);
    let idx: Vec<u32> = warnings.iter().map(|w| w.index).collect();
    assert_eq!(idx, (0..refused.len() as u32).collect::<Vec<_>>(), "{warnings:?}");
    for w in &warnings {
        assert!(w.message.contains("is refused") && w.message.contains("exponential time"), "{}", w.message);
    }
    assert_eq!(m.engine(refused.len()), Some(EngineKind::Linear));
}

#[test]
fn backtracking_rules_without_ambiguity_are_kept() {
    // (pattern, a text it matches, one it does not)
    let table = [
        ("def (greet)\\(name\\)[\\s\\S]*\\b\\1\\(", "def greet(name):\n  return greet(", "def greet(name): pass"),
        ("(?<=# )success", "# success", "#success"),
        ("Hello, (?=\\{name\\})", "Hello, {name}", "Hello, name"),
        ("(\\w+) \\1", "echo echo", "echo ech0"),
        ("(?<n>qu+x)-\\k<n>", "quux-quux", "quux-qux"),
        ("(?:(a)|b\\1)+c", "abac", "bbbd"),
        ("(?<=x)(?:ab|b)+c", "xabbc", "xaac"),
        ("(?=x)(?:x[ab]{3}){2,}", "xaaaxbbb", "xaaaxbb"),
        ("^(?!.*\\.lock$).*\\.json$", "package.json", "package.json.lock"),
        ("(?=a)a{1000}", &"a".repeat(1000), &"a".repeat(999)),
    ];
    for (pattern, yes, no) in table {
        let (mut m, w) = Matcher::new("r", vec![rule(pattern, "f")]);
        assert!(w.is_empty(), "{pattern:?}: {w:?}");
        assert_eq!(m.engine(0), Some(EngineKind::Backtracking), "{pattern:?}");
        assert!(m.check(RuleOn::ToolCall, no, "e").is_empty(), "{pattern:?} on {no:?}");
        assert!(!m.check(RuleOn::ToolCall, yes, "e").is_empty(), "{pattern:?} on {yes:?}");
    }
}

#[test]
fn counts_too_large_to_unroll_are_refused_unless_they_need_backtracking() {
    let rules =
        vec![rule("x{200000}", "big"), rule("(?:a|b){1000}", "alt"), rule("(?=x)x{200000}", "look"), rule("(?=x)(?:ab?){1000}", "nested")];
    let (mut m, w) = Matcher::new("r", rules);
    assert_eq!(w.iter().map(|w| w.index).collect::<Vec<_>>(), [0, 3], "{w:?}");
    assert!(w[0].message.contains("too large for the linear-time engine"), "{}", w[0].message);
    assert_eq!(m.engine(1), Some(EngineKind::Linear));
    assert_eq!(m.engine(2), Some(EngineKind::Backtracking));
    assert_eq!(m.check(RuleOn::ToolCall, &"ab".repeat(500), "e").len(), 1);
}

/// Found by fuzzing (fuzz/regressions/rules_compile_and_match/crash-8c2ded10…, F7 in
/// docs/reliability.md): a count past usize::MAX (`\u{FFFD}{477…7,}?`, saturated like
/// regress does) overflowed the size estimate — a panic with overflow checks; without them
/// the estimate wrapped to "small", and the rule, accepted, fell back to regress at its first
/// use. Such counts are refused at `begin`.
#[test]
fn counts_past_usize_are_refused_at_begin() {
    let huge = "7".repeat(40);
    let patterns =
        [format!("x{{{huge},}}?"), format!("x{{{huge}}}"), format!("x{{0,{huge}}}y{{{huge},{huge}}}"), format!("(?:ab){{{huge},}}")];
    for pattern in &patterns {
        let (m, w) = Matcher::new("r", vec![rule(pattern, "f")]);
        assert_eq!(w.len(), 1, "{pattern:?}: {w:?}");
        assert!(w[0].message.contains("too large for the linear-time engine"), "{}", w[0].message);
        assert_eq!(m.engine(0), None);
    }
    // A huge maximum alone is "unbounded": `x{0,777…}` is `x*`.
    let (mut m, w) = Matcher::new("r", vec![rule(&format!("^ax{{0,{huge}}}$"), "f")]);
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(m.check(RuleOn::ToolCall, &format!("a{}", "x".repeat(1000)), "e").len(), 1);
}

/// Found by fuzzing (fuzz/regressions/rules_compile_and_match/timeout-2c7e2e6c…, F8 in
/// docs/reliability.md): regress 0.10.5 loops forever, even on an empty text, on nested loops
/// whose inner body can match nothing in two ways. The oracle hung; before F5's fix such a
/// rule would have hung every check. They run on the linear engine, and with a lookaround or
/// backreference they are refused (nested quantifiers), so regress never sees them.
#[test]
fn patterns_regress_loops_forever_on_run_linearly_or_are_refused() {
    // (pattern, text, fires)
    let table = [
        ("((||a)+)+a", "", false),
        ("((||a)+)+a", "xyz", false),
        ("((||a)+)+a", "xay", true),
        ("((|a|)+)+a", "=", false),
        ("((a?|a?)+)+c", "bbb", false),
        ("((a?|a?)+)+c", "aac", true),
        ("<(|||\u{FFFD}|||||<||||(^sr||||\u{FFFD})+||\u{FFFD})+a+%", "a\\.py|(?<=# )", false),
        ("<(|||\u{FFFD}|||||<||||(^sr||||\u{FFFD})+||\u{FFFD})+a+%", "x<<aa%", true),
    ];
    for (pattern, text, want) in table {
        let (mut m, w) = Matcher::new("r", vec![rule(pattern, "f")]);
        assert!(w.is_empty(), "{pattern:?}: {w:?}");
        assert_eq!(m.engine(0), Some(EngineKind::Linear), "{pattern:?}");
        assert_eq!(!m.check(RuleOn::ToolCall, text, "e").is_empty(), want, "{pattern:?} on {text:?}");
    }
    let (_, w) = Matcher::new("r", vec![rule("(?=x)((||a)+)+a", "a"), rule("((a?|a?)+)+c\\1", "b")]);
    assert_eq!(w.len(), 2, "{w:?}");
}
