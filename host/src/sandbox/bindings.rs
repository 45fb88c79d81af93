//! Host-side bindings generated from `wit/` — the WIT is the single source of truth for the
//! sandbox boundary, so no type here is written by hand.

pub mod mapper {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "mapper-component",
    });
}

pub mod matcher {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "matcher-component",
        // Both worlds share `orgx:peer/types`: generate it once.
        with: { "orgx:peer/types": super::mapper::orgx::peer::types },
    });
}

pub use mapper::orgx::peer::types;
