//! The small keyed records of the store, each with its key and encoding in one place.
//!
//! Keys are prefixes in one table (`kv`); nothing outside this file spells one. Values the
//! owner serialises (slot records, plan-skills) stay opaque bytes here: the store keeps them
//! durable, the owner keeps their meaning.

use super::{Store, StoreError};

const RULES: &str = "rules/plan-skills";
const INSTALLATION_ID: &str = "installation_id";
const RUN_GROUP: &str = "pgid/";
const SLOT: &str = "components/slot/";
const QUARANTINE: &str = "components/quarantine/";
const CODE_INTEGRITY: &str = "cwasm/";
const RECEIPT_BODY: &str = "receipt/";

/// A run's process group, recorded so a restarted peer can kill what a crashed one left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunGroup {
    pub run_id: String,
    pub pgid: i32,
    /// The leader's start time (clock ticks since boot), so a reused pid is never killed.
    pub started: Option<u64>,
}

impl Store {
    /// The last plan-skills response body that parsed.
    pub fn cached_rules(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(RULES)
    }

    pub fn set_cached_rules(&self, body: &[u8]) -> Result<(), StoreError> {
        self.put(RULES, body)
    }

    pub fn installation_id(&self) -> Result<Option<String>, StoreError> {
        Ok(self.get(INSTALLATION_ID)?.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    pub fn set_installation_id(&self, id: &str) -> Result<(), StoreError> {
        self.put(INSTALLATION_ID, id.as_bytes())
    }

    pub fn record_run_group(&self, group: &RunGroup) -> Result<(), StoreError> {
        let value = format!("{} {}", group.pgid, group.started.unwrap_or(0));
        self.put(&format!("{RUN_GROUP}{}", group.run_id), value.as_bytes())
    }

    pub fn clear_run_group(&self, run_id: &str) -> Result<(), StoreError> {
        self.delete(&format!("{RUN_GROUP}{run_id}"))
    }

    /// Every recorded group; a record that does not parse is dropped with its key.
    pub fn run_groups(&self) -> Result<Vec<RunGroup>, StoreError> {
        let mut out = Vec::new();
        for (key, value) in self.scan_prefix(RUN_GROUP)? {
            let run_id = key[RUN_GROUP.len()..].to_string();
            let text = String::from_utf8_lossy(&value).into_owned();
            let mut parts = text.split_whitespace();
            match parts.next().and_then(|p| p.parse::<i32>().ok()) {
                Some(pgid) => out.push(RunGroup { run_id, pgid, started: parts.next().and_then(|s| s.parse().ok()).filter(|s| *s > 0) }),
                None => self.delete(&key)?,
            }
        }
        Ok(out)
    }

    /// A component slot's record (its version floor and history), as its owner encoded it.
    pub fn slot_record(&self, slot: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(&format!("{SLOT}{slot}"))
    }

    pub fn set_slot_record(&self, slot: &str, record: &[u8]) -> Result<(), StoreError> {
        self.put(&format!("{SLOT}{slot}"), record)
    }

    pub fn quarantine(&self, sha256: &str, reason: &str) -> Result<(), StoreError> {
        self.put(&format!("{QUARANTINE}{sha256}"), reason.as_bytes())
    }

    pub fn is_quarantined(&self, sha256: &str) -> Result<bool, StoreError> {
        Ok(self.get(&format!("{QUARANTINE}{sha256}"))?.is_some())
    }

    /// The digests of every quarantined component.
    pub fn quarantined(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.scan_prefix(QUARANTINE)?.into_iter().map(|(k, _)| k[QUARANTINE.len()..].to_string()).collect())
    }

    /// The SHA-256 this peer recorded for a compiled-code artifact it wrote.
    pub fn code_integrity(&self, artifact: &str) -> Result<Option<String>, StoreError> {
        Ok(self.get(&format!("{CODE_INTEGRITY}{artifact}"))?.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    pub fn set_code_integrity(&self, artifact: &str, sha256: &str) -> Result<(), StoreError> {
        self.put(&format!("{CODE_INTEGRITY}{artifact}"), sha256.as_bytes())
    }

    /// The serialised receipt body of a run's terminal message, as first built: every retry
    /// sends these bytes, so its digest never changes (§4.2).
    pub fn receipt_body(&self, run_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(&format!("{RECEIPT_BODY}{run_id}"))
    }

    pub fn set_receipt_body(&self, run_id: &str, body: &[u8]) -> Result<(), StoreError> {
        self.put(&format!("{RECEIPT_BODY}{run_id}"), body)
    }

    pub fn clear_receipt_body(&self, run_id: &str) -> Result<(), StoreError> {
        self.delete(&format!("{RECEIPT_BODY}{run_id}"))
    }

    /// The runs that have a stored receipt body.
    pub fn receipt_runs(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.scan_prefix(RECEIPT_BODY)?.into_iter().map(|(k, _)| k[RECEIPT_BODY.len()..].to_string()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_do_not_collide() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("peer.redb")).unwrap();
        s.record_run_group(&RunGroup { run_id: "r1".into(), pgid: 41, started: Some(7) }).unwrap();
        s.record_run_group(&RunGroup { run_id: "r2".into(), pgid: 42, started: None }).unwrap();
        s.quarantine("abc", "trapped").unwrap();
        s.set_slot_record("matcher", b"{}").unwrap();
        s.set_cached_rules(b"{\"skills\":[]}").unwrap();
        assert_eq!(
            s.run_groups().unwrap(),
            vec![RunGroup { run_id: "r1".into(), pgid: 41, started: Some(7) }, RunGroup { run_id: "r2".into(), pgid: 42, started: None }]
        );
        s.clear_run_group("r1").unwrap();
        assert_eq!(s.run_groups().unwrap().len(), 1);
        assert!(s.is_quarantined("abc").unwrap());
        assert!(!s.is_quarantined("ab").unwrap());
        assert_eq!(s.quarantined().unwrap(), vec!["abc".to_string()]);
        assert_eq!(s.slot_record("matcher").unwrap().as_deref(), Some(&b"{}"[..]));
        assert_eq!(s.slot_record("mapper:claude_code").unwrap(), None);
        assert_eq!(s.cached_rules().unwrap().as_deref(), Some(&b"{\"skills\":[]}"[..]));
        s.set_receipt_body("run/1", b"{\"a\":1}").unwrap();
        assert_eq!(s.receipt_body("run/1").unwrap().as_deref(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(s.receipt_runs().unwrap(), vec!["run/1".to_string()]);
        s.clear_receipt_body("run/1").unwrap();
        assert_eq!((s.receipt_body("run/1").unwrap(), s.receipt_runs().unwrap().len()), (None, 0));
    }

    #[test]
    fn a_garbled_group_record_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("peer.redb")).unwrap();
        s.put("pgid/bad", b"not a pid").unwrap();
        s.record_run_group(&RunGroup { run_id: "ok".into(), pgid: 9, started: None }).unwrap();
        assert_eq!(s.run_groups().unwrap(), vec![RunGroup { run_id: "ok".into(), pgid: 9, started: None }]);
        assert_eq!(s.get("pgid/bad").unwrap(), None);
    }
}
