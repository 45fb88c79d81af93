//! A recording stand-in of the OrgX server on 127.0.0.1: the gateway WebSocket and the HTTP
//! endpoints a peer calls, each scriptable (status codes, close codes, dropped or silent
//! connections) and each recording what it received, for tests to assert on.
//!
//! The receipt endpoint answers as §4.2 says a current server does — the acknowledgement
//! naming the `Idempotency-Key` and the SHA-256 of the bytes it received (computed here, not
//! copied from the peer's header) — unless a test scripts other answers (`script_receipts`).
//! The handshake accepts `orgx.v1` or `orgx.v3` and echoes the offered one unless a test says
//! otherwise (`set_echo`). `POST /api/client/live/attention` files a question and answers
//! `{"decision_id": "dec_<n>"}` (spec §5.4).
//!
//! For the hostile-server tests it can also misbehave on purpose: many frames in one write
//! (`send_batch`), a text frame cut into fragments of a few bytes (`send_fragmented`) or written
//! one byte per TCP write (`send_trickled`), and HTTP endpoints that never answer or stream a
//! body generated as it is written, never held in memory (`script_http`).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data as OpData, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;

/// One HTTP call the server received.
#[derive(Debug, Clone)]
pub struct HttpCall {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Value,
    /// The body exactly as received.
    pub raw: Vec<u8>,
}

