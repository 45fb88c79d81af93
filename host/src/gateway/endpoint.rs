//! Where the peer talks to: the gateway socket URL and the HTTP endpoint URLs, built from
//! `ORGX_BASE_URL` exactly as the protocol spells them.
//!
//! Also the `runner_instance_id` type: a value the server echoes into logs and URLs, so it
//! is validated before any socket is opened.

use std::fmt;

use reqwest::Url;

/// `ORGX_BASE_URL`, checked: `http` or `https`, with a host, and nothing after the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl(Url);

/// Why `ORGX_BASE_URL` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaseUrlError {
    #[error("ORGX_BASE_URL `{text}` is not a URL: {cause}")]
    NotAUrl { text: String, cause: String },
    #[error("ORGX_BASE_URL `{0}` must start with http:// or https://")]
    Scheme(String),
    #[error("ORGX_BASE_URL `{0}` must be a plain origin such as https://useorgx.com")]
    NotAnOrigin(String),
}

/// Why a pushed component's URL was refused (the peer sends its key with the download).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComponentUrlError {
    #[error("component URL `{0}` is empty or has control characters or backslashes")]
    Unprintable(String),
    #[error("component URL `{0}` is scheme-relative; give a path on the OrgX base URL")]
    SchemeRelative(String),
    #[error("component URL `{shown}` is not a URL: {cause}")]
    NotAUrl { shown: String, cause: String },
    #[error("component URL `{shown}` is not on the OrgX base URL {base}; the peer only downloads from its own server")]
    OtherOrigin { shown: String, base: String },
    #[error("component URL `{shown}` leaves the base path `{base_path}/`")]
    OutsideBasePath { shown: String, base_path: String },
}

/// `ORGX_RUNNER_INSTANCE_ID` does not match the protocol's pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ORGX_RUNNER_INSTANCE_ID `{0}` is invalid: use 1-160 characters, letters, digits and . _ : -, starting with a letter or digit")]
pub struct InvalidRunnerInstanceId(String);

