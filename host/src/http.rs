//! The peer's HTTP calls to the OrgX server: license heartbeat, presence heartbeat, skill
//! rules, terminal receipts. One client, one place that attaches the key, and errors that
//! name the endpoint but never carry the key.

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use crate::gateway::endpoint::BaseUrl;
use crate::secret::ApiKey;

/// How long one receipt POST may take (the reference's 10 s, §4.2): a stalled server costs a
/// retry, not the record.
pub const RECEIPT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    pub base: BaseUrl,
    key: ApiKey,
}

/// A failed call: which endpoint, and what happened.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{endpoint}: HTTP {status}: {body}")]
    Status { endpoint: &'static str, status: StatusCode, body: String },
    #[error("{endpoint}: {message}")]
    Transport { endpoint: &'static str, message: String },
    #[error("{endpoint}: no answer within {seconds} s")]
    Timeout { endpoint: &'static str, seconds: u64 },
}

impl ApiError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            ApiError::Transport { .. } | ApiError::Timeout { .. } => None,
        }
    }
}

impl Api {
    pub fn new(base: BaseUrl, key: ApiKey) -> Result<Api, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("orgx-peer/", env!("CARGO_PKG_VERSION")))
            // The key goes with every request: never follow the server to another place.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Api { client, base, key })
    }

    async fn call(
        &self,
        endpoint: &'static str,
        method: Method,
        url: Url,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Value, ApiError> {
        let mut req = self.client.request(method, url).header(reqwest::header::AUTHORIZATION, self.key.authorization());
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        // reqwest errors name the URL, never headers: the key cannot leak through them.
        let resp = req.send().await.map_err(|e| transport_error(endpoint, &e))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            // The exact key first (whatever its shape), then every credential shape (§6).
            let body = crate::redact::transport(&self.key.redact(&shown_body(&text)));
            return Err(ApiError::Status { endpoint, status, body });
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn license_heartbeat(&self, body: &Value) -> Result<Value, ApiError> {
        self.call("license heartbeat", Method::POST, self.base.license_heartbeat(), Some(body), None).await
    }

    pub async fn presence_heartbeat(&self, body: &Value) -> Result<Value, ApiError> {
        self.call("presence heartbeat", Method::POST, self.base.presence_heartbeat(), Some(body), None).await
    }

    /// The raw plan-skills body (parsed by `rules`).
    pub async fn plan_skills(&self, workspace_id: &str) -> Result<Value, ApiError> {
        self.call("plan-skills", Method::GET, self.base.plan_skills(workspace_id), None, None).await
    }

    /// Download a pushed component's bytes from `url` (already checked to be on the base),
    /// refusing a body over `max_bytes` without reading it all.
    pub async fn fetch_component(&self, url: Url, max_bytes: u64) -> Result<Vec<u8>, ApiError> {
        let endpoint = "component download";
        let transport = |e: reqwest::Error| transport_error(endpoint, &e);
        let mut resp =
            self.client.get(url).header(reqwest::header::AUTHORIZATION, self.key.authorization()).send().await.map_err(transport)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(ApiError::Status { endpoint, status, body: String::new() });
        }
        if resp.content_length().is_some_and(|n| n > max_bytes) {
            return Err(ApiError::Transport { endpoint, message: format!("the body is over the {max_bytes}-byte limit") });
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if (bytes.len() + chunk.len()) as u64 > max_bytes {
                return Err(ApiError::Transport { endpoint, message: format!("the body is over the {max_bytes}-byte limit") });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    /// POST a terminal receipt's exact `body` bytes with its `digest` (§4, §4.2). Any status
    /// is an answer here: its status and text go to `receipts::ack` to judge; only a request
    /// that got no answer is an error.
    pub async fn post_receipt(&self, run_id: &str, body: Vec<u8>, digest: &str) -> Result<(StatusCode, String), ApiError> {
        let endpoint = "receipt";
        let resp = self
            .client
            .post(self.base.receipt(run_id))
            .timeout(RECEIPT_TIMEOUT)
            .header(reqwest::header::AUTHORIZATION, self.key.authorization())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", run_id)
            .header("X-OrgX-Payload-Digest", digest)
            .body(body)
            .send()
            .await;
        let timeout = |e: &reqwest::Error| e.is_timeout().then_some(ApiError::Timeout { endpoint, seconds: RECEIPT_TIMEOUT.as_secs() });
        let resp = resp.map_err(|e| timeout(&e).unwrap_or_else(|| transport_error(endpoint, &e)))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| timeout(&e).unwrap_or_else(|| transport_error(endpoint, &e)))?;
        Ok((status, text))
    }
}

/// A reqwest failure as an [`ApiError`]: without the URL, with its causes (reqwest's own text
/// is only "error sending request"), redacted and cut (spec §6).
fn transport_error(endpoint: &'static str, e: &reqwest::Error) -> ApiError {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    // `without_url` only on a clone we do not have: strip the URL reqwest may have named.
    if let Some(url) = e.url() {
        message = message.replace(url.as_str(), endpoint);
    }
    ApiError::Transport { endpoint, message: crate::redact::transport(&message) }
}

/// An error body as it may be shown: a JSON error keeps its `code` only when the code is a
/// number or a short token (§6); any other text is kept as sent (then redacted and cut).
fn shown_body(text: &str) -> String {
    let Ok(Value::Object(mut body)) = serde_json::from_str::<Value>(text) else { return text.to_string() };
    let unsafe_code = |obj: &serde_json::Map<String, Value>| obj.get("code").is_some_and(|c| crate::redact::error_code(c).is_none());
    if unsafe_code(&body) {
        body.remove("code");
    }
    if let Some(Value::Object(inner)) = body.get_mut("error") {
        if unsafe_code(inner) {
            inner.remove("code");
        }
    }
    Value::Object(body).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_bodies_keep_only_safe_codes() {
        let table = [
            (r#"{"code":"run_already_terminal","reason":"x"}"#, r#"{"code":"run_already_terminal","reason":"x"}"#),
            (r#"{"code":"token oxk_1 bad","reason":"x"}"#, r#"{"reason":"x"}"#),
            (r#"{"error":{"code":401,"message":"no"}}"#, r#"{"error":{"code":401,"message":"no"}}"#),
            (r#"{"error":{"code":"a b","message":"no"}}"#, r#"{"error":{"message":"no"}}"#),
            ("<html>proxy error</html>", "<html>proxy error</html>"),
        ];
        for (input, want) in table {
            assert_eq!(super::shown_body(input), want, "{input}");
        }
    }
}
