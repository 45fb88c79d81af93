//! Text rules shared by every mapping contract: one-line summaries counted in characters,
//! the 65,536-byte cut of match text at a character boundary, `file_edit` paths made relative
//! to the run's directory by whole path components, and credential redaction (§6).

/// Newlines (and the Unicode line/paragraph separators) become spaces.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push(' ');
            }
            '\n' | '\u{2028}' | '\u{2029}' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The first `max` characters of `text`.
pub fn cut_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => text[..i].to_string(),
        None => text.to_string(),
    }
}

/// A summary: one line, at most 200 characters.
pub fn summary(text: &str) -> String {
    cut_chars(&one_line(text), 200)
}

/// `text` cut to at most `max` bytes, at a character boundary.
pub fn cut_bytes(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// `path` relative to `cwd` when it lies inside it (by whole components), else unchanged.
pub fn relative_to(path: &str, cwd: Option<&str>) -> String {
    let Some(cwd) = cwd.map(|c| c.trim_end_matches('/')).filter(|c| !c.is_empty()) else {
        return path.to_string();
    };
    match path.strip_prefix(cwd) {
        Some(rest) if rest.starts_with('/') => {
            // Every leading `/` and `./` component: stripping one `./` once left the `/` of
            // `.//a` in front (found by fuzzing: `/repo/.//a.rs` became `/a.rs`).
            let mut rest = rest.trim_start_matches('/');
            while let Some(r) = rest.strip_prefix("./") {
                rest = r.trim_start_matches('/');
            }
            if rest.is_empty() {
                path.to_string()
            } else {
                rest.to_string()
            }
        }
        _ => path.to_string(),
    }
}

/// The four credential replacements of the protocol's redaction rule (spec §6), applied to
/// every `task.failed` reason a mapper builds from CLI output: `Bearer <token>`,
/// `bearer.<token>`, `oxk_<…>`, and `sk-` followed by 8 or more key characters.
pub fn redact_credentials(text: &str) -> String {
    fn token_char(c: char) -> bool {
        c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '+' | '/' | '=')
    }
    fn key_char(c: char) -> bool {
        c.is_ascii_alphanumeric() || matches!(c, '-' | '_')
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'scan: while !rest.is_empty() {
        // (prefix, the characters of what follows it, how many make a credential)
        type Rule = (&'static str, fn(char) -> bool, usize);
        let rules: [Rule; 4] = [("Bearer ", token_char, 1), ("bearer.", token_char, 1), ("oxk_", key_char, 1), ("sk-", key_char, 8)];
        for (prefix, allowed, min) in rules {
            if let Some(after) = rest.strip_prefix(prefix) {
                let len: usize = after.chars().take_while(|c| allowed(*c)).map(char::len_utf8).sum();
                if len >= min {
                    out.push_str(prefix);
                    out.push_str("[redacted]");
                    rest = &after[len..];
                    continue 'scan;
                }
            }
        }
        let c = rest.chars().next().expect("rest is not empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// A `task.failed` reason from CLI text: one line, credentials redacted, at most `max`
/// characters.
pub fn reason(text: &str, max: usize) -> String {
    cut_chars(redact_credentials(one_line(text).trim()).as_str(), max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_table() {
        let table = [
            ("a\nb", "a b"),
            ("a\r\nb", "a b"),
            ("a\rb", "a b"),
            ("a\u{2028}b\u{2029}c", "a b c"),
            ("a\n\nb", "a  b"),
            ("tab\tstays", "tab\tstays"),
        ];
        for (input, want) in table {
            assert_eq!(one_line(input), want, "{input:?}");
        }
    }

    #[test]
    fn summaries_count_characters_not_bytes() {
        let emoji = "😀".repeat(250);
        let s = summary(&emoji);
        assert_eq!(s.chars().count(), 200);
        assert_eq!(s.len(), 800);
        let cjk = "漢".repeat(199) + "字字";
        assert_eq!(summary(&cjk).chars().count(), 200);
        assert_eq!(summary("short"), "short");
        assert_eq!(summary(&"a".repeat(200)).len(), 200);
    }

    #[test]
    fn byte_cut_respects_char_boundaries() {
        let s = "a".repeat(65_535) + "é";
        let cut = cut_bytes(s, 65_536);
        assert_eq!(cut.len(), 65_535);
        let s = "a".repeat(65_534) + "é";
        assert_eq!(cut_bytes(s.clone(), 65_536), s);
        assert_eq!(cut_bytes("😀😀".into(), 5), "😀");
    }

    #[test]
    fn redaction_table() {
        let table = [
            ("auth: Bearer abc.def-123 failed", "auth: Bearer [redacted] failed"),
            ("proto bearer.eyJhbGci.x/y+z= next", "proto bearer.[redacted] next"),
            ("key oxk_live_ABC-123 leaked", "key oxk_[redacted] leaked"),
            ("Incorrect API key provided: sk-proj-abcdEFGH1234", "Incorrect API key provided: sk-[redacted]"),
            ("short sk-test.... stays", "short sk-test.... stays"),
            ("sk-1234567 is seven", "sk-1234567 is seven"),
            ("sk-12345678", "sk-[redacted]"),
            ("Bearer  (two spaces) stays", "Bearer  (two spaces) stays"),
            ("no secrets here", "no secrets here"),
            ("unicode ✓ oxk_é", "unicode ✓ oxk_é"),
            ("oxk_a oxk_b", "oxk_[redacted] oxk_[redacted]"),
            ("", ""),
        ];
        for (input, want) in table {
            assert_eq!(redact_credentials(input), want, "{input:?}");
        }
        assert_eq!(reason("line one\nBearer xyz", 300), "line one Bearer [redacted]");
        assert_eq!(reason(&"é".repeat(400), 300).chars().count(), 300);
    }

    #[test]
    fn relative_path_table() {
        let cwd = Some("/home/dev/repo");
        let table = [
            ("/home/dev/repo/src/a.rs", cwd, "src/a.rs"),
            ("/home/dev/repo/a.rs", Some("/home/dev/repo/"), "a.rs"),
            ("/home/dev/repo", cwd, "/home/dev/repo"),
            ("/home/dev/repo/", cwd, "/home/dev/repo/"),
            ("/home/dev/repository/a.rs", cwd, "/home/dev/repository/a.rs"),
            ("/home/dev/other/a.rs", cwd, "/home/dev/other/a.rs"),
            ("relative/a.rs", cwd, "relative/a.rs"),
            ("/home/dev/repo/./a.rs", cwd, "a.rs"),
            ("/home/dev/repo//a.rs", cwd, "a.rs"),
            ("/home/dev/repo/.//a.rs", cwd, "a.rs"),
            ("/home/dev/repo/././a.rs", cwd, "a.rs"),
            ("/home/dev/repo/.//./src/a.rs", cwd, "src/a.rs"),
            ("/home/dev/repo/./", cwd, "/home/dev/repo/./"),
            ("/a/b.rs", None, "/a/b.rs"),
            ("/a/b.rs", Some(""), "/a/b.rs"),
            ("/x/y.rs", Some("/"), "/x/y.rs"),
        ];
        for (path, cwd, want) in table {
            assert_eq!(relative_to(path, cwd), want, "{path:?} in {cwd:?}");
        }
    }
}
