//! The WebSocket opening handshake of the gateway socket, done here instead of by
//! tungstenite's client.
//!
//! The peer offers `Sec-WebSocket-Protocol: orgx.v<N>, bearer.<key>` and the spec (§1.1) says a
//! server may answer with that version or with no subprotocol at all. tungstenite 0.27's client
//! fails every answer without one (`SubProtocolError::NoSubProtocol`) and has no setting to
//! allow it, so the peer writes the upgrade request itself over its own TCP (and TLS) stream,
//! checks the answer as RFC 6455 §4.1 says — with §1.1's rule for the subprotocol — and hands
//! the stream to tungstenite for the frames (`WebSocketStream::from_partially_read`, with
//! whatever bytes came after the answer's head). [`check_answer`] is the whole decision, a
//! pure function with its adversarial table.
//!
//! The key is only ever written into the request; nothing the server answers is shown
//! unredacted, and an answer that echoes the `bearer.` entry is refused without repeating it.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::secret::ApiKey;

/// The most a handshake answer's head may take; a server that sends more is not a gateway.
const MAX_HEAD_BYTES: usize = 64 << 10;

/// Why a handshake did not open a socket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("bad gateway URL `{0}`: use ws:// or wss:// with a host (set ORGX_BASE_URL to http(s)://host)")]
    Url(String),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("handshake answered HTTP {0}")]
    Status(u16),
    /// The answer broke RFC 6455 or §1.1; the text says how (never with the key).
    #[error("the server's handshake answer is not a WebSocket upgrade this peer accepts: {0}")]
    Invalid(String),
    /// The answer selected a subprotocol this peer cannot speak: final, the server would
    /// choose it again.
    #[error("the server's handshake answer is not a WebSocket upgrade this peer accepts: {0}")]
    Subprotocol(String),
}

/// What the answer selected: `Some("orgx.v3")`, or `None` (no subprotocol, §1.1).
pub type Selected = Option<String>;

/// Open the socket at `url` (ws:// or wss://), offering `version` and the key's `bearer.`
/// entry. Nagle is off: the session batches its own writes.
pub async fn connect(
    url: &reqwest::Url,
    version: &str,
    key: &ApiKey,
    config: WebSocketConfig,
) -> Result<(WebSocketStream<MaybeTlsStream<TcpStream>>, Selected), HandshakeError> {
    let bad_url = || HandshakeError::Url(redacted_url(url));
    let tls = match url.scheme() {
        "ws" => false,
        "wss" => true,
        _ => return Err(bad_url()),
    };
    let host = url.host_str().ok_or_else(bad_url)?;
    let port = url.port_or_known_default().ok_or_else(bad_url)?;
    let tcp = TcpStream::connect(format!("{host}:{port}")).await.map_err(|e| HandshakeError::Connect(e.to_string()))?;
    tcp.set_nodelay(true).map_err(|e| HandshakeError::Connect(e.to_string()))?;
    let mut stream = if tls { MaybeTlsStream::Rustls(tls_wrap(tcp, host).await?) } else { MaybeTlsStream::Plain(tcp) };

    let sec_key = generate_key();
    let request = request_text(url, host, &sec_key, version, key);
    stream.write_all(request.as_bytes()).await.map_err(|e| HandshakeError::Connect(e.to_string()))?;
    stream.flush().await.map_err(|e| HandshakeError::Connect(e.to_string()))?;

    let (status, headers, rest) = read_answer(&mut stream).await?;
    let selected = check_answer(status, &headers, &sec_key, version, key)?;
    let ws = WebSocketStream::from_partially_read(stream, rest, Role::Client, Some(config)).await;
    Ok((ws, selected))
}

/// The upgrade request (RFC 6455 §4.1), with both subprotocol entries in the spec's order.
fn request_text(url: &reqwest::Url, host: &str, sec_key: &str, version: &str, key: &ApiKey) -> String {
    let mut target = url.path().to_string();
    if let Some(q) = url.query() {
        target.push('?');
        target.push_str(q);
    }
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    format!(
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {sec_key}\r\nSec-WebSocket-Protocol: {version}, {}\r\n\
         User-Agent: orgx-peer/{}\r\n\r\n",
        key.subprotocol(),
        env!("CARGO_PKG_VERSION")
    )
}

async fn tls_wrap(tcp: TcpStream, host: &str) -> Result<tokio_rustls::client::TlsStream<TcpStream>, HandshakeError> {
    use tokio_rustls::rustls::{pki_types::ServerName, ClientConfig, RootCertStore};
    let roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let config = ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_string())
        .map_err(|_| HandshakeError::Url(format!("`{host}` is not a TLS server name")))?;
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| HandshakeError::Connect(format!("TLS: {e}")))
}

