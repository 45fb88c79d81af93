//! The peer's HTTP calls to the OrgX server: license heartbeat, presence heartbeat, skill
//! rules, terminal receipts. One client, one place that attaches the key, and errors that
//! name the endpoint but never carry the key.
//!
//! Nothing a server answers is read without a bound (docs/reliability.md, "A hostile server"):
//! every body is read chunk by chunk against a byte limit and refused the moment it passes it,
//! so a server streaming a gigabyte costs the peer at most the limit; and every request has a
//! timeout, the heartbeats one shorter than the presence interval.

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use crate::gateway::endpoint::BaseUrl;
use crate::secret::ApiKey;

/// How long one receipt POST may take (the reference's 10 s, §4.2): a stalled server costs a
/// retry, not the record.
pub const RECEIPT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one attention call may take (§5.4's 10 s).
pub const ATTENTION_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one heartbeat request (license or presence) may take. Under the 20 s presence
/// interval, so a server that accepts the request and never answers costs one beat, not two;
/// the client-wide 30 s stays for the rest.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest plan-skills answer read (16 MiB). Real rule sets are a few KiB to a few
/// hundred (10,000 rules are about 1 MiB); a larger answer is refused as it arrives, never
/// held whole, and the last good rules stay in use.
pub const MAX_PLAN_SKILLS_BYTES: u64 = 16 << 20;

/// The largest answer read from the other JSON endpoints (heartbeats), and the most of an
/// error body read to be shown (1 MiB): their answers are a few hundred bytes.
pub const MAX_ANSWER_BYTES: u64 = 1 << 20;

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
    #[error("{endpoint}: the answer is over the {limit}-byte limit ({name}); stopped reading it")]
    TooLarge { endpoint: &'static str, limit: u64, name: &'static str },
}

impl ApiError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            ApiError::Transport { .. } | ApiError::Timeout { .. } | ApiError::TooLarge { .. } => None,
        }
    }
}

/// The HTTP client could not be built (its TLS roots, most often).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct ClientError(#[from] reqwest::Error);

impl Api {
    pub fn new(base: BaseUrl, key: ApiKey) -> Result<Api, ClientError> {
        let client = reqwest::Client::builder()
            .timeout(CLIENT_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("orgx-peer/", env!("CARGO_PKG_VERSION")))
            // The key goes with every request: never follow the server to another place.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Api { client, base, key })
    }

    /// One JSON call: the answer read up to `limit` bytes (an error body up to
    /// [`MAX_ANSWER_BYTES`]), within `timeout` when given (else the client's 30 s).
    async fn call(
        &self,
        endpoint: &'static str,
        method: Method,
        url: Url,
        body: Option<&Value>,
        timeout: Option<Duration>,
        limit: (u64, &'static str),
    ) -> Result<Vec<u8>, ApiError> {
        let mut req = self.client.request(method, url).header(reqwest::header::AUTHORIZATION, self.key.authorization());
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let timed_out = |e: &reqwest::Error| {
            e.is_timeout().then(|| ApiError::Timeout { endpoint, seconds: timeout.unwrap_or(CLIENT_TIMEOUT).as_secs() })
        };
        // reqwest errors name the URL, never headers: the key cannot leak through them.
        let resp = req.send().await.map_err(|e| timed_out(&e).unwrap_or_else(|| transport_error(endpoint, &e)))?;
        let status = resp.status();
        if !status.is_success() {
            // Only the start of an error body is shown; a longer one is cut, not refused.
            let text = match read_capped(resp, endpoint, (MAX_ANSWER_BYTES, "MAX_ANSWER_BYTES"), true).await {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(_) => String::new(),
            };
            // The exact key first (whatever its shape), then every credential shape (§6).
            let body = crate::redact::transport(&self.key.redact(&shown_body(&text)));
            return Err(ApiError::Status { endpoint, status, body });
        }
        read_capped(resp, endpoint, limit, false).await.map_err(|e| match e {
            ReadError::Http(e) => timed_out(&e).unwrap_or_else(|| transport_error(endpoint, &e)),
            ReadError::TooLarge(e) => e,
        })
    }

    pub async fn license_heartbeat(&self, body: &Value) -> Result<Value, ApiError> {
        let endpoint = "license heartbeat";
        let url = self.base.license_heartbeat();
        let answer = self.call(endpoint, Method::POST, url, Some(body), Some(HEARTBEAT_TIMEOUT), (MAX_ANSWER_BYTES, "MAX_ANSWER_BYTES"));
        Ok(serde_json::from_slice(&answer.await?).unwrap_or(Value::Null))
    }

    pub async fn presence_heartbeat(&self, body: &Value) -> Result<Value, ApiError> {
        let endpoint = "presence heartbeat";
        let url = self.base.presence_heartbeat();
        let answer = self.call(endpoint, Method::POST, url, Some(body), Some(HEARTBEAT_TIMEOUT), (MAX_ANSWER_BYTES, "MAX_ANSWER_BYTES"));
        Ok(serde_json::from_slice(&answer.await?).unwrap_or(Value::Null))
    }

    /// The raw plan-skills body, at most [`MAX_PLAN_SKILLS_BYTES`] (parsed by `rules`).
    pub async fn plan_skills(&self, workspace_id: &str) -> Result<Vec<u8>, ApiError> {
        let url = self.base.plan_skills(workspace_id);
        self.call("plan-skills", Method::GET, url, None, None, (MAX_PLAN_SKILLS_BYTES, "MAX_PLAN_SKILLS_BYTES")).await
    }

    /// Download a pushed component's bytes from `url` (already checked to be on the base),
    /// refusing a body over `max_bytes` without reading it all.
    pub async fn fetch_component(&self, url: Url, max_bytes: u64) -> Result<Vec<u8>, ApiError> {
        let endpoint = "component download";
        let transport = |e: reqwest::Error| match e.is_timeout() {
            true => ApiError::Timeout { endpoint, seconds: CLIENT_TIMEOUT.as_secs() },
            false => transport_error(endpoint, &e),
        };
        let resp = self.client.get(url).header(reqwest::header::AUTHORIZATION, self.key.authorization()).send().await.map_err(transport)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(ApiError::Status { endpoint, status, body: String::new() });
        }
        read_capped(resp, endpoint, (max_bytes, "ORGX_MAX_COMPONENT_BYTES"), false).await.map_err(|e| match e {
            ReadError::Http(e) => transport(e),
            ReadError::TooLarge(e) => e,
        })
    }

