//! The default skill-rule matcher: ECMAScript-regex rules against `file_edit` and
//! `tool_call` match text, one deviation per dedupe key per run.
//!
//! Patterns have JavaScript semantics (lookaround, backreferences, named groups; `\d \w \b`
//! ASCII without the `u` flag). Each is compiled by `engine`: on a linear-time engine unless
//! it needs backtracking, so no rule can make a check take exponential time (F5 in
//! docs/reliability.md). To stay fast with thousands of rules, each rule's required literals
//! (`literal`) go into one Aho-Corasick automaton per `on` kind: a check scans the text
//! once, and only rules whose literal occurs — plus the few with no literal — run.

mod engine;
mod linear;
mod literal;
mod redos;
mod refuse;
mod syntax;

use aho_corasick::AhoCorasick;

pub use engine::EngineKind;
pub use literal::required_literals;
pub use orgx_peer_sdk::types::{Deviation, MatchSubject, Rule, RuleOn, RuleWarning, Severity};

orgx_peer_sdk::export_matcher!(Matcher);

impl orgx_peer_sdk::Matcher for Matcher {
    fn prepare(rules: Vec<Rule>) -> (Matcher, Vec<RuleWarning>) {
        Matcher::prepare(rules)
    }

    fn begin(&mut self, run_id: &str) {
        Matcher::begin(self, run_id)
    }

    fn check(&mut self, subject: &MatchSubject, evidence_ref: &str) -> Vec<Deviation> {
        Matcher::check(self, subject.on, &subject.text, evidence_ref)
    }
}

struct Compiled {
    engine: engine::Engine,
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
    /// Dedupe keys less the run id (`skill:fingerprint`), and whether each has fired in
    /// this run: the run id is appended when a key fires, so one prepared matcher serves
    /// every run of its rules version.
    keys: Vec<String>,
    fired: Vec<bool>,
    file_edit: Index,
    tool_call: Index,
    /// Candidate marks per rule, stamped with `generation` to avoid clearing.
    mark: Vec<u32>,
    generation: u32,
}

impl Matcher {
    /// `prepare` and `begin` in one: a run's matcher, as a host without a prepared snapshot
    /// makes it (and as the tests do).
    pub fn new(run_id: &str, rules: Vec<Rule>) -> (Matcher, Vec<RuleWarning>) {
        let (mut m, warnings) = Matcher::prepare(rules);
        m.begin(run_id);
        (m, warnings)
    }

    /// Start a run: its id goes into every dedupe key it fires, and nothing has fired yet.
    pub fn begin(&mut self, run_id: &str) {
        self.run_id = run_id.to_string();
        self.fired.iter_mut().for_each(|f| *f = false);
    }

    /// Compile `rules` once for every run of this rules version; a rule that does not
    /// compile is disabled with a warning, and the others go on.
    pub fn prepare(rules: Vec<Rule>) -> (Matcher, Vec<RuleWarning>) {
        let mut warnings = Vec::new();
        let mut compiled = Vec::with_capacity(rules.len());
        let mut keys: Vec<String> = Vec::new();
        let mut key_ids = std::collections::HashMap::new();
        let mut literals: [Vec<(String, usize)>; 2] = [Vec::new(), Vec::new()];
        let mut file_edit = Index::default();
        let mut tool_call = Index::default();
        for (i, rule) in rules.iter().enumerate() {
            let engine = match engine::compile(&rule.pattern) {
                Ok(e) => e,
                Err(why) => {
                    warnings.push(RuleWarning {
                        index: i as u32,
                        message: format!("skill `{}`: pattern {:?} {why}", rule.skill_id, rule.pattern),
                    });
                    compiled.push(None);
                    continue;
                }
            };
            let key = format!("{}:{}", rule.skill_id, rule.dedupe_fingerprint);
            let next = keys.len();
            let key = *key_ids.entry(key.clone()).or_insert_with(|| {
                keys.push(key);
                next
            });
            compiled.push(Some(Compiled { engine, key }));
            let (slot, index) = match rule.on {
                RuleOn::FileEdit => (0, &mut file_edit),
                RuleOn::ToolCall => (1, &mut tool_call),
            };
            match required_literals(&rule.pattern) {
                Some(lits) => literals[slot].extend(lits.into_iter().map(|l| (l, i))),
                None => {
                    // It runs on every check: build its automaton now, under `prepare`'s longer
                    // deadline, not in the first check.
                    if let Some(Some(c)) = compiled.last() {
                        c.engine.build_now(&rule.pattern);
                    }
                    index.always.push(i);
                }
            }
        }
        for (slot, index) in [&mut file_edit, &mut tool_call].into_iter().enumerate() {
            build_index(index, std::mem::take(&mut literals[slot]));
        }
        let n = rules.len();
        let fired = vec![false; keys.len()];
        let m = Matcher { run_id: String::new(), rules, compiled, keys, fired, file_edit, tool_call, mark: vec![0; n], generation: 0 };
        (m, warnings)
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The engine rule `index` runs on, or `None` if it is disabled.
    pub fn engine(&self, index: usize) -> Option<EngineKind> {
        Some(self.compiled.get(index)?.as_ref()?.engine.kind())
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
            if c.engine.is_match(&self.rules[i].pattern, text) {
                self.fired[c.key] = true;
                let rule = &self.rules[i];
                out.push(Deviation {
                    skill_id: rule.skill_id.clone(),
                    evidence_kind: rule.evidence_kind.clone(),
                    evidence_ref: evidence_ref.to_string(),
                    dedupe_key: format!("{}:{}", self.keys[c.key], self.run_id),
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
mod engine_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod worst_case_tests;
