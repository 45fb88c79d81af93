//! Builds every test guest (`tests/guests/*`) and the author template for `wasm32-wasip2`:
//! only the tests depend on this crate, so the product build never compiles them (the
//! pattern of wasmtime's `test-programs/artifacts`).

fn main() {
    let root = orgx_guest_build::workspace_root();
    let mut crates = vec!["orgx-matcher-template".to_string()];
    let guests = std::fs::read_dir(root.join("tests/guests")).expect("tests/guests exists");
    for entry in guests.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("Cargo.toml")) else { continue };
        if let Some(name) = text.lines().find_map(|l| l.strip_prefix("name = \"")).and_then(|r| r.strip_suffix('"')) {
            crates.push(name.to_string());
        }
    }
    crates.sort();
    let names: Vec<&str> = crates.iter().map(String::as_str).collect();
    let out = orgx_guest_build::build_guests(&root, "guest-test", &names);
    println!("cargo:rustc-env=ORGX_TEST_GUEST_WASM_DIR={}", out.display());
}
