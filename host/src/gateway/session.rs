//! The gateway socket: connect, keep alive, deliver the outbox in order, hand server frames
//! to the dispatcher, reconnect with backoff — and stop for good when the server says so.
//!
//! Delivery is confirmed, not assumed: after writing a batch, the session sends a ping whose
//! payload is the batch's last sequence number; the server's pong (answered in order on the
//! same TCP stream) proves every frame before it was read, and only then are the entries
//! dropped from the outbox. Frames written into a connection that then died are sent again
//! on the next one, so nothing is lost; a frame can arrive twice only if the connection
//! died between the server reading it and its pong reaching us.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::backoff::{Backoff, BackoffPolicy};
use super::frames::ServerFrame;
use super::handshake::{self, HandshakeError};
use super::version::ProtocolVersion;
use crate::log_throttle::LogThrottle;
use crate::metrics::ConnectionEnd;
use crate::outbox::Outbox;
use crate::secret::ApiKey;
use crate::store::OutboxEntry;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Close codes after which the peer must not reconnect.
pub const NO_RECONNECT_CODES: &[u16] = &[1000, 4000, 4001, 4003, 4401, 4403];

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub url: reqwest::Url,
    pub api_key: ApiKey,
    /// The one `orgx.vN` offered (`ORGX_PROTOCOL_VERSION`).
    pub protocol: ProtocolVersion,
    /// How often to ping; also how often liveness is checked.
    pub ping_interval: Duration,
    /// No frame at all for this long means the connection is dead (e.g. half-open).
    pub dead_after: Duration,
    pub backoff: BackoffPolicy,
    /// Most frames written before a delivery barrier (ping) is sent.
    pub batch: usize,
    /// Largest server frame read ([`super::frames::max_frame_bytes`]); a larger one ends the
    /// connection (it cannot be read to be answered).
    pub max_frame_bytes: usize,
}

/// What the rest of the peer sees of the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    Connecting,
    Connected,
    /// Waiting before the next attempt; the last error.
    Retrying(String),
    /// Given up for good (the server refused us); the reason.
    Stopped(String),
}

/// Why the gateway stopped for good.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayStop {
    #[error("shut down")]
    Shutdown,
    #[error("the server refused this peer: {0}")]
    Refused(String),
}

enum SessionEnd {
    Shutdown,
    Closed(u16, String),
    Dropped(String),
}

pub struct Gateway {
    pub config: SessionConfig,
    pub outbox: Outbox,
    pub frames: mpsc::Sender<ServerFrame>,
    pub state: watch::Sender<LinkState>,
}

