//! The default skill-rule matcher: ECMAScript-regex rules against `file_edit` and
//! `tool_call` match text, one deviation per dedupe key per run.
//!
//! Patterns are compiled with `regress`, an engine with JavaScript semantics (lookaround,
//! backreferences, named groups; `\d \w \b` ASCII without the `u` flag). To stay fast with
//! thousands of rules, each rule's required literals (`literal`) go into one Aho-Corasick
//! automaton per `on` kind: a check scans the text once, and only rules whose literal
//! occurs — plus the few with no literal — run their regex.

mod literal;

use aho_corasick::AhoCorasick;

pub use literal::required_literals;
pub use orgx_peer_sdk::types::{Deviation, MatchSubject, Rule, RuleOn, RuleWarning, Severity};

orgx_peer_sdk::export_matcher!(Matcher);

impl orgx_peer_sdk::Matcher for Matcher {
    fn begin(run_id: &str, rules: Vec<Rule>) -> (Matcher, Vec<RuleWarning>) {
        Matcher::new(run_id, rules)
    }

    fn check(&mut self, subject: &MatchSubject, evidence_ref: &str) -> Vec<Deviation> {
        Matcher::check(self, subject.on, &subject.text, evidence_ref)
    }
}

struct Compiled {
    regex: regress::Regex,
    key: usize,
}

/// Rules of one `on` kind, indexed for the prefilter.
#[derive(Default)]
struct Index {
    /// Rule indices whose pattern has no usable literal: they always run.
    always: Vec<usize>,
    automaton: Option<AhoCorasick>,
    /// For each automaton pattern, the rules that require it.
    by_literal: Vec<Vec<usize>>,
}

pub struct Matcher {
    run_id: String,
    rules: Vec<Rule>,
    compiled: Vec<Option<Compiled>>,
    /// Dedupe keys, and whether each has fired in this run.
    keys: Vec<String>,
    fired: Vec<bool>,
    file_edit: Index,
    tool_call: Index,
    /// Candidate marks per rule, stamped with `generation` to avoid clearing.
    mark: Vec<u32>,
    generation: u32,
}

/// JavaScript refuses these, but a permissive engine might not: refuse them ourselves.
fn js_rejects(pattern: &str) -> Option<&'static str> {
    let b = pattern.as_bytes();
    let mut i = 0;
    let mut in_class = false;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'[' if !in_class => in_class = true,
            b']' if in_class => in_class = false,
            b'(' if !in_class && b.get(i + 1) == Some(&b'?') => {
                let next = b.get(i + 2).copied();
                let ok = matches!(next, Some(b':' | b'=' | b'!'))
                    || (next == Some(b'<')
                        && (matches!(b.get(i + 3), Some(b'=' | b'!'))
                            || b.get(i + 3).is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_' || *c == b'$')));
                if !ok {
                    return Some("inline flags and other `(?…)` groups are not JavaScript syntax");
                }
            }
            b'+' | b'*' | b'?' | b'}' if !in_class && b.get(i + 1) == Some(&b'+') => {
                return Some("possessive quantifiers are not JavaScript syntax");
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Patterns JavaScript reads one way and `regress` 0.10.5 another, all found by fuzzing
/// (`fuzz/regressions/rules_compile_and_match/`); refused until the engine is fixed.
///
/// - `\x` without two hex digits: JavaScript reads `x` and goes on; regress consumes the next
///   two characters anyway, so `\xS\|` becomes `x` or the empty pattern, which matches
///   everything.
/// - regress numbers groups before parsing by counting every `(`, so `(?:…)` and lookarounds
///   count as captures (`Parser::parse_capture_groups`). `\N` with N above the real number
///   of captures but not above the number of `(` becomes a backreference to a group that
///   does not exist (JavaScript reads a legacy octal escape): `\1(?:a)`. And `\k<name>` of a
///   named group preceded by a non-capturing `(` refers to the wrong group, or to one that
///   does not exist: `(?:a)(?<n>b)\k<n>`. Matching a reference to a missing group indexes
///   past the capture slots: a panic with debug assertions, an unchecked out-of-bounds
///   access without them.
fn regress_misreads(pattern: &str) -> Option<&'static str> {
    let b = pattern.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if b.get(i + 1) == Some(&b'x') && !b.get(i + 2..i + 4).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                return Some("`\\x` without two hex digits is misread by the regex engine");
            }
            i += 1;
        }
        i += 1;
    }
    // The index after the class opened at `i` (the first unescaped `]` closes it).
    let class_end = |mut i: usize| {
        i += 1;
        while i < b.len() && b[i] != b']' {
            i += if b[i] == b'\\' { 2 } else { 1 };
        }
        i
    };
    let (mut parens, mut captures, mut named_shifted) = (0usize, 0usize, false);
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'[' => i = class_end(i),
            b'(' => {
                let plain = b.get(i + 1) != Some(&b'?');
                let named = !plain && b.get(i + 2) == Some(&b'<') && !matches!(b.get(i + 3), Some(b'=' | b'!'));
                named_shifted |= named && parens != captures;
                captures += usize::from(plain || named);
                parens += 1;
            }
            _ => {}
        }
        i += 1;
    }
    if parens == captures {
        return None;
    }
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                match b.get(i + 1) {
                    Some(b'1'..=b'9') => {
                        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit());
                        let n = digits.fold(0usize, |n, d| n.saturating_mul(10).saturating_add(usize::from(d - b'0')));
                        if n > captures && n <= parens {
                            return Some(
                                "a backreference to a group that does not exist (`\\N` after `(?…)` groups) is misread by the regex engine",
                            );
                        }
                    }
                    Some(b'k') if named_shifted => {
                        return Some("`\\k<name>` of a named group after a `(?…)` group is misread by the regex engine");
                    }
                    _ => {}
                }
                i += 1;
            }
            b'[' => i = class_end(i),
            _ => {}
        }
        i += 1;
    }
    None
}

