//! Terminal receipts over HTTP while the socket is down (spec §4).
//!
//! A run's terminal message (`task.completed` or `task.failed`) that cannot go over the
//! socket is posted to `/api/v1/runs/{run_id}/receipt` from the durable outbox. The poster
//! waits a short grace before taking a message, so a socket that is only reconnecting
//! delivers it in order instead; once it has claimed an entry the socket skips it, and
//! whichever path settles first marks the run's terminal message delivered, so this peer
//! never sends it twice.
//!
//! Settlement is digest-bound (§4.2, `ack`): only the acknowledgement body naming this
//! operation and this digest, or `409 run_already_terminal`, removes the record from the
//! outbox. Everything else — other 2xx bodies, 4xx, 5xx, timeouts, network errors — is
//! retried with backoff; each kind of failure is logged once per record (redacted, §6), so
//! a server that never acknowledges costs one warning, not one per retry. The body's bytes
//! are built once (`body`) and kept in the store, so every retry carries the same digest,
//! across restarts too.

mod ack;
mod body;

use std::collections::HashSet;
use std::time::Duration;

use tokio::sync::watch;

pub use ack::{judge, Failure, Settled};
pub use body::{build as build_body, digest, RECOVERED_FROM};

use crate::gateway::backoff::{Backoff, BackoffPolicy};
use crate::gateway::session::LinkState;
use crate::http::{Api, ApiError};
use crate::outbox::Outbox;
use crate::store::{OutboxEntry, Store, StoreError};

/// Why an outbox entry has no receipt body to post; the entry then waits for the socket.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error(transparent)]
    NotATerminal(#[from] body::NoReceipt),
    #[error("cannot read the stored receipt body: {0}")]
    Read(StoreError),
    #[error("cannot keep the receipt body (it must be stored before the first POST so retries carry one digest): {0}")]
    Keep(StoreError),
}

pub struct ReceiptPoster {
    pub api: Api,
    pub outbox: Outbox,
    /// Where each receipt's bytes are kept between retries.
    pub store: Store,
    pub link: watch::Receiver<LinkState>,
    /// How long the socket may be down before a receipt goes over HTTP.
    pub grace: Duration,
    pub backoff: BackoffPolicy,
}

/// How one record's posting ended.
enum Posted {
    Settled,
    /// The socket is back (it delivers in order) or the peer is stopping: the record stays.
    Yielded,
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
        self.forget_settled_bodies();
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
            if self.outbox.terminal_delivered(&entry.run_id) {
                let _ = self.outbox.delivered(std::slice::from_ref(&entry));
                continue;
            }
            if !self.outbox.claim(entry.seq) {
                continue;
            }
            let body = match self.body_of(&entry) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(run_id = %entry.run_id, "{e}");
                    self.outbox.release(entry.seq);
                    continue;
                }
            };
            if let Posted::Yielded = self.post(&entry, body, shutdown).await {
                self.outbox.release(entry.seq);
                return;
            }
        }
    }

    /// The record's bytes: as first built and stored, or built now and stored before the
    /// first POST (so a crash after it cannot change the digest).
    fn body_of(&self, entry: &OutboxEntry) -> Result<Vec<u8>, BodyError> {
        if let Some(b) = self.store.receipt_body(&entry.run_id).map_err(BodyError::Read)? {
            return Ok(b);
        }
        let now = crate::time::iso8601(std::time::SystemTime::now());
        let b = body::build(&entry.run_id, &entry.message_json, &now)?;
        self.store.set_receipt_body(&entry.run_id, &b).map_err(BodyError::Keep)?;
        Ok(b)
    }

    /// Post one record until an answer settles it, the socket comes back or the peer stops.
    async fn post(&self, entry: &OutboxEntry, body: Vec<u8>, shutdown: &mut watch::Receiver<bool>) -> Posted {
        let digest = body::digest(&body);
        let mut backoff = Backoff::new(self.backoff);
        let mut logged: HashSet<String> = HashSet::new();
        loop {
            let answer = self.api.post_receipt(&entry.run_id, body.clone(), &digest).await;
            let verdict = match answer {
                Ok((status, text)) => ack::judge(status, &text, &entry.run_id, &digest),
                Err(ApiError::Timeout { seconds, .. }) => Err(Failure::Timeout(seconds)),
                Err(e) => Err(Failure::Network(e.to_string())),
            };
            match verdict {
                Ok(settled) => {
                    let how = match settled {
                        Settled::Persisted => "persisted",
                        Settled::Duplicate => "duplicate",
                        Settled::Superseded => "superseded (another terminal for the run won)",
                    };
                    tracing::info!(run_id = %entry.run_id, "terminal receipt settled over HTTP: {how}");
                    // Delivered first: a crash between the two leaves only a body the next
                    // sweep forgets, never a pending record whose bytes were lost.
                    if let Err(e) = self.outbox.delivered(std::slice::from_ref(entry)) {
                        tracing::error!(run_id = %entry.run_id, "cannot record the settled receipt: {e}");
                    }
                    return Posted::Settled;
                }
                Err(failure) => {
                    let delay = backoff.next_delay();
                    if logged.insert(failure.kind()) {
                        // Redacted: a server or proxy wrote part of this text (§6).
                        let why = crate::redact::transport(&failure.to_string());
                        tracing::warn!(
                            run_id = %entry.run_id,
                            retry_in_ms = delay.as_millis() as u64,
                            "terminal receipt not settled ({why}); it stays in the outbox and is retried with backoff"
                        );
                    } else {
                        tracing::debug!(run_id = %entry.run_id, kind = %failure.kind(), "terminal receipt not settled; retrying");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = crate::shutdown::raised(shutdown) => return Posted::Yielded,
                    }
                    if *self.link.borrow() == LinkState::Connected {
                        return Posted::Yielded;
                    }
                }
            }
        }
    }

    /// Drop kept bodies whose run's terminal went out (over either path).
    fn forget_settled_bodies(&self) {
        let Ok(runs) = self.store.receipt_runs() else { return };
        for run_id in runs.iter().filter(|r| self.outbox.terminal_delivered(r)) {
            if let Err(e) = self.store.clear_receipt_body(run_id) {
                tracing::debug!(run_id = %run_id, "cannot forget a settled receipt body: {e}");
            }
        }
    }
}
