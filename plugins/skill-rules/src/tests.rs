//! Matching semantics, dedupe, and the prefilter's equivalence with running every regex.

use super::*;

fn rule(skill: &str, pattern: &str, on: RuleOn, fp: &str) -> Rule {
    Rule { skill_id: skill.into(), pattern: pattern.into(), on, dedupe_fingerprint: fp.into(), evidence_kind: "k".into() }
}

fn keys(d: &[Deviation]) -> Vec<&str> {
    d.iter().map(|d| d.dedupe_key.as_str()).collect()
}

#[test]
fn javascript_semantics() {
    let rules = vec![
        rule("look", "foo(?=bar)", RuleOn::ToolCall, "ahead"),
        rule("look", "(?<!x)baz", RuleOn::ToolCall, "behind"),
        rule("back", "(\\w+) \\1", RuleOn::ToolCall, "backref"),
        rule("named", "(?<word>qu+x)-\\k<word>", RuleOn::ToolCall, "named"),
        rule("ascii", "^\\w+$", RuleOn::ToolCall, "ascii"),
    ];
    let (mut m, w) = Matcher::new("r", rules);
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(keys(&m.check(RuleOn::ToolCall, "foobar", "e")), ["look:ahead:r", "ascii:ascii:r"]);
    assert!(m.check(RuleOn::ToolCall, "foo bar", "e").is_empty());
    assert_eq!(keys(&m.check(RuleOn::ToolCall, "a baz", "e")), ["look:behind:r"]);
    assert_eq!(keys(&m.check(RuleOn::ToolCall, "echo echo", "e")), ["back:backref:r"]);
    assert_eq!(keys(&m.check(RuleOn::ToolCall, "quux-quux", "e")), ["named:named:r"]);
    // Without the u flag, \w is ASCII only.
    assert!(m.check(RuleOn::ToolCall, "héllo", "e").is_empty());
    assert!(m.check(RuleOn::ToolCall, "hello", "e").is_empty(), "ascii fired once already");
}

#[test]
fn patterns_javascript_rejects_are_disabled_alone() {
    let bad = ["(?i)hello", "a++", "(?>a)", "(?P<n>x)", "[unclosed", "(", "*x", "x{2,1}"];
    let mut rules: Vec<Rule> = bad.iter().enumerate().map(|(i, p)| rule("bad", p, RuleOn::FileEdit, &format!("f{i}"))).collect();
    rules.push(rule("good", "hello", RuleOn::FileEdit, "g"));
    let (mut m, warnings) = Matcher::new("r", rules);
    let idx: Vec<u32> = warnings.iter().map(|w| w.index).collect();
    assert_eq!(idx, (0..bad.len() as u32).collect::<Vec<_>>(), "{warnings:?}");
    assert!(warnings[0].message.contains("skill `bad`"));
    assert_eq!(keys(&m.check(RuleOn::FileEdit, "a\nhello", "e")), ["good:g:r"]);
}

#[test]
fn valid_javascript_is_not_rejected() {
    for p in ["(?:a)", "(?=a)", "(?!a)", "(?<=a)", "(?<!a)", "(?<name>a)", "\\++", "[+*?]+", "a{2}", "a+?", "[(?i)]"] {
        let (_, w) = Matcher::new("r", vec![rule("s", p, RuleOn::ToolCall, "f")]);
        assert!(w.is_empty(), "{p}: {w:?}");
    }
}

#[test]
fn on_filters_and_dedupe_keys_are_shared() {
    let rules = vec![
        rule("s", "app", RuleOn::FileEdit, "same"),
        rule("s", "test", RuleOn::FileEdit, "same"),
        rule("s", "app", RuleOn::ToolCall, "tool"),
        rule("t", "app", RuleOn::FileEdit, "same"),
    ];
    let (mut m, _) = Matcher::new("run1", rules);
    let d = m.check(RuleOn::FileEdit, "src/app.py\ntest", "e1");
    assert_eq!(keys(&d), ["s:same:run1", "t:same:run1"]);
    assert_eq!(d[0].evidence_ref, "e1");
    assert_eq!(d[0].severity, Some(Severity::Warn));
    assert!(m.check(RuleOn::FileEdit, "test app", "e2").is_empty(), "keys fire once per run");
    assert_eq!(keys(&m.check(RuleOn::ToolCall, "Read app", "e3")), ["s:tool:run1"]);
}

