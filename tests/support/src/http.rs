//! The minimal HTTP/1.1 that the OpenAI-shaped stand-ins (`fake_responses`, `fake_chat`)
//! share: read one request (content-length or chunked body), answer with a status and JSON,
//! or open a server-sent-event stream. Hand-written on purpose: the stand-ins must stay
//! small, loopback-only and free of a web framework.

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One request as a stand-in recorded it. Secrets are never kept: `authorization` and
/// `api-key` headers are replaced by `<redacted>` (tests assert they were sent, not what).
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Lower-cased names, in the order they came.
    pub headers: Vec<(String, String)>,
    /// The JSON body, or `Null` when there was none or it was not JSON (e.g. compressed).
    pub body: Value,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Whether the request offers tools: the agent loop does, title requests do not.
    pub fn has_tools(&self) -> bool {
        self.body.get("tools").and_then(Value::as_array).is_some_and(|t| !t.is_empty())
    }
}

/// Reads one request; `None` when the peer closed the connection or sent garbage.
pub async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        read_more(stream, &mut buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split_whitespace();
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| {
            let k = k.trim().to_ascii_lowercase();
            let v = if k == "authorization" || k == "api-key" { "<redacted>".to_string() } else { v.trim().to_string() };
            (k, v)
        })
        .collect();
    let find = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.to_ascii_lowercase());
    let body = if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        read_chunked(stream, buf.split_off(head_end)).await?
    } else {
        let len: usize = find("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        while buf.len() < head_end + len {
            read_more(stream, &mut buf).await?;
        }
        buf[head_end..head_end + len].to_vec()
    };
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Some(Request { method, path, headers, body })
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 16384];
    let n = stream.read(&mut chunk).await.ok()?;
    if n == 0 {
        return None;
    }
    buf.extend_from_slice(&chunk[..n]);
    Some(())
}

async fn read_chunked(stream: &mut TcpStream, mut buf: Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            read_more(stream, &mut buf).await?;
        };
        let size_text = String::from_utf8_lossy(&buf[..line_end]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        // The chunk, then its CRLF (for the last, zero-sized chunk: the final CRLF).
        while buf.len() < line_end + 2 + size + 2 {
            read_more(stream, &mut buf).await?;
        }
        body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
        buf.drain(..line_end + 2 + size + 2);
        if size == 0 {
            return Some(body);
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// A complete JSON answer. The connection is closed afterwards (`connection: close`), so
/// that every request of a client is a fresh, independent exchange.
pub async fn respond_json(stream: &mut TcpStream, status: u16, request_id: &str, body: &Value) -> std::io::Result<()> {
    let body = body.to_string();
    let head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: {request_id}\r\nconnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await
}

/// Starts an SSE answer without a length: the stream ends when the connection closes, which
/// lets a script pause mid-stream (cancel tests) without the client seeing a short body.
pub async fn start_sse(stream: &mut TcpStream, request_id: &str) -> std::io::Result<()> {
    let head = format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nx-request-id: {request_id}\r\nconnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.flush().await
}

/// One SSE event; `event` is the optional `event:` line (the Responses API names its
/// events, Chat Completions does not).
pub async fn send_event(stream: &mut TcpStream, event: Option<&str>, data: &str) -> std::io::Result<()> {
    let text = match event {
        Some(name) => format!("event: {name}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    };
    stream.write_all(text.as_bytes()).await?;
    stream.flush().await
}