impl BaseUrl {
    pub fn parse(text: &str) -> Result<BaseUrl, BaseUrlError> {
        let url = Url::parse(text.trim()).map_err(|e| BaseUrlError::NotAUrl { text: text.to_string(), cause: e.to_string() })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(BaseUrlError::Scheme(text.to_string()));
        }
        if url.host_str().is_none() || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            return Err(BaseUrlError::NotAnOrigin(text.to_string()));
        }
        Ok(BaseUrl(url))
    }

    /// The origin as configured (it never holds a secret), for messages.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    fn join(&self, path: &str) -> Url {
        let mut url = self.0.clone();
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}{path}"));
        url
    }

    /// `{base}/api/v1/gateway/stream?...` with `https` → `wss` and `http` → `ws`.
    pub fn gateway_stream(&self, q: &StreamQuery<'_>) -> Url {
        let mut url = self.join("/api/v1/gateway/stream");
        let scheme = if self.0.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme).expect("ws/wss are valid schemes for an http(s) URL");
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("workspace_id", q.workspace_id);
            pairs.append_pair("plugin_id", q.plugin_id);
            pairs.append_pair("drivers", &q.drivers.join(","));
            if let Some(id) = q.installation_id {
                pairs.append_pair("installation_id", id);
            }
            if let Some(id) = q.runner_instance_id {
                pairs.append_pair("runner_instance_id", id.as_str());
            }
        }
        url
    }

    pub fn license_heartbeat(&self) -> Url {
        self.join("/api/v1/licenses/heartbeat")
    }

    pub fn presence_heartbeat(&self) -> Url {
        self.join("/api/v1/gateway/heartbeat")
    }

    pub fn plan_skills(&self, workspace_id: &str) -> Url {
        let mut url = self.join("/api/v1/plan-skills");
        url.query_pairs_mut().append_pair("workspace_id", workspace_id);
        url
    }

    /// `{base}/api/v1/runs/{run_id}/receipt`, the run id as one path segment.
    pub fn receipt(&self, run_id: &str) -> Url {
        let mut url = self.join("/api/v1/runs");
        url.path_segments_mut().expect("http(s) URLs have a path").push(run_id).push("receipt");
        url
    }

    /// `{base}/api/client/live/attention` (§5.4).
    pub fn attention(&self) -> Url {
        self.join("/api/client/live/attention")
    }

    /// `{base}/api/client/live/attention/{decision_id}` (§5.5), the id as one path segment.
    pub fn attention_receipt(&self, decision_id: &str) -> Url {
        let mut url = self.attention();
        url.path_segments_mut().expect("http(s) URLs have a path").push(decision_id);
        url
    }

    /// A component download URL from a `component.push`, accepted only on this base (same
    /// scheme, host and port, under the base path): the peer sends its API key with the
    /// download, so a push must not be able to point it anywhere else. `reference` is a path
    /// (`/api/v1/components/...`) or an absolute URL on the base.
    pub fn same_base(&self, reference: &str) -> Result<Url, ComponentUrlError> {
        let shown: String = reference.chars().take(80).collect();
        if reference.is_empty() || reference.chars().any(|c| c.is_control() || c == '\\') {
            return Err(ComponentUrlError::Unprintable(shown.escape_default().to_string()));
        }
        if reference.starts_with("//") {
            return Err(ComponentUrlError::SchemeRelative(shown));
        }
        let url = self.0.join(reference).map_err(|e| ComponentUrlError::NotAUrl { shown: shown.clone(), cause: e.to_string() })?;
        let same_origin = url.scheme() == self.0.scheme()
            && url.host_str() == self.0.host_str()
            && url.port_or_known_default() == self.0.port_or_known_default();
        if !same_origin || !url.username().is_empty() || url.password().is_some() {
            return Err(ComponentUrlError::OtherOrigin { shown, base: self.to_string() });
        }
        let base_path = self.0.path().trim_end_matches('/');
        if !url.path().starts_with(&format!("{base_path}/")) {
            return Err(ComponentUrlError::OutsideBasePath { shown, base_path: base_path.to_string() });
        }
        Ok(url)
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str().trim_end_matches('/'))
    }
}

/// The query of the gateway socket URL.
pub struct StreamQuery<'a> {
    pub workspace_id: &'a str,
    pub plugin_id: &'a str,
    pub drivers: &'a [&'a str],
    pub installation_id: Option<&'a str>,
    pub runner_instance_id: Option<&'a RunnerInstanceId>,
}

/// `runner_instance_id`: 1–160 chars matching `^[A-Za-z0-9][A-Za-z0-9._:-]{0,159}$`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerInstanceId(String);

