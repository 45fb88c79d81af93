//! Builds guest crates for `wasm32-wasip2` from a build script, so a clean clone needs no
//! prebuilt `.wasm` and what is embedded or tested is exactly what the source says.
//!
//! Two build scripts use it: the host's (the components that ship inside the binary) and the
//! test artifacts crate's (the hostile test guests and the author template, which only the
//! tests need, so `cargo install` never builds them). Each uses its own target directory: a
//! nested cargo sharing the outer build's directory would deadlock on its lock, and separate
//! directories keep each set's incremental state between builds.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the guests are built from: a change under any of these rebuilds them.
const INPUTS: &[&str] = &["plugins", "wit", "tests/guests", "Cargo.lock"];

/// Build `crates` (package names) of the workspace at `root` for `wasm32-wasip2` with the
/// `wasm` profile into `root/target/<subdir>` and return the directory holding the `.wasm`
/// files. Panics with an actionable message on failure (build scripts report by panicking).
pub fn build_guests(root: &Path, subdir: &str, crates: &[&str]) -> PathBuf {
    for dir in INPUTS {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let target_dir = root.join("target").join(subdir);
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root).args(["build", "--quiet", "--target", "wasm32-wasip2", "--profile", "wasm"]).arg("--target-dir").arg(&target_dir);
    for name in crates {
        cmd.args(["-p", name]);
    }
    // The outer build's flags and wrappers are for the host target, not for wasm.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("could not run cargo to build the guest components: {e}"));
    if !status.success() {
        panic!(
            "building the guest components {crates:?} for wasm32-wasip2 failed (see the errors above).\n\
             If the target is missing, install it with: rustup target add wasm32-wasip2"
        );
    }
    target_dir.join("wasm32-wasip2").join("wasm")
}

/// The workspace root, from a member crate's build script.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    manifest_dir
        .ancestors()
        .find(|d| d.join("wit").is_dir() && d.join("Cargo.lock").is_file())
        .expect("the crate sits in the orgx-peer workspace")
        .to_path_buf()
}
