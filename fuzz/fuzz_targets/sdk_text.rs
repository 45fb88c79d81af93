//! `orgx_peer_sdk::text`: the text rules every mapper shares.
//!
//! Input: `first byte` (a length parameter) then text; the text is split at its first NUL
//! into a path and a cwd for `relative_to`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orgx_peer_sdk::text::{cut_bytes, cut_chars, one_line, reason, redact_credentials, relative_to, summary};

fn no_line_break(s: &str) -> bool {
    !s.contains(['\n', '\r', '\u{2028}', '\u{2029}'])
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else { return };
    let n = n as usize * 2;
    let text = String::from_utf8_lossy(rest);
    let text = text.as_ref();

    // Redaction is idempotent, never grows a credential, and keeps text without prefixes.
    let r = redact_credentials(text);
    assert_eq!(redact_credentials(&r), r, "redaction not idempotent on {text:?}");
    if !["Bearer ", "bearer.", "oxk_", "sk-"].iter().any(|p| text.contains(p)) {
        assert_eq!(r, text, "text without a credential prefix changed");
    }

    // A reason: at most n characters, one line, redacted.
    let why = reason(text, n);
    assert!(why.chars().count() <= n, "reason of {} chars > {n}", why.chars().count());
    assert!(no_line_break(&why), "reason with a line break: {why:?}");
    // Cutting may split a credential's token, leaving a shorter one that still reads as one
    // (`sk-` + 8 chars) only if the cut made it; so compare with the uncut reason instead.
    let full = reason(text, usize::MAX);
    assert!(full.starts_with(why.as_str()), "reason is not a prefix of the uncut reason");
    assert_eq!(redact_credentials(&full), full, "uncut reason not redacted: {full:?}");

    // A summary: at most 200 characters, one line, a prefix of the one-line text.
    let s = summary(text);
    assert!(s.chars().count() <= 200);
    assert!(no_line_break(&s), "summary with a line break: {s:?}");
    assert!(one_line(text).starts_with(s.as_str()));
    assert_eq!(cut_chars(text, n).chars().count(), text.chars().count().min(n));

    // cut_bytes: at most n bytes, a prefix, never a split character, as long as possible.
    let cut = cut_bytes(text.to_string(), n);
    assert!(cut.len() <= n || cut.len() == text.len() && text.len() <= n);
    assert!(text.starts_with(cut.as_str()));
    if cut.len() < text.len() {
        let next = text[cut.len()..].chars().next().unwrap();
        assert!(cut.len() + next.len_utf8() > n, "cut_bytes cut {} bytes short of {n}", n - cut.len());
    }

    // relative_to: unchanged, or a suffix of the path below cwd.
    let (path, cwd) = match text.split_once('\0') {
        Some((p, c)) => (p, Some(c)),
        None => (text, None),
    };
    let rel = relative_to(path, cwd);
    if rel != path {
        let cwd = cwd.expect("changed without a cwd").trim_end_matches('/');
        assert!(!cwd.is_empty());
        assert!(path.starts_with(cwd) && path[cwd.len()..].starts_with('/'), "{path:?} is not below {cwd:?}");
        assert!(path.ends_with(rel.as_str()) && !rel.is_empty() && !rel.starts_with('/'), "{rel:?} of {path:?} in {cwd:?}");
    }
    assert_eq!(relative_to(path, None), path);
});
