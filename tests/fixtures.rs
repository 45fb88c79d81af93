//! The repository's copy of the real CLIs' transcripts (`tests/fixtures/transcripts/`) is
//! the shared one byte for byte: tests read the copy so a clone needs nothing beside it, and
//! this test notices the day the shared transcripts change and the copy was not refreshed.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                out.insert(path.strip_prefix(root).unwrap().to_path_buf(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn transcripts_equal_the_shared_copy() {
    let copy = files(&common::transcripts_dir());
    assert!(copy.len() >= 100, "the repository carries every transcript ({} files)", copy.len());
    for driver in ["codex", "opencode", "attention/2.1.330"] {
        assert!(copy.keys().any(|p| p.starts_with(driver)), "transcripts of {driver} are in the copy");
    }
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/transcripts");
    if !shared.is_dir() {
        // A clone on its own: the copy is all there is, and it was checked above.
        eprintln!("no shared/ beside the project: only the repository's copy was checked");
        return;
    }
    let original = files(&shared);
    let missing: Vec<_> = original.keys().filter(|p| !copy.contains_key(*p)).collect();
    assert!(missing.is_empty(), "shared transcripts missing from tests/fixtures/transcripts: {missing:?}");
    let changed: Vec<_> = original.iter().filter(|(p, bytes)| copy.get(*p) != Some(bytes)).map(|(p, _)| p).collect();
    assert!(changed.is_empty(), "transcripts that differ from shared/ (copy them again, byte for byte): {changed:?}");
}
