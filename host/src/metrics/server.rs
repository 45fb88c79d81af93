//! The `/metrics` endpoint: a minimal HTTP/1.1 server on a TCP listener, one `GET` per
//! connection, answered with the exposition text and closed.
//!
//! The workspace has no HTTP server crate, and a scrape endpoint needs one request shape;
//! what it must get right is not harming the daemon it reports on. So every connection is
//! bounded: at most [`MAX_CONNECTIONS`] at once (the rest are closed at accept, with a 503 if
//! the socket takes it without waiting), a request head of at most [`MAX_HEAD_BYTES`] read
//! within [`READ_TIMEOUT`], and an answer written within [`WRITE_TIMEOUT`]. A slow, silent
//! or hostile client costs one of those slots for a few seconds, never a thread, memory
//! beyond its buffer, or the runs' time. The text is produced on a blocking thread: it reads
//! the outbox's depth from the store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::addr::MetricsAddr;

/// Connections served at once; Prometheus scrapes with one.
pub const MAX_CONNECTIONS: usize = 4;
/// The most of a request read: a scrape's head is a few hundred bytes.
pub const MAX_HEAD_BYTES: usize = 8 << 10;
/// How long a client has to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client has to take the answer.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What one client may cost (the constants above; tests shorten the timeouts).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_connections: usize,
    pub max_head_bytes: usize,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
}

impl Bounds {
    pub const DEFAULT: Bounds = Bounds {
        max_connections: MAX_CONNECTIONS,
        max_head_bytes: MAX_HEAD_BYTES,
        read_timeout: READ_TIMEOUT,
        write_timeout: WRITE_TIMEOUT,
    };
}

/// The content type of `prometheus_client`'s text encoding (OpenMetrics 1.0.0).
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {addr} (ORGX_METRICS_ADDR): {source}; pick a free port, or unset ORGX_METRICS_ADDR")]
pub struct BindError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// The text a scrape returns.
pub type Scrape = Arc<dyn Fn() -> String + Send + Sync>;

/// Bind `addr` (port 0 picks a free one); the address bound and the task serving it until
/// it is aborted.
pub async fn start(addr: MetricsAddr, scrape: Scrape) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), BindError> {
    start_with(addr, scrape, Bounds::DEFAULT).await
}

pub async fn start_with(addr: MetricsAddr, scrape: Scrape, bounds: Bounds) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), BindError> {
    let addr = addr.socket_addr();
    let listener = TcpListener::bind(addr).await.map_err(|source| BindError { addr, source })?;
    let bound = listener.local_addr().map_err(|source| BindError { addr, source })?;
    Ok((bound, tokio::spawn(serve(listener, scrape, bounds))))
}

async fn serve(listener: TcpListener, scrape: Scrape, bounds: Bounds) {
    let slots = Arc::new(Semaphore::new(bounds.max_connections));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning on the error.
                tracing::warn!("metrics listener: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            let _ = stream.try_write(&response(503, "Service Unavailable", "text/plain", b"too many connections\n", false));
            continue;
        };
        let scrape = scrape.clone();
        tokio::spawn(async move {
            answer(stream, scrape, bounds).await;
            drop(slot);
        });
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Metrics { head_only: bool },
    NotFound,
    BadMethod,
    Bad,
}

async fn answer(mut stream: TcpStream, scrape: Scrape, bounds: Bounds) {
    let reply = match tokio::time::timeout(bounds.read_timeout, read_head(&mut stream, bounds.max_head_bytes)).await {
        Err(_) => response(408, "Request Timeout", "text/plain", b"request head not received in time\n", false),
        Ok(Head::TooLarge) => response(431, "Request Header Fields Too Large", "text/plain", b"request head too large\n", false),
        Ok(Head::Closed) => return,
        Ok(Head::Complete(head)) => match parse(&head) {
            Request::Metrics { head_only } => {
                let text = tokio::task::spawn_blocking(move || scrape()).await.unwrap_or_default();
                response(200, "OK", CONTENT_TYPE, text.as_bytes(), head_only)
            }
            Request::NotFound => response(404, "Not Found", "text/plain", b"the metrics are at /metrics\n", false),
            Request::BadMethod => response(405, "Method Not Allowed", "text/plain", b"only GET\n", false),
            Request::Bad => response(400, "Bad Request", "text/plain", b"malformed request\n", false),
        },
    };
    let _ = tokio::time::timeout(bounds.write_timeout, async {
        stream.write_all(&reply).await?;
        stream.shutdown().await
    })
    .await;
}

enum Head {
    Complete(Vec<u8>),
    TooLarge,
    Closed,
}

/// Read up to the blank line that ends a request head.
async fn read_head(stream: &mut TcpStream, max: usize) -> Head {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Head::Closed,
            Ok(n) => n,
        };
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find_end(&buf[from..]) {
            // The whole head may arrive in one read: its size is what counts, not the reads'.
            if from + end > max {
                return Head::TooLarge;
            }
            buf.truncate(from + end);
            return Head::Complete(buf);
        }
        if buf.len() > max {
            return Head::TooLarge;
        }
    }
}

