//! The peer's durable state in one redb file in the data dir: the outbox, delivered
//! terminal messages, dispatch dedupe, and small keyed records (`records`: rules cache,
//! installation id, process groups, component slots, quarantine, compiled-code integrity).
//!
//! The store owns every key: callers use typed methods, never key strings, so each record
//! has one owner and one encoding.
//!
//! Every write commits with redb's default durability (fsync before `commit` returns), so
//! whatever a caller was told is stored survives a SIGKILL. Orders are sequence numbers
//! kept in the same transactions as the data, so they stay monotonic across restarts.
//!
//! Opening the file, its format record and what a fault of the data dir tells the user live
//! in `open` (docs/reliability.md, "Disk faults"): every error here carries its `Fault`, so
//! `main` can pick an exit status a service manager does not restart in a loop.

// The transaction closures return `redb::Error` (160 bytes) only to their caller in this
// module, on a path that waits for an fsync; boxing it would buy nothing.
#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

mod attention;
mod open;
mod records;

pub use open::{Fault, FORMAT};
pub use records::RunGroup;

const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const DELIVERED: TableDefinition<&str, u64> = TableDefinition::new("delivered");
const DELIVERED_ORDER: TableDefinition<u64, &str> = TableDefinition::new("delivered_order");
const DISPATCH: TableDefinition<&str, &[u8]> = TableDefinition::new("dispatch");
const FINISHED_ORDER: TableDefinition<u64, &str> = TableDefinition::new("finished_order");
const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
/// Runs whose `task.started` is committed and whose terminal is not yet delivered: a peer
/// restarted after a crash must send `task.started` itself before failing a run that never
/// got that far (spec §3.9), and must not send it twice for one that did.
const STARTED: TableDefinition<&str, u64> = TableDefinition::new("started");

/// How many delivered run ids and finished dispatch keys are remembered.
pub const DELIVERED_KEPT: u64 = 10_000;
pub const FINISHED_KEPT: u64 = 1_000;

#[derive(Debug, thiserror::Error)]
#[error("peer store `{path}`: {message}")]
pub struct StoreError {
    path: String,
    message: String,
    fault: Fault,
}

impl StoreError {
    pub fn fault(&self) -> Fault {
        self.fault
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub seq: u64,
    pub run_id: String,
    pub message_json: String,
    pub terminal: bool,
}

/// A message for the outbox, before it has a sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub run_id: String,
    pub message_json: String,
    pub terminal: bool,
    /// The run's `task.started` (recorded in `STARTED` with it).
    pub starts_run: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    New,
    Duplicate { run_id: String, finished: bool },
}

#[derive(Clone)]
pub struct Store {
    db: Arc<open::Handle>,
    path: Arc<PathBuf>,
    /// Write transactions committed since open (each one fsync): the delivery bench and
    /// `status` read it.
    commits: Arc<AtomicU64>,
}

fn encode_entry(v: &mut Vec<u8>, run_id: &str, json: &str, terminal: bool) {
    v.clear();
    v.reserve(5 + run_id.len() + json.len());
    v.push(terminal as u8);
    v.extend_from_slice(&(run_id.len() as u32).to_le_bytes());
    v.extend_from_slice(run_id.as_bytes());
    v.extend_from_slice(json.as_bytes());
}

/// Keep `run_id` among the last `DELIVERED_KEPT` runs whose terminal message went out.
fn remember_delivered(w: &redb::WriteTransaction, meta: &mut redb::Table<&str, u64>, run_id: &str) -> Result<(), redb::Error> {
    let mut delivered = w.open_table(DELIVERED)?;
    if delivered.get(run_id)?.is_some() {
        return Ok(());
    }
    let n = meta.get("delivered_seq")?.map(|v| v.value()).unwrap_or(0) + 1;
    meta.insert("delivered_seq", n)?;
    delivered.insert(run_id, n)?;
    if let Some(old) = push_bounded(&mut w.open_table(DELIVERED_ORDER)?, n, DELIVERED_KEPT, run_id)? {
        delivered.remove(old.as_str())?;
    }
    Ok(())
}

/// Append `key` as number `n` of an order table that keeps the last `kept`; the key that fell
/// out, for the caller to forget.
fn push_bounded(order: &mut redb::Table<u64, &str>, n: u64, kept: u64, key: &str) -> Result<Option<String>, redb::Error> {
    order.insert(n, key)?;
    if n <= kept {
        return Ok(None);
    }
    Ok(order.remove(n - kept)?.map(|old| old.value().to_string()))
}

