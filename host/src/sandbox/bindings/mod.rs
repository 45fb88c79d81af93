//! Host-side bindings generated from `wit/`, one module per served WIT version. The WIT is
//! the single source of truth for the sandbox boundary, so no boundary type is written by
//! hand: the newest version's types are the host's own (`types`, `matcher_types`), and each
//! older version converts to and from them in its module, in one place.

pub mod v0_1_0;
pub mod v0_2_0;

pub use latest::mapper::orgx::peer::types;
pub use latest::matcher::exports::orgx::peer::matcher as matcher_types;
pub use v0_2_0 as latest;
