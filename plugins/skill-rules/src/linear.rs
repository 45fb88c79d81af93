//! The linear-time engine: every pattern without backreferences or lookaround runs here,
//! translated from its `syntax` tree to regex-syntax's HIR and matched by regex-automata,
//! whose engines (lazy DFA, PikeVM, bounded backtracker with a visited set) take time
//! proportional to the text for a given pattern. That is what ends F5 (docs/reliability.md):
//! `(a+)+$` is a handful of automaton states here, not 2ⁿ paths.
//!
//! The translation keeps JavaScript's answer to "does the text contain a match". Without
//! backreferences and lookaround a JavaScript pattern denotes a regular language, and its
//! backtracking search tries every way to match it except loop iterations that match the
//! empty string past the minimum count — and dropping such an iteration never turns a
//! match into a non-match. So set semantics and JavaScript agree on *whether*, which is all
//! a rule asks (they may differ on *which* match, which no rule sees).

use crate::syntax::{Node, MAX_CODE_POINT};
use regex_automata::meta;
use regex_syntax::hir::{self, Hir, Look};

/// What a compiled rule of this engine needs to answer.
pub struct Linear(meta::Regex);

impl Linear {
    pub fn is_match(&self, text: &str) -> bool {
        self.0.is_match(text)
    }
}

/// Why a pattern does not run on this engine.
#[derive(Debug, PartialEq)]
pub enum Unsupported {
    /// Lookaround or a backreference: only a backtracking engine has them.
    NotRegular,
    /// A count past what the automaton may hold (`a{100000}`, see `NFA_SIZE_LIMIT`).
    TooBig,
}

/// The automaton of one rule may take this much memory (regex-automata's own default is
/// 10 MiB; a matcher holds thousands of rules inside a 256 MiB sandbox). Larger counted
/// repetitions go to the backtracking engine, which does not unroll them.
const NFA_SIZE_LIMIT: usize = 1 << 20;
/// The lazy DFA's cache per rule: a limit, allocated only as states are built; when it
/// fills too often regex-automata falls back to the PikeVM, still linear.
const DFA_CACHE_CAPACITY: usize = 256 << 10;

pub fn compile(node: &Node) -> Result<Linear, Unsupported> {
    let hir = to_hir(node)?;
    let config = meta::Config::new()
        .nfa_size_limit(Some(NFA_SIZE_LIMIT))
        .hybrid_cache_capacity(DFA_CACHE_CAPACITY)
        .which_captures(regex_automata::nfa::thompson::WhichCaptures::Implicit)
        // Only ever asked "is there a match", never for groups.
        .onepass(false);
    meta::Builder::new().configure(config).build_from_hir(&hir).map(Linear).map_err(|_| Unsupported::TooBig)
}

/// Whether `node` has no lookaround and no backreference: a regular language, for this engine.
pub fn is_regular(node: &Node) -> bool {
    match node {
        Node::Look { .. } | Node::BackRef => false,
        Node::Repeat { body, .. } => is_regular(body),
        Node::Concat(items) | Node::Alt(items) => items.iter().all(is_regular),
        _ => true,
    }
}

/// Whether `node`'s automaton surely fits in `NFA_SIZE_LIMIT`, by a size estimate far above
/// the real one (a class costs as if each of its ranges took 8 states, a repetition as if
/// unrolled once more than its count): rules under it are built on first use, the rest at
/// once, to be refused at `prepare` if they do not fit.
pub fn surely_fits(node: &Node) -> bool {
    estimate(node) <= SURELY_FITS
}

/// `x{32761}` (one state per copy) fills `NFA_SIZE_LIMIT`; stay well below.
const SURELY_FITS: u64 = 4_000;

fn estimate(node: &Node) -> u64 {
    match node {
        Node::Set(ranges) => 1 + 8 * ranges.len() as u64,
        Node::Repeat { min, max, body } => {
            // Counts saturate at usize::MAX (`{99999999999999999999}`): so must this.
            let copies = (max.unwrap_or(*min).max(*min) as u64).saturating_add(1);
            estimate(body).saturating_mul(copies).saturating_add(1)
        }
        Node::Concat(items) | Node::Alt(items) => items.iter().fold(1u64, |n, i| n.saturating_add(estimate(i))),
        _ => 1,
    }
}

