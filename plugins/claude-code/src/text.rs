//! Text rules of the mapping contract: one-line summaries counted in characters, the
//! 65,536-byte cut of match text at a character boundary, and `file_edit` paths made
//! relative to the run's directory by whole path components.

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
            let rest = rest.trim_start_matches('/');
            let rest = rest.strip_prefix("./").unwrap_or(rest);
            if rest.is_empty() {
                path.to_string()
            } else {
                rest.to_string()
            }
        }
        _ => path.to_string(),
    }
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
            ("/a/b.rs", None, "/a/b.rs"),
            ("/a/b.rs", Some(""), "/a/b.rs"),
            ("/x/y.rs", Some("/"), "/x/y.rs"),
        ];
        for (path, cwd, want) in table {
            assert_eq!(relative_to(path, cwd), want, "{path:?} in {cwd:?}");
        }
    }
}
