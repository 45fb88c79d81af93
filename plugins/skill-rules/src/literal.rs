//! Literals a match must contain: the prefilter that keeps matching fast with thousands of
//! rules.
//!
//! `required_literals` reads an ECMAScript pattern (no flags) and returns, for every
//! top-level alternative, one string that any match of that alternative contains — or
//! `None` when it cannot be sure, and then the rule always runs. It is deliberately
//! conservative: it only collects plain characters outside groups and classes, drops a
//! character a quantifier makes optional, and gives up on anything it does not fully
//! understand. A wrong literal would hide a real match, so every doubt means "no literal".

/// One literal per top-level alternative, or `None` if some alternative has none.
pub fn required_literals(pattern: &str) -> Option<Vec<String>> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    for alt in split_top_level(&chars)? {
        let lit = longest_required_run(alt)?;
        if lit.is_empty() {
            return None;
        }
        out.push(lit);
    }
    Some(out)
}

/// Split at `|` outside groups, classes and escapes. `None` on unbalanced syntax.
fn split_top_level(p: &[char]) -> Option<Vec<&[char]>> {
    let mut parts = Vec::new();
    let (mut depth, mut start, mut i) = (0usize, 0usize, 0usize);
    while i < p.len() {
        match p[i] {
            '\\' => i += 1,
            '[' => i = class_end(p, i)?,
            '(' => depth += 1,
            ')' => depth = depth.checked_sub(1)?,
            '|' if depth == 0 => {
                parts.push(&p[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if depth != 0 {
        return None;
    }
    parts.push(&p[start..]);
    Some(parts)
}

/// Index of the `]` closing the class opened at `open`. In JavaScript the first unescaped
/// `]` closes a class, even right after `[` or `[^` (`[]` is the empty class).
fn class_end(p: &[char], open: usize) -> Option<usize> {
    let mut i = open + 1;
    while i < p.len() {
        match p[i] {
            '\\' => i += 2,
            ']' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Index of the `)` closing the group opened at `open`.
fn group_end(p: &[char], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while i < p.len() {
        match p[i] {
            '\\' => i += 1,
            '[' => i = class_end(p, i)?,
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// `{n}`, `{n,}` or `{n,m}` starting at `i`: its end index. Anything else is not a
/// quantifier (in non-unicode JavaScript a stray `{` is a literal).
fn brace_quantifier_end(p: &[char], i: usize) -> Option<usize> {
    let mut j = i + 1;
    let digits = |j: &mut usize| {
        let s = *j;
        while *j < p.len() && p[*j].is_ascii_digit() {
            *j += 1;
        }
        *j > s
    };
    if !digits(&mut j) {
        return None;
    }
    if j < p.len() && p[j] == ',' {
        j += 1;
        digits(&mut j);
    }
    (j < p.len() && p[j] == '}').then_some(j)
}

/// The longest run of characters every match of `alt` contains, in order and adjacent.
fn longest_required_run(alt: &[char]) -> Option<String> {
    let mut best = String::new();
    let mut run = String::new();
    let mut i = 0;
    let flush = |run: &mut String, best: &mut String| {
        if run.chars().count() > best.chars().count() {
            *best = run.clone();
        }
        run.clear();
    };
    while i < alt.len() {
        let c = alt[i];
        match c {
            '\\' => {
                let next = *alt.get(i + 1)?;
                i += 2;
                match next {
                    'n' => run.push('\n'),
                    't' => run.push('\t'),
                    'r' => run.push('\r'),
                    'f' => run.push('\u{c}'),
                    'v' => run.push('\u{b}'),
                    // Identity escapes of syntax characters are those characters.
                    c if "^$\\.*+?()[]{}|/-".contains(c) => run.push(c),
                    // Classes, assertions, backreferences, \u \x \c \k \p \0 …: not a plain
                    // character we can be sure of. Skip any payload that could look literal.
                    // A backreference, or (without that many groups) a legacy octal escape
                    // whose digits are not literal: `\12` is a newline, `\101` an `A`.
                    '0'..='9' => {
                        flush(&mut run, &mut best);
                        while alt.get(i).is_some_and(char::is_ascii_digit) {
                            i += 1;
                        }
                    }
                    'u' => {
                        flush(&mut run, &mut best);
                        i += hex_run(alt, i, 4);
                    }
                    'x' => {
                        flush(&mut run, &mut best);
                        i += hex_run(alt, i, 2);
                    }
                    'c' => {
                        flush(&mut run, &mut best);
                        if alt.get(i).is_some_and(|c| c.is_ascii_alphabetic()) {
                            i += 1;
                        }
                    }
                    'k' => {
                        flush(&mut run, &mut best);
                        if alt.get(i) == Some(&'<') {
                            while i < alt.len() && alt[i] != '>' {
                                i += 1;
                            }
                            i += 1;
                        }
                    }
                    _ => flush(&mut run, &mut best),
                }
            }
            '(' => {
                flush(&mut run, &mut best);
                i = group_end(alt, i)? + 1;
            }
            '[' => {
                flush(&mut run, &mut best);
                i = class_end(alt, i)? + 1;
            }
            '*' | '?' => {
                // The previous atom is optional: drop it if it was our last char.
                run.pop();
                flush(&mut run, &mut best);
                i += 1;
                continue;
            }
            '+' => {
                // The previous atom repeats: it is required, but nothing may follow it
                // adjacently in every match.
                flush(&mut run, &mut best);
                i += 1;
                continue;
            }
            '{' => match brace_quantifier_end(alt, i) {
                Some(end) => {
                    run.pop();
                    flush(&mut run, &mut best);
                    i = end + 1;
                    continue;
                }
                None => {
                    // A literal `{` in non-unicode mode, but be conservative.
                    flush(&mut run, &mut best);
                    i += 1;
                }
            },
            '.' | '^' | '$' | ']' | '}' | ')' | '|' => {
                flush(&mut run, &mut best);
                i += 1;
            }
            c => {
                run.push(c);
                i += 1;
            }
        }
    }
    flush(&mut run, &mut best);
    Some(best)
}

/// How many of up to `max` hex digits follow at `i`.
fn hex_run(p: &[char], i: usize, max: usize) -> usize {
    p[i.min(p.len())..].iter().take(max).take_while(|c| c.is_ascii_hexdigit()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lits(p: &str) -> Option<Vec<&'static str>> {
        required_literals(p).map(|v| v.into_iter().map(|s| &*Box::leak(s.into_boxed_str())).collect())
    }

    #[test]
    fn literal_table() {
        let table: &[(&str, Option<&[&str]>)] = &[
            ("rm -rf", Some(&["rm -rf"])),
            ("^Bash cat ", Some(&["Bash cat "])),
            ("\\.env$", Some(&[".env"])),
            ("secrets/key-1\\.(pem|der)\\n", Some(&["secrets/key-1."])),
            ("a|bc", Some(&["a", "bc"])),
            ("foo|.*", None),
            ("(foo|bar)", None),
            ("", None),
            (".*", None),
            ("colou?r", Some(&["colo"])),
            ("ab*c", Some(&["a"])),
            ("abc+d", Some(&["abc"])),
            ("abc{2}de", Some(&["ab"])),
            ("ab{1,3}cde", Some(&["cde"])),
            ("a{b", Some(&["a"])),
            ("x{,3}yz", Some(&[",3"])),
            ("[abc]def", Some(&["def"])),
            ("[]]xyz", Some(&["xyz"])),
            ("[^]]ab", Some(&["ab"])),
            ("[\\]]ab", Some(&["ab"])),
            ("(?=abc)x", Some(&["x"])),
            ("(?<=token=)tok1[A-Z]", Some(&["tok1"])),
            ("TODO\\(ticket-3\\)(?!:)", Some(&["TODO(ticket-3)"])),
            ("(a)\\1bc", Some(&["bc"])),
            ("\\k<n>zz", Some(&["zz"])),
            ("\\u0041BC", Some(&["BC"])),
            ("\\x41BC", Some(&["BC"])),
            ("\\cJxy", Some(&["xy"])),
            ("\\dabc\\w", Some(&["abc"])),
            ("\\bword\\b", Some(&["word"])),
            ("a\\.b\\/c\\\\d", Some(&["a.b/c\\d"])),
            ("\\a\\e", None),
            ("a\\tb", Some(&["a\tb"])),
            ("x*?y", Some(&["y"])),
            ("((a)|b)cd", Some(&["cd"])),
            ("(unclosed", None),
            ("[unclosed", None),
            ("a)b", None),
            ("日本語?x", Some(&["日本"])),
            ("😀+z", Some(&["😀"])),
            // Found by the fuzz target's oracle: octal escapes' digits are not literals.
            ("\\12x", Some(&["x"])),
            ("\\01xy", Some(&["xy"])),
            ("ab\\101", Some(&["ab"])),
            ("(a)\\1bc", Some(&["bc"])),
            ("\\8x", Some(&["x"])),
        ];
        for (pattern, want) in table {
            let got = lits(pattern);
            assert_eq!(got.as_deref(), *want, "pattern {pattern:?}");
        }
    }
}
