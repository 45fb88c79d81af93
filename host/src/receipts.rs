//! Terminal receipts over HTTP while the socket is down.
//!
//! A `task.completed` that cannot go over the socket is posted to
//! `/api/v1/runs/{run_id}/receipt` (the server deduplicates on `run_id`), retrying with
//! backoff until it lands. The poster waits a short grace before taking a message, so a
//! socket that is only reconnecting delivers it in order instead; once it has claimed an
//! entry the socket skips it, and whichever path delivers first marks the run's terminal
//! message delivered, so this peer never sends it twice.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::sync::watch;

use crate::gateway::backoff::{Backoff, BackoffPolicy};
use crate::gateway::session::LinkState;
use crate::http::Api;
use crate::outbox::Outbox;

pub struct ReceiptPoster {
    pub api: Api,
    pub outbox: Outbox,
    pub link: watch::Receiver<LinkState>,
    /// How long the socket may be down before a receipt goes over HTTP.
    pub grace: Duration,
    pub backoff: BackoffPolicy,
}

impl ReceiptPoster {
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut changed = self.outbox.subscribe();
        loop {
            // Sleep until the socket has been down for `grace` and something is pending.
            let down = async {
                loop {
                    let _ = self.link.wait_for(|s| *s != LinkState::Connected).await;
                    tokio::time::sleep(self.grace).await;
                    if *self.link.borrow() != LinkState::Connected {
                        return;
                    }
                }
            };
            tokio::select! {
                _ = down => {}
                _ = crate::shutdown::raised(&mut shutdown) => return,
            }
            self.post_owed(&mut shutdown).await;
            tokio::select! {
                _ = changed.changed() => {}
                _ = self.link.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = crate::shutdown::raised(&mut shutdown) => return,
            }
        }
    }

    async fn post_owed(&self, shutdown: &mut watch::Receiver<bool>) {
        let pending = match self.outbox.pending(None, 10_000) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("receipts: cannot read the outbox: {e}");
                return;
            }
        };
        for entry in pending.into_iter().filter(|e| e.terminal) {
            if *self.link.borrow() == LinkState::Connected {
                return; // the socket is back: it delivers in order
            }
            let Ok(msg) = serde_json::from_str::<serde_json::Value>(&entry.message_json) else { continue };
            if msg.get("kind").and_then(|k| k.as_str()) != Some("task.completed") {
                continue; // only completions have a receipt endpoint; failures wait for the socket
            }
            if self.outbox.terminal_delivered(&entry.run_id) {
                let _ = self.outbox.delivered(std::slice::from_ref(&entry));
                continue;
            }
            if !self.outbox.claim(entry.seq) {
                continue;
            }
            let mut body = msg.clone();
            if let Some(obj) = body.as_object_mut() {
                obj.remove("kind");
                obj.remove("run_id");
            }
            let mut backoff = Backoff::new(self.backoff);
            loop {
                match self.api.post_receipt(&entry.run_id, &body).await {
                    Ok(_) => {
                        tracing::info!(run_id = %entry.run_id, "terminal receipt delivered over HTTP");
                        if let Err(e) = self.outbox.delivered(std::slice::from_ref(&entry)) {
                            tracing::error!(run_id = %entry.run_id, "cannot record the delivered receipt: {e}");
                        }
                        break;
                    }
                    Err(e) if e.status() == Some(StatusCode::CONFLICT) => {
                        tracing::info!(run_id = %entry.run_id, "server already has this receipt");
                        let _ = self.outbox.delivered(std::slice::from_ref(&entry));
                        break;
                    }
                    Err(e) => {
                        let delay = backoff.next_delay();
                        tracing::warn!(run_id = %entry.run_id, retry_in_ms = delay.as_millis() as u64, "receipt not delivered: {e}");
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = crate::shutdown::raised(shutdown) => { self.outbox.release(entry.seq); return; }
                        }
                        if *self.link.borrow() == LinkState::Connected {
                            self.outbox.release(entry.seq);
                            return;
                        }
                    }
                }
            }
        }
    }
}
