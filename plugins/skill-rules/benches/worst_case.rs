//! Prints what F5's fix costs and saves (docs/reliability.md): a check of each catastrophic
//! pattern on a 64 KiB text, now and (on texts short enough to wait for) with regress alone
//! as before; the largest count the linear engine takes; `begin` with 10,000 rules; and the
//! backtracker's cost on what it still runs (patterns with a backreference or lookaround).
//! Figures only, no assertions: `cargo bench -p orgx-matcher-skill-rules --bench worst_case`.

use orgx_matcher_skill_rules::{EngineKind, Matcher, Rule, RuleOn};
use std::time::{Duration, Instant};

fn rule(pattern: &str, i: usize) -> Rule {
    Rule {
        skill_id: "s".into(),
        pattern: pattern.into(),
        on: RuleOn::ToolCall,
        dedupe_fingerprint: format!("f{i}"),
        evidence_kind: "k".into(),
    }
}

/// Median of `runs` timings of one fresh check of `text` against `pattern`.
fn check_time(pattern: &str, text: &str, runs: usize) -> (Duration, bool, Option<EngineKind>) {
    let mut times = Vec::new();
    let mut fired = false;
    let mut engine = None;
    for _ in 0..runs {
        let (mut m, _) = Matcher::new("r", vec![rule(pattern, 0)]);
        engine = m.engine(0);
        let t = Instant::now();
        fired = !m.check(RuleOn::ToolCall, text, "e").is_empty();
        times.push(t.elapsed());
    }
    times.sort();
    (times[runs / 2], fired, engine)
}

/// This process's resident memory in KiB (Linux), to show what 10,000 automata hold.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().trim_end_matches(" kB").trim().parse().ok()).unwrap_or(0)
}

fn main() {
    let long = 65_536;
    println!("== catastrophic patterns, one check of a {long}-char text (median of 5)");
    let a = |n: usize| "a".repeat(n);
    let rows: Vec<(&str, String)> = vec![
        ("(a+)+$", a(long) + "b"),
        ("(a*)*b", a(long)),
        ("(a|a)*$", a(long) + "b"),
        ("(a|aa)+$", a(long) + "b"),
        ("(\\w+\\s?)+$", "word ".repeat(long / 5) + "!"),
        ("(.*a){20}", a(19) + &"b".repeat(long)),
        ("(\u{FFFD}+)+$", "\u{FFFD}".repeat(long) + "a"),
    ];
    for (pattern, text) in &rows {
        let (t, fired, engine) = check_time(pattern, text, 5);
        println!("{pattern:<14} {engine:?}: {:>9.3} ms, fired {fired}", t.as_secs_f64() * 1e3);
    }
    println!("== the same with regress alone (the engine before the fix), (a+)+$ on n `a` and a `b`");
    let re = regress::Regex::with_flags("(a+)+$", "").unwrap();
    for n in [16, 18, 20, 22] {
        let text = a(n) + "b";
        let t = Instant::now();
        let found = re.find(&text).is_some();
        println!("n = {n}: {:>9.3} ms (found {found})", t.elapsed().as_secs_f64() * 1e3);
    }
    println!("== the largest `x{{N}}` the linear engine takes");
    let (mut lo, mut hi) = (1usize, 1 << 20);
    while lo + 1 < hi {
        let mid = (lo + hi) / 2;
        let (m, w) = Matcher::new("r", vec![rule(&format!("x{{{mid}}}"), 0)]);
        if w.is_empty() && m.engine(0) == Some(EngineKind::Linear) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    println!("x{{{lo}}} is the largest");
    println!("== begin with 10,000 rules (`deploy-N\\b` and `(a|aa)+-N$`), and one check");
    for template in ["deploy-{}\\b", "(a|aa)+-{}$"] {
        let rules: Vec<Rule> = (0..10_000).map(|i| rule(&template.replace("{}", &i.to_string()), i)).collect();
        let (rss, t) = (rss_kib(), Instant::now());
        let (mut m, w) = Matcher::new("r", rules);
        let begin = t.elapsed();
        let grew = rss_kib().saturating_sub(rss);
        let t = Instant::now();
        let d = m.check(RuleOn::ToolCall, "Bash deploy-4242 now aaaaaaaaaaaaaaaaaaaaaaaaaaa-77", "e");
        println!(
            "{template:<14} begin {:>8.1} ms ({} warnings, RSS +{} MiB), check {:>7.3} ms, {} fired",
            begin.as_secs_f64() * 1e3,
            w.len(),
            grew >> 10,
            t.elapsed().as_secs_f64() * 1e3,
            d.len()
        );
    }
    let t = Instant::now();
    let compiled = (0..10_000).filter(|i| regress::Regex::with_flags(&format!("deploy-{i}\\b"), "").is_ok()).count();
    println!("regress alone, 10,000 `deploy-N\\b`: {:.1} ms ({compiled} compiled)", t.elapsed().as_secs_f64() * 1e3);
    println!("== what the backtracker still runs: polynomial, not exponential (one check, median of 3)");
    let rows: Vec<(&str, String)> = vec![
        ("(\\w+) \\1", a(4096)),
        ("(\\w+) \\1", a(16_384)),
        ("(?=a)[\\s\\S]*b", a(16_384)),
        ("(?=a)[\\s\\S]*b", a(long)),
        ("def (\\w+)[\\s\\S]*\\b\\1\\(", "def f ".repeat(long / 6)),
        // Texts the linear first pass lets through: the backtracker's quadratic worst case.
        ("(\\w+) \\1", a(4096) + " b"),
        ("(\\w+) \\1", a(16_384) + " b"),
        ("(\\w+) \\1", a(long) + " b"),
        ("def (\\w+)[\\s\\S]*\\b\\1\\(", "def f ".repeat(4096 / 6) + "("),
        ("def (\\w+)[\\s\\S]*\\b\\1\\(", "def f ".repeat(16_384 / 6) + "("),
        ("def (\\w+)[\\s\\S]*\\b\\1\\(", "def f ".repeat(long / 6) + "("),
        ("(?<=x)(?:ab|b)+c", "xab".repeat(long / 3)),
    ];
    for (pattern, text) in &rows {
        let (t, fired, engine) = check_time(pattern, text, 3);
        println!("{pattern:<28} {engine:?} on {:>6} chars: {:>9.3} ms, fired {fired}", text.chars().count(), t.as_secs_f64() * 1e3);
    }
}
