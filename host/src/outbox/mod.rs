//! Every outgoing message, durable before it is sent.
//!
//! Runs hand their messages here and go on mapping; one writer thread (`writer`) commits
//! whatever every run has handed over since its last commit in one transaction — one fsync
//! for the group, not one per message (group commit, as databases and logs do it). The
//! socket sends an entry only after the commit that holds it (it reads committed entries
//! only), so nothing is sent that a SIGKILL could take back. Deliveries (deletes) go through
//! the same writer and are batched the same way.
//!
//! The hand-over is bounded by bytes (`QUEUE_BYTES`): a run whose messages outpace the disk
//! waits in `push`, which backs up its CLI's pipe — memory never grows without bound. The
//! receipt poster may take terminal messages (`task.completed`, `task.failed`) over HTTP
//! while the socket is down; `claims` keeps the two senders from sending one entry at once (a claim is released
//! only once its delivery is committed), and `terminal_delivered` keeps a run's terminal
//! message from ever being delivered twice by this peer.

mod owed;
mod writer;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use crate::protocol::PeerMessage;
use crate::store::{NewEntry, OutboxEntry, Store, StoreError};
pub use owed::Oldest;
use owed::Owed;
use writer::{Queue, Request};

/// Most bytes handed over and not yet committed before `push` waits for the writer.
pub const QUEUE_BYTES: usize = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("the outbox is closed: the peer is stopping and this message was not stored")]
    Closed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    queue: Arc<Queue>,
    /// The last committed sequence number: senders wake on it.
    appended: watch::Sender<u64>,
    /// Bumped after every group commit (appends or deliveries): `drained` waits on it.
    committed: watch::Sender<u64>,
    claims: Arc<Mutex<HashSet<u64>>>,
    /// Messages committed since start (the writer counts).
    stored: Arc<std::sync::atomic::AtomicU64>,
    /// When each group still owed was committed (the writer keeps it).
    owed: Arc<Owed>,
}

impl Drop for Inner {
    // The last handle is gone: the writer commits what it holds and exits.
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// The promise of one hand-over: resolved once its commit is on disk.
#[must_use = "a ticket is how a caller learns its messages are stored"]
pub struct Ticket(oneshot::Receiver<u64>);

impl Ticket {
    /// Wait (blocking the thread) until the messages are committed; their last sequence
    /// number (0 for a group that appended nothing).
    pub fn wait(self) -> Result<u64, OutboxError> {
        self.0.blocking_recv().map_err(|_| OutboxError::Closed)
    }

    /// The same, for async callers.
    pub async fn committed(self) -> Result<u64, OutboxError> {
        self.0.await.map_err(|_| OutboxError::Closed)
    }

    /// Mark the dispatch `key` finished once these messages (its run's terminal) are on disk,
    /// on a task of its own: a crash in between leaves the dispatch running, and the next
    /// start reports it instead of losing its terminal message.
    pub fn finish_dispatch_when_committed(self, store: Store, key: String, run_id: String) {
        tokio::spawn(async move {
            if let Err(e) = self.committed().await {
                tracing::error!(run_id = %run_id, "cannot persist the run's terminal message: {e}");
                return;
            }
            if let Err(e) = store.finish_dispatch(&key) {
                tracing::error!(run_id = %run_id, "cannot record the finished dispatch: {e}");
            }
        });
    }
}

impl Outbox {
    pub fn new(store: Store) -> Outbox {
        let (appended, _) = watch::channel(0);
        let (committed, _) = watch::channel(0);
        let claims: Arc<Mutex<HashSet<u64>>> = Arc::default();
        let queue = Arc::new(Queue::new(QUEUE_BYTES));
        let stored: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        let owed = Arc::new(Owed::restored(store.pending_range().ok().flatten().map(|(_, last)| last)));
        writer::spawn(writer::Writer {
            queue: queue.clone(),
            store: store.clone(),
            appended: appended.clone(),
            committed: committed.clone(),
            claims: claims.clone(),
            stored: stored.clone(),
            owed: owed.clone(),
        });
        Outbox { inner: Arc::new(Inner { store, queue, appended, committed, claims, stored, owed }) }
    }

