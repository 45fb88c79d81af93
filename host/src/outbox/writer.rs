//! The outbox's one writer: a FIFO hand-over bounded by bytes, and the thread that commits
//! everything in it at once.
//!
//! A plain thread with a mutex and two condvars, not an async task: the commit blocks on
//! fsync, and the runs that feed it are threads too. FIFO order is what keeps each run's
//! messages in order (a run hands over from one thread, line after line). A commit that
//! fails (a full disk) is retried with the group kept in memory: the hand-over fills, runs
//! wait in `push`, their CLIs wait on their pipes — nothing is dropped while the peer lives.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use crate::store::{NewEntry, Store};

pub(super) enum Request {
    Append { entries: Vec<NewEntry>, done: oneshot::Sender<Result<u64, String>> },
    Deliver { seqs: Vec<u64>, terminal_runs: Vec<String> },
}

impl Request {
    fn bytes(&self) -> usize {
        match self {
            Request::Append { entries, .. } => entries.iter().map(|e| e.message_json.len() + e.run_id.len() + 16).sum(),
            Request::Deliver { seqs, terminal_runs } => seqs.len() * 8 + terminal_runs.iter().map(String::len).sum::<usize>(),
        }
    }
}

pub(super) struct Queue {
    state: Mutex<State>,
    /// Signalled when a request arrives or the queue closes.
    arrived: Condvar,
    /// Signalled when the writer took requests (room was made).
    taken: Condvar,
    max_bytes: usize,
}

#[derive(Default)]
struct State {
    requests: VecDeque<Request>,
    bytes: usize,
    closed: bool,
}

pub(super) struct Closed;

impl Queue {
    pub(super) fn new(max_bytes: usize) -> Queue {
        Queue { state: Mutex::default(), arrived: Condvar::new(), taken: Condvar::new(), max_bytes }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Append a request; when `bounded`, first wait until it fits (a request larger than
    /// the whole budget goes alone into an empty queue, so nothing waits forever).
    pub(super) fn put(&self, request: Request, bounded: bool) -> Result<(), Closed> {
        let bytes = request.bytes();
        let mut state = self.lock();
        while bounded && !state.closed && !state.requests.is_empty() && state.bytes + bytes > self.max_bytes {
            state = self.taken.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        if state.closed {
            return Err(Closed);
        }
        state.bytes += bytes;
        state.requests.push_back(request);
        drop(state);
        self.arrived.notify_one();
        Ok(())
    }

    /// Everything queued, waiting for at least one request; `None` once closed and empty.
    fn take_all(&self) -> Option<Vec<Request>> {
        let mut state = self.lock();
        while state.requests.is_empty() {
            if state.closed {
                return None;
            }
            state = self.arrived.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.bytes = 0;
        let taken = state.requests.drain(..).collect();
        drop(state);
        self.taken.notify_all();
        Some(taken)
    }

    #[cfg(test)]
    pub(super) fn take_all_for_test(&self) -> usize {
        self.take_all().map_or(0, |t| t.len())
    }

    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.arrived.notify_all();
        self.taken.notify_all();
    }

    fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

pub(super) fn spawn(
    queue: Arc<Queue>,
    store: Store,
    appended: watch::Sender<u64>,
    committed: watch::Sender<u64>,
    claims: Arc<Mutex<HashSet<u64>>>,
) {
    let writer = Writer { queue, store, appended, committed, claims };
    let spawned = std::thread::Builder::new().name("outbox-writer".into()).spawn(move || writer.run());
    if let Err(e) = spawned {
        // Without a writer nothing can be stored; every ticket then reports the outbox closed.
        tracing::error!("cannot start the outbox writer thread: {e}");
    }
}

struct Writer {
    queue: Arc<Queue>,
    store: Store,
    appended: watch::Sender<u64>,
    committed: watch::Sender<u64>,
    claims: Arc<Mutex<HashSet<u64>>>,
}

/// How often a failing commit is retried, at most.
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Attempts left for a failing group once the outbox is closed (the peer is stopping).
const ATTEMPTS_WHEN_CLOSED: u32 = 3;

impl Writer {
    fn run(self) {
        while let Some(requests) = self.queue.take_all() {
            self.commit(requests);
        }
    }

    fn commit(&self, requests: Vec<Request>) {
        let mut append = Vec::new();
        let mut waiting = Vec::new();
        let (mut acks, mut terminal_runs) = (Vec::new(), Vec::new());
        for request in requests {
            match request {
                Request::Append { entries, done } => {
                    let own = !entries.is_empty();
                    append.extend(entries);
                    waiting.push((own.then_some(append.len() as u64), done));
                }
                Request::Deliver { seqs, terminal_runs: runs } => {
                    acks.extend(seqs);
                    terminal_runs.extend(runs);
                }
            }
        }
        let first = match self.commit_with_retry(&append, &acks, &terminal_runs) {
            Ok(first) => first,
            Err(e) => {
                tracing::error!(lost = append.len(), "the peer stopped before these outgoing messages could be stored: {e}");
                return; // dropping `waiting` tells every ticket
            }
        };
        if !acks.is_empty() {
            let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
            for s in &acks {
                claims.remove(s);
            }
        }
        if !append.is_empty() {
            self.appended.send_replace(first + append.len() as u64 - 1);
        }
        self.committed.send_modify(|n| *n += 1);
        // Tickets last: whoever waited on one sees the watches already moved.
        for (through, done) in waiting {
            let _ = done.send(Ok(through.map_or(0, |n| first + n - 1)));
        }
    }

    fn commit_with_retry(&self, append: &[NewEntry], acks: &[u64], runs: &[String]) -> Result<u64, String> {
        let mut delay = Duration::from_millis(50);
        let mut failures = 0u32;
        loop {
            match self.store.commit_group(append, acks, runs) {
                Ok(first) => {
                    if failures > 0 {
                        tracing::info!(failures, "outbox writes work again; nothing was lost");
                    }
                    return Ok(first);
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        tracing::error!(
                            messages = append.len(),
                            "cannot store outgoing messages: {e}; runs wait and this is retried (free disk space, or check the data dir)"
                        );
                    }
                    if self.queue.is_closed() && failures >= ATTEMPTS_WHEN_CLOSED {
                        return Err(e.to_string());
                    }
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
    }
}
