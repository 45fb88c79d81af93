//! The one shape of a status snapshot, as the daemon writes it: one field per line of
//! `status`, serialised as the socket's JSON. The reader (`render`) reads that JSON by field
//! name instead of deserialising this type, so a `status` binary of another version than
//! the daemon still prints what both know.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use crate::driver::Detection;
use crate::heartbeat::BeatStatus;
use crate::outbox::Oldest;
use crate::run::progress::RunView;

#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub version: &'static str,
    pub workspace_id: String,
    /// `connected`, `connecting`, `reconnecting (…)`, `stopped (…)`.
    pub link: String,
    /// The subprotocol this peer offers (`orgx.v3` or `orgx.v1`, `ORGX_PROTOCOL_VERSION`).
    pub protocol: &'static str,
    /// The ids of the runs in flight, sorted (kept beside `runs` for scripts that read it).
    pub runs_in_flight: Vec<String>,
    pub runs_in_flight_count: usize,
    pub runs: Vec<RunView>,
    /// Messages stored and not yet delivered.
    pub queue_depth: u64,
    pub oldest_owed: Option<OwedView>,
    /// Write transactions since start, one fdatasync each: with `messages_stored`, how well
    /// group commit groups.
    pub store_commits: u64,
    pub messages_stored: u64,
    pub rules: usize,
    /// How new runs get their rules compiled: from the snapshot prepared once per rules
    /// version (`snapshot`), each on its own (`per-run`), or not decided yet (`pending`).
    pub rules_start: crate::components::prepared::RulesStart,
    /// One entry per slot (`ActiveComponents::describe`).
    pub components: serde_json::Value,
    pub components_dir: String,
    pub dev_unsigned_local: bool,
    pub trusted_keys: Vec<String>,
    pub quarantined: Vec<String>,
    pub heartbeats: BeatStatus,
    pub drivers_enabled: Vec<&'static str>,
    pub drivers: BTreeMap<&'static str, Detection>,
}

/// The oldest message owed to the server: when it was stored, or that it predates this start.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum OwedView {
    Since { since: String, age_ms: u64 },
    BeforeStart { before_start: bool },
}

impl OwedView {
    pub fn of(oldest: Oldest) -> Option<OwedView> {
        match oldest {
            Oldest::Nothing => None,
            Oldest::BeforeStart => Some(OwedView::BeforeStart { before_start: true }),
            Oldest::Since(t) => Some(OwedView::Since {
                since: crate::time::iso8601(t),
                age_ms: SystemTime::now().duration_since(t).map_or(0, |d| d.as_millis() as u64),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn the_oldest_owed_message_serialises_as_render_reads_it() {
        let t = SystemTime::now() - Duration::from_secs(3);
        let since = serde_json::to_value(OwedView::of(Oldest::Since(t))).unwrap();
        assert!(since["age_ms"].as_u64().unwrap() >= 3000, "{since}");
        assert!(since["since"].as_str().unwrap().ends_with('Z'), "{since}");
        assert_eq!(serde_json::to_value(OwedView::of(Oldest::BeforeStart)).unwrap(), json!({"before_start": true}));
        assert_eq!(serde_json::to_value(OwedView::of(Oldest::Nothing)).unwrap(), json!(null));
    }
}
