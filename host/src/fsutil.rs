//! File-system helpers with durability rules every writer of the data dir shares. A leaf
//! module: the component cache, the component files and `component sign` all write atomically.

use std::path::Path;

/// Write `bytes` to `path` so that a reader sees the old file or the whole new one: a
/// temporary file in the same directory, fsync'd, renamed over, and the directory fsync'd.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.{}.tmp", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(), std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
