//! Builds the guest components from source (`plugins/`, and the test guests under
//! `tests/guests/`) for `wasm32-wasip2`, so a clean clone needs no prebuilt `.wasm` and the
//! binary embeds exactly what the source says.
//!
//! The guests are built by a nested cargo with its own target directory (`target/guest`):
//! sharing the outer build's directory would deadlock on its lock, and a separate directory
//! keeps the guests' incremental state between builds.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const GUESTS: &[&str] = &["orgx-mapper-claude-code", "orgx-matcher-skill-rules"];
const GUEST_DIRS: &[&str] = &["plugins", "wit", "tests/guests", "Cargo.lock"];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("host/ sits in the workspace root").to_path_buf();
    for dir in GUEST_DIRS {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!("cargo:rerun-if-env-changed=ORGX_GUEST_TARGET_DIR");

    let target_dir = env::var_os("ORGX_GUEST_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target").join("guest"));
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--quiet", "--target", "wasm32-wasip2", "--profile", "wasm"])
        .arg("--target-dir")
        .arg(&target_dir);
    let extra = test_guests(&root);
    for guest in GUESTS.iter().copied().chain(extra.iter().map(String::as_str)) {
        cmd.args(["-p", guest]);
    }
    // The outer build's flags and wrappers are for the host target, not for wasm.
    for var in ["CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS", "RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET"] {
        cmd.env_remove(var);
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("could not run cargo to build the guest components: {e}"));
    if !status.success() {
        panic!(
            "building the guest components for wasm32-wasip2 failed (see the errors above).\n\
             If the target is missing, install it with: rustup target add wasm32-wasip2"
        );
    }
    let out = target_dir.join("wasm32-wasip2").join("wasm");
    println!("cargo:rustc-env=ORGX_GUEST_WASM_DIR={}", out.display());
}

/// Guest crates that only the tests use (hostile components, the author template).
fn test_guests(root: &std::path::Path) -> Vec<String> {
    let mut names = Vec::new();
    for dir in ["tests/guests", "plugins"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else { continue };
        for entry in entries.flatten() {
            let manifest = entry.path().join("Cargo.toml");
            let Ok(text) = std::fs::read_to_string(&manifest) else { continue };
            let name = text.lines().find_map(|l| l.strip_prefix("name = \"")).and_then(|r| r.strip_suffix('"'));
            if let Some(name) = name {
                if !GUESTS.contains(&name) {
                    names.push(name.to_string());
                }
            }
        }
    }
    names.sort();
    names
}