/// Read the answer's head: its status, headers (names lowercased) and the bytes after it.
async fn read_answer<S: AsyncRead + Unpin>(stream: &mut S) -> Result<(u16, Vec<(String, Vec<u8>)>, Vec<u8>), HandshakeError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|e| HandshakeError::Connect(e.to_string()))?;
        if n == 0 {
            return Err(HandshakeError::Connect("the server closed the connection during the handshake".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let status = resp.code.unwrap_or(0);
                let headers = resp.headers.iter().map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec())).collect();
                return Ok((status, headers, buf[len..].to_vec()));
            }
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD_BYTES => {}
            Ok(httparse::Status::Partial) => {
                return Err(HandshakeError::Invalid(format!("its head is over {MAX_HEAD_BYTES} bytes")));
            }
            Err(e) => return Err(HandshakeError::Invalid(format!("it is not HTTP ({e})"))),
        }
    }
}

/// Judge a handshake answer to a request sent with `sec_key`, offering `version` and `key`'s
/// `bearer.` entry. Accepts a 101 upgrade whose accept key matches and that selects
/// `version` or no subprotocol; refuses one selecting anything else (the `bearer.` entry
/// included), extensions (none were offered) and anything not an upgrade.
pub fn check_answer(
    status: u16,
    headers: &[(String, Vec<u8>)],
    sec_key: &str,
    version: &str,
    key: &ApiKey,
) -> Result<Selected, HandshakeError> {
    if status != 101 {
        return Err(HandshakeError::Status(status));
    }
    let invalid = |why: &str| HandshakeError::Invalid(why.to_string());
    let all = |name: &'static str| all_values(headers, name);
    let one = |name: &'static str| one_value(headers, name);
    if !one("upgrade")?.is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"websocket")) {
        return Err(invalid("no `Upgrade: websocket`"));
    }
    let connection_upgrade =
        all("connection").flat_map(|v| v.split(|b| *b == b',')).any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
    if !connection_upgrade {
        return Err(invalid("no `Connection: Upgrade`"));
    }
    let want = derive_accept_key(sec_key.as_bytes());
    if one("sec-websocket-accept")?.map(<[u8]>::trim_ascii) != Some(want.as_bytes()) {
        return Err(invalid("`Sec-WebSocket-Accept` does not match the request's key (not a WebSocket server, or a proxy in between)"));
    }
    if one("sec-websocket-extensions")?.is_some_and(|v| !v.trim_ascii().is_empty()) {
        return Err(invalid("it selects an extension, and this peer offered none"));
    }
    let Some(chosen) = one("sec-websocket-protocol")? else { return Ok(None) };
    let refuse = |why: String| HandshakeError::Subprotocol(why);
    let chosen = std::str::from_utf8(chosen).map_err(|_| refuse("its `Sec-WebSocket-Protocol` is not text".into()))?.trim();
    if chosen == version {
        return Ok(Some(version.to_string()));
    }
    // The credential entry (or a list holding it) comes back: say so without repeating it.
    if chosen.to_ascii_lowercase().contains("bearer.") || key.redact(chosen) != chosen {
        return Err(refuse("it selects the `bearer.` credential entry as its subprotocol; only the version may be selected".into()));
    }
    let shown = crate::redact::transport(&orgx_peer_sdk::text::cut_chars(chosen, 80));
    Err(refuse(format!("it selects subprotocol `{shown}`, which this peer did not offer (it speaks only `{version}`)")))
}

fn all_values<'h>(headers: &'h [(String, Vec<u8>)], name: &'static str) -> impl Iterator<Item = &'h [u8]> {
    headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_slice())
}

/// The one value of `name`, if any; a header that must be single and is repeated is refused.
fn one_value<'h>(headers: &'h [(String, Vec<u8>)], name: &'static str) -> Result<Option<&'h [u8]>, HandshakeError> {
    let mut values = all_values(headers, name);
    let first = values.next();
    if values.next().is_some() {
        let error = if name == "sec-websocket-protocol" { HandshakeError::Subprotocol } else { HandshakeError::Invalid };
        return Err(error(format!("`{name}` appears more than once")));
    }
    Ok(first)
}

