//! `wit/v0.2.0`: the newest version, whose types the host uses throughout.

pub mod mapper {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2.0",
        world: "mapper-component",
    });
}

pub mod matcher {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2.0",
        world: "matcher-component",
        // Both worlds share `orgx:peer/types`: generate it once.
        with: { "orgx:peer/types": super::mapper::orgx::peer::types },
    });
}
