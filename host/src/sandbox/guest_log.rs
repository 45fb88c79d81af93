//! Guest stdout/stderr, turned into `tracing` events that name the component.
//!
//! A component has no console: what it prints is diagnostics for the operator, so each
//! complete line becomes one log event tagged with the component and stream. The budget is
//! per instance and shared by both streams, so a hostile component cannot flood the log or
//! grow host memory: past the budget, output is dropped with a single warning.

use std::sync::{Arc, Mutex};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Longest line kept; the rest of an over-long line is cut.
const MAX_LINE: usize = 4096;

#[derive(Clone)]
pub struct GuestLog {
    component: Arc<str>,
    stream: &'static str,
    state: Arc<Mutex<LogState>>,
}

struct LogState {
    budget: usize,
    partial: Vec<u8>,
    warned: bool,
}

impl GuestLog {
    /// A stdout/stderr pair sharing one budget of `max_bytes`.
    pub fn pair(component: Arc<str>, max_bytes: usize) -> (GuestLog, GuestLog) {
        let state = Arc::new(Mutex::new(LogState { budget: max_bytes, partial: Vec::new(), warned: false }));
        let out = GuestLog { component: component.clone(), stream: "stdout", state: state.clone() };
        let err = GuestLog { component, stream: "stderr", state };
        (out, err)
    }

    fn write_bytes(&self, bytes: &[u8]) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.budget == 0 {
            if !st.warned {
                st.warned = true;
                tracing::warn!(component = %self.component, "component log budget used up; further output dropped");
            }
            return;
        }
        let take = bytes.len().min(st.budget);
        st.budget -= take;
        for &b in &bytes[..take] {
            if b == b'\n' {
                let line = std::mem::take(&mut st.partial);
                tracing::info!(component = %self.component, stream = self.stream, "{}", String::from_utf8_lossy(&line));
            } else if st.partial.len() < MAX_LINE {
                st.partial.push(b);
            }
        }
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASI 0.2 streams are linked; 0.3 async streams are never handed out.
        Box::new(tokio::io::sink())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestLog {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestLog {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}
