//! The linear engine answers exactly as regress (the engine every rule ran on before F5 was
//! fixed): ordinary rules on the texts they are written for, and random patterns built from
//! JavaScript's corner cases on short texts (where regress answers quickly).

use super::*;

fn rule(pattern: &str) -> Rule {
    Rule { skill_id: "s".into(), pattern: pattern.into(), on: RuleOn::ToolCall, dedupe_fingerprint: "f".into(), evidence_kind: "k".into() }
}

fn fires(pattern: &str, text: &str) -> (bool, Option<EngineKind>) {
    let (mut m, w) = Matcher::new("r", vec![rule(pattern)]);
    assert!(w.is_empty(), "{pattern:?}: {w:?}");
    (!m.check(RuleOn::ToolCall, text, "e").is_empty(), m.engine(0))
}

#[test]
fn ordinary_rules_match_as_before() {
    // (pattern, text, fires): the bundled fixtures' patterns and rules like them.
    let table = [
        ("\\.txt\\n", "notes.txt\nhello", true),
        ("\\.txt\\n", "notes.txt", false),
        ("^Bash ", "Bash ls", true),
        ("^Bash ", "Read Bash ", false),
        ("^Bash (cat|less|more) ", "Bash less /etc/passwd", true),
        ("^Bash (cat|less|more) ", "Bash lesser x", false),
        ("^Glob \\*\\*/", "Glob **/*.rs", true),
        ("^Grep def \\\\w\\+$", "Grep def \\w+", true),
        ("^Read .*app\\.py$", "Read /repo/src/app.py", true),
        ("^Read .*app\\.py$", "Read /repo/src/app.py\nmore", false),
        ("^src/[\\w/]+\\.py\\n", "src/pkg/mod.py\nimport os", true),
        ("^src/[\\w/]+\\.py\\n", "src/pkg-x/mod.py\n", false),
        ("rm -rf", "Bash rm -rf /", true),
        ("git push (-f|--force)\\b", "Bash git push --force origin", true),
        ("git push (-f|--force)\\b", "Bash git push --forced", false),
        ("\\.env$", "Write .env", true),
        ("\\.env$", "Write .envrc", false),
        ("(^|/)\\.ssh/", "Read /home/u/.ssh/id_rsa", true),
        ("password\\s*=\\s*['\"][^'\"]{8,}", "password = \"hunter22!\"", true),
        ("password\\s*=\\s*['\"][^'\"]{8,}", "password = \"short\"", false),
        ("\\bTODO\\b(?:\\(\\w+\\))?:", "// TODO(bob): x", true),
        ("curl .*\\|\\s*(ba)?sh", "Bash curl https://x | bash", true),
        ("\\d{3}-\\d{2}-\\d{4}", "ssn 123-45-6789", true),
        ("\\u00e9t\\u00e9", "été", true),
        ("caf.", "café", true),
        ("^.$", "😀", true),
        ("[^\\x00-\\x7F]", "ascii only", false),
        ("\\s", "a\u{3000}b", true),
        ("\\w", "é", false),
        ("a\\Bb", "ab", true),
        ("\\bé", " é", false),
        ("x{", "x{", true),
        ("a{2,}", "aa", true),
        ("[]", "anything", false),
        ("[^]", "\n", true),
        ("(?:)", "", true),
        ("a.b", "a\u{2028}b", false),
        ("\\0", "\0", true),
        ("\\cJ", "\n", true),
    ];
    for (pattern, text, want) in table {
        let (got, engine) = fires(pattern, text);
        assert_eq!(got, want, "{pattern:?} on {text:?}");
        assert_eq!(engine, Some(EngineKind::Linear), "{pattern:?}");
        let regress = regress::Regex::with_flags(pattern, "").unwrap().find(text).is_some();
        assert_eq!(got, regress, "{pattern:?} on {text:?}: regress disagrees");
    }
}

/// A tiny deterministic generator, so the test needs no extra crate.
struct Lcg(u64);
impl Lcg {
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        from[((self.0 >> 33) as usize) % from.len()]
    }
}

