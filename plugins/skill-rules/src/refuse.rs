//! The patterns the matcher refuses before compiling them, each with the reason its rule
//! warning gives: syntax JavaScript rejects but `regress` would accept, and syntax `regress`
//! 0.10.5 reads differently from JavaScript (found by fuzzing; see docs/reliability.md F1, F3,
//! F6). A refused pattern disables its rule alone; refusing is always safe, misreading never is.

/// JavaScript refuses these, but a permissive engine might not: refuse them ourselves.
pub(crate) fn js_rejects(pattern: &str) -> Option<&'static str> {
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
/// - `\u` without four hex digits: JavaScript reads `u` and goes on (so `\u{41}` is 41 `u`s);
///   regress reads `\u{41}` as `A` even without the `u` flag, and `\u+123` as U+0123 (it
///   parses the four characters with `from_str_radix`, which takes a `+`). And after a high
///   surrogate `\uD83D`, a `\u` that does not make a pair with it is swallowed: `\uD83D\u0041`
///   is U+D83D then the text `0041` (JavaScript: U+D83D then `A`).
/// - regress numbers groups before parsing by counting every `(`, so `(?:…)` and lookarounds
///   count as captures (`Parser::parse_capture_groups`). `\N` with N above the real number
///   of captures but not above the number of `(` becomes a backreference to a group that
///   does not exist (JavaScript reads a legacy octal escape): `\1(?:a)`. And `\k<name>` of a
///   named group preceded by a non-capturing `(` refers to the wrong group, or to one that
///   does not exist: `(?:a)(?<n>b)\k<n>`. Matching a reference to a missing group indexes
///   past the capture slots: a panic with debug assertions, an unchecked out-of-bounds
///   access without them.
pub(crate) fn regress_misreads(pattern: &str) -> Option<&'static str> {
    let b = pattern.as_bytes();
    let (mut i, mut in_class) = (0, false);
    while i < b.len() {
        match b[i] {
            b'\\' => {
                if b.get(i + 1) == Some(&b'x') && !b.get(i + 2..i + 4).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return Some("`\\x` without two hex digits is misread by the regex engine");
                }
                if b.get(i + 1) == Some(&b'u') {
                    // A surrogate pair is read as one escape: skip its second half.
                    match unicode_escape_misread(b, i, in_class) {
                        Ok(skip) => i += skip,
                        Err(why) => return Some(why),
                    }
                }
                i += 1;
            }
            b'[' if !in_class => in_class = true,
            b']' if in_class => in_class = false,
            _ => {}
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

/// The `\u` escape at `b[i]` (`b[i + 1] == b'u'`): `Err` with the reason if regress misreads
/// it, else how many bytes past `i + 1` a surrogate pair's second half takes (0 or 6).
fn unicode_escape_misread(b: &[u8], i: usize, in_class: bool) -> Result<usize, &'static str> {
    let hex4 = |at: usize| -> Option<u32> {
        let h = b.get(at..at + 4)?;
        if !h.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
    };
    let Some(unit) = hex4(i + 2) else {
        return Err("`\\u` without four hex digits is misread by the regex engine");
    };
    if !(0xD800..=0xDFFF).contains(&unit) {
        return Ok(0);
    }
    let low = (b.get(i + 6..i + 8) == Some(b"\\u")).then(|| hex4(i + 8)).flatten();
    match low {
        Some(0xDC00..=0xDFFF) if unit <= 0xDBFF && !in_class => Ok(6),
        _ => Err(SURROGATE),
    }
}

/// regress reads a text by code point, JavaScript without the `u` flag by UTF-16 unit: the
/// two agree on a surrogate pair written as two escapes, and on nothing else made of
/// surrogates. And regress fails a whole pattern with a quantified lone surrogate
/// (`x\uD83D*` never matches, not even `x`).
const SURROGATE: &str = "a `\\uD800`-`\\uDFFF` escape outside a surrogate pair, or in a class, is misread by the regex engine \
                         (it reads text by code point, where JavaScript reads UTF-16 units)";