/// The URL without its query, for errors (the query holds ids, never the key).
fn redacted_url(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    /// RFC 6455 §1.3's example answer to `SEC_KEY`.
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
    const SECRET: &str = "oxk_handshake_secret_1";

    fn key() -> ApiKey {
        ApiKey::new(SECRET.into()).unwrap()
    }

    fn headers(extra: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        let mut h: Vec<(String, Vec<u8>)> = [("upgrade", "websocket"), ("connection", "Upgrade"), ("sec-websocket-accept", ACCEPT)]
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect();
        h.extend(extra.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())));
        h
    }

    fn without(name: &str) -> Vec<(String, Vec<u8>)> {
        headers(&[]).into_iter().filter(|(n, _)| n != name).collect()
    }

    #[test]
    fn accept_key_matches_rfc_6455() {
        assert_eq!(derive_accept_key(SEC_KEY.as_bytes()), ACCEPT);
    }

    /// Response headers as the parser hands them over: names, raw values.
    type Headers = Vec<(String, Vec<u8>)>;

    #[test]
    fn an_echoed_version_and_no_subprotocol_are_both_accepted() {
        let table: Vec<(Headers, Selected)> = vec![
            (headers(&[("sec-websocket-protocol", "orgx.v1")]), Some("orgx.v1".into())),
            (headers(&[("sec-websocket-protocol", " orgx.v1 ")]), Some("orgx.v1".into())),
            (headers(&[]), None),
            (
                vec![
                    ("upgrade".into(), b"WebSocket".to_vec()),
                    ("connection".into(), b"keep-alive, upgrade".to_vec()),
                    ("sec-websocket-accept".into(), ACCEPT.as_bytes().to_vec()),
                ],
                None,
            ),
            (headers(&[("sec-websocket-extensions", "")]), None),
        ];
        for (h, want) in table {
            assert_eq!(check_answer(101, &h, SEC_KEY, "orgx.v1", &key()), Ok(want), "{h:?}");
        }
    }

    #[test]
    fn every_other_answer_is_refused_without_the_key() {
        let table: Vec<(u16, Headers, &str)> = vec![
            (200, headers(&[("sec-websocket-protocol", "orgx.v1")]), "HTTP 200"),
            (401, headers(&[]), "HTTP 401"),
            (403, headers(&[]), "HTTP 403"),
            (101, headers(&[("sec-websocket-protocol", &format!("bearer.{SECRET}"))]), "`bearer.` credential entry"),
            (101, headers(&[("sec-websocket-protocol", &format!("orgx.v1, bearer.{SECRET}"))]), "`bearer.` credential entry"),
            (101, headers(&[("sec-websocket-protocol", &format!("BEARER.{SECRET}"))]), "`bearer.` credential entry"),
            (101, headers(&[("sec-websocket-protocol", SECRET)]), "`bearer.` credential entry"),
            (101, headers(&[("sec-websocket-protocol", "bearer.something-else")]), "`bearer.` credential entry"),
            (101, headers(&[("sec-websocket-protocol", "orgx.v3")]), "subprotocol `orgx.v3`, which this peer did not offer"),
            (101, headers(&[("sec-websocket-protocol", "orgx.v2")]), "did not offer"),
            (101, headers(&[("sec-websocket-protocol", "ORGX.V1")]), "did not offer"),
            (101, headers(&[("sec-websocket-protocol", "chat")]), "did not offer"),
            (101, headers(&[("sec-websocket-protocol", "")]), "did not offer"),
            (101, headers(&[("sec-websocket-protocol", "oxk_other_key")]), "subprotocol `oxk_[redacted]`"),
            (101, headers(&[("sec-websocket-protocol", "orgx.v1"), ("sec-websocket-protocol", "orgx.v1")]), "more than once"),
            (101, vec![("sec-websocket-protocol".into(), vec![0xff, 0xfe])].into_iter().chain(headers(&[])).collect(), "not text"),
            (101, headers(&[("sec-websocket-extensions", "permessage-deflate")]), "extension"),
            (101, without("upgrade"), "Upgrade: websocket"),
            (101, without("connection"), "Connection: Upgrade"),
            (101, without("sec-websocket-accept"), "Sec-WebSocket-Accept"),
            (
                101,
                without("sec-websocket-accept").into_iter().chain([("sec-websocket-accept".to_string(), b"AAAA".to_vec())]).collect(),
                "does not match",
            ),
            (101, without("upgrade").into_iter().chain([("upgrade".to_string(), b"h2c".to_vec())]).collect(), "Upgrade: websocket"),
        ];
        for (status, h, want) in table {
            let err = check_answer(status, &h, SEC_KEY, "orgx.v1", &key()).expect_err(want).to_string();
            assert!(err.contains(want), "{status} {h:?}: {err}");
            assert!(!err.contains(SECRET) && !err.contains("handshake_secret"), "the key leaked: {err}");
        }
    }

    #[test]
    fn the_request_offers_exactly_two_entries_in_order() {
        let url = reqwest::Url::parse("ws://127.0.0.1:9/api/v1/gateway/stream?workspace_id=w&drivers=claude_code").unwrap();
        let text = request_text(&url, "127.0.0.1", SEC_KEY, "orgx.v1", &key());
        assert!(
            text.starts_with("GET /api/v1/gateway/stream?workspace_id=w&drivers=claude_code HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"),
            "{text}"
        );
        assert!(text.contains(&format!("\r\nSec-WebSocket-Protocol: orgx.v1, bearer.{SECRET}\r\n")), "{text}");
        assert!(text.contains(&format!("\r\nSec-WebSocket-Key: {SEC_KEY}\r\n")) && text.ends_with("\r\n\r\n"), "{text}");
    }
}
