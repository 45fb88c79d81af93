//! Host-side bindings generated from `wit/`, one module per served WIT version. The WIT is
//! the single source of truth for the sandbox boundary, so no boundary type is written by
//! hand: the host's own types are generated (`types`, unchanged since 0.2.0, and the newest
//! matcher's records, `matcher_types`), and each older version converts to and from them in
//! its module, in one place.

pub mod v0_1_0;
pub mod v0_2_0;
pub mod v0_3_0;

pub use latest::matcher::exports::orgx::peer::matcher as matcher_types;
pub use v0_2_0::mapper::orgx::peer::types;
pub use v0_3_0 as latest;
