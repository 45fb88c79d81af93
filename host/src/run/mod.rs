//! A run: driver process → output lines → sandbox → wire messages.
//!
//! `lines` frames output bytes, `pipeline` maps lines
//! through the run's component instances and enforces message order, and `replay` feeds a
//! recorded transcript through the same pipeline.

pub mod lines;
pub mod pipeline;
pub mod replay;

/// Default cap on one stdout line; a longer line is skipped and counted.
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 << 20;