/// One scripted answer of the receipt endpoint (spec §4.2).
#[derive(Debug, Clone)]
pub enum ReceiptReply {
    /// `200` with the acknowledgement of what was received, with this `disposition`.
    Ack(&'static str),
    /// `200` with an acknowledgement naming another operation.
    AckOtherOperation,
    /// `200` with an acknowledgement naming another digest.
    AckOtherDigest,
    /// `409 {"reason":"run_already_terminal"}`.
    AlreadyTerminal,
    /// This status and body text, verbatim (`200 {}`, a proxy's HTML page, a 503 …).
    Raw(u16, &'static str),
    /// Read the request and never answer.
    Hang,
}

/// What the handshake answer says in `Sec-WebSocket-Protocol`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Echo {
    /// The offered version (`orgx.v1` or `orgx.v3`).
    Version,
    /// No `Sec-WebSocket-Protocol` header at all.
    Nothing,
    /// This value, verbatim (a protocol not offered, the `bearer.` entry …).
    Other(String),
}

/// A scripted HTTP answer other than a status (`FakeOrgx::script_http`).
#[derive(Debug, Clone)]
pub enum HttpReply {
    /// Read the request and never answer, holding the connection open.
    Hang,
    /// `200`, chunked: `prefix`, then `item` again and again until the body would pass `total`
    /// bytes (forever when `None`), then `suffix`. Generated as it is written, 64 KiB at a
    /// time, so a 1 GiB body costs the server no memory; it stops when the client hangs up.
    Stream { content_type: &'static str, prefix: Vec<u8>, item: Vec<u8>, suffix: Vec<u8>, total: Option<u64> },
}

/// What the test tells the live connection to do.
#[derive(Debug)]
enum Command {
    Send(String),
    /// Every message fed, then one flush.
    Batch(Vec<Message>),
    /// One text message, every byte its own TCP write, this long apart.
    Trickle(String, Duration),
    Close(u16, String),
    Drop,
    Silent,
}

#[derive(Default)]
struct State {
    frames: Vec<(usize, Value)>,
    /// When each of `frames` was read off the socket.
    received: Vec<std::time::SystemTime>,
    raw_frames: Vec<String>,
    calls: Vec<HttpCall>,
    statuses: HashMap<String, u16>,
    handshake_status: Option<(u16, usize)>,
    connections: usize,
    handshakes: Vec<(String, Vec<String>)>,
    close_codes: Vec<u16>,
    plan_skills: Value,
    blobs: HashMap<String, Vec<u8>>,
    receipts: VecDeque<ReceiptReply>,
    echo: Option<Echo>,
    live: Option<mpsc::UnboundedSender<Command>>,
    http_replies: HashMap<String, HttpReply>,
    /// Body bytes written per scripted path (`HttpReply::Stream`).
    streamed: HashMap<String, u64>,
    /// Attention records filed so far (`decision_id`s are `dec_1`, `dec_2`, …).
    decisions: usize,
}

#[derive(Clone)]
pub struct FakeOrgx {
    addr: std::net::SocketAddr,
    key: String,
    state: Arc<Mutex<State>>,
}

impl FakeOrgx {
    /// Start on 127.0.0.1:0; `key` is the only API key it accepts.
    pub async fn start(key: &str, plan_skills: Value) -> FakeOrgx {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State { plan_skills, ..State::default() }));
        let server = FakeOrgx { addr, key: key.to_string(), state };
        let s = server.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move { s.serve(stream).await });
            }
        });
        server
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answer `path` (e.g. `/api/v1/licenses/heartbeat`) with `status` from now on.
    pub fn set_status(&self, path: &str, status: u16) {
        self.lock().statuses.insert(path.to_string(), status);
    }

    /// Answer the next `n` WebSocket handshakes with HTTP `status`.
    pub fn fail_handshakes(&self, status: u16, n: usize) {
        self.lock().handshake_status = Some((status, n));
    }

    /// Accept handshakes again after `fail_handshakes`.
    pub fn accept_handshakes(&self) {
        self.lock().handshake_status = None;
    }

    /// Serve `bytes` (as application/wasm) at `path`, to authorized GETs.
    pub fn serve_bytes(&self, path: &str, bytes: Vec<u8>) {
        self.lock().blobs.insert(path.to_string(), bytes);
    }

    /// Answer the next receipt POSTs with `replies`, in order; afterwards (and by default)
    /// with `Ack("persisted")`.
    pub fn script_receipts(&self, replies: impl IntoIterator<Item = ReceiptReply>) {
        self.lock().receipts.extend(replies);
    }

    /// Drop the scripted receipt answers not yet used.
    pub fn clear_receipt_script(&self) {
        self.lock().receipts.clear();
    }

    /// Scripted receipt answers not yet used.
    pub fn receipt_script_left(&self) -> usize {
        self.lock().receipts.len()
    }

    /// What later handshake answers put in `Sec-WebSocket-Protocol` (default `Echo::Version`).
    pub fn set_echo(&self, echo: Echo) {
        self.lock().echo = Some(echo);
    }

    pub fn set_plan_skills(&self, body: Value) {
        self.lock().plan_skills = body;
    }

    /// Close codes the peer sent, in order.
    pub fn close_codes(&self) -> Vec<u16> {
        self.lock().close_codes.clone()
    }

    pub fn connections(&self) -> usize {
        self.lock().connections
    }

    /// (query string, subprotocols) of every handshake attempt.
    pub fn handshakes(&self) -> Vec<(String, Vec<String>)> {
        self.lock().handshakes.clone()
    }

    /// Every JSON frame received, with the connection number it came on.
    pub fn frames(&self) -> Vec<(usize, Value)> {
        self.lock().frames.clone()
    }

    /// Every frame with the wall-clock time it was read off the socket.
    pub fn frames_received(&self) -> Vec<(std::time::SystemTime, Value)> {
        let st = self.lock();
        st.received.iter().copied().zip(st.frames.iter().map(|(_, f)| f.clone())).collect()
    }

    /// How many frames satisfy `pred`, without cloning any (benches poll this under load).
    pub fn count_frames(&self, pred: impl Fn(&Value) -> bool) -> usize {
        self.lock().frames.iter().filter(|(_, f)| pred(f)).count()
    }

    /// How many frames have arrived (cheap: nothing is cloned).
    pub fn frame_count(&self) -> usize {
        self.lock().frames.len()
    }

    pub fn frames_for(&self, run_id: &str) -> Vec<Value> {
        self.frames().into_iter().map(|(_, f)| f).filter(|f| f["run_id"] == run_id).collect()
    }

    /// Answer requests to paths starting with `path` with `reply` from now on (before
    /// statuses and served bytes).
    pub fn script_http(&self, path: &str, reply: HttpReply) {
        self.lock().http_replies.insert(path.to_string(), reply);
    }

    /// Body bytes written so far to requests scripted at `path` with `HttpReply::Stream`.
    pub fn streamed_bytes(&self, path: &str) -> u64 {
        self.lock().streamed.get(path).copied().unwrap_or(0)
    }

    pub fn calls(&self, path_prefix: &str) -> Vec<HttpCall> {
        self.lock().calls.iter().filter(|c| c.path.starts_with(path_prefix)).cloned().collect()
    }

    fn command(&self, c: Command) -> bool {
        self.lock().live.as_ref().is_some_and(|tx| tx.send(c).is_ok())
    }

    pub fn send_json(&self, v: Value) -> bool {
        self.command(Command::Send(v.to_string()))
    }

    pub fn send_text(&self, text: &str) -> bool {
        self.command(Command::Send(text.to_string()))
    }

    /// Send every text as its own message, written together and flushed once (a flood).
    pub fn send_batch(&self, texts: impl IntoIterator<Item = String>) -> bool {
        self.command(Command::Batch(texts.into_iter().map(|t| Message::Text(t.into())).collect()))
    }

    /// Send `text` as one message cut into WebSocket fragments of `size` bytes each: a text
    /// frame, then continuation frames, the last one final. A cut may split a UTF-8 character.
    pub fn send_fragmented(&self, text: &str, size: usize) -> bool {
        let bytes = text.as_bytes();
        let n = bytes.len().div_ceil(size.max(1));
        let frames = bytes
            .chunks(size.max(1))
            .enumerate()
            .map(|(i, chunk)| {
                let opcode = if i == 0 { OpCode::Data(OpData::Text) } else { OpCode::Data(OpData::Continue) };
                Message::Frame(Frame::message(chunk.to_vec(), opcode, i + 1 == n))
            })
            .collect();
        self.command(Command::Batch(frames))
    }

    /// Send `text` as one ordinary text frame, written one byte per TCP write (Nagle is off),
    /// `gap` apart.
    pub fn send_trickled(&self, text: &str, gap: Duration) -> bool {
        self.command(Command::Trickle(text.to_string(), gap))
    }

    pub fn close_with(&self, code: u16, reason: &str) -> bool {
        self.command(Command::Close(code, reason.to_string()))
    }

    /// Drop the TCP connection without a close frame.
    pub fn drop_connection(&self) -> bool {
        self.command(Command::Drop)
    }

    /// Keep the TCP connection open but stop reading and answering (a half-open socket).
    pub fn go_silent(&self) -> bool {
        self.command(Command::Silent)
    }

    /// Wait until `pred` holds, polling; panics with `what` after `timeout`.
    pub async fn wait_until(&self, what: &str, timeout: Duration, pred: impl Fn(&FakeOrgx) -> bool) {
        let t0 = std::time::Instant::now();
        while !pred(self) {
            if t0.elapsed() > timeout {
                panic!("timed out after {timeout:?} waiting for: {what}\nframes: {:#?}", self.frames());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn serve(&self, stream: TcpStream) {
        // As a real gateway would: dispatches go out the moment they are written.
        let _ = stream.set_nodelay(true);
        let mut head = vec![0u8; 16 << 10];
        let n = match stream.peek(&mut head).await {
            Ok(n) => n,
            Err(_) => return,
        };
        let text = String::from_utf8_lossy(&head[..n]).to_string();
        if text.starts_with("GET /api/v1/gateway/stream") {
            self.serve_ws(stream).await;
        } else {
            self.serve_http(stream).await;
        }
    }

    async fn serve_ws(&self, stream: TcpStream) {
        let key = self.key.clone();
        let state = self.state.clone();
        // The signature is tungstenite's handshake callback; its error type is not ours to shrink.
        #[allow(clippy::result_large_err)]
        let callback = move |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
            let protocols: Vec<String> = req
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(',').map(|p| p.trim().to_string()).collect())
                .unwrap_or_default();
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            st.handshakes.push((req.uri().query().unwrap_or("").to_string(), protocols.clone()));
            let reject = |status: u16| {
                let mut r = ErrorResponse::new(Some("refused".into()));
                *r.status_mut() = StatusCode::from_u16(status).unwrap();
                r
            };
            if let Some((status, left)) = st.handshake_status {
                st.handshake_status = (left > 1).then_some((status, left - 1));
                return Err(reject(status));
            }
            let version_ok = protocols.first().is_some_and(|v| v == "orgx.v1" || v == "orgx.v3");
            if protocols.len() != 2 || !version_ok || protocols[1] != format!("bearer.{key}") {
                return Err(reject(401));
            }
            match st.echo.clone().unwrap_or(Echo::Version) {
                Echo::Version => {
                    resp.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_str(&protocols[0]).expect("a header value"));
                }
                Echo::Nothing => {}
                Echo::Other(v) => {
                    resp.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_str(&v).expect("a header value"));
                }
            }
            Ok(resp)
        };
        let trickle = Arc::new(Mutex::new(None));
        let stream = Trickle { inner: stream, gap: trickle.clone(), pause: None };
        // No frame limit of its own: what a test sends is the test's business, and what the
        // peer sends is what is under test.
        let config = WebSocketConfig::default().max_message_size(None).max_frame_size(None);
        let Ok(ws) = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await else { return };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let conn = {
            let mut st = self.lock();
            st.connections += 1;
            st.live = Some(tx);
            st.connections
        };
        let (mut sink, mut source) = ws.split();
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Command::Send(text)) => { if sink.send(Message::Text(text.into())).await.is_err() { break; } }
                    Some(Command::Batch(messages)) => {
                        let mut failed = false;
                        for m in messages {
                            if sink.feed(m).await.is_err() { failed = true; break; }
                        }
                        if failed || sink.flush().await.is_err() { break; }
                    }
                    Some(Command::Trickle(text, gap)) => {
                        *trickle.lock().unwrap_or_else(|p| p.into_inner()) = Some(gap);
                        let sent = sink.send(Message::Text(text.into())).await;
                        *trickle.lock().unwrap_or_else(|p| p.into_inner()) = None;
                        if sent.is_err() { break; }
                    }
                    Some(Command::Close(code, reason)) => {
                        let _ = sink.send(Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.into() }))).await;
                        break;
                    }
                    Some(Command::Drop) | None => break,
                    Some(Command::Silent) => {
                        // Hold the socket open, read nothing, answer nothing.
                        let _hold = (sink, source);
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        return;
                    }
                },
                msg = source.next() => match msg {
                    Some(Ok(Message::Text(t))) => {
                        let at = std::time::SystemTime::now();
                        let mut st = self.lock();
                        st.received.push(at);
                        st.raw_frames.push(t.to_string());
                        let v = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                        st.frames.push((conn, v));
                    }
                    Some(Ok(Message::Ping(p))) => { if sink.send(Message::Pong(p)).await.is_err() { break; } }
                    Some(Ok(Message::Close(frame))) => {
                        self.lock().close_codes.push(frame.map_or(1005, |f| u16::from(f.code)));
                        break;
                    }
                    None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
            }
        }
        let mut st = self.lock();
        if st.connections == conn {
            st.live = None;
        }
    }

    async fn serve_http(&self, mut stream: TcpStream) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.lines();
        let mut first = lines.next().unwrap_or("").split_whitespace();
        let method = first.next().unwrap_or("").to_string();
        let target = first.next().unwrap_or("").to_string();
        let headers: HashMap<String, String> =
            lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
        let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        while buf.len() < head_end + len {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let raw = buf[head_end..(head_end + len).min(buf.len())].to_vec();
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        let path = target.split('?').next().unwrap_or("").to_string();
        let authorized = headers.get("authorization").map(String::as_str) == Some(&format!("Bearer {}", self.key));
        let scripted = {
            let mut st = self.lock();
            let found = st.http_replies.iter().find(|(p, _)| path.starts_with(p.as_str())).map(|(p, r)| (p.clone(), r.clone()));
            if found.is_some() {
                st.calls.push(HttpCall {
                    method: method.clone(),
                    path: path.clone(),
                    headers: headers.clone(),
                    body: body.clone(),
                    raw: raw.clone(),
                });
            }
            found
        };
        match scripted {
            Some((_, HttpReply::Hang)) => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Some((key, HttpReply::Stream { content_type, prefix, item, suffix, total })) => {
                self.stream_body(&mut stream, &key, content_type, &prefix, &item, &suffix, total).await;
                return;
            }
            None => {}
        }
        let blob = if authorized { self.lock().blobs.get(&path).cloned() } else { None };
        if let Some(bytes) = blob {
            self.lock().calls.push(HttpCall { method, path, headers, body, raw });
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/wasm\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                bytes.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
            return;
        }
        let is_receipt = method == "POST" && path.starts_with("/api/v1/runs/") && path.ends_with("/receipt");
        let is_attention = method == "POST" && path == "/api/client/live/attention";
        let (status, text) = {
            let mut st = self.lock();
            st.calls.push(HttpCall { method, path: path.clone(), headers: headers.clone(), body, raw: raw.clone() });
            let scripted = st.statuses.iter().find(|(p, _)| path.starts_with(p.as_str())).map(|(_, s)| *s);
            match (authorized, scripted) {
                (false, _) => (401, json!({"error": "unauthorized"}).to_string()),
                (true, Some(s)) => (s, json!({"status": s}).to_string()),
                (true, None) if is_receipt => {
                    let reply = st.receipts.pop_front().unwrap_or(ReceiptReply::Ack("persisted"));
                    let operation = headers.get("idempotency-key").cloned().unwrap_or_default();
                    // `None`: hold the connection open, answering nothing (the peer times out).
                    receipt_answer(reply, &operation, &raw).unwrap_or((0, String::new()))
                }
                (true, None) if path == "/api/v1/plan-skills" => (200, st.plan_skills.to_string()),
                (true, None) if is_attention => {
                    st.decisions += 1;
                    (200, json!({"decision_id": format!("dec_{}", st.decisions)}).to_string())
                }
                (true, None) => (200, json!({"ok": true}).to_string()),
            }
        };
        if status == 0 {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return;
        }
        let resp = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
            text.len()
        );
        let _ = stream.write_all(resp.as_bytes()).await;
        let _ = stream.shutdown().await;
    }
}

