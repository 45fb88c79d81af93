//! A rule's pattern as a tree, read the way `regress` 0.10.5 reads a pattern without flags —
//! which, for every pattern `refuse` lets through, is the way JavaScript reads it (Annex B
//! syntax: legacy octal escapes, `\c`, a stray `{` or `]` as a character, quantified
//! lookaheads). The matcher needs the tree twice: to translate a pattern to the linear-time
//! engine (`linear`), and to judge whether the backtracking engine may run it (`redos`).
//!
//! It is called only on patterns `regress` has compiled, so it never needs to report syntax
//! errors well; an error here means "not understood" and the rule is refused. Only what
//! decides *whether* a text contains a match is kept: groups (capturing or not) are their
//! contents, greediness is dropped, and every one-character matcher (a character, `.`,
//! `\d`, a class) is a set of code points. Text is matched by code point, as regress does on
//! a Rust string (so `.` takes a whole emoji, where JavaScript without `u` sees two halves).

/// Sorted, disjoint, non-adjacent inclusive code point ranges.
pub type Ranges = Vec<(u32, u32)>;

#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Empty,
    /// One character out of this set (empty: matches nothing).
    Set(Ranges),
    /// `^` and `$` (no `m` flag: only at the ends of the text).
    Start,
    End,
    /// `\b` / `\B`, on ASCII word characters.
    WordBoundary {
        negated: bool,
    },
    Look {
        behind: bool,
        negated: bool,
        body: Box<Node>,
    },
    /// `\1`, `\k<name>`: what it matches depends on the match so far.
    BackRef,
    Repeat {
        min: usize,
        max: Option<usize>,
        body: Box<Node>,
    },
    Concat(Vec<Node>),
    Alt(Vec<Node>),
}

pub const MAX_CODE_POINT: u32 = 0x10_FFFF;
const DIGITS: &[(u32, u32)] = &[(0x30, 0x39)];
const WORD: &[(u32, u32)] = &[(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)];
/// JavaScript's WhiteSpace and LineTerminator (regress `charclasses`).
const SPACE: &[(u32, u32)] = &[
    (0x09, 0x0D),
    (0x20, 0x20),
    (0xA0, 0xA0),
    (0x1680, 0x1680),
    (0x2000, 0x200A),
    (0x2028, 0x2029),
    (0x202F, 0x202F),
    (0x205F, 0x205F),
    (0x3000, 0x3000),
    (0xFEFF, 0xFEFF),
];
const LINE_TERMINATORS: &[(u32, u32)] = &[(0x0A, 0x0A), (0x0D, 0x0D), (0x2028, 0x2029)];

/// Read `pattern` (no flags). `Err` only for what regress would refuse too, or what this
/// reader does not understand.
pub fn parse(pattern: &str) -> Result<Node, &'static str> {
    let chars: Vec<char> = pattern.chars().collect();
    let (parens, named) = count_groups(&chars);
    let mut p = Parser { c: chars, i: 0, parens, named };
    let node = p.disjunction()?;
    if p.i != p.c.len() {
        return Err("unbalanced parenthesis");
    }
    Ok(node)
}

/// regress's count of groups, which decides whether `\N` is a backreference: every `(`
/// outside a class (F1 in docs/reliability.md; `refuse` removes the cases where that count
/// differs from JavaScript's). And whether any group is named, which makes `\k` a reference.
fn count_groups(c: &[char]) -> (usize, bool) {
    let (mut parens, mut named, mut i) = (0, false, 0);
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
                parens += 1;
                named |= c.get(i + 1) == Some(&'?') && c.get(i + 2) == Some(&'<') && !matches!(c.get(i + 3), Some('=' | '!'));
            }
            _ => {}
        }
        i += 1;
    }
    (parens, named)
}

fn char_node(c: u32) -> Node {
    Node::Set(vec![(c, c)])
}

fn concat(mut items: Vec<Node>) -> Node {
    match items.len() {
        0 => Node::Empty,
        1 => items.pop().expect("one item"),
        _ => Node::Concat(items),
    }
}