    /// Create one attention record (§5.4, 10 s): its `decision_id`. An answer without a
    /// string `decision_id` is an error that carries the answer's `error` text, if any.
    pub async fn create_attention(&self, body: &Value) -> Result<String, ApiError> {
        let endpoint = "attention record";
        let url = self.base.attention();
        let answer = self.call(endpoint, Method::POST, url, Some(body), Some(ATTENTION_TIMEOUT), (MAX_ANSWER_BYTES, "MAX_ANSWER_BYTES"));
        let answer: Value = serde_json::from_slice(&answer.await?).unwrap_or(Value::Null);
        match answer.get("decision_id").and_then(Value::as_str).filter(|d| !d.is_empty()) {
            Some(id) => Ok(id.to_string()),
            None => {
                let why = answer.get("error").and_then(Value::as_str).unwrap_or("the answer has no string `decision_id`");
                Err(ApiError::Transport { endpoint, message: crate::redact::transport(why) })
            }
        }
    }

    /// POST one continuation receipt (§5.5) with `Idempotency-Key: <key>:<state>`; any 2xx
    /// settles it.
    pub async fn post_continuation_receipt(&self, decision_id: &str, idempotency: &str, body: &Value) -> Result<(), ApiError> {
        let endpoint = "continuation receipt";
        let mut req = self
            .client
            .post(self.base.attention_receipt(decision_id))
            .timeout(ATTENTION_TIMEOUT)
            .header(reqwest::header::AUTHORIZATION, self.key.authorization())
            .json(body);
        req = req.header("Idempotency-Key", idempotency);
        let timeout = |e: &reqwest::Error| e.is_timeout().then_some(ApiError::Timeout { endpoint, seconds: ATTENTION_TIMEOUT.as_secs() });
        let resp = req.send().await.map_err(|e| timeout(&e).unwrap_or_else(|| transport_error(endpoint, &e)))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = match read_capped(resp, endpoint, (MAX_ANSWER_BYTES, "MAX_ANSWER_BYTES"), true).await {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(_) => String::new(),
        };
        Err(ApiError::Status { endpoint, status, body: crate::redact::transport(&self.key.redact(&shown_body(&text))) })
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

/// The client-wide request timeout (connect, send and the whole answer).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

enum ReadError {
    Http(reqwest::Error),
    TooLarge(ApiError),
}

/// A response body, chunk by chunk, never more than `limit` bytes held: past it, the answer
/// is refused (`cut`: the first `limit` bytes are kept instead) and the connection dropped.
/// A `content-length` over the limit is refused before a byte is read.
async fn read_capped(
    mut resp: reqwest::Response,
    endpoint: &'static str,
    (limit, name): (u64, &'static str),
    cut: bool,
) -> Result<Vec<u8>, ReadError> {
    let too_large = || ReadError::TooLarge(ApiError::TooLarge { endpoint, limit, name });
    if !cut && resp.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(resp.content_length().unwrap_or(0).min(limit) as usize);
    while let Some(chunk) = resp.chunk().await.map_err(ReadError::Http)? {
        if (bytes.len() + chunk.len()) as u64 > limit {
            if cut {
                bytes.extend_from_slice(&chunk[..(limit as usize).saturating_sub(bytes.len())]);
                return Ok(bytes);
            }
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
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
