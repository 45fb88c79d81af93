//! The API key, as a type that cannot leak by accident.
//!
//! `ApiKey` has no `Display`, and its `Debug` shows only that a key is there, so a key can
//! never reach a log line, an error message or a panic through formatting. The places that
//! need the text (the WebSocket subprotocol, the `Authorization` header, the key file
//! `service install` writes) ask for it by name. `redact` scrubs the key out of text that
//! came from elsewhere (a child's stderr).

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wrap a key; refuses keys that could not travel in a subprotocol or a header.
    pub fn new(key: String) -> Result<ApiKey, &'static str> {
        let key = key.trim().to_string();
        if key.is_empty() {
            return Err("the API key is empty");
        }
        // RFC 6455 subprotocol tokens and header values: visible ASCII, no separators.
        if !key.bytes().all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b)) {
            return Err("the API key has characters that cannot travel in a WebSocket subprotocol");
        }
        Ok(ApiKey(key))
    }

    /// `bearer.<key>`, the second WebSocket subprotocol.
    pub fn subprotocol(&self) -> String {
        format!("bearer.{}", self.0)
    }

    /// `Bearer <key>`, the `Authorization` header value.
    pub fn authorization(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// The text of a key file holding it (`service install`: the one place the key is
    /// written, into a 0600 file).
    pub fn for_key_file(&self) -> String {
        format!("{}\n", self.0)
    }

    /// Replace every occurrence of the key in `text`.
    pub fn redact(&self, text: &str) -> String {
        text.replace(&self.0, "[redacted]")
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_key() {
        let k = ApiKey::new("oxk_secret123".into()).unwrap();
        assert_eq!(format!("{k:?}"), "ApiKey([redacted])");
        assert_eq!(format!("{:?}", Some(&k)), "Some(ApiKey([redacted]))");
    }

    #[test]
    fn redact_scrubs_every_occurrence() {
        let k = ApiKey::new("oxk_secret123".into()).unwrap();
        assert_eq!(k.redact("a oxk_secret123 b oxk_secret123"), "a [redacted] b [redacted]");
    }

    #[test]
    fn refuses_keys_that_cannot_travel() {
        for bad in ["", "   ", "oxk a", "oxk,a", "oxk\na", "oxk\u{e9}", "a/b", "a=b"] {
            assert!(ApiKey::new(bad.into()).is_err(), "{bad:?}");
        }
        for good in ["oxk_abc", "oxk-1.2_3", "  oxk_trimmed  "] {
            assert!(ApiKey::new(good.into()).is_ok(), "{good:?}");
        }
    }
}
