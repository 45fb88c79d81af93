//! Opening the store file, and saying in one line what is wrong with a data dir when it
//! cannot be opened or written: the fault (`Fault`), the path, and what the user can do.
//!
//! Why it is shaped so:
//! - A fault a restart cannot fix (a read-only data dir, a damaged file, a file from a newer
//!   peer) is told apart from one that can pass (a full disk, another peer holding the lock),
//!   so that `main` can exit with a status the service manager does not restart in a loop.
//! - The file records its format (`FORMAT_TABLE`, in a table of its own that no later
//!   version may change) and a newer one is refused before anything is written: the open
//!   reads the record in a read transaction first, so a refused file is left as it was.
//! - redb asserts on some damaged files (a truncated one trips `file length >= layout`), so
//!   the open runs under `catch_unwind`, with the panic hook silenced for that moment: a
//!   damaged store is a one-line refusal, never a panic and a crash loop.
//! - After any I/O error redb refuses every later operation (`PreviousIo`) until the file is
//!   closed and opened again. `Handle` does that: the failing operation drops the database,
//!   and the next one opens it again (which fails, and is retried, while the disk is still
//!   full) — so a peer whose disk filled up and was freed carries on without a restart.
//! - A new file whose creation failed (a full disk at first start) is removed again: redb
//!   writes its magic number last, and a half-written file would be refused as damaged.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use redb::{Database, TableDefinition};

/// The store format this peer writes and the newest it reads. Bump it when a record changes
/// its encoding; a peer that finds a larger number refuses the file instead of misreading it.
pub const FORMAT: u64 = 1;
const FORMAT_TABLE: TableDefinition<&str, u64> = TableDefinition::new("format");
const FORMAT_KEY: &str = "store";

/// What is wrong, as far as the user's next step goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Another process holds the file's lock.
    Busy,
    /// No space (or quota) left: passes once space is freed.
    Full,
    /// The data dir or the file cannot be written (read-only mount, permissions).
    ReadOnly,
    /// Not a store, or a damaged one.
    Corrupt,
    /// Written by a newer peer, in a format this one does not know.
    Newer,
    /// Any other I/O or store error.
    Other,
}

impl Fault {
    /// Whether starting again, unchanged, would meet the same fault (the service manager must
    /// not restart the peer in a loop for it).
    pub fn restart_cannot_fix(self) -> bool {
        matches!(self, Fault::ReadOnly | Fault::Corrupt | Fault::Newer)
    }
}

/// The fault an OS error stands for.
pub fn io_fault(e: &std::io::Error) -> Fault {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => Fault::Full,
        Some(libc::EROFS) | Some(libc::EACCES) | Some(libc::EPERM) => Fault::ReadOnly,
        _ if e.kind() == std::io::ErrorKind::InvalidData || e.kind() == std::io::ErrorKind::UnexpectedEof => Fault::Corrupt,
        _ => Fault::Other,
    }
}

/// The fault a redb error stands for, and whether the database must be opened again.
pub fn redb_fault(e: &redb::Error) -> (Fault, bool) {
    match e {
        redb::Error::Io(io) => (io_fault(io), true),
        redb::Error::PreviousIo => (Fault::Other, true),
        redb::Error::DatabaseAlreadyOpen => (Fault::Busy, false),
        redb::Error::Corrupted(_) | redb::Error::UpgradeRequired(_) | redb::Error::RepairAborted => (Fault::Corrupt, false),
        redb::Error::TableTypeMismatch { .. } | redb::Error::TypeDefinitionChanged { .. } => (Fault::Corrupt, false),
        _ => (Fault::Other, false),
    }
}

/// The one line for `fault` at `path`, with what to do about it.
pub fn advice(fault: Fault, path: &Path, cause: &str) -> String {
    let dir = path.parent().unwrap_or(Path::new(".")).display();
    let file = path.display();
    match fault {
        Fault::Busy => "another orgx-peer is using this data dir (stop it, or set ORGX_PEER_DATA_DIR to another directory)".into(),
        Fault::Full => format!("the filesystem is full ({cause}): free space on it, or set ORGX_PEER_DATA_DIR to a directory on another filesystem"),
        Fault::ReadOnly => {
            format!("cannot write to the data dir `{dir}` ({cause}): make it writable (remount it read-write, or fix its owner), or set ORGX_PEER_DATA_DIR to a writable directory")
        }
        Fault::Corrupt => format!(
            "the file is damaged ({cause}): move it aside (`mv {file} {file}.damaged`) and start again; messages still owed in it are lost, the server retries their runs"
        ),
        Fault::Newer => format!(
            "it was written by a newer orgx-peer ({cause}; this version reads format {FORMAT}): install that version again, or set ORGX_PEER_DATA_DIR to another directory; the file was left unchanged"
        ),
        Fault::Other => format!("cannot use it ({cause}); check the data dir `{dir}`, or set ORGX_PEER_DATA_DIR to another directory"),
    }
}

/// `Database::create`, with a panic inside redb turned into a `Corrupt` fault.
fn create(path: &Path) -> Result<Database, (Fault, String)> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(|| Database::create(path));
    std::panic::set_hook(hook);
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => Err((Fault::Busy, String::new())),
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(io)))) => {
            let fault = io_fault(&io);
            let cause = if fault == Fault::Corrupt { format!("not a peer store: {io}") } else { io.to_string() };
            Err((fault, cause))
        }
        Ok(Err(other)) => {
            let e = redb::Error::from(other);
            Err((redb_fault(&e).0, e.to_string()))
        }
        Err(_) => Err((Fault::Corrupt, "truncated or damaged: its length does not match its header".into())),
    }
}