impl RunnerInstanceId {
    pub fn parse(text: &str) -> Result<RunnerInstanceId, InvalidRunnerInstanceId> {
        let b = text.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 160
            && b[0].is_ascii_alphanumeric()
            && b[1..].iter().all(|c| c.is_ascii_alphanumeric() || b"._:-".contains(c));
        if ok {
            Ok(RunnerInstanceId(text.to_string()))
        } else {
            Err(InvalidRunnerInstanceId(text.escape_debug().to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_instance_id_table() {
        let long_ok = format!("a{}", "b".repeat(159));
        let too_long = format!("a{}", "b".repeat(160));
        let table: &[(&str, bool)] = &[
            ("a", true),
            ("0", true),
            ("runner-1.eu:west_2", true),
            (&long_ok, true),
            ("", false),
            (&too_long, false),
            ("-a", false),
            (".a", false),
            ("_a", false),
            ("a b", false),
            ("a/b", false),
            ("a\nb", false),
            ("a\0", false),
            ("é", false),
            ("a%20", false),
            ("a?x=1", false),
        ];
        for (text, ok) in table {
            assert_eq!(RunnerInstanceId::parse(text).is_ok(), *ok, "{text:?}");
        }
    }

    #[test]
    fn stream_url_maps_scheme_and_encodes_the_query() {
        let base = BaseUrl::parse("http://127.0.0.1:8080").unwrap();
        let rid = RunnerInstanceId::parse("r-1").unwrap();
        let url = base.gateway_stream(&StreamQuery {
            workspace_id: "ws 1&x",
            plugin_id: "@useorgx/orgx-peer",
            drivers: &["claude_code"],
            installation_id: Some("inst"),
            runner_instance_id: Some(&rid),
        });
        assert_eq!(
            url.as_str(),
            "ws://127.0.0.1:8080/api/v1/gateway/stream?workspace_id=ws+1%26x&plugin_id=%40useorgx%2Forgx-peer&drivers=claude_code&installation_id=inst&runner_instance_id=r-1"
        );
        let base = BaseUrl::parse("https://useorgx.com/").unwrap();
        let url = base.gateway_stream(&StreamQuery {
            workspace_id: "w",
            plugin_id: "p",
            drivers: &["claude_code", "codex"],
            installation_id: None,
            runner_instance_id: None,
        });
        assert_eq!(url.as_str(), "wss://useorgx.com/api/v1/gateway/stream?workspace_id=w&plugin_id=p&drivers=claude_code%2Ccodex");
    }

    #[test]
    fn http_endpoints_are_byte_exact() {
        let base = BaseUrl::parse("https://useorgx.com").unwrap();
        assert_eq!(base.license_heartbeat().as_str(), "https://useorgx.com/api/v1/licenses/heartbeat");
        assert_eq!(base.presence_heartbeat().as_str(), "https://useorgx.com/api/v1/gateway/heartbeat");
        assert_eq!(base.plan_skills("w1").as_str(), "https://useorgx.com/api/v1/plan-skills?workspace_id=w1");
        assert_eq!(base.receipt("run-1").as_str(), "https://useorgx.com/api/v1/runs/run-1/receipt");
        // A hostile run id cannot climb out of its path segment.
        assert_eq!(base.receipt("../x?y").as_str(), "https://useorgx.com/api/v1/runs/..%2Fx%3Fy/receipt");
    }

    #[test]
    fn component_urls_stay_on_the_base() {
        let base = BaseUrl::parse("https://useorgx.com").unwrap();
        let ok: &[(&str, &str)] = &[
            ("/api/v1/components/abc", "https://useorgx.com/api/v1/components/abc"),
            ("https://useorgx.com/api/v1/components/abc?x=1", "https://useorgx.com/api/v1/components/abc?x=1"),
            ("https://useorgx.com:443/c", "https://useorgx.com/c"),
            ("api/v1/c", "https://useorgx.com/api/v1/c"),
        ];
        for (reference, want) in ok {
            assert_eq!(base.same_base(reference).unwrap().as_str(), *want, "{reference}");
        }
        let refused: &[&str] = &[
            "https://evil.example/api/v1/components/abc",
            "//evil.example/x",
            "http://useorgx.com/api/v1/c",
            "https://useorgx.com:8443/c",
            "https://useorgx.com.evil.example/c",
            "https://user:pw@useorgx.com/c",
            "https://useorgx.com@evil.example/c",
            "file:///etc/passwd",
            "/\\evil.example/c",
            "/c\nHost: evil",
            "",
            "javascript:alert(1)",
        ];
        for reference in refused {
            assert!(base.same_base(reference).is_err(), "{reference} should be refused");
        }
        let nested = BaseUrl::parse("http://127.0.0.1:9000/orgx").unwrap();
        assert_eq!(nested.same_base("/orgx/api/v1/c").unwrap().as_str(), "http://127.0.0.1:9000/orgx/api/v1/c");
        for reference in ["/other/c", "/orgx/../other/c", "/orgxother/c", "http://127.0.0.1:9001/orgx/c"] {
            assert!(nested.same_base(reference).is_err(), "{reference} should be refused");
        }
    }

    #[test]
    fn base_url_is_checked() {
        for bad in ["ftp://x", "useorgx.com", "https://", "https://u:p@x.com", "https://x.com/?a=1", "ws://x.com"] {
            assert!(BaseUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