impl Matcher {
    /// Compile `rules` for run `run_id`; a rule that does not compile is disabled with a
    /// warning, and the others go on.
    pub fn new(run_id: &str, rules: Vec<Rule>) -> (Matcher, Vec<RuleWarning>) {
        let mut warnings = Vec::new();
        let mut compiled = Vec::with_capacity(rules.len());
        let mut keys: Vec<String> = Vec::new();
        let mut key_ids = std::collections::HashMap::new();
        let mut literals: [Vec<(String, usize)>; 2] = [Vec::new(), Vec::new()];
        let mut file_edit = Index::default();
        let mut tool_call = Index::default();
        for (i, rule) in rules.iter().enumerate() {
            let regex = match js_rejects(&rule.pattern).or_else(|| regress_misreads(&rule.pattern)) {
                Some(why) => Err(why.to_string()),
                None => regress::Regex::with_flags(&rule.pattern, "").map_err(|e| e.to_string()),
            };
            let regex = match regex {
                Ok(r) => r,
                Err(e) => {
                    warnings.push(RuleWarning {
                        index: i as u32,
                        message: format!("skill `{}`: pattern {:?} does not compile: {e}", rule.skill_id, rule.pattern),
                    });
                    compiled.push(None);
                    continue;
                }
            };
            let key = format!("{}:{}:{}", rule.skill_id, rule.dedupe_fingerprint, run_id);
            let next = keys.len();
            let key = *key_ids.entry(key.clone()).or_insert_with(|| {
                keys.push(key);
                next
            });
            compiled.push(Some(Compiled { regex, key }));
            let (slot, index) = match rule.on {
                RuleOn::FileEdit => (0, &mut file_edit),
                RuleOn::ToolCall => (1, &mut tool_call),
            };
            match required_literals(&rule.pattern) {
                Some(lits) => literals[slot].extend(lits.into_iter().map(|l| (l, i))),
                None => index.always.push(i),
            }
        }
        for (slot, index) in [&mut file_edit, &mut tool_call].into_iter().enumerate() {
            build_index(index, std::mem::take(&mut literals[slot]));
        }
        let n = rules.len();
        let fired = vec![false; keys.len()];
        let m = Matcher { run_id: run_id.to_string(), rules, compiled, keys, fired, file_edit, tool_call, mark: vec![0; n], generation: 0 };
        (m, warnings)
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Test one step's match text; returns the deviations it fires, in rule order.
    pub fn check(&mut self, on: RuleOn, text: &str, evidence_ref: &str) -> Vec<Deviation> {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.mark.iter_mut().for_each(|m| *m = 0);
            self.generation = 1;
        }
        let generation = self.generation;
        let index = match on {
            RuleOn::FileEdit => &self.file_edit,
            RuleOn::ToolCall => &self.tool_call,
        };
        let mut candidates: Vec<usize> = Vec::new();
        let mut consider = |i: usize, mark: &mut Vec<u32>| {
            if mark[i] != generation {
                mark[i] = generation;
                candidates.push(i);
            }
        };
        for &i in &index.always {
            consider(i, &mut self.mark);
        }
        if let Some(ac) = &index.automaton {
            for m in ac.find_overlapping_iter(text) {
                for &i in &index.by_literal[m.pattern().as_usize()] {
                    consider(i, &mut self.mark);
                }
            }
        }
        candidates.sort_unstable();
        let mut out = Vec::new();
        for i in candidates {
            let Some(c) = &self.compiled[i] else { continue };
            if self.fired[c.key] {
                continue;
            }
            if c.regex.find(text).is_some() {
                self.fired[c.key] = true;
                let rule = &self.rules[i];
                out.push(Deviation {
                    skill_id: rule.skill_id.clone(),
                    evidence_kind: rule.evidence_kind.clone(),
                    evidence_ref: evidence_ref.to_string(),
                    dedupe_key: self.keys[c.key].clone(),
                    severity: Some(Severity::Warn),
                });
            }
        }
        out
    }
}

fn build_index(index: &mut Index, literals: Vec<(String, usize)>) {
    let mut ids: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut patterns: Vec<String> = Vec::new();
    for (lit, rule) in literals {
        let next = patterns.len();
        let id = *ids.entry(lit.clone()).or_insert_with(|| {
            patterns.push(lit);
            next
        });
        if index.by_literal.len() <= id {
            index.by_literal.push(Vec::new());
        }
        if index.by_literal[id].last() != Some(&rule) {
            index.by_literal[id].push(rule);
        }
    }
    if !patterns.is_empty() {
        // A literal set that cannot be built (never expected) falls back to running those
        // rules always: slower, never wrong.
        match AhoCorasick::new(&patterns) {
            Ok(ac) => index.automaton = Some(ac),
            Err(_) => {
                let all: Vec<usize> = index.by_literal.drain(..).flatten().collect();
                index.always.extend(all);
                index.always.sort_unstable();
                index.always.dedup();
            }
        }
    }
}

#[cfg(test)]
mod tests;
