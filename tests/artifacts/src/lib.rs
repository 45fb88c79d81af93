//! Where the test-only guest components are, once this crate's build script built them.

use std::path::PathBuf;

/// The `.wasm` of the test guest crate `crate_name` (e.g. `orgx-test-guest-hostile`).
pub fn wasm_path(crate_name: &str) -> PathBuf {
    PathBuf::from(env!("ORGX_TEST_GUEST_WASM_DIR")).join(format!("{}.wasm", crate_name.replace('-', "_")))
}
