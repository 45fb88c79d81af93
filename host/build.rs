//! Builds the components that ship inside the binary (`plugins/`) for `wasm32-wasip2` and
//! embeds them (`sandbox::defaults`). Test-only guests are built by `tests/artifacts`.

/// The built-in components: one mapper per driver and the skill-rule matcher.
const SHIPPED: &[&str] = &["orgx-mapper-claude-code", "orgx-mapper-codex", "orgx-mapper-opencode", "orgx-matcher-skill-rules"];

fn main() {
    let root = orgx_guest_build::workspace_root();
    let out = orgx_guest_build::build_guests(&root, "guest", SHIPPED);
    println!("cargo:rustc-env=ORGX_GUEST_WASM_DIR={}", out.display());
}