/// One prepared matcher serves run after run (the host starts each from a snapshot taken
/// after `prepare`; natively, `begin` on a clone of the state is the same): each run gets its
/// own id in its keys and starts with nothing fired, and the warnings come from `prepare`.
#[test]
fn a_prepared_matcher_starts_each_run_with_its_own_keys_and_nothing_fired() {
    let rules = vec![rule("s", "app", RuleOn::FileEdit, "f"), rule("bad", "(", RuleOn::FileEdit, "g")];
    let (mut m, warnings) = Matcher::prepare(rules);
    assert_eq!(warnings.iter().map(|w| w.index).collect::<Vec<_>>(), [1]);
    for run in ["run-a", "run-b"] {
        m.begin(run);
        assert_eq!(m.run_id(), run);
        assert_eq!(keys(&m.check(RuleOn::FileEdit, "app", "e")), [format!("s:f:{run}")]);
        assert!(m.check(RuleOn::FileEdit, "app", "e").is_empty(), "once per run");
    }
}

/// A tiny deterministic generator, so the equivalence test needs no extra crate.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

#[test]
fn prefilter_never_hides_a_match() {
    let atoms = [
        "a", "b", "ab", "\\.", "x", "[ab]", "(a|b)", "a?", "b*", "c+", ".", "\\d", "(?=a)", "(?!b)", "\\bab", "a{2}", "(?:ba)+", "|", "^",
        "$", "\\n", "ab|x",
    ];
    let alphabet = ["a", "b", "c", "x", ".", "1", "\n", " ", "ab", "ba"];
    let mut rng = Lcg(42);
    let mut checked = 0;
    for _ in 0..400 {
        let pattern: String = (0..1 + rng.next(4)).map(|_| atoms[rng.next(atoms.len())]).collect();
        let Ok(re) = regress::Regex::with_flags(&pattern, "") else { continue };
        let (mut m, w) = Matcher::new("r", vec![rule("s", &pattern, RuleOn::ToolCall, "f")]);
        if !w.is_empty() {
            continue;
        }
        for _ in 0..5 {
            let text: String = (0..rng.next(8)).map(|_| alphabet[rng.next(alphabet.len())]).collect();
            let expected = re.find(&text).is_some();
            let (mut fresh, _) = Matcher::new("r", vec![rule("s", &pattern, RuleOn::ToolCall, "f")]);
            let got = !fresh.check(RuleOn::ToolCall, &text, "e").is_empty();
            assert_eq!(got, expected, "pattern {pattern:?} on {text:?} (literals {:?})", required_literals(&pattern));
            checked += 1;
        }
        let _ = m.check(RuleOn::ToolCall, "", "e");
    }
    assert!(checked > 1000, "{checked}");
}

#[test]
fn thousands_of_rules_only_run_candidates() {
    let rules: Vec<Rule> = (0..5000).map(|i| rule("s", &format!("deploy-{i}\\b"), RuleOn::ToolCall, &format!("f{i}"))).collect();
    let (mut m, w) = Matcher::new("r", rules);
    assert!(w.is_empty());
    assert_eq!(keys(&m.check(RuleOn::ToolCall, "Bash deploy-4242 now", "e")), ["s:f4242:r"]);
    assert!(m.check(RuleOn::ToolCall, "Bash deploy-4242x", "e").is_empty());
}

/// Found by fuzzing (fuzz/regressions/rules_compile_and_match/): regress 0.10.5 counts `(?:`
/// and lookarounds as capture groups when it numbers backreferences, and matching the
/// misnumbered reference indexed past the capture slots (a panic with debug assertions,
/// unchecked out-of-bounds access without); and it swallows the two characters after a `\x`
/// without hex digits. Such patterns are disabled; the others stay.
#[test]
fn patterns_regress_misreads_are_disabled() {
    let bad = [
        "\\1(?:a)",
        "\\1(?=)",
        "(?=\\1)",
        "x\\1(?<=a)",
        "(?:a)(?<n>b)\\k<n>",
        "(?=a)(?<n>a)\\k<n>",
        "(?:)\\1",
        "_Yx\\xS\\|",
        "ab\\x4\\|",
        "\\x",
        "[\\xg]",
    ];
    let good = ["(a)(?:b)\\1", "(?:b)(a)\\1", "(?<n>a)(?:b)\\k<n>", "\\2(?:a)", "[\\1](?:a)", "(?:a)\\0", "\\\\x"];
    let mut rules: Vec<Rule> = bad.iter().enumerate().map(|(i, p)| rule("bad", p, RuleOn::ToolCall, &format!("b{i}"))).collect();
    rules.extend(good.iter().enumerate().map(|(i, p)| rule("good", p, RuleOn::ToolCall, &format!("g{i}"))));
    let (mut m, warnings) = Matcher::new("r", rules);
    let idx: Vec<u32> = warnings.iter().map(|w| w.index).collect();
    assert_eq!(idx, (0..bad.len() as u32).collect::<Vec<_>>(), "{warnings:?}");
    assert!(warnings.iter().all(|w| w.message.contains("misread by the regex engine")), "{warnings:?}");
    assert!(m.check(RuleOn::ToolCall, "", "e").is_empty(), "`_Yx\\xS\\|` must not match everything");
    // Matching the accepted ones neither panics nor misreads them.
    let fired =
        |m: &mut Matcher, text: &str| keys(&m.check(RuleOn::ToolCall, text, "e")).into_iter().map(str::to_string).collect::<Vec<_>>();
    for text in ["x", "ab", "abb", "\u{1}", "a\u{2}"] {
        assert!(fired(&mut m, text).is_empty(), "{text:?}");
    }
    assert_eq!(fired(&mut m, "aba"), ["good:g0:r", "good:g2:r"]);
    assert_eq!(fired(&mut m, "baa"), ["good:g1:r"]);
    assert_eq!(fired(&mut m, "\u{2}a \u{1}a a\0 \\x"), ["good:g3:r", "good:g4:r", "good:g5:r", "good:g6:r"]);
}

