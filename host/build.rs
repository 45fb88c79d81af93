//! Builds the components that ship inside the binary (`plugins/`) for `wasm32-wasip2` and
//! embeds them (`sandbox::defaults`), and records what `--version` reports: the git commit the
//! binary was built from and the WIT versions laid out in `wit/`. Test-only guests are built by
//! `tests/artifacts`.

use std::path::Path;
use std::process::Command;

/// The built-in components: one mapper per driver and the skill-rule matcher.
const SHIPPED: &[&str] = &["orgx-mapper-claude-code", "orgx-mapper-codex", "orgx-mapper-opencode", "orgx-matcher-skill-rules"];

fn main() {
    let root = orgx_guest_build::workspace_root();
    let out = orgx_guest_build::build_guests(&root, "guest", SHIPPED);
    println!("cargo:rustc-env=ORGX_GUEST_WASM_DIR={}", out.display());
    println!("cargo:rustc-env=ORGX_GIT_COMMIT={}", git_commit(&root));
    println!("cargo:rustc-env=ORGX_WIT_DIRS={}", wit_versions(&root.join("wit")));
}

/// The commit checked out, or `unknown` (a source tarball, no git): rebuilt when HEAD moves.
fn git_commit(root: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        // Only paths that exist: cargo counts a missing one as changed on every build, which
        // re-ran this script and recompiled the whole host each time (a fresh clone has no
        // loose ref, a repository without `git gc` no packed-refs). The refs directory is
        // scanned whole, so a branch's first loose ref (the first commit after a clone)
        // still counts.
        let mut watched = vec![format!("{dir}/HEAD"), format!("{dir}/packed-refs"), format!("{dir}/refs/heads")];
        watched.extend(git(&["symbolic-ref", "-q", "HEAD"]).map(|head| format!("{dir}/{head}")));
        for path in watched.iter().filter(|p| Path::new(p).exists()) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
}

/// `0.1.0, 0.2.0`: the `wit/vX.Y.Z` directories, oldest first (the host checks this list
/// against the versions it serves).
fn wit_versions(wit: &Path) -> String {
    let mut versions: Vec<Vec<u32>> = std::fs::read_dir(wit)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.strip_prefix('v').map(|v| v.split('.').filter_map(|p| p.parse().ok()).collect()))
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.iter().map(|v| v.iter().map(u32::to_string).collect::<Vec<_>>().join(".")).collect::<Vec<_>>().join(", ")
}