/// A pattern every match of `node` also matches, without lookaround or backreferences: each
/// assertion becomes empty, each backreference any text. Where it finds nothing, neither
/// does `node`, so the backtracker need not run (`engine`): a linear first pass that keeps
/// most texts away from it.
pub fn relaxed(node: &Node) -> Node {
    match node {
        Node::Look { .. } => Node::Empty,
        Node::BackRef => Node::Repeat { min: 0, max: None, body: Box::new(Node::Set(vec![(0, MAX_CODE_POINT)])) },
        Node::Repeat { min, max, body } => Node::Repeat { min: *min, max: *max, body: Box::new(relaxed(body)) },
        Node::Concat(items) => Node::Concat(items.iter().map(relaxed).collect()),
        Node::Alt(alts) => Node::Alt(alts.iter().map(relaxed).collect()),
        other => other.clone(),
    }
}

fn to_hir(node: &Node) -> Result<Hir, Unsupported> {
    Ok(match node {
        Node::Empty => Hir::empty(),
        Node::Set(ranges) => class(ranges),
        Node::Start => Hir::look(Look::Start),
        Node::End => Hir::look(Look::End),
        Node::WordBoundary { negated: false } => Hir::look(Look::WordAscii),
        Node::WordBoundary { negated: true } => Hir::look(Look::WordAsciiNegate),
        Node::Look { .. } | Node::BackRef => return Err(Unsupported::NotRegular),
        Node::Repeat { min, max, body } => {
            let sub = to_hir(body)?;
            if zero_width(body) {
                // JavaScript stops a loop whose iteration matched nothing: `\b+` is `\b`,
                // `(?:)*` is empty, however large the count.
                return Ok(if *min == 0 { Hir::empty() } else { sub });
            }
            let min = u32::try_from(*min).map_err(|_| Unsupported::TooBig)?;
            // A count past u32::MAX characters is longer than any text a sandbox can hold.
            let max = max.map(|m| u32::try_from(m).ok()).unwrap_or(None);
            Hir::repetition(hir::Repetition { min, max, greedy: true, sub: Box::new(sub) })
        }
        Node::Concat(items) => Hir::concat(items.iter().map(to_hir).collect::<Result<_, _>>()?),
        Node::Alt(alts) => Hir::alternation(alts.iter().map(to_hir).collect::<Result<_, _>>()?),
    })
}

/// Whether `node` can only ever match the empty string.
fn zero_width(node: &Node) -> bool {
    match node {
        Node::Empty | Node::Start | Node::End | Node::WordBoundary { .. } | Node::Look { .. } => true,
        Node::Set(_) | Node::BackRef => false,
        Node::Repeat { max: Some(0), .. } => true,
        Node::Repeat { body, .. } => zero_width(body),
        Node::Concat(items) | Node::Alt(items) => items.iter().all(zero_width),
    }
}

/// A set of code points as a class of `char`s: surrogates (`\uD800`, never in a Rust
/// string) drop out, and an empty class matches nothing.
fn class(ranges: &[(u32, u32)]) -> Hir {
    let mut out = Vec::with_capacity(ranges.len() + 1);
    let mut push = |a: u32, b: u32| {
        if let (Some(a), Some(b)) = (char::from_u32(a), char::from_u32(b)) {
            if a <= b {
                out.push(hir::ClassUnicodeRange::new(a, b));
            }
        }
    };
    for &(a, b) in ranges {
        if a <= 0xD7FF {
            push(a, b.min(0xD7FF));
        }
        if b >= 0xE000 {
            push(a.max(0xE000), b);
        }
    }
    if out.is_empty() {
        return Hir::fail();
    }
    Hir::class(hir::Class::Unicode(hir::ClassUnicode::new(out)))
}