/// Where the head ends in `buf` (after `\r\n\r\n`, or a bare `\n\n`), if it does.
fn find_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The request line: `GET /metrics HTTP/1.1`. Headers are not needed to answer.
fn parse(head: &[u8]) -> Request {
    let Ok(text) = std::str::from_utf8(head) else { return Request::Bad };
    let line = text.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Request::Bad;
    };
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1") || method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Request::Bad;
    }
    if !target.starts_with('/') {
        return Request::Bad;
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Request::BadMethod,
    };
    let path = target.split('?').next().unwrap_or_default();
    if path == "/metrics" {
        Request::Metrics { head_only }
    } else {
        Request::NotFound
    }
}

fn response(status: u16, reason: &str, content_type: &str, body: &[u8], head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
        body.len(),
        if status == 405 { "Allow: GET, HEAD\r\n" } else { "" }
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_read_strictly() {
        let table: &[(&[u8], Request)] = &[
            (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", Request::Metrics { head_only: false }),
            (b"GET /metrics?name[]=x HTTP/1.0\r\n\r\n", Request::Metrics { head_only: false }),
            (b"HEAD /metrics HTTP/1.1\r\n\r\n", Request::Metrics { head_only: true }),
            (b"GET /metrics HTTP/1.1\n\n", Request::Metrics { head_only: false }),
            (b"GET / HTTP/1.1\r\n\r\n", Request::NotFound),
            (b"GET /metrics/../x HTTP/1.1\r\n\r\n", Request::NotFound),
            (b"POST /metrics HTTP/1.1\r\n\r\n", Request::BadMethod),
            (b"DELETE / HTTP/1.1\r\n\r\n", Request::BadMethod),
            (b"get /metrics HTTP/1.1\r\n\r\n", Request::Bad),
            (b"GET /metrics\r\n\r\n", Request::Bad),
            (b"GET /metrics HTTP/2\r\n\r\n", Request::Bad),
            (b"GET  /metrics HTTP/1.1\r\n\r\n", Request::Bad),
            (b"GET /metrics HTTP/1.1 extra\r\n\r\n", Request::Bad),
            (b"GET http://x/metrics HTTP/1.1\r\n\r\n", Request::Bad),
            (b"\xff\xfe /metrics HTTP/1.1\r\n\r\n", Request::Bad),
            (b"\r\n\r\n", Request::Bad),
        ];
        for (head, want) in table {
            assert_eq!(&parse(head), want, "{:?}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn the_head_ends_at_the_first_blank_line() {
        assert_eq!(find_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody"), Some(24));
        assert_eq!(find_end(b"GET / HTTP/1.1\n\nbody"), Some(16));
        assert_eq!(find_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }

    async fn served() -> SocketAddr {
        served_with(Bounds::DEFAULT).await
    }

    async fn served_with(bounds: Bounds) -> SocketAddr {
        let addr = MetricsAddr::parse("127.0.0.1:0", false).unwrap();
        let (bound, task) = start_with(addr, Arc::new(|| "# EOF\n".to_string()), bounds).await.unwrap();
        std::mem::forget(task); // serves until the test's runtime ends
        bound
    }

    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        out
    }

    #[tokio::test]
    async fn answers_get_and_refuses_the_rest() {
        let addr = served().await;
        let ok = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n") && ok.contains(CONTENT_TYPE) && ok.ends_with("\r\n\r\n# EOF\n"), "{ok}");
        assert!(ok.contains("Content-Length: 6\r\n"), "{ok}");
        let head = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.contains("Content-Length: 6\r\n") && head.ends_with("\r\n\r\n"), "{head}");
        for (request, status) in [
            (&b"GET /other HTTP/1.1\r\n\r\n"[..], "404"),
            (b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", "405"),
            (b"BREW /metrics HTCPCP/1.0\r\n\r\n", "400"),
        ] {
            let got = exchange(addr, request).await;
            assert!(got.starts_with(&format!("HTTP/1.1 {status} ")), "{got}");
        }
        let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD_BYTES + 10));
        let got = exchange(addr, huge.as_bytes()).await;
        assert!(got.starts_with("HTTP/1.1 431 "), "{got}");
    }

    /// Silent clients hold every slot: the next connection is turned away at once, and once
    /// they are gone (or timed out), scrapes work again.
    #[tokio::test]
    async fn silent_clients_cannot_take_more_than_the_connection_limit() {
        let addr = served().await;
        let mut silent = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /metr").await.unwrap();
            silent.push(s);
        }
        // The listener takes them in order; a full scrape behind them is refused, not queued.
        let mut turned_away = false;
        for _ in 0..50 {
            let got = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
            if got.starts_with("HTTP/1.1 503 ") || got.is_empty() {
                turned_away = true;
                break;
            }
            // A silent connection may not have been accepted yet; try again.
            tokio::task::yield_now().await;
        }
        assert!(turned_away, "a connection over the limit is refused");
        drop(silent);
        let mut served_again = false;
        for _ in 0..200 {
            if exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 200 ") {
                served_again = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(served_again, "slots come back when the clients leave");
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_request_is_timed_out() {
        let addr = served_with(Bounds { read_timeout: Duration::from_millis(100), ..Bounds::DEFAULT }).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
        let mut out = String::new();
        // The server answers and closes once the read timeout passes; the read ends then.
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
    }
}
