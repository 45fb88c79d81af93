//! The prepared rules: for the matcher new runs get and the rules they get, one snapshot
//! (`sandbox::snapshot`), made once per pair, off the runtime, whenever either changes.
//!
//! Why keyed by both, and made in the background: the rules arrive from the server on their
//! own schedule (plan-skills, on every connect) and the matcher by push, and a run must never
//! wait for a snapshot. A run dispatched before its pair's snapshot exists (or whose matcher
//! is older than WIT 0.3.0, or whose snapshot failed) compiles its rules itself, as every run
//! did before; it is only slower to start. Only the newest pair is kept: older runs hold
//! their own `Arc` until they end.
//!
//! A snapshot is made only when it pays: it holds a second copy of the matcher's machine
//! code besides the prepared memory (an idle peer holds 8 MiB more with 1,000 rules prepared
//! than with none, `cargo bench --bench delivery`, footprint), and it saves a run
//! the time `prepare` takes. So the rules are first prepared once in a plain instance,
//! timed; below [`SNAPSHOT_FROM`] (about 100 rules of the built-in matcher) runs go on
//! compiling their own, which costs them less than that.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::rules::Rule;
use crate::sandbox::snapshot::{Prepared, MAX_SNAPSHOT_MEMORY};
use crate::sandbox::{matcher_types as m, LoadedComponent, MatcherInstance, Sandbox};

/// The shortest `prepare` worth a snapshot: a run starts from one in about 0.1 ms.
pub const SNAPSHOT_FROM: Duration = Duration::from_millis(2);

/// How new runs of a (matcher, rules) pair get their rules compiled, as `status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RulesStart {
    /// Not decided yet (the pair changed a moment ago): runs compile their own meanwhile.
    Pending,
    /// Runs start from the pair's prepared snapshot.
    Snapshot,
    /// Runs compile their own: the matcher predates WIT 0.3.0, the rules are cheap to
    /// compile, or the snapshot failed (logged).
    PerRun,
}

/// The newest pair's snapshot, shared by the dispatcher (reads) and the refresher (writes).
#[derive(Default)]
pub struct PreparedRules {
    newest: Mutex<Option<Entry>>,
}

struct Entry {
    matcher_sha256: String,
    rules: Arc<Vec<Rule>>,
    /// `None`: this pair cannot be prepared (the reason was logged once).
    prepared: Option<Arc<Prepared>>,
}

impl Entry {
    fn is_for(&self, matcher: &LoadedComponent, rules: &Arc<Vec<Rule>>) -> bool {
        // The rules are sent again on every connect, mostly unchanged: equal content is the
        // same rules version.
        self.matcher_sha256 == matcher.info.sha256 && (Arc::ptr_eq(&self.rules, rules) || self.rules == *rules)
    }
}

impl PreparedRules {
    /// How new runs of `matcher` with `rules` get their rules (`status`).
    pub fn start_of(&self, matcher: &LoadedComponent, rules: &Arc<Vec<Rule>>) -> RulesStart {
        let newest = self.newest.lock().unwrap_or_else(|p| p.into_inner());
        match newest.as_ref().filter(|e| e.is_for(matcher, rules)) {
            None => RulesStart::Pending,
            Some(Entry { prepared: Some(_), .. }) => RulesStart::Snapshot,
            Some(_) => RulesStart::PerRun,
        }
    }

    /// The snapshot a run of `matcher` with `rules` starts from, if it has been made.
    pub fn get(&self, matcher: &LoadedComponent, rules: &Arc<Vec<Rule>>) -> Option<Arc<Prepared>> {
        let newest = self.newest.lock().unwrap_or_else(|p| p.into_inner());
        newest.as_ref().filter(|e| e.is_for(matcher, rules)).and_then(|e| e.prepared.clone())
    }