    /// Hand `messages` (in order) to the writer; waits only while the hand-over is full.
    /// For the runs' own threads: this is where a run feels the disk's pace.
    pub fn push(&self, messages: &[PeerMessage]) -> Result<Ticket, OutboxError> {
        self.hand_over(messages, true)
    }

    /// Hand over without waiting for room: for the few, small messages async tasks send
    /// (refusals, component acknowledgements, quarantine notices), which must never block
    /// the runtime.
    pub fn push_control(&self, messages: &[PeerMessage]) -> Result<Ticket, OutboxError> {
        self.hand_over(messages, false)
    }

    fn hand_over(&self, messages: &[PeerMessage], bounded: bool) -> Result<Ticket, OutboxError> {
        let append: Vec<NewEntry> = messages
            .iter()
            .map(|m| NewEntry {
                run_id: m.run_id().to_string(),
                message_json: m.to_json(),
                terminal: m.is_terminal(),
                starts_run: matches!(m, PeerMessage::Started(_)),
            })
            .collect();
        let (done, ticket) = oneshot::channel();
        self.inner.queue.put(Request::Append { entries: append, done }, bounded).map_err(|_| OutboxError::Closed)?;
        Ok(Ticket(ticket))
    }

    /// Resolves once everything handed over before this call is committed.
    pub fn flush(&self) -> Ticket {
        let (done, ticket) = oneshot::channel();
        // A closed queue drops `done`, which resolves the ticket as closed.
        let _ = self.inner.queue.put(Request::Append { entries: Vec::new(), done }, false);
        Ticket(ticket)
    }

    /// Wakes when new messages were committed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.appended.subscribe()
    }

    /// Wait until nothing is owed, up to `limit`; whether the outbox is empty.
    pub async fn drained(&self, limit: Duration) -> bool {
        let mut commits = self.inner.committed.subscribe();
        let wait = async {
            while self.pending_count() > 0 {
                if commits.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
        self.pending_count() == 0
    }

    /// Committed entries after `after` (all when `None`), in order.
    pub fn pending(&self, after: Option<u64>, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        self.inner.store.pending(after, limit)
    }

    pub fn pending_count(&self) -> u64 {
        self.inner.store.pending_count().unwrap_or(0)
    }

    /// Take `seq` for one sender; false when the other sender has it.
    pub fn claim(&self, seq: u64) -> bool {
        self.inner.claims.lock().unwrap_or_else(|p| p.into_inner()).insert(seq)
    }

    pub fn release(&self, seq: u64) {
        self.inner.claims.lock().unwrap_or_else(|p| p.into_inner()).remove(&seq);
    }

    /// `entries` reached the server: drop them in the next group commit, and remember
    /// delivered terminal messages. Their claims stay held until that commit, so neither
    /// sender takes them again meanwhile.
    pub fn delivered(&self, entries: &[OutboxEntry]) -> Result<(), OutboxError> {
        if entries.is_empty() {
            return Ok(());
        }
        let seqs = entries.iter().map(|e| e.seq).collect();
        let terminal_runs = entries.iter().filter(|e| e.terminal).map(|e| e.run_id.clone()).collect();
        self.inner.queue.put(Request::Deliver { seqs, terminal_runs }, false).map_err(|_| OutboxError::Closed)
    }

    /// Write transactions the store committed since start (each one fdatasync).
    pub fn commits(&self) -> u64 {
        self.inner.store.commits()
    }

    /// The oldest message still owed to the server: when it was committed.
    pub fn oldest_owed(&self) -> Oldest {
        self.inner.owed.oldest(self.inner.store.pending_range().ok().flatten().map(|(first, _)| first))
    }

    /// Messages committed to the outbox since start.
    pub fn stored(&self) -> u64 {
        self.inner.stored.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether this run's terminal message already went out (over either path).
    pub fn terminal_delivered(&self, run_id: &str) -> bool {
        self.inner.store.terminal_delivered(run_id).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests;