/// Found by the fuzz target's oracle (fuzz/regressions/rules_compile_and_match/): the digits
/// of a legacy octal escape were taken as required literals (`\12x` required "2x"), so the
/// prefilter hid matches the regex makes.
#[test]
fn octal_escapes_do_not_hide_matches() {
    let table = [("\\12x", "\nx"), ("\\01x", "\u{1}x"), ("\\101x", "Ax"), ("q\\0", "q\0")];
    for (pattern, text) in table {
        let (mut m, w) = Matcher::new("r", vec![rule("oct", pattern, RuleOn::ToolCall, "o")]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(keys(&m.check(RuleOn::ToolCall, text, "e")), ["oct:o:r"], "{pattern:?} on {text:?}");
    }
}

/// Found while writing the pattern reader (`syntax`), by reading regress's parser: without
/// the `u` flag regress reads `\u{41}` as `A` (JavaScript: 41 `u`s), `\u+041` as U+0041
/// (`from_str_radix` takes the `+`; JavaScript: `u+041`), and swallows a `\u` after a high
/// surrogate when the two do not pair (`\uD83D\u0041`: JavaScript reads U+D83D then `A`), and
/// fails a whole pattern with a quantified lone surrogate (`x\uD83D*` does not match `x`).
/// Such patterns are disabled, and so is every surrogate escape but a pair outside a class
/// (regress reads text by code point, JavaScript without `u` by UTF-16 unit); a pair and
/// plain four-digit escapes stay.
#[test]
fn unicode_escapes_regress_misreads_are_disabled() {
    let misread = |p: &str, text: &str| regress::Regex::with_flags(p, "").unwrap().find(text).is_some();
    assert!(misread("^\\u{41}$", "A") && !misread("^\\u{41}$", &"u".repeat(41)), "regress reads \\u{{41}} as A");
    assert!(misread("^\\u+041$", "A"), "regress reads \\u+041 as U+0041");
    // And a quantified lone surrogate fails the whole pattern (JavaScript: `x` matches).
    assert!(!misread("x\\uD83D*", "x") && misread("x[\\uD83D]*", "x"), "regress fails a quantified lone surrogate");
    let bad = [
        "\\u{41}",
        "x\\u+041",
        "\\uD83D\\u0041",
        "\\uDBFF\\uD800",
        "\\u",
        "[\\u12]",
        "\\u00G0",
        "x\\uD83D*",
        "\\uDC00",
        "[\\uD800-\\uDBFF][\\uDC00-\\uDFFF]",
        "[\\uD83D\\uDE00]",
    ];
    let good = ["\\u0041", "\\uD83D\\uDE00", "[\\u0041-\\u005A]", "\\\\u0041"];
    let mut rules: Vec<Rule> = bad.iter().enumerate().map(|(i, p)| rule("bad", p, RuleOn::ToolCall, &format!("b{i}"))).collect();
    rules.extend(good.iter().enumerate().map(|(i, p)| rule("good", p, RuleOn::ToolCall, &format!("g{i}"))));
    let (mut m, warnings) = Matcher::new("r", rules);
    let idx: Vec<u32> = warnings.iter().map(|w| w.index).collect();
    assert_eq!(idx, (0..bad.len() as u32).collect::<Vec<_>>(), "{warnings:?}");
    assert!(warnings.iter().all(|w| w.message.contains("misread by the regex engine")), "{warnings:?}");
    assert_eq!(keys(&m.check(RuleOn::ToolCall, "A 😀 \\u0041", "e")), ["good:g0:r", "good:g1:r", "good:g2:r", "good:g3:r"]);
}
