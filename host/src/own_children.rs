//! The peer's own children that something in the peer still waits for: their exit statuses
//! belong to those waiters, so the orphan reaper (`run::tree`) never takes them. A leaf
//! module, because both the runs (their CLIs) and the sandbox (its compiler child) register.

use std::collections::BTreeSet;
use std::sync::Mutex;

static WAITED: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

fn waited() -> std::sync::MutexGuard<'static, BTreeSet<i32>> {
    WAITED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Child `pid` is waited for by its spawner until [`forget`].
pub fn register(pid: i32) {
    waited().insert(pid);
}

pub fn forget(pid: i32) {
    waited().remove(&pid);
}

/// The children registered now.
pub fn registered() -> BTreeSet<i32> {
    waited().clone()
}
