//! `wit/v0.3.0`: the newest version. Its `types` interface is 0.2.0's, unchanged, so it maps
//! onto the types generated from 0.2.0 (`with`): the host has one set of boundary types, and
//! a 0.2.0 mapper needs no conversion. Only the matcher changed (`prepare` + `begin`).

pub mod mapper {
    wasmtime::component::bindgen!({
        path: "../wit/v0.3.0",
        world: "mapper-component",
        with: { "orgx:peer/types": super::super::v0_2_0::mapper::orgx::peer::types },
    });
}

pub mod matcher {
    wasmtime::component::bindgen!({
        path: "../wit/v0.3.0",
        world: "matcher-component",
        with: { "orgx:peer/types": super::super::v0_2_0::mapper::orgx::peer::types },
    });
}
