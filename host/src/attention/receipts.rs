//! Continuation receipts on both channels, always (spec §8.3): over the socket as
//! `continuation.receipt` through the durable outbox, and over HTTP
//! (`POST /api/client/live/attention/{decision_id}`, `Idempotency-Key: <key>:<state>`) from a
//! record in the store that only a 2xx removes. A socket write is never taken for the
//! server's acceptance, and a receipt whose POST failed is posted again on every socket open
//! and every few seconds, across restarts.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{watch, Notify};

use crate::gateway::backoff::{Backoff, BackoffPolicy};
use crate::gateway::session::LinkState;
use crate::http::Api;
use crate::outbox::Outbox;
use crate::protocol::{ContinuationReceipt, PeerMessage, ReceiptState};
use crate::store::Store;

/// An HTTP receipt owed, as stored.
#[derive(Debug, Serialize, Deserialize)]
struct Owed {
    decision_id: String,
    /// `<idempotency_key>:<state>`.
    idempotency: String,
    body: Value,
    /// When it was owed (ns since the epoch): receipts are posted in the order they arose.
    at: u128,
}

/// Sends receipts; cheap to clone.
#[derive(Clone)]
pub struct Receipts {
    outbox: Outbox,
    store: Store,
    wake: Arc<Notify>,
}

/// One receipt to send.
pub struct Receipt<'a> {
    pub run_id: &'a str,
    pub decision_id: &'a str,
    pub idempotency_key: &'a str,
    pub state: ReceiptState,
    pub session_handle: Option<&'a str>,
    pub detail: Option<String>,
    pub source_client: &'a str,
}

impl Receipts {
    pub fn new(outbox: Outbox, store: Store) -> Receipts {
        Receipts { outbox, store, wake: Arc::new(Notify::new()) }
    }

    /// Owe the receipt over HTTP (in the store, before this returns) and hand it to the
    /// outbox for the socket. The hand-over keeps order, so a run's receipts, its steps and
    /// its terminal reach the server in the order they were made.
    pub fn send(&self, r: Receipt<'_>) {
        let now = SystemTime::now();
        let message = ContinuationReceipt {
            protocol_version: 3,
            run_id: r.run_id.to_string(),
            decision_id: r.decision_id.to_string(),
            idempotency_key: r.idempotency_key.to_string(),
            state: r.state,
            session_handle: r.session_handle.map(str::to_string),
            detail: r.detail,
            occurred_at: crate::time::iso8601(now),
        };
        let owed = Owed {
            decision_id: message.decision_id.clone(),
            idempotency: format!("{}:{}", message.idempotency_key, r.state.as_str()),
            body: super::records::receipt_body(&message, r.source_client),
            at: now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos()),
        };
        let id = format!("{}:{}", message.decision_id, r.state.as_str());
        tracing::info!(run_id = %r.run_id, decision_id = %r.decision_id, state = r.state.as_str(), "continuation receipt");
        if let Err(e) = self.store.owe_receipt(&id, &serde_json::to_vec(&owed).expect("a receipt serializes")) {
            tracing::error!(run_id = %r.run_id, decision_id = %r.decision_id, "cannot keep the receipt for HTTP delivery: {e}");
        }
        if let Err(e) = self.outbox.push_control(&[PeerMessage::ContinuationReceipt(message)]) {
            tracing::error!(run_id = %r.run_id, "cannot queue a continuation receipt: {e}");
        }
        self.wake.notify_one();
    }

    /// Post what is owed whenever something new is owed, the socket (re)opens, or a retry
    /// is due, until shutdown.
    pub async fn post_loop(
        self,
        api: Api,
        mut link: watch::Receiver<LinkState>,
        backoff: BackoffPolicy,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut retry = Backoff::new(backoff);
        let mut delay = Duration::ZERO;
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                r = link.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(delay), if delay > Duration::ZERO => {}
                _ = crate::shutdown::raised(&mut shutdown) => return,
            }
            delay = match self.post_owed(&api).await {
                true => {
                    retry = Backoff::new(backoff);
                    Duration::ZERO
                }
                false => retry.next_delay().max(Duration::from_millis(200)),
            };
        }
    }

    /// One pass over the owed receipts, oldest first; whether all were settled.
    async fn post_owed(&self, api: &Api) -> bool {
        let owed = match self.store.owed_receipts() {
            Ok(o) => o,
            Err(e) => {
                tracing::error!("cannot read the owed continuation receipts: {e}");
                return false;
            }
        };
        let mut owed: Vec<(String, Owed)> = owed.into_iter().filter_map(|(id, b)| Some((id, serde_json::from_slice(&b).ok()?))).collect();
        owed.sort_by_key(|(_, o)| o.at);
        let mut all = true;
        for (id, o) in owed {
            match api.post_continuation_receipt(&o.decision_id, &o.idempotency, &o.body).await {
                Ok(()) => {
                    if let Err(e) = self.store.settle_receipt(&id) {
                        tracing::warn!(decision_id = %o.decision_id, "cannot record a settled receipt: {e}");
                    }
                }
                Err(e) => {
                    all = false;
                    tracing::warn!(decision_id = %o.decision_id, "continuation receipt not accepted over HTTP ({e}); kept and posted again");
                }
            }
        }
        all
    }
}