impl FakeOrgx {
    /// Write a `HttpReply::Stream` body, chunked, counting what went out under `key`.
    #[allow(clippy::too_many_arguments)]
    async fn stream_body(
        &self,
        stream: &mut TcpStream,
        key: &str,
        content_type: &str,
        prefix: &[u8],
        item: &[u8],
        suffix: &[u8],
        total: Option<u64>,
    ) {
        let head = format!("HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n");
        if stream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        // Whole items only, about 64 KiB of them per chunk; the last chunk stops where the
        // suffix still fits under `total`.
        let per_chunk = ((64 << 10) / item.len().max(1)).max(1);
        let block: Vec<u8> = item.repeat(per_chunk);
        let budget = total.map(|t| t.saturating_sub((prefix.len() + suffix.len()) as u64));
        let mut items_left = budget.map(|b| b / item.len().max(1) as u64);
        let mut written = prefix.len() as u64;
        let mut out = vec![chunked(prefix)];
        loop {
            let n = match items_left {
                Some(0) => break,
                Some(left) => left.min(per_chunk as u64) as usize,
                None => per_chunk,
            };
            if let Some(left) = items_left.as_mut() {
                *left -= n as u64;
            }
            out.push(if n == per_chunk { chunked(&block) } else { chunked(&item.repeat(n)) });
            written += (n * item.len()) as u64;
            for chunk in out.drain(..) {
                if stream.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            *self.lock().streamed.entry(key.to_string()).or_default() = written;
        }
        written += suffix.len() as u64;
        out.push(chunked(suffix));
        out.push(b"0\r\n\r\n".to_vec());
        for chunk in out {
            if stream.write_all(&chunk).await.is_err() {
                return;
            }
        }
        *self.lock().streamed.entry(key.to_string()).or_default() = written;
        let _ = stream.shutdown().await;
    }
}

/// `bytes` as one chunk of a chunked body (nothing for no bytes: an empty chunk ends the body).
fn chunked(bytes: &[u8]) -> Vec<u8> {
    if bytes.is_empty() {
        return Vec::new();
    }
    let mut framed = format!("{:x}\r\n", bytes.len()).into_bytes();
    framed.extend_from_slice(bytes);
    framed.extend_from_slice(b"\r\n");
    framed
}

/// The server's end of a gateway connection: a TCP stream whose writes are cut to one byte
/// each, `gap` apart, while a trickled message is being sent.
struct Trickle {
    inner: TcpStream,
    gap: Arc<Mutex<Option<Duration>>>,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncRead for Trickle {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Trickle {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let gap = *self.gap.lock().unwrap_or_else(|p| p.into_inner());
        let Some(gap) = gap else { return Pin::new(&mut self.inner).poll_write(cx, buf) };
        if let Some(pause) = self.pause.as_mut() {
            ready!(pause.as_mut().poll(cx));
            self.pause = None;
        }
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &buf[..buf.len().min(1)]))?;
        self.pause = Some(Box::pin(tokio::time::sleep(gap)));
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The status and body of a scripted receipt answer to `raw` sent as `operation`; `None` for
/// no answer at all.
fn receipt_answer(reply: ReceiptReply, operation: &str, raw: &[u8]) -> Option<(u16, String)> {
    use sha2::Digest;
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(raw)));
    let ack = |op: &str, digest: &str, disposition: &str| {
        json!({"ack": {"operation_id": op, "payload_digest": digest, "disposition": disposition}}).to_string()
    };
    Some(match reply {
        ReceiptReply::Ack(disposition) => (200, ack(operation, &digest, disposition)),
        ReceiptReply::AckOtherOperation => (200, ack(&format!("{operation}-other"), &digest, "persisted")),
        ReceiptReply::AckOtherDigest => (200, ack(operation, &format!("sha256:{}", "0".repeat(64)), "persisted")),
        ReceiptReply::AlreadyTerminal => (409, json!({"reason": "run_already_terminal"}).to_string()),
        ReceiptReply::Raw(status, body) => (status, body.to_string()),
        ReceiptReply::Hang => return None,
    })
}