fn decode_entry(seq: u64, b: &[u8]) -> Option<OutboxEntry> {
    let terminal = *b.first()? == 1;
    let len = u32::from_le_bytes(b.get(1..5)?.try_into().ok()?) as usize;
    let run_id = std::str::from_utf8(b.get(5..5 + len)?).ok()?.to_string();
    let message_json = std::str::from_utf8(b.get(5 + len..)?).ok()?.to_string();
    Some(OutboxEntry { seq, run_id, message_json, terminal })
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = open::first_open(path).map_err(|(fault, cause)| StoreError {
            path: path.display().to_string(),
            message: open::advice(fault, path, &cause),
            fault,
        })?;
        let store = Store { db: Arc::new(open::Handle::new(path, db)), path: Arc::new(path.to_path_buf()), commits: Arc::default() };
        // Create every table once, so readers never see a missing table.
        store.write(|w| {
            w.open_table(OUTBOX)?;
            w.open_table(META)?;
            w.open_table(DELIVERED)?;
            w.open_table(DELIVERED_ORDER)?;
            w.open_table(DISPATCH)?;
            w.open_table(FINISHED_ORDER)?;
            w.open_table(KV)?;
            Ok(())
        })?;
        Ok(store)
    }

    fn err(&self, fault: Fault, cause: &str) -> StoreError {
        StoreError { path: self.path.display().to_string(), message: open::advice(fault, &self.path, cause), fault }
    }

    /// The database, opened again when an I/O error closed it.
    fn db(&self) -> Result<Arc<redb::Database>, StoreError> {
        self.db.get().map_err(|(fault, cause)| self.err(fault, &cause))
    }

    /// `e` from an operation on `db`; an I/O error closes `db`, for the next operation to
    /// open it again (redb refuses everything after one until then).
    fn failed(&self, db: &Arc<redb::Database>, e: impl Into<redb::Error>) -> StoreError {
        let e = e.into();
        let (fault, reopen) = open::redb_fault(&e);
        if reopen {
            self.db.poisoned(db);
        }
        self.err(fault, &e.to_string())
    }

    fn write<R>(&self, f: impl FnOnce(&redb::WriteTransaction) -> Result<R, redb::Error>) -> Result<R, StoreError> {
        let db = self.db()?;
        let txn = db.begin_write().map_err(|e| self.failed(&db, e))?;
        let r = f(&txn).map_err(|e| self.failed(&db, e))?;
        txn.commit().map_err(|e| self.failed(&db, e))?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(r)
    }

    /// Write transactions committed since the store was opened.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    fn read<R>(&self, f: impl FnOnce(&redb::ReadTransaction) -> Result<R, redb::Error>) -> Result<R, StoreError> {
        let db = self.db()?;
        let txn = db.begin_read().map_err(|e| self.failed(&db, e))?;
        f(&txn).map_err(|e| self.failed(&db, e))
    }

    /// One group commit of the outbox's writer: append `append` in order, drop the `ack`ed
    /// entries and remember the runs whose terminal message was delivered — one transaction,
    /// one fsync. Returns the sequence number of the first appended entry.
    pub fn commit_group(&self, append: &[NewEntry], ack: &[u64], terminal_delivered: &[String]) -> Result<u64, StoreError> {
        self.write(|w| {
            let mut meta = w.open_table(META)?;
            let first = meta.get("next_seq")?.map(|v| v.value()).unwrap_or(1);
            if !append.is_empty() {
                let mut outbox = w.open_table(OUTBOX)?;
                let mut buf = Vec::new();
                let mut started = w.open_table(STARTED)?;
                for (seq, e) in (first..).zip(append) {
                    encode_entry(&mut buf, &e.run_id, &e.message_json, e.terminal);
                    outbox.insert(seq, buf.as_slice())?;
                    if e.starts_run {
                        started.insert(e.run_id.as_str(), seq)?;
                    }
                }
                meta.insert("next_seq", first + append.len() as u64)?;
            }
            if !ack.is_empty() {
                let mut outbox = w.open_table(OUTBOX)?;
                for s in ack {
                    outbox.remove(*s)?;
                }
            }
            if !terminal_delivered.is_empty() {
                let mut started = w.open_table(STARTED)?;
                for run_id in terminal_delivered {
                    remember_delivered(w, &mut meta, run_id)?;
                    started.remove(run_id.as_str())?;
                }
            }
            Ok(first)
        })
    }

    /// Whether run `run_id`'s `task.started` was committed (and its terminal not yet delivered).
    pub fn run_started(&self, run_id: &str) -> Result<bool, StoreError> {
        self.read(|r| match r.open_table(STARTED) {
            Ok(t) => Ok(t.get(run_id)?.is_some()),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(false),
            Err(e) => Err(e.into()),
        })
    }

    /// Up to `limit` entries after `after` (all when `None`), in order.
    pub fn pending(&self, after: Option<u64>, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        self.read(|r| {
            let t = r.open_table(OUTBOX)?;
            let start = after.map_or(0, |a| a.saturating_add(1));
            let mut out = Vec::new();
            for item in t.range(start..)? {
                if out.len() >= limit {
                    break;
                }
                let (k, v) = item?;
                match decode_entry(k.value(), v.value()) {
                    Some(e) => out.push(e),
                    None => tracing::error!(seq = k.value(), "skipping an unreadable outbox entry"),
                }
            }
            Ok(out)
        })
    }

    pub fn pending_count(&self) -> Result<u64, StoreError> {
        self.read(|r| Ok(r.open_table(OUTBOX)?.len()?))
    }

    /// The lowest and the highest sequence number still in the outbox.
    pub fn pending_range(&self) -> Result<Option<(u64, u64)>, StoreError> {
        self.read(|r| {
            let t = r.open_table(OUTBOX)?;
            let first = t.first()?.map(|(k, _)| k.value());
            let last = t.last()?.map(|(k, _)| k.value());
            Ok(first.zip(last))
        })
    }

    pub fn terminal_delivered(&self, run_id: &str) -> Result<bool, StoreError> {
        self.read(|r| Ok(r.open_table(DELIVERED)?.get(run_id)?.is_some()))
    }

    /// Atomically record a dispatch, or report the run that already has its key.
    pub fn claim_dispatch(&self, key: &str, run_id: &str) -> Result<Claim, StoreError> {
        self.write(|w| {
            let mut t = w.open_table(DISPATCH)?;
            if let Some(v) = t.get(key)? {
                let b = v.value();
                let finished = b.first() == Some(&1);
                let run_id = String::from_utf8_lossy(b.get(1..).unwrap_or_default()).into_owned();
                return Ok(Claim::Duplicate { run_id, finished });
            }
            let mut v = vec![0u8];
            v.extend_from_slice(run_id.as_bytes());
            t.insert(key, v.as_slice())?;
            Ok(Claim::New)
        })
    }

    /// The dispatch is done: keep its key among the last `FINISHED_KEPT` finished ones.
    pub fn finish_dispatch(&self, key: &str) -> Result<(), StoreError> {
        self.write(|w| {
            let mut t = w.open_table(DISPATCH)?;
            let Some(v) = t.get(key)?.map(|v| v.value().to_vec()) else { return Ok(()) };
            if v.first() == Some(&1) {
                return Ok(());
            }
            let mut done = v;
            done[0] = 1;
            t.insert(key, done.as_slice())?;
            let mut meta = w.open_table(META)?;
            let n = meta.get("finished_seq")?.map(|v| v.value()).unwrap_or(0) + 1;
            meta.insert("finished_seq", n)?;
            if let Some(old) = push_bounded(&mut w.open_table(FINISHED_ORDER)?, n, FINISHED_KEPT, key)? {
                t.remove(old.as_str())?;
            }
            Ok(())
        })
    }

    /// Dispatches claimed and never finished (a previous life died with them in flight).
    pub fn running_dispatches(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.read(|r| {
            let t = r.open_table(DISPATCH)?;
            let mut out = Vec::new();
            for item in t.iter()? {
                let (k, v) = item?;
                let b = v.value();
                if b.first() == Some(&0) {
                    out.push((k.value().to_string(), String::from_utf8_lossy(&b[1..]).into_owned()));
                }
            }
            Ok(out)
        })
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.write(|w| {
            w.open_table(KV)?.insert(key, value)?;
            Ok(())
        })
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|r| Ok(r.open_table(KV)?.get(key)?.map(|v| v.value().to_vec())))
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.write(|w| {
            w.open_table(KV)?.remove(key)?;
            Ok(())
        })
    }

    fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.read(|r| {
            let t = r.open_table(KV)?;
            let mut out = Vec::new();
            for item in t.range(prefix..)? {
                let (k, v) = item?;
                if !k.value().starts_with(prefix) {
                    break;
                }
                out.push((k.value().to_string(), v.value().to_vec()));
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(run_id: &str, json: &str, terminal: bool) -> NewEntry {
        NewEntry { run_id: run_id.into(), message_json: json.into(), terminal, starts_run: false }
    }

    /// The restart reaper asks whether a run's `task.started` ever went to disk: yes from its
    /// commit until its terminal is delivered, no for a run that never started.
    #[test]
    fn a_started_run_is_known_until_its_terminal_is_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("peer.redb")).unwrap();
        assert!(!s.run_started("r1").unwrap(), "a fresh store knows no run");
        let started = NewEntry { starts_run: true, ..entry("r1", "{}", false) };
        s.commit_group(&[started, entry("r2", "{}", false)], &[], &[]).unwrap();
        assert_eq!((s.run_started("r1").unwrap(), s.run_started("r2").unwrap()), (true, false));
        s.commit_group(&[], &[], &["r1".to_string()]).unwrap();
        assert!(!s.run_started("r1").unwrap(), "forgotten once its terminal is delivered");
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("peer.redb")).unwrap();
        (dir, s)
    }

    #[test]
    fn outbox_is_ordered_and_survives_reopen() {
        let (dir, s) = store();
        let first = s.commit_group(&[entry("r1", "{\"a\":1}", false), entry("r1", "{\"b\":2}", true)], &[], &[]).unwrap();
        assert_eq!(first, 1);
        assert_eq!(s.commit_group(&[], &[1], &[]).unwrap(), 3, "an ack-only group appends nothing");
        drop(s);
        let s = Store::open(&dir.path().join("peer.redb")).unwrap();
        let p = s.pending(None, 10).unwrap();
        assert_eq!(p, vec![OutboxEntry { seq: 2, run_id: "r1".into(), message_json: "{\"b\":2}".into(), terminal: true }]);
        assert_eq!(s.commit_group(&[entry("r2", "{}", false)], &[], &[]).unwrap(), 3, "seq is monotonic across reopen");
        assert_eq!(s.pending(Some(2), 10).unwrap().len(), 1);
        assert_eq!(s.pending_count().unwrap(), 2);
    }

    #[test]
    fn dispatch_dedupe_and_eviction() {
        let (_d, s) = store();
        assert_eq!(s.claim_dispatch("k", "r1").unwrap(), Claim::New);
        assert_eq!(s.claim_dispatch("k", "r2").unwrap(), Claim::Duplicate { run_id: "r1".into(), finished: false });
        assert_eq!(s.running_dispatches().unwrap(), vec![("k".into(), "r1".into())]);
        s.finish_dispatch("k").unwrap();
        assert_eq!(s.claim_dispatch("k", "r3").unwrap(), Claim::Duplicate { run_id: "r1".into(), finished: true });
        assert!(s.running_dispatches().unwrap().is_empty());
        s.claim_dispatch("running", "rr").unwrap();
        for i in 0..FINISHED_KEPT + 5 {
            let k = format!("f{i}");
            s.claim_dispatch(&k, "x").unwrap();
            s.finish_dispatch(&k).unwrap();
        }
        assert_eq!(s.claim_dispatch("k", "again").unwrap(), Claim::New, "the oldest finished keys are forgotten");
        assert!(
            matches!(s.claim_dispatch("running", "x").unwrap(), Claim::Duplicate { finished: false, .. }),
            "running keys are never evicted"
        );
    }

    #[test]
    fn delivered_and_kv() {
        let (_d, s) = store();
        assert!(!s.terminal_delivered("r").unwrap());
        let runs: Vec<String> = (0..DELIVERED_KEPT + 2).map(|i| format!("old-{i}")).collect();
        s.commit_group(&[], &[], &runs).unwrap();
        assert!(!s.terminal_delivered("old-0").unwrap() && !s.terminal_delivered("old-1").unwrap(), "the oldest are forgotten");
        assert!(s.terminal_delivered("old-2").unwrap() && s.terminal_delivered(&format!("old-{}", DELIVERED_KEPT + 1)).unwrap());
        let before = s.commits();
        s.commit_group(&[entry("r", "{}", true)], &[], &["r".into()]).unwrap();
        s.commit_group(&[], &[1], &["r".into()]).unwrap();
        assert_eq!(s.commits(), before + 2, "one commit per group");
        assert_eq!(s.pending_count().unwrap(), 0);
        assert!(s.terminal_delivered("r").unwrap());
        s.put("pgid/a", b"1").unwrap();
        s.put("pgid/b", b"2").unwrap();
        s.put("pgidx", b"3").unwrap();
        s.put("rules", b"x").unwrap();
        assert_eq!(s.scan_prefix("pgid/").unwrap().len(), 2);
        s.delete("pgid/a").unwrap();
        assert_eq!(s.get("pgid/a").unwrap(), None);
        assert_eq!(s.get("rules").unwrap().as_deref(), Some(&b"x"[..]));
    }

    #[test]
    fn a_second_open_and_a_corrupt_file_give_clear_errors() {
        let (dir, _s) = store();
        let err = Store::open(&dir.path().join("peer.redb")).err().unwrap().to_string();
        assert!(err.contains("another orgx-peer is using this data dir"), "{err}");
        let bad = dir.path().join("bad.redb");
        std::fs::write(&bad, vec![0x5a; 8192]).unwrap();
        let err = Store::open(&bad).err().unwrap().to_string();
        assert!(err.contains("bad.redb") && err.contains("the file is damaged") && err.contains("mv "), "{err}");
    }
}
