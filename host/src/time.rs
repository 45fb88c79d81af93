//! Wall-clock times as the protocol carries them. A leaf module: runs, heartbeats, receipts
//! and the dispatcher all stamp times, and none of them should own the format.

use std::time::SystemTime;

/// An ISO-8601 UTC timestamp with milliseconds, e.g. `2026-12-01T21:29:14.123Z`.
pub fn iso8601(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}
