//! One rule's pattern, compiled for the engine that may run it: the linear-time one
//! (`linear`) whenever the pattern has no backreference or lookaround — almost every rule —
//! and otherwise `regress`, the JavaScript backtracker, but only for patterns `redos` finds
//! free of exponential backtracking. Either way the pattern is first compiled by regress
//! alone, so what is accepted, and the message of what is not, are regress's (past the
//! patterns `refuse` turns away), and the fuzz target's oracle can run it there too.
//!
//! A linear rule's automaton is built on its first use, not at `prepare`: building one costs
//! about ten regress compiles and a few KiB, and most rules never run (the literal prefilter
//! keeps them away). Built at `prepare` are only the rules without a required literal, which
//! run on every check (`Matcher::prepare`), and a pattern too large to be sure it fits, to refuse
//! it at `prepare` if it does not. So a check builds each rule's automaton at most once a run (the
//! snapshot every run starts from is taken after `prepare`, before any check).

use crate::{linear, redos, refuse, syntax};
use std::cell::OnceCell;

pub enum Engine {
    Linear(OnceCell<Built>),
    /// regress, behind the linear engine's run of the pattern with its lookarounds and
    /// backreferences relaxed (`linear::relaxed`), when that compiles: texts it does not
    /// match never reach the backtracker.
    Backtracking(regress::Regex, Option<linear::Linear>),
}

/// Which engine a rule runs on (for tests, the fuzz target and the docs' figures).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    Linear,
    Backtracking,
}

/// A linear rule's engine once built: the automaton, or (never expected: `surely_fits` is
/// conservative) regress if it could not be built after all.
pub enum Built {
    Linear(linear::Linear),
    Regress(regress::Regex),
}

impl Engine {
    /// Whether `text` contains a match of `pattern`, the pattern this engine was compiled
    /// from (a linear rule is built from it on first use).
    pub fn is_match(&self, pattern: &str, text: &str) -> bool {
        match self {
            Engine::Linear(cell) => match cell.get_or_init(|| build(pattern)) {
                Built::Linear(re) => re.is_match(text),
                Built::Regress(re) => re.find(text).is_some(),
            },
            Engine::Backtracking(re, first_pass) => first_pass.as_ref().is_none_or(|l| l.is_match(text)) && re.find(text).is_some(),
        }
    }

    /// Build a linear rule's automaton now rather than on first use.
    pub fn build_now(&self, pattern: &str) {
        if let Engine::Linear(cell) = self {
            cell.get_or_init(|| build(pattern));
        }
    }

    pub fn kind(&self) -> EngineKind {
        match self {
            Engine::Linear(_) => EngineKind::Linear,
            Engine::Backtracking(..) => EngineKind::Backtracking,
        }
    }
}

const TOO_BIG: &str = "is refused: its counted repetitions are too large for the linear-time engine (`x{32761}` is the \
                       largest)";

/// Compile `pattern` (JavaScript syntax, no flags), or say why its rule is disabled.
pub fn compile(pattern: &str) -> Result<Engine, String> {
    if let Some(why) = refuse::js_rejects(pattern).or_else(|| refuse::regress_misreads(pattern)) {
        return Err(format!("does not compile: {why}"));
    }
    let backtracking = regress::Regex::with_flags(pattern, "").map_err(|e| format!("does not compile: {e}"))?;
    let tree = syntax::parse(pattern).map_err(|e| format!("is not understood by the matcher ({e})"))?;
    if !linear::is_regular(&tree) {
        return match redos::risk(&tree) {
            Some(why) => Err(format!("is refused: {why}")),
            None => Ok(Engine::Backtracking(backtracking, linear::compile(&linear::relaxed(&tree)).ok())),
        };
    }
    if linear::surely_fits(&tree) {
        return Ok(Engine::Linear(OnceCell::new()));
    }
    match linear::compile(&tree) {
        Ok(re) => Ok(Engine::Linear(OnceCell::from(Built::Linear(re)))),
        // The backtracker would take it, but in time quadratic in the text (`x{200000}` on
        // 200,000 `x` takes seconds); no rule needs such a count.
        Err(_) => Err(TOO_BIG.to_string()),
    }
}

/// A linear rule's automaton, from its pattern (which `compile` has read and sized before).
fn build(pattern: &str) -> Built {
    match syntax::parse(pattern).ok().and_then(|tree| linear::compile(&tree).ok()) {
        Some(re) => Built::Linear(re),
        None => Built::Regress(regress::Regex::with_flags(pattern, "").expect("compiled at prepare")),
    }
}
