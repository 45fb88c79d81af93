//! Every outgoing message, durable before it is sent.
//!
//! Runs push protocol messages here; the gateway session sends them in order and the
//! receipt poster may take terminal `task.completed` messages over HTTP while the socket is
//! down. The store (fsync'd on commit) means a message survives a socket outage and a
//! SIGKILL of the peer; `claims` keeps the socket and the receipt poster from sending the same
//! terminal message at once, and `terminal_delivered` keeps a run's terminal message from
//! ever being delivered twice by this peer.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::protocol::PeerMessage;
use crate::store::{OutboxEntry, Store, StoreError};

#[derive(Clone)]
pub struct Outbox {
    store: Store,
    changed: watch::Sender<u64>,
    claims: Arc<Mutex<HashSet<u64>>>,
}

impl Outbox {
    pub fn new(store: Store) -> Outbox {
        let (changed, _) = watch::channel(0);
        Outbox { store, changed, claims: Arc::default() }
    }

    /// Persist `messages` (in order, in one transaction), then wake the senders.
    pub fn push(&self, messages: &[PeerMessage]) -> Result<(), StoreError> {
        if messages.is_empty() {
            return Ok(());
        }
        let batch: Vec<(String, String, bool)> = messages.iter().map(|m| (m.run_id().to_string(), m.to_json(), m.is_terminal())).collect();
        let last = self.store.enqueue_batch(&batch)?;
        self.changed.send_replace(last);
        Ok(())
    }

    /// Wakes when new messages were pushed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn pending(&self, after: Option<u64>, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        self.store.pending(after, limit)
    }

    pub fn pending_count(&self) -> u64 {
        self.store.pending_count().unwrap_or(0)
    }

    /// Take `seq` for one sender; false when the other sender has it.
    pub fn claim(&self, seq: u64) -> bool {
        self.claims.lock().unwrap_or_else(|p| p.into_inner()).insert(seq)
    }

    pub fn release(&self, seq: u64) {
        self.claims.lock().unwrap_or_else(|p| p.into_inner()).remove(&seq);
    }

    /// `entries` reached the server: drop them, and remember delivered terminal messages.
    pub fn delivered(&self, entries: &[OutboxEntry]) -> Result<(), StoreError> {
        for e in entries.iter().filter(|e| e.terminal) {
            self.store.mark_terminal_delivered(&e.run_id)?;
        }
        let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
        self.store.ack_many(&seqs)?;
        let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        for s in &seqs {
            claims.remove(s);
        }
        Ok(())
    }

    /// Whether this run's terminal message already went out (over either path).
    pub fn terminal_delivered(&self, run_id: &str) -> bool {
        self.store.terminal_delivered(run_id).unwrap_or(false)
    }
}
