//! Which patterns the backtracking engine (`regress`) may run. Only patterns the linear
//! engine cannot take come here: those with a backreference or lookaround (and counted
//! repetitions too large to unroll). regress has no step limit, so a pattern whose search
//! can branch exponentially is refused at compile time, with a rule warning, instead of
//! faulting every `check` on the host's 2 s deadline.
//!
//! A backtracking search is exponential only when a repeated part of the pattern can match
//! the same text in more than one way. Inside anything that repeats (a quantifier whose
//! maximum is above 1), this refuses:
//!
//! - a quantifier whose count is not fixed (`(a+)+`, `(a*)*b`, `(\w+\s?)+`, `(.*a){20}`):
//!   the text of one iteration can be split between the two loops in many ways;
//! - an alternation whose alternatives can start with the same character, or one of which
//!   can match nothing (`(a|a)*`, `(a|aa)+`, `(\d|1)+`, `(a|)+`): each iteration can take
//!   either.
//!
//! What passes matches each iteration of every loop in at most one way, so the search is
//! polynomial in the text, not exponential. A lookaround is matched on its own (JavaScript
//! never backtracks into it), so its contents are judged as a pattern of their own.

use crate::syntax::{normalize, Node, Ranges, MAX_CODE_POINT};

/// Why the backtracking engine must not run `node`, or `None` if it may.
pub fn risk(node: &Node) -> Option<&'static str> {
    check(node, false)
}

const NESTED: &str = "a repeated group holds a quantifier whose count is not fixed (like `(a+)+`); with a backreference or \
                      lookaround it needs the backtracking engine, where that takes exponential time on some texts";
const OVERLAP: &str = "a repeated group has alternatives that can match the same text (like `(a|aa)+`); with a backreference \
                       or lookaround it needs the backtracking engine, where that takes exponential time on some texts";

/// `repeated`: `node` is inside a quantifier whose maximum is above 1 (and outside any
/// lookaround within it).
fn check(node: &Node, repeated: bool) -> Option<&'static str> {
    match node {
        Node::Empty | Node::Set(_) | Node::Start | Node::End | Node::WordBoundary { .. } | Node::BackRef => None,
        Node::Look { body, .. } => check(body, false),
        Node::Repeat { min, max, body } => {
            if repeated && Some(*min) != *max {
                return Some(NESTED);
            }
            check(body, repeated || max.is_none_or(|m| m > 1))
        }
        Node::Concat(items) => items.iter().find_map(|n| check(n, repeated)),
        Node::Alt(alts) => {
            if repeated {
                let firsts: Vec<First> = alts.iter().map(first).collect();
                for (i, a) in firsts.iter().enumerate() {
                    if a.nullable || firsts[i + 1..].iter().any(|b| b.nullable || intersects(&a.set, &b.set)) {
                        return Some(OVERLAP);
                    }
                }
            }
            alts.iter().find_map(|n| check(n, repeated))
        }
    }
}

/// The characters a match of a node can start with, and whether it can match nothing.
struct First {
    set: Ranges,
    nullable: bool,
}

fn first(node: &Node) -> First {
    match node {
        Node::Set(s) => First { set: s.clone(), nullable: false },
        // Zero-width: the next node decides. A backreference can be empty or anything.
        Node::Empty | Node::Start | Node::End | Node::WordBoundary { .. } | Node::Look { .. } => First { set: vec![], nullable: true },
        Node::BackRef => First { set: vec![(0, MAX_CODE_POINT)], nullable: true },
        Node::Repeat { min, max, body } => {
            let f = first(body);
            if *max == Some(0) {
                First { set: vec![], nullable: true }
            } else {
                First { nullable: f.nullable || *min == 0, set: f.set }
            }
        }
        Node::Concat(items) => {
            let mut set = Vec::new();
            for item in items {
                let f = first(item);
                set.extend(f.set);
                if !f.nullable {
                    return First { set: normalize(set), nullable: false };
                }
            }
            First { set: normalize(set), nullable: true }
        }
        Node::Alt(alts) => {
            let mut out = First { set: vec![], nullable: false };
            for f in alts.iter().map(first) {
                out.set.extend(f.set);
                out.nullable |= f.nullable;
            }
            out.set = normalize(out.set);
            out
        }
    }
}

/// Whether two normalized range lists share a code point.
fn intersects(a: &[(u32, u32)], b: &[(u32, u32)]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].1 < b[j].0 {
            i += 1;
        } else if b[j].1 < a[i].0 {
            j += 1;
        } else {
            return true;
        }
    }
    false
}
