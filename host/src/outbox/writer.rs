//! The outbox's one writer: a FIFO hand-over bounded by bytes, and the thread that commits
//! everything in it at once.
//!
//! A plain thread with a mutex and two condvars, not an async task: the commit blocks on
//! fsync, and the runs that feed it are threads too. FIFO order is what keeps each run's
//! messages in order (a run hands over from one thread, line after line). A commit that
//! fails (a full disk) is retried with the group kept in memory: the hand-over fills, runs
//! wait in `push`, their CLIs wait on their pipes — nothing is dropped while the peer lives.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use crate::store::{NewEntry, Store, StoreError};

pub(super) enum Request {
    Append { entries: Vec<NewEntry>, done: oneshot::Sender<u64> },
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

    /// Everything queued, waiting up to `timeout` (forever when `None`) for at least one
    /// request; empty when the time passed, `None` once closed and empty.
    fn take_all(&self, timeout: Option<Duration>) -> Option<Vec<Request>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut state = self.lock();
        while state.requests.is_empty() {
            if state.closed {
                return None;
            }
            state = match deadline {
                None => self.arrived.wait(state).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Some(Vec::new());
                    }
                    self.arrived.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0
                }
            };
        }
        state.bytes = 0;
        let taken = state.requests.drain(..).collect();
        drop(state);
        self.taken.notify_all();
        Some(taken)
    }

    #[cfg(test)]
    pub(super) fn take_all_for_test(&self) -> usize {
        self.take_all(None).map_or(0, |t| t.len())
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

pub(super) fn spawn(writer: Writer) {
    let queue = writer.queue.clone();
    let spawned = std::thread::Builder::new().name("outbox-writer".into()).spawn(move || writer.run());
    if let Err(e) = spawned {
        // Without a writer nothing can be stored: closed, every push says so at once instead
        // of waiting on a queue nobody drains.
        tracing::error!("cannot start the outbox writer thread: {e}");
        queue.close();
    }
}

pub(super) struct Writer {
    pub queue: Arc<Queue>,
    pub store: Store,
    pub appended: watch::Sender<u64>,
    pub committed: watch::Sender<u64>,
    pub claims: Arc<Mutex<HashSet<u64>>>,
    pub stored: Arc<AtomicU64>,
    pub owed: Arc<super::Owed>,
}

/// How often a failing commit is retried, at most.
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Attempts left for a failing group once the outbox is closed (the peer is stopping).
const ATTEMPTS_WHEN_CLOSED: u32 = 3;

/// The most a commit waits for company, reached at `FULL_LINGER_RATE` messages a second.
const LINGER_MAX: Duration = Duration::from_millis(12);
const FULL_LINGER_RATE: f64 = 8_000.0;
/// How long deliveries without a terminal message may wait to ride along with appends.
const DELIVERY_LINGER: Duration = Duration::from_millis(100);

/// The arrival rate the writer has seen, and the linger it implies.
///
/// Group commit alone groups only what arrives during one fsync, which on a fast disk is a
/// handful of messages; under load the writer waits a little for more. The wait grows with
/// the square of the rate: near zero at the rates one run produces (a line's frame goes
/// out within a fsync of being mapped), the full `LINGER_MAX` at `FULL_LINGER_RATE` and
/// above, where a hundred messages share each fsync (docs/reliability.md).
#[derive(Default)]
struct Pace {
    /// Messages a second, smoothed over recent commits.
    rate: f64,
    last: Option<Instant>,
}

impl Pace {
    fn observe(&mut self, messages: usize, at: Instant) {
        if let Some(last) = self.last {
            let seconds = (at - last).as_secs_f64().max(1e-4);
            self.rate = 0.7 * self.rate + 0.3 * (messages as f64 / seconds);
        }
        self.last = Some(at);
    }

    fn linger(&self) -> Duration {
        LINGER_MAX.mul_f64((self.rate / FULL_LINGER_RATE).powi(2).min(1.0))
    }
}

impl Writer {
    fn run(self) {
        let mut pace = Pace::default();
        // Deliveries of non-terminal entries wait for the next append commit (or
        // `DELIVERY_LINGER`): losing one in a crash only sends those entries again.
        let mut held: Vec<Request> = Vec::new();
        let mut held_since: Option<Instant> = None;
        loop {
            let timeout = held_since.map(|t| DELIVERY_LINGER.saturating_sub(t.elapsed()));
            let Some(mut requests) = self.queue.take_all(timeout) else { break };
            let appends = requests.iter().any(|r| matches!(r, Request::Append { .. }));
            let linger = pace.linger();
            if appends && !linger.is_zero() {
                std::thread::sleep(linger);
                requests.extend(self.queue.take_all(Some(Duration::ZERO)).unwrap_or_default());
            }
            let urgent = requests.iter().any(|r| match r {
                Request::Append { .. } => true,
                Request::Deliver { terminal_runs, .. } => !terminal_runs.is_empty(),
            });
            held.extend(requests);
            let due = held_since.is_some_and(|t| t.elapsed() >= DELIVERY_LINGER);
            if urgent || due {
                let at = Instant::now();
                let appended = self.commit(std::mem::take(&mut held));
                pace.observe(appended, at);
                held_since = None;
            } else if !held.is_empty() && held_since.is_none() {
                held_since = Some(Instant::now());
            }
        }
        if !held.is_empty() {
            self.commit(held);
        }
    }

    /// Commit `requests` as one group; how many messages it appended.
    fn commit(&self, requests: Vec<Request>) -> usize {
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
        let started = Instant::now();
        let committed = self.commit_with_retry(&append, &acks, &terminal_runs);
        crate::metrics::global().commit_took(started.elapsed());
        let first = match committed {
            Ok(first) => first,
            Err(e) => {
                tracing::error!(lost = append.len(), "the peer stopped before these outgoing messages could be stored: {e}");
                return 0; // dropping `waiting` tells every ticket
            }
        };
        if !acks.is_empty() {
            let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
            for s in &acks {
                claims.remove(s);
            }
        }
        self.stored.fetch_add(append.len() as u64, Ordering::Relaxed);
        self.owed.appended(first, append.len() as u64, std::time::SystemTime::now());
        if !acks.is_empty() {
            // One read of the outbox's first key per delivery commit keeps the ledger short.
            if let Ok(range) = self.store.pending_range() {
                self.owed.settled_before(range.map(|(first, _)| first));
            }
        }
        if !append.is_empty() {
            self.appended.send_replace(first + append.len() as u64 - 1);
        }
        self.committed.send_modify(|n| *n += 1);
        // Tickets last: whoever waited on one sees the watches already moved.
        for (through, done) in waiting {
            let _ = done.send(through.map_or(0, |n| first + n - 1));
        }
        append.len()
    }

    fn commit_with_retry(&self, append: &[NewEntry], acks: &[u64], runs: &[String]) -> Result<u64, StoreError> {
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
                        return Err(e);
                    }
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
    }
}