impl Gateway {
    /// Connect and serve until shutdown or a refusal; reconnects on everything else.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> GatewayStop {
        let mut backoff = Backoff::new(self.config.backoff);
        loop {
            self.state.send_replace(LinkState::Connecting);
            let err = match self.connect().await {
                Ok(ws) => {
                    let up = Instant::now();
                    self.state.send_replace(LinkState::Connected);
                    tracing::info!(url = %redacted_url(&self.config.url), "gateway connected");
                    let end = self.session(ws, &mut shutdown).await;
                    backoff.connection_ended(up.elapsed());
                    match end {
                        SessionEnd::Shutdown => return self.stop(GatewayStop::Shutdown),
                        SessionEnd::Closed(code, reason) if NO_RECONNECT_CODES.contains(&code) => {
                            let why = crate::redact::transport(&close_explanation(code, &reason, self.config.protocol));
                            tracing::error!(code, "gateway closed the connection: {why}; not reconnecting");
                            return self.stop(GatewayStop::Refused(why));
                        }
                        SessionEnd::Closed(code, reason) => {
                            crate::metrics::global().reconnect(ConnectionEnd::Closed(code));
                            format!("server closed the connection with code {code} ({reason})")
                        }
                        SessionEnd::Dropped(why) => {
                            crate::metrics::global().reconnect(ConnectionEnd::Dropped);
                            why
                        }
                    }
                }
                Err(ConnectError::Refused(why)) => {
                    let why = crate::redact::transport(&why);
                    tracing::error!("gateway handshake refused: {why}; not reconnecting");
                    return self.stop(GatewayStop::Refused(why));
                }
                Err(ConnectError::Failed(why)) => {
                    crate::metrics::global().reconnect(ConnectionEnd::ConnectFailed);
                    why
                }
            };
            // Whatever the server or the network put in it, it reaches logs and `status`.
            let err = crate::redact::transport(&err);
            let delay = backoff.next_delay();
            tracing::warn!(retry_in_ms = delay.as_millis() as u64, "gateway connection lost: {err}");
            self.state.send_replace(LinkState::Retrying(err));
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = crate::shutdown::raised(&mut shutdown) => return self.stop(GatewayStop::Shutdown),
            }
        }
    }

    fn stop(&self, why: GatewayStop) -> GatewayStop {
        self.state.send_replace(LinkState::Stopped(why.to_string()));
        why
    }

    async fn connect(&self) -> Result<Ws, ConnectError> {
        // One limit for messages and frames: a server sends a push as one frame, and the
        // library's 16 MiB default frame limit dropped inline pushes of 12-16 MiB unanswered.
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(self.config.max_frame_bytes))
            .max_frame_size(Some(self.config.max_frame_bytes));
        // Our own handshake (`handshake`): tungstenite's client refuses an answer that selects
        // no subprotocol, which §1.1 says a server may send. Nagle is off there: the session
        // already batches its writes (feed, then one flush per batch), and a barrier ping held
        // back behind an unacknowledged frame would wait out the server's delayed ACK (40 ms
        // on Linux) before anything is confirmed.
        let connect = handshake::connect(&self.config.url, self.config.protocol.subprotocol(), &self.config.api_key, ws_config);
        let (ws, selected) = match tokio::time::timeout(Duration::from_secs(30), connect).await {
            Err(_) => return Err(ConnectError::Failed("connect timed out after 30 s".into())),
            Ok(Err(HandshakeError::Status(401))) => {
                return Err(ConnectError::Refused(
                    "HTTP 401 Unauthorized: the server does not accept ORGX_API_KEY (check the key and its `gateway:drive` scope)".into(),
                ))
            }
            Ok(Err(HandshakeError::Status(403))) => {
                return Err(ConnectError::Refused(
                    "HTTP 403 Forbidden: the API key may not drive this workspace (check ORGX_WORKSPACE_ID and the key's scopes)".into(),
                ))
            }
            // A server that picks a subprotocol we did not offer will pick it again.
            Ok(Err(e @ (HandshakeError::Subprotocol(_) | HandshakeError::Url(_)))) => return Err(ConnectError::Refused(e.to_string())),
            Ok(Err(e)) => return Err(ConnectError::Failed(e.to_string())),
            Ok(Ok(pair)) => pair,
        };
        tracing::debug!(subprotocol = selected.as_deref().unwrap_or("none"), "gateway handshake accepted");
        Ok(ws)
    }

    async fn session(&self, ws: Ws, shutdown: &mut watch::Receiver<bool>) -> SessionEnd {
        let (mut sink, mut stream) = ws.split();
        let mut changed = self.outbox.subscribe();
        // Frames written on this connection and not yet confirmed by a pong, in order.
        let mut in_flight: Vec<OutboxEntry> = Vec::new();
        let mut sent_through: Option<u64> = None;
        let mut last_heard = Instant::now();
        let mut skipped = LogThrottle::new(Duration::from_secs(10));
        let mut ping = tokio::time::interval(self.config.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let end = loop {
            // Write everything pending, then a barrier ping for it.
            match self.write_pending(&mut sink, &mut sent_through, &mut in_flight).await {
                Ok(()) => {}
                Err(e) => break SessionEnd::Dropped(format!("write failed: {e}")),
            }
            tokio::select! {
                _ = crate::shutdown::raised(shutdown) => {
                    let _ = sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "peer shutting down".into() }))).await;
                    break SessionEnd::Shutdown;
                }
                r = changed.changed() => {
                    if r.is_err() { break SessionEnd::Shutdown; }
                }
                frame = stream.next() => {
                    last_heard = Instant::now();
                    match frame {
                        Some(Ok(Message::Text(text))) => self.on_text(text.as_str(), &mut skipped).await,
                        Some(Ok(Message::Pong(payload))) => {
                            if let Ok(bytes) = <[u8; 8]>::try_from(payload.as_ref()) {
                                let seq = u64::from_be_bytes(bytes);
                                let n = in_flight.iter().take_while(|e| e.seq <= seq).count();
                                let done: Vec<OutboxEntry> = in_flight.drain(..n).collect();
                                if let Err(e) = self.outbox.delivered(&done) {
                                    tracing::error!("cannot record delivered messages: {e}");
                                }
                            }
                        }
                        Some(Ok(Message::Close(frame))) => {
                            let (code, reason) = frame.map(|f| (u16::from(f.code), f.reason.to_string())).unwrap_or((1005, String::new()));
                            break SessionEnd::Closed(code, reason);
                        }
                        Some(Ok(Message::Binary(_))) => {
                            if let Some(more) = skipped.admit(Instant::now()) {
                                tracing::warn!(more_skipped = more, "skipped a binary frame from the server (protocol frames are JSON text)");
                            }
                        }
                        Some(Ok(_)) => {}
                        // The library stops reading mid-frame, so the connection cannot go
                        // on (nor send a close): drop it, and say what the server must do.
                        Some(Err(WsError::Capacity(e))) => break SessionEnd::Dropped(format!(
                            "the server sent a frame over this peer's {}-byte limit ({e}); a component that large must be pushed by `url`",
                            self.config.max_frame_bytes)),
                        Some(Err(e)) => break SessionEnd::Dropped(format!("read failed: {e}")),
                        None => break SessionEnd::Dropped("the server closed the TCP connection".into()),
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() >= self.config.dead_after {
                        break SessionEnd::Dropped(format!(
                            "no frame from the server for {} ms (half-open connection?)", self.config.dead_after.as_millis()));
                    }
                    let barrier = sent_through.unwrap_or(0).to_be_bytes();
                    if let Err(e) = sink.send(Message::Ping(barrier.to_vec().into())).await {
                        break SessionEnd::Dropped(format!("ping failed: {e}"));
                    }
                }
            }
        };
        // Unconfirmed frames go again on the next connection.
        for e in &in_flight {
            self.outbox.release(e.seq);
        }
        end
    }

    async fn write_pending(
        &self,
        sink: &mut futures_util::stream::SplitSink<Ws, Message>,
        sent_through: &mut Option<u64>,
        in_flight: &mut Vec<OutboxEntry>,
    ) -> Result<(), WsError> {
        loop {
            let batch = match self.outbox.pending(*sent_through, self.config.batch) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!("cannot read the outbox: {e}");
                    return Ok(());
                }
            };
            if batch.is_empty() {
                return Ok(());
            }
            let mut wrote = false;
            for entry in batch {
                *sent_through = Some(entry.seq);
                if entry.terminal && self.outbox.terminal_delivered(&entry.run_id) {
                    // Already delivered as an HTTP receipt: never twice.
                    let _ = self.outbox.delivered(std::slice::from_ref(&entry));
                    continue;
                }
                if !self.outbox.claim(entry.seq) {
                    continue; // the receipt poster has it
                }
                sink.feed(Message::Text(entry.message_json.clone().into())).await?;
                crate::metrics::global().frame_sent();
                in_flight.push(entry);
                wrote = true;
            }
            if wrote {
                let barrier = sent_through.unwrap_or(0).to_be_bytes();
                sink.feed(Message::Ping(barrier.to_vec().into())).await?;
                sink.flush().await?;
            }
        }
    }

    async fn on_text(&self, text: &str, skipped: &mut LogThrottle) {
        match ServerFrame::parse(text) {
            Ok(frame) => {
                if self.frames.send(frame).await.is_err() {
                    tracing::warn!("dispatcher is gone; dropped a server frame");
                }
            }
            Err(e) => {
                if let Some(more) = skipped.admit(Instant::now()) {
                    tracing::warn!(more_skipped = more, "skipped a server frame: {e}");
                }
            }
        }
    }
}

enum ConnectError {
    Refused(String),
    Failed(String),
}

fn close_explanation(code: u16, reason: &str, offered: ProtocolVersion) -> String {
    let unsupported;
    let what = match code {
        1000 => "normal closure",
        4000 => {
            let other = match offered {
                ProtocolVersion::V1 => 3,
                ProtocolVersion::V3 => 1,
            };
            unsupported = format!(
                "the server does not accept protocol version {offered} (ORGX_PROTOCOL_VERSION={}); set ORGX_PROTOCOL_VERSION={other} if it speaks that one",
                offered.number()
            );
            unsupported.as_str()
        }
        4001 | 4003 => "the server ended this peer's session",
        4401 => "unauthorized: check ORGX_API_KEY",
        4403 => "forbidden: the key may not drive this workspace",
        _ => "closed",
    };
    if reason.is_empty() {
        format!("code {code}: {what}")
    } else {
        format!("code {code}: {what} ({reason})")
    }
}

/// The URL without its query, for logs (the query holds ids, never the key; still, keep
/// logs short).
fn redacted_url(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}
