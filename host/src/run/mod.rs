//! A run: driver process → output lines → sandbox → wire messages.
//!
//! `lines` frames output bytes, `process` owns the driver process (`tied` starts it without
//! forking the peer), `live` runs a dispatch
//! end to end, `pipeline` maps lines through the run's component instances and enforces
//! message order, `budget` caps what a whole run may send, `progress` is what `status`
//! shows of a run in flight, and `replay` feeds a recorded transcript through the same
//! pipeline.

pub mod budget;
pub mod lines;
pub mod live;
pub mod pipeline;
pub mod process;
pub mod progress;
pub mod replay;
pub mod tied;
pub mod tree;

/// Default cap on one stdout line; a longer line is skipped and counted.
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 << 20;