/// The format recorded in `db`, `None` for a new file or one from before the record.
fn recorded_format(db: &Database) -> Result<Option<u64>, redb::Error> {
    let r = db.begin_read()?;
    match r.open_table(FORMAT_TABLE) {
        Ok(t) => Ok(t.get(FORMAT_KEY)?.map(|v| v.value())),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Open (or create) the file for the first time in this process: refuse a newer format
/// before writing anything, then record ours.
pub fn first_open(path: &Path) -> Result<Database, (Fault, String)> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| (io_fault(&e), format!("cannot create the data dir: {e}")))?;
    }
    let fresh = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
    let db = create(path).inspect_err(|_| {
        // redb writes the file's magic number last: a first start that failed half-way (a full
        // disk) would leave a file every later start refuses as damaged.
        if fresh {
            let _ = std::fs::remove_file(path);
        }
    })?;
    let found = recorded_format(&db).map_err(|e| (redb_fault(&e).0, e.to_string()))?;
    if let Some(found) = found.filter(|f| *f > FORMAT) {
        return Err((Fault::Newer, format!("store format {found}")));
    }
    if found.is_none() {
        let stamp = || -> Result<(), redb::Error> {
            let w = db.begin_write()?;
            w.open_table(FORMAT_TABLE)?.insert(FORMAT_KEY, FORMAT)?;
            w.commit()?;
            Ok(())
        };
        stamp().map_err(|e| (redb_fault(&e).0, e.to_string()))?;
    }
    Ok(db)
}

/// The open database, dropped after an I/O error and opened again on next use.
pub struct Handle {
    path: PathBuf,
    db: Mutex<Option<Arc<Database>>>,
}

impl Handle {
    pub fn new(path: &Path, db: Database) -> Handle {
        Handle { path: path.to_path_buf(), db: Mutex::new(Some(Arc::new(db))) }
    }

    /// The database, opened again if an I/O error closed it.
    pub fn get(&self) -> Result<Arc<Database>, (Fault, String)> {
        let mut slot = self.db.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = slot.as_ref() {
            return Ok(db.clone());
        }
        let db = Arc::new(create(&self.path)?);
        tracing::info!(path = %self.path.display(), "peer store opened again after an I/O error");
        *slot = Some(db.clone());
        Ok(db)
    }

    /// `db` met an I/O error: close it once the operations still holding it are done.
    pub fn poisoned(&self, db: &Arc<Database>) {
        let mut slot = self.db.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|current| Arc::ptr_eq(current, db)) {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_map_to_the_fault_a_user_can_act_on() {
        let cases = [
            (libc::ENOSPC, Fault::Full),
            (libc::EDQUOT, Fault::Full),
            (libc::EROFS, Fault::ReadOnly),
            (libc::EACCES, Fault::ReadOnly),
            (libc::EPERM, Fault::ReadOnly),
            (libc::EIO, Fault::Other),
        ];
        for (errno, want) in cases {
            assert_eq!(io_fault(&std::io::Error::from_raw_os_error(errno)), want, "errno {errno}");
        }
        assert_eq!(io_fault(&std::io::ErrorKind::InvalidData.into()), Fault::Corrupt);
        assert!(!Fault::Full.restart_cannot_fix() && !Fault::Busy.restart_cannot_fix() && !Fault::Other.restart_cannot_fix());
        assert!(Fault::ReadOnly.restart_cannot_fix() && Fault::Corrupt.restart_cannot_fix() && Fault::Newer.restart_cannot_fix());
    }

    #[test]
    fn every_advice_names_the_path_and_is_one_line() {
        let path = Path::new("/var/lib/orgx/peer.redb");
        for fault in [Fault::Busy, Fault::Full, Fault::ReadOnly, Fault::Corrupt, Fault::Newer, Fault::Other] {
            let line = advice(fault, path, "cause");
            assert!(!line.contains('\n'), "{line}");
            assert!(line.contains("ORGX_PEER_DATA_DIR") || line.contains("mv /var/lib/orgx/peer.redb"), "{fault:?}: {line}");
        }
    }

    #[test]
    fn damaged_files_are_refused_without_a_panic_or_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.redb");
        drop(first_open(&good).unwrap());
        let bytes = std::fs::read(&good).unwrap();
        let cases: [(&str, Vec<u8>); 3] =
            [("garbage", vec![0x5a; 8192]), ("truncated", bytes[..bytes.len() / 2].to_vec()), ("header only", bytes[..600].to_vec())];
        for (name, content) in cases {
            let path = dir.path().join(format!("{}.redb", name.replace(' ', "-")));
            std::fs::write(&path, &content).unwrap();
            let (fault, cause) = first_open(&path).err().unwrap_or_else(|| panic!("{name} opened"));
            assert_eq!(fault, Fault::Corrupt, "{name}: {cause}");
            assert_eq!(std::fs::read(&path).unwrap(), content, "{name}: the refused file is unchanged");
        }
    }

    #[test]
    fn a_newer_format_is_refused_and_left_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peer.redb");
        {
            let db = Database::create(&path).unwrap();
            let w = db.begin_write().unwrap();
            w.open_table(FORMAT_TABLE).unwrap().insert(FORMAT_KEY, FORMAT + 1).unwrap();
            w.commit().unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let (fault, cause) = first_open(&path).err().unwrap();
        assert_eq!((fault, cause.as_str()), (Fault::Newer, "store format 2"));
        assert_eq!(std::fs::read(&path).unwrap(), before, "a refused file is left byte for byte");
        let current = dir.path().join("current.redb");
        drop(first_open(&current).unwrap());
        let db = first_open(&current).unwrap();
        assert_eq!(recorded_format(&db).unwrap(), Some(FORMAT), "the format is recorded, and reopening keeps it");
    }
}