#[test]
fn linear_engine_agrees_with_regress_on_random_patterns() {
    let atoms = [
        "a",
        "b",
        "ab",
        ".",
        "\\.",
        "[ab]",
        "[^a]",
        "[]",
        "[^]",
        "[a-]",
        "[\\d-z]",
        "[\\b]",
        "(a|b)",
        "(a|)",
        "(?:ab|a)",
        "a?",
        "b*",
        "a+",
        "a{2}",
        "a{1,}",
        "a{0,2}",
        "{",
        "}",
        "]",
        "x{",
        "a{,2}",
        "^",
        "$",
        "\\b",
        "\\B",
        "\\b+",
        "\\d",
        "\\D",
        "\\s",
        "\\S",
        "\\w",
        "\\W",
        "\\n",
        "\\12",
        "\\0",
        "\\101",
        "\\8",
        "\\cJ",
        "\\c",
        "\\x61",
        "\\u0062",
        "\\-",
        "\\k",
        "\\p",
        "|",
        "(a+)+",
        "(a*)*",
        "(?:a|ab)*",
        "(?:)",
        "é",
        "😀",
        "\\uD83D\\uDE00",
    ];
    let alphabet = ["a", "b", "x", ".", "1", "\n", " ", "ab", "\u{8}", "é", "😀", "{", "-", "\u{2028}", "\t", "z", "\\", "c", "k", "\0"];
    let mut rng = Lcg(7);
    let (mut checked, mut fired) = (0, 0);
    for _ in 0..1500 {
        let n = 1 + (rng.pick(&["0", "1", "2", "3"]).parse::<usize>().unwrap());
        let pattern: String = (0..n).map(|_| rng.pick(&atoms)).collect();
        let Ok(re) = regress::Regex::with_flags(&pattern, "") else { continue };
        let (mut m, w) = Matcher::new("r", vec![rule(&pattern)]);
        if !w.is_empty() {
            continue;
        }
        assert_eq!(m.engine(0), Some(EngineKind::Linear), "{pattern:?}");
        for _ in 0..6 {
            let len = rng.pick(&["0", "1", "2", "4", "6"]).parse::<usize>().unwrap();
            let text: String = (0..len).map(|_| rng.pick(&alphabet)).collect();
            let want = re.find(&text).is_some();
            let got = !m.check(RuleOn::ToolCall, &text, "e").is_empty();
            if got {
                // Fired once: a fresh matcher for the next text (keys fire once per run).
                (m, _) = Matcher::new("r", vec![rule(&pattern)]);
                fired += 1;
            }
            assert_eq!(got, want, "{pattern:?} on {text:?}");
            checked += 1;
        }
    }
    assert!(checked > 5000 && fired > 1000, "{checked} checks, {fired} fired");
}

/// Rules the size estimate lets through unbuilt must build when first used: the estimate
/// is meant to be far above the real size (a failure would only fall back to regress).
#[test]
fn patterns_built_on_first_use_fit_in_the_automaton() {
    let near_the_estimate = ["[^a]{230}", ".{100}", "\\s{45}", "(?:[\\u0100-\\u01ff]|\\w|[^\\n]){40}", "x{440}", "(?:a|b|c|d){100}"];
    for pattern in near_the_estimate {
        let tree = syntax::parse(pattern).unwrap();
        assert!(linear::surely_fits(&tree), "{pattern:?} is not under the estimate");
        let engine = engine::compile(pattern).unwrap();
        let engine::Engine::Linear(cell) = &engine else { panic!("{pattern:?} not linear") };
        assert!(cell.get().is_none(), "{pattern:?} built before its first use");
        let _ = engine.is_match(pattern, "");
        assert!(matches!(cell.get(), Some(engine::Built::Linear(_))), "{pattern:?} did not build");
    }
    // Past the estimate, built (or refused) at once.
    let engine = engine::compile("x{5000}").unwrap();
    let engine::Engine::Linear(cell) = &engine else { panic!("not linear") };
    assert!(matches!(cell.get(), Some(engine::Built::Linear(_))));
}