    /// Decide how runs of `matcher` with `rules` get their rules, and make the snapshot if
    /// it pays, unless that is done: blocking (a `prepare`, and for a snapshot a second one
    /// and two compiles: about two seconds of CPU), so the daemon calls it off the runtime.
    /// Returns whether a snapshot now serves the pair.
    pub fn refresh(&self, sandbox: &Sandbox, matcher: &LoadedComponent, rules: &Arc<Vec<Rule>>) -> bool {
        if let Some(e) = self.newest.lock().unwrap_or_else(|p| p.into_inner()).as_mut().filter(|e| e.is_for(matcher, rules)) {
            // The same version sent again (a reconnect): keep its newest `Arc`, so that the
            // dispatches and `status` that follow match it by pointer, not by content.
            e.rules = rules.clone();
            return e.prepared.is_some();
        }
        let prepared = snapshot_if_it_pays(sandbox, matcher, rules).map(Arc::new);
        // The probe's and the snapshot's working memory go back before the peer idles.
        crate::memory::release_freed();
        let ready = prepared.is_some();
        *self.newest.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Entry { matcher_sha256: matcher.info.sha256.clone(), rules: rules.clone(), prepared });
        ready
    }
}

/// The pair's snapshot, or `None` (with the reason logged) when runs compile their own rules.
fn snapshot_if_it_pays(sandbox: &Sandbox, matcher: &LoadedComponent, rules: &[Rule]) -> Option<Prepared> {
    let label = matcher.info.label();
    if !matcher.prepares() {
        tracing::debug!(component = %label, "the matcher compiles its rules in every run (WIT {})", matcher.wit_version());
        return None;
    }
    if rules.is_empty() {
        // Nothing to compile: a run's `prepare` of no rules costs it nothing.
        return None;
    }
    let Some(wasm) = matcher.source() else {
        tracing::warn!(component = %label, "the matcher's bytes were not kept, so runs compile their skill rules themselves");
        return None;
    };
    let wit: Vec<m::Rule> = rules.iter().map(Into::into).collect();
    // A `prepare` that faults here faults again in the instrumented instance, and is
    // reported from there.
    match cost_of_prepare(sandbox, matcher, &wit) {
        Some((took, _)) if took < SNAPSHOT_FROM => {
            tracing::debug!(component = %label, rule_count = rules.len(), prepare_ms = took.as_secs_f64() * 1e3,
                "the skill rules compile faster than a snapshot would pay for; each run compiles them");
            return None;
        }
        // Known before any copy is made: making the snapshot would hold several.
        Some((_, memory)) if memory > MAX_SNAPSHOT_MEMORY => {
            tracing::warn!(component = %label, rule_count = rules.len(), memory_mib = memory >> 20,
                "the prepared skill rules are larger than a snapshot may hold ({} MiB); each run compiles them", MAX_SNAPSHOT_MEMORY >> 20);
            return None;
        }
        _ => {}
    }
    match sandbox.prepare_matcher(matcher, wasm, &wit) {
        Ok(p) => {
            tracing::info!(component = %label, rule_count = rules.len(), prepare_ms = p.prepare_time.as_secs_f64() * 1e3,
                total_ms = p.total_time.as_secs_f64() * 1e3, snapshot_bytes = p.snapshot_bytes,
                "skill rules prepared once; new runs start from the snapshot");
            Some(p)
        }
        Err(e) => {
            tracing::warn!("runs compile their skill rules themselves (slower to start): {e}");
            None
        }
    }
}

/// How long `prepare` of `rules` takes in a plain instance of `matcher`, and the memory it
/// leaves (what a snapshot would hold); `None` if it faults.
fn cost_of_prepare(sandbox: &Sandbox, matcher: &LoadedComponent, rules: &[m::Rule]) -> Option<(Duration, usize)> {
    let mut probe = MatcherInstance::new(matcher, sandbox.limits()).ok()?;
    let t0 = Instant::now();
    probe.prepare(rules).ok()?;
    Some((t0.elapsed(), probe.largest_memory()))
}
