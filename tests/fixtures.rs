//! The repository's copy of the real CLIs' transcripts (`tests/fixtures/transcripts/`) is the
//! shared one byte for byte: `scripts/sync-transcripts` copies them from `../shared/` and
//! records each file's SHA-256 in `tests/fixtures/transcripts.sha256`. This test checks the copy
//! against that manifest, so it needs nothing beside the clone and still notices a transcript
//! edited, added or lost in the repository; `scripts/sync-transcripts --check` is what notices
//! the day the shared transcripts change.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

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
fn transcripts_equal_the_recorded_shared_copy() {
    let copy = files(&common::transcripts_dir());
    assert!(copy.len() >= 100, "the repository carries every transcript ({} files)", copy.len());
    for driver in ["codex", "opencode", "attention/2.1.330"] {
        assert!(copy.keys().any(|p| p.starts_with(driver)), "transcripts of {driver} are in the copy");
    }
    let manifest = std::fs::read_to_string(common::fixtures_dir().join("transcripts.sha256")).unwrap();
    let recorded: BTreeMap<PathBuf, &str> = manifest
        .lines()
        .map(|l| {
            let (digest, path) = l.split_once("  ").unwrap_or_else(|| panic!("a manifest line is `<sha256>  <path>`: {l:?}"));
            (PathBuf::from(path), digest)
        })
        .collect();
    let missing: Vec<_> = recorded.keys().filter(|p| !copy.contains_key(*p)).collect();
    assert!(missing.is_empty(), "shared transcripts missing from tests/fixtures/transcripts (scripts/sync-transcripts): {missing:?}");
    let extra: Vec<_> = copy.keys().filter(|p| !recorded.contains_key(*p)).collect();
    assert!(extra.is_empty(), "transcripts in the copy that shared/ does not have: {extra:?}");
    let changed: Vec<_> = copy
        .iter()
        .filter(|(p, bytes)| recorded.get(*p).is_some_and(|d| *d != hex::encode(Sha256::digest(bytes))))
        .map(|(p, _)| p)
        .collect();
    assert!(changed.is_empty(), "transcripts that differ from the shared copy (never edit them; scripts/sync-transcripts): {changed:?}");
}
