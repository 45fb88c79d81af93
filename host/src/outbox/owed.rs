//! How long the oldest message the peer owes the server has waited: `status` shows it, so a
//! user sees at a glance whether the peer is keeping up or holding messages back.
//!
//! The store keeps no timestamps (its entry format is the wire message and nothing else, so
//! none is added for a status figure); instead the writer, which sees every commit, keeps
//! when each group of messages was committed: the group's last sequence number and the
//! time. The oldest owed message is the store's first entry, and its time is that of the
//! first group reaching its sequence. Messages found in the store at start form one group
//! whose time is unknown: "since before this start". Groups wholly delivered are dropped
//! after every delivery commit, so the ledger holds one record per commit with something
//! still owed: bounded by what is stored.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

#[derive(Debug, Default)]
pub struct Owed(Mutex<VecDeque<(u64, Option<SystemTime>)>>);

/// The oldest message still owed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oldest {
    Nothing,
    /// Committed at this time.
    Since(SystemTime),
    /// Stored before this peer started.
    BeforeStart,
}

impl Owed {
    /// The ledger for a store that holds messages up to sequence `last` (`None`: empty).
    pub fn restored(last: Option<u64>) -> Owed {
        Owed(Mutex::new(last.map(|l| (l, None)).into_iter().collect()))
    }

    /// `count` messages committed at `at`, sequences `first..first + count`.
    pub fn appended(&self, first: u64, count: u64, at: SystemTime) {
        if count > 0 {
            self.lock().push_back((first + count - 1, Some(at)));
        }
    }

    /// Drop every group wholly before `first_owed`, the store's first entry now (`None`:
    /// the store is empty).
    pub fn settled_before(&self, first_owed: Option<u64>) {
        let mut groups = self.lock();
        match first_owed {
            None => groups.clear(),
            Some(seq) => {
                while groups.front().is_some_and(|(last, _)| *last < seq) {
                    groups.pop_front();
                }
            }
        }
    }

    /// When the message `first_owed` (the store's first entry) was committed.
    pub fn oldest(&self, first_owed: Option<u64>) -> Oldest {
        let Some(seq) = first_owed else { return Oldest::Nothing };
        match self.lock().iter().find(|(last, _)| *last >= seq) {
            Some((_, Some(t))) => Oldest::Since(*t),
            // Before every group this peer committed: stored by an earlier run of it.
            Some((_, None)) | None => Oldest::BeforeStart,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, Option<SystemTime>)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn the_group_holding_the_first_owed_message_gives_its_time() {
        let owed = Owed::default();
        assert_eq!(owed.oldest(None), Oldest::Nothing);
        owed.appended(1, 3, t(10)); // 1..=3
        owed.appended(4, 0, t(11)); // nothing stored: no group
        owed.appended(4, 2, t(12)); // 4..=5
        let cases =
            [(Some(1), Oldest::Since(t(10))), (Some(3), Oldest::Since(t(10))), (Some(4), Oldest::Since(t(12))), (None, Oldest::Nothing)];
        for (first, want) in cases {
            assert_eq!(owed.oldest(first), want, "first owed {first:?}");
        }
    }

    #[test]
    fn delivered_groups_are_dropped_and_repeats_change_nothing() {
        let owed = Owed::default();
        owed.appended(1, 3, t(10));
        owed.appended(4, 2, t(12));
        owed.settled_before(Some(3));
        owed.settled_before(Some(3));
        assert_eq!(owed.lock().len(), 2, "3 is still owed");
        owed.settled_before(Some(4));
        assert_eq!(owed.lock().len(), 1);
        assert_eq!(owed.oldest(Some(5)), Oldest::Since(t(12)));
        owed.settled_before(None);
        assert!(owed.lock().is_empty());
    }

    #[test]
    fn messages_from_before_the_start_are_owed_since_before_it() {
        let owed = Owed::restored(Some(7));
        owed.appended(8, 1, t(5));
        assert_eq!(owed.oldest(Some(6)), Oldest::BeforeStart);
        assert_eq!(owed.oldest(Some(8)), Oldest::Since(t(5)));
        // A sequence before any group this peer knows (the store said so): not this start's.
        assert_eq!(Owed::default().oldest(Some(2)), Oldest::BeforeStart);
        assert_eq!(Owed::restored(None).oldest(None), Oldest::Nothing);
    }
}