/// Sort and merge overlapping or adjacent ranges.
pub fn normalize(mut r: Ranges) -> Ranges {
    r.sort_unstable();
    let mut out: Ranges = Vec::with_capacity(r.len());
    for (a, b) in r {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// Every code point not in `r` (normalized).
pub fn complement(r: &[(u32, u32)]) -> Ranges {
    let mut out = Vec::with_capacity(r.len() + 1);
    let mut next = 0u32;
    for &(a, b) in r {
        if a > next {
            out.push((next, a - 1));
        }
        next = b.saturating_add(1);
    }
    if next <= MAX_CODE_POINT {
        out.push((next, MAX_CODE_POINT));
    }
    out
}

/// One atom of a class: a character, or a class escape (`\d`, `\S`, …).
enum ClassAtom {
    Char(u32),
    Set(Ranges),
}

struct Parser {
    c: Vec<char>,
    i: usize,
    parens: usize,
    named: bool,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.c.get(self.i).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        let yes = self.peek() == Some(c);
        self.i += usize::from(yes);
        yes
    }

    fn eat_str(&mut self, s: &str) -> bool {
        let n = s.chars().count();
        let yes = self.c.get(self.i..self.i + n).is_some_and(|w| w.iter().copied().eq(s.chars()));
        self.i += if yes { n } else { 0 };
        yes
    }

    fn disjunction(&mut self) -> Result<Node, &'static str> {
        let mut alts = vec![self.term()?];
        while self.eat('|') {
            alts.push(self.term()?);
        }
        Ok(if alts.len() == 1 { alts.pop().expect("one alternative") } else { Node::Alt(alts) })
    }

    /// A sequence of atoms, each with its quantifier, up to `|`, `)` or the end.
    fn term(&mut self) -> Result<Node, &'static str> {
        let mut items: Vec<Node> = Vec::new();
        while let Some(c) = self.peek() {
            let mut start = items.len();
            let mut quantifiable = true;
            match c {
                ')' | '|' => break,
                '^' | '$' => {
                    self.i += 1;
                    items.push(if c == '^' { Node::Start } else { Node::End });
                    quantifiable = false;
                }
                '\\' => {
                    self.i += 1;
                    match self.peek() {
                        None => return Err("incomplete escape"),
                        Some(b @ ('b' | 'B')) => {
                            // Quantifiable in regress (not in JavaScript, where it is an error).
                            self.i += 1;
                            items.push(Node::WordBoundary { negated: b == 'B' });
                        }
                        Some('c') => {
                            self.i += 1;
                            match self.peek() {
                                Some(l) if l.is_ascii_alphabetic() => {
                                    self.i += 1;
                                    items.push(char_node(u32::from(l) % 32));
                                }
                                // `\c` not before a letter is the two characters `\c`; a
                                // quantifier after it repeats the `c` alone.
                                _ => {
                                    items.push(char_node(u32::from('\\')));
                                    start += 1;
                                    items.push(char_node(u32::from('c')));
                                }
                            }
                        }
                        Some(_) => items.push(self.atom_escape()?),
                    }
                }
                '.' => {
                    self.i += 1;
                    items.push(Node::Set(complement(LINE_TERMINATORS)));
                }
                '(' => {
                    if self.eat_str("(?=") || self.eat_str("(?!") {
                        let negated = self.c[self.i - 1] == '!';
                        items.push(self.look(false, negated)?);
                    } else if self.eat_str("(?<=") || self.eat_str("(?<!") {
                        let negated = self.c[self.i - 1] == '!';
                        quantifiable = false;
                        items.push(self.look(true, negated)?);
                    } else if self.eat_str("(?:") {
                        items.push(self.disjunction()?);
                    } else if self.c.get(self.i + 1) == Some(&'?') && self.c.get(self.i + 2) != Some(&'<') {
                        // `(?i:…)` modifier groups: `refuse` turns them away first.
                        return Err("modifier groups are not supported");
                    } else {
                        self.i += 1;
                        if self.eat('?') {
                            // `(?<name>`: regress checked the name, which cannot hold a `>`.
                            while self.next().is_some_and(|c| c != '>') {}
                        }
                        items.push(self.disjunction()?);
                    }
                    if !self.eat(')') {
                        return Err("unbalanced parenthesis");
                    }
                }
                '[' => items.push(self.class()?),
                '{' => {
                    if self.braced_quantifier().is_some() {
                        return Err("nothing to repeat");
                    }
                    self.i += 1;
                    items.push(char_node(u32::from('{')));
                }
                '*' | '+' | '?' => return Err("nothing to repeat"),
                _ => {
                    self.i += 1;
                    items.push(char_node(u32::from(c)));
                }
            }
            if let Some((min, max)) = self.quantifier() {
                if !quantifiable || items.len() == start {
                    return Err("quantifier not allowed here");
                }
                if max.is_some_and(|max| min > max) {
                    return Err("numbers out of order in quantifier");
                }
                let body = concat(items.split_off(start));
                items.push(Node::Repeat { min, max, body: Box::new(body) });
            }
        }
        Ok(concat(items))
    }

    fn look(&mut self, behind: bool, negated: bool) -> Result<Node, &'static str> {
        let body = self.disjunction()?;
        Ok(Node::Look { behind, negated, body: Box::new(body) })
    }

    /// `*`, `+`, `?` or a braced count, then an optional lazy `?` (irrelevant to whether a
    /// text matches).
    fn quantifier(&mut self) -> Option<(usize, Option<usize>)> {
        let q = match self.peek()? {
            '*' => (0, None),
            '+' => (1, None),
            '?' => (0, Some(1)),
            '{' => {
                let (q, end) = self.braced_quantifier()?;
                self.i = end - 1;
                q
            }
            _ => return None,
        };
        self.i += 1;
        self.eat('?');
        Some(q)
    }

    /// `{n}`, `{n,}` or `{n,m}` at the current position: the counts (saturated, like
    /// regress) and the index after the `}`. Anything else is not a quantifier.
    fn braced_quantifier(&self) -> Option<((usize, Option<usize>), usize)> {
        let mut j = self.i + 1;
        let number = |j: &mut usize| {
            let start = *j;
            let mut n = 0usize;
            while let Some(d) = self.c.get(*j).and_then(|c| c.to_digit(10)) {
                n = n.saturating_mul(10).saturating_add(d as usize);
                *j += 1;
            }
            (*j > start).then_some(n)
        };
        let min = number(&mut j)?;
        let mut max = Some(min);
        if self.c.get(j) == Some(&',') {
            j += 1;
            max = number(&mut j);
        }
        (self.c.get(j) == Some(&'}')).then_some(((min, max), j + 1))
    }

    /// After `\` (not `\b`, `\B`, `\c`).
    fn atom_escape(&mut self) -> Result<Node, &'static str> {
        let c = self.peek().ok_or("incomplete escape")?;
        if let Some(ranges) = class_escape(c) {
            self.i += 1;
            return Ok(Node::Set(ranges));
        }
        match c {
            '1'..='9' => {
                let save = self.i;
                let mut n = 0usize;
                while let Some(d) = self.peek().and_then(|c| c.to_digit(10)) {
                    n = n.saturating_mul(10).saturating_add(d as usize);
                    self.i += 1;
                }
                if n <= self.parens {
                    return Ok(Node::BackRef);
                }
                // Not that many groups: a legacy octal escape, or `\8` `\9` for `8` `9`.
                self.i = save;
                Ok(char_node(self.character_escape()?))
            }
            'k' if self.named => {
                self.i += 1;
                if !self.eat('<') {
                    return Err("invalid named reference");
                }
                while self.next().is_some_and(|c| c != '>') {}
                Ok(Node::BackRef)
            }
            _ => Ok(char_node(self.character_escape()?)),
        }
    }

    /// A CharacterEscape (without the `\`), as regress reads it without the `u` flag.
    fn character_escape(&mut self) -> Result<u32, &'static str> {
        let c = self.next().ok_or("incomplete escape")?;
        let digit = |c: char| c.to_digit(10).unwrap_or(0);
        Ok(match c {
            'f' => 0x0C,
            'n' => 0x0A,
            'r' => 0x0D,
            't' => 0x09,
            'v' => 0x0B,
            'c' => match self.next() {
                Some(l) if l.is_ascii_alphabetic() => u32::from(l) % 32,
                _ => return Err("invalid character escape"),
            },
            '0' if !self.peek().is_some_and(|d| d.is_ascii_digit()) => 0,
            'x' => match (self.peek().and_then(|c| c.to_digit(16)), self.c.get(self.i + 1).and_then(|c| c.to_digit(16))) {
                (Some(a), Some(b)) => {
                    self.i += 2;
                    a * 16 + b
                }
                // JavaScript reads `x`; `refuse` turns these away since regress does not.
                _ => u32::from('x'),
            },
            'u' => self.unicode_escape(),
            '0'..='7' => {
                let first = digit(c);
                match self.peek() {
                    Some('8' | '9') if c == '0' => 0,
                    Some(d @ '0'..='7') => {
                        self.i += 1;
                        let two = first * 8 + digit(d);
                        match self.peek() {
                            Some(e @ '0'..='7') if first <= 3 => {
                                self.i += 1;
                                two * 8 + digit(e)
                            }
                            _ => two,
                        }
                    }
                    _ => first,
                }
            }
            // Identity escapes: syntax characters, `/`, and (Annex B) anything else.
            c => u32::from(c),
        })
    }

    /// After `\u`: four hex digits (a high surrogate pairs with a following `\uDC00`-`\uDFFF`);
    /// otherwise the letter `u` (`refuse` turns those away: regress reads some of them
    /// differently).
    fn unicode_escape(&mut self) -> u32 {
        let hex4 = |p: &Parser, at: usize| -> Option<u32> {
            let w = p.c.get(at..at + 4)?;
            w.iter().try_fold(0u32, |n, c| Some(n * 16 + c.to_digit(16)?))
        };
        let Some(unit) = hex4(self, self.i) else { return u32::from('u') };
        self.i += 4;
        if (0xD800..=0xDBFF).contains(&unit) && self.c.get(self.i..self.i + 2) == Some(&['\\', 'u']) {
            if let Some(low @ 0xDC00..=0xDFFF) = hex4(self, self.i + 2) {
                self.i += 6;
                return 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
            }
        }
        unit
    }

    /// `[…]`: the first unescaped `]` closes it (`[]` matches nothing, `[^]` anything).
    fn class(&mut self) -> Result<Node, &'static str> {
        self.i += 1;
        let negated = self.eat('^');
        let mut ranges = Ranges::new();
        let add = |atom: ClassAtom, ranges: &mut Ranges| match atom {
            ClassAtom::Char(c) => ranges.push((c, c)),
            ClassAtom::Set(s) => ranges.extend(s),
        };
        loop {
            match self.peek() {
                None => return Err("unterminated class"),
                Some(']') => {
                    self.i += 1;
                    break;
                }
                _ => {}
            }
            let Some(first) = self.class_atom()? else { continue };
            if !self.eat('-') {
                add(first, &mut ranges);
                continue;
            }
            let Some(second) = self.class_atom()? else {
                // `[a-]`: the `-` is a character.
                add(first, &mut ranges);
                ranges.push((0x2D, 0x2D));
                continue;
            };
            match (first, second) {
                (ClassAtom::Char(a), ClassAtom::Char(b)) => {
                    if a > b {
                        return Err("range out of order in class");
                    }
                    ranges.push((a, b));
                }
                // Annex B: `[\d-z]` is `\d`, `-` and `z`.
                (first, second) => {
                    add(first, &mut ranges);
                    ranges.push((0x2D, 0x2D));
                    add(second, &mut ranges);
                }
            }
        }
        let ranges = normalize(ranges);
        Ok(Node::Set(if negated { complement(&ranges) } else { ranges }))
    }

    /// One class atom, or `None` at the closing `]` (or the end).
    fn class_atom(&mut self) -> Result<Option<ClassAtom>, &'static str> {
        let Some(c) = self.peek() else { return Ok(None) };
        if c == ']' {
            return Ok(None);
        }
        self.i += 1;
        if c != '\\' {
            return Ok(Some(ClassAtom::Char(u32::from(c))));
        }
        let e = self.peek().ok_or("incomplete escape")?;
        if let Some(ranges) = class_escape(e) {
            self.i += 1;
            return Ok(Some(ClassAtom::Set(ranges)));
        }
        Ok(Some(ClassAtom::Char(match e {
            'b' => {
                self.i += 1;
                0x08
            }
            'c' => match self.c.get(self.i + 1) {
                // Annex B: `\c` then a digit or `_` inside a class.
                Some(&d) if d.is_ascii_digit() || d == '_' => {
                    self.i += 2;
                    u32::from(d) & 0x1F
                }
                Some(&l) if l.is_ascii_alphabetic() => {
                    self.i += 2;
                    u32::from(l) % 32
                }
                // The atom is the `\` alone; the `c` is the next one.
                _ => u32::from('\\'),
            },
            _ => self.character_escape()?,
        })))
    }
}

/// `\d \D \s \S \w \W` as sets.
fn class_escape(c: char) -> Option<Ranges> {
    let base = match c.to_ascii_lowercase() {
        'd' => DIGITS,
        's' => SPACE,
        'w' => WORD,
        _ => return None,
    };
    Some(if c.is_ascii_uppercase() { complement(base) } else { base.to_vec() })
}

#[cfg(test)]
mod tests;
