//! The store's records of resumable attention (spec §8): a suspended run's checkpoint, the
//! resolutions already seen, and the continuation receipts still owed over HTTP. The values
//! are the `attention` module's serialised bytes; the keys live here, like every other key.

use redb::{ReadableTable, TableDefinition};

use super::{push_bounded, Store, StoreError, META};

const CHECKPOINT: &str = "attention/run/";
const RECEIPT: &str = "attention/receipt/";
/// Resolution keys seen, and their order: a server cannot grow the store without bound by
/// sending resolutions (the oldest keys are forgotten past [`RESOLVED_KEPT`]).
const RESOLVED: TableDefinition<&str, u64> = TableDefinition::new("attention_resolved");
const RESOLVED_ORDER: TableDefinition<u64, &str> = TableDefinition::new("attention_resolved_order");
/// How many `attention.resolve` keys are remembered for dedupe (a stale one that got past it
/// finds no waiting run, and is answered `resume_failed`).
pub const RESOLVED_KEPT: u64 = 1_000;

impl Store {
    /// A suspended (or resuming) run's checkpoint.
    pub fn checkpoint(&self, run_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(&format!("{CHECKPOINT}{run_id}"))
    }

    pub fn set_checkpoint(&self, run_id: &str, body: &[u8]) -> Result<(), StoreError> {
        self.put(&format!("{CHECKPOINT}{run_id}"), body)
    }

    pub fn clear_checkpoint(&self, run_id: &str) -> Result<(), StoreError> {
        self.delete(&format!("{CHECKPOINT}{run_id}"))
    }

    /// Record an `attention.resolve` idempotency key: `false` when it was seen before (§8.3).
    /// The last [`RESOLVED_KEPT`] keys are kept.
    pub fn claim_resolution(&self, key: &str) -> Result<bool, StoreError> {
        self.write(|w| {
            let mut seen = w.open_table(RESOLVED)?;
            if seen.get(key)?.is_some() {
                return Ok(false);
            }
            let mut meta = w.open_table(META)?;
            let n = meta.get("resolved_seq")?.map(|v| v.value()).unwrap_or(0) + 1;
            meta.insert("resolved_seq", n)?;
            seen.insert(key, n)?;
            if let Some(old) = push_bounded(&mut w.open_table(RESOLVED_ORDER)?, n, RESOLVED_KEPT, key)? {
                seen.remove(old.as_str())?;
            }
            Ok(true)
        })
    }

    /// Keep a continuation receipt until its POST gets a 2xx; `id` is `<decision_id>:<state>`.
    pub fn owe_receipt(&self, id: &str, body: &[u8]) -> Result<(), StoreError> {
        self.put(&format!("{RECEIPT}{id}"), body)
    }

    pub fn settle_receipt(&self, id: &str) -> Result<(), StoreError> {
        self.delete(&format!("{RECEIPT}{id}"))
    }

    /// Every owed continuation receipt: (`<decision_id>:<state>`, body).
    pub fn owed_receipts(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self.scan_prefix(RECEIPT)?.into_iter().map(|(k, v)| (k[RECEIPT.len()..].to_string(), v)).collect())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::Store;

    #[test]
    fn attention_records_round_trip_and_resolutions_dedupe() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        store.set_checkpoint("r1", b"{}").unwrap();
        assert_eq!(store.checkpoint("r1").unwrap().as_deref(), Some(&b"{}"[..]));
        store.clear_checkpoint("r1").unwrap();
        assert_eq!(store.checkpoint("r1").unwrap(), None);
        assert!(store.claim_resolution("k").unwrap());
        assert!(!store.claim_resolution("k").unwrap(), "a resolution key is seen once");
        for i in 0..super::RESOLVED_KEPT {
            assert!(store.claim_resolution(&format!("k{i}")).unwrap());
        }
        assert!(store.claim_resolution("k").unwrap(), "the oldest key is forgotten past the bound");
        assert!(!store.claim_resolution(&format!("k{}", super::RESOLVED_KEPT - 1)).unwrap(), "recent keys are kept");
        store.owe_receipt("d1:resuming", b"b").unwrap();
        store.owe_receipt("d1:answer_received", b"a").unwrap();
        assert_eq!(store.owed_receipts().unwrap().len(), 2);
        store.settle_receipt("d1:resuming").unwrap();
        assert_eq!(store.owed_receipts().unwrap(), vec![("d1:answer_received".to_string(), b"a".to_vec())]);
    }
}
