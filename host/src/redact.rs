//! What may be shown of text that came from outside the peer (spec §6): transport errors and
//! `task.failed` reasons. A leaf module.
//!
//! Whatever a server, a proxy or a CLI put in an error can reach a log line, `status`, an
//! error report or a `reason` the server stores, so it is redacted before it goes anywhere:
//! credentials replaced (`Bearer …`, `bearer.…`, `oxk_…`, `sk-` + 8 key characters — one
//! implementation, the SDK's, shared with the mappers) and then cut. Redaction comes first,
//! so a cut can never leave half a token in the clear.

use orgx_peer_sdk::text::{cut_chars, redact_credentials};

/// Transport error text is cut to this many characters.
pub const TRANSPORT_MAX_CHARS: usize = 500;
/// A `task.failed` reason is cut to this many characters (§4.2).
pub const REASON_MAX_CHARS: usize = 2_000;

/// Transport error text, fit for a log, `status` or a reason.
pub fn transport(text: &str) -> String {
    cut_chars(&redact_credentials(text), TRANSPORT_MAX_CHARS)
}

/// A `task.failed` reason, whoever wrote it (a mapper, the host).
pub fn reason(text: &str) -> String {
    cut_chars(&redact_credentials(text), REASON_MAX_CHARS)
}

/// An error `code` from a server body, kept only when it is a number or a short token
/// (`^[A-Za-z0-9_-]{1,32}$`); anything else could carry text of any kind.
pub fn error_code(code: &serde_json::Value) -> Option<String> {
    match code {
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::String(s)
            if (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            Some(s.clone())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn transport_text_is_redacted_then_cut() {
        let table: &[(&str, &str)] = &[
            ("HTTP 401: Bearer oxk_live_123 rejected", "HTTP 401: Bearer [redacted] rejected"),
            ("Sec-WebSocket-Protocol: orgx.v1, bearer.oxk_abc", "Sec-WebSocket-Protocol: orgx.v1, bearer.[redacted]"),
            ("key oxk_9f8e7d6c5b4a in the body", "key oxk_[redacted] in the body"),
            ("openai says sk-proj12345678 is invalid", "openai says sk-[redacted] is invalid"),
            ("sk-1234567 is too short to be a key", "sk-1234567 is too short to be a key"),
            ("two: oxk_a and oxk_b", "two: oxk_[redacted] and oxk_[redacted]"),
            ("naïve ünïcode oxk_ü stays", "naïve ünïcode oxk_ü stays"),
            ("", ""),
        ];
        for (input, want) in table {
            assert_eq!(transport(input), *want, "{input:?}");
        }
    }

    #[test]
    fn a_token_at_the_cut_is_never_left_half_in_the_clear() {
        let pad = "x".repeat(TRANSPORT_MAX_CHARS - 6);
        let out = transport(&format!("{pad} oxk_0123456789abcdef"));
        assert_eq!(out.chars().count(), TRANSPORT_MAX_CHARS);
        assert!(!out.contains("0123"), "{out}");
        let long = "é".repeat(3 * TRANSPORT_MAX_CHARS);
        assert_eq!(transport(&long).chars().count(), TRANSPORT_MAX_CHARS, "cut by characters, on a boundary");
        assert_eq!(reason(&"r".repeat(5_000)).chars().count(), REASON_MAX_CHARS);
        assert_eq!(reason("cannot start: Bearer abc.def"), "cannot start: Bearer [redacted]");
    }

    #[test]
    fn error_codes_are_kept_only_when_short_tokens() {
        let table = [
            (json!(4401), Some("4401")),
            (json!("run_already_terminal"), Some("run_already_terminal")),
            (json!("E-42"), Some("E-42")),
            (json!("has space"), None),
            (json!("oxk_live.with.dots"), None),
            (json!("x".repeat(33)), None),
            (json!(""), None),
            (json!(null), None),
            (json!({"nested": 1}), None),
        ];
        for (code, want) in table {
            assert_eq!(error_code(&code).as_deref(), want, "{code}");
        }
    }
}
