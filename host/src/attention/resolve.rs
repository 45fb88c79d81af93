//! One `attention.resolve`, step by step as spec §8.1 says: deduplicate (persisted),
//! `cancelled` ends the run, otherwise store the answer and say `answer_received` (a bundle
//! waits for all its answers), choose the driver, write the answers where the hook finds
//! them, say `resuming` — and hand the run back to the dispatcher to continue.
//!
//! Synchronous on purpose: every step is a store write or an outbox hand-over, and the
//! outbox keeps their order, so the receipts reach the server in the order the spec gives
//! without this code waiting on a commit.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::checkpoint::{Checkpoint, State};
use super::receipts::{Receipt, Receipts};
use super::{plugin, records};
use crate::driver::EnabledDriver;
use crate::gateway::frames::{ResolutionStatus, Resolve};
use crate::outbox::Outbox;
use crate::protocol::{self as p, PeerMessage, ReceiptState};
use crate::store::Store;

/// The detail of `resume_failed` for a driver without resumable attention (§8.1 step 7).
pub const NOT_RESUMABLE: &str = "This driver does not implement resumable attention.";

pub struct Resolver<'a> {
    pub store: &'a Store,
    pub outbox: &'a Outbox,
    pub receipts: &'a Receipts,
    pub drivers: &'a BTreeMap<&'static str, Arc<EnabledDriver>>,
    /// The driver of the run when it is running here right now (so not waiting).
    pub running: Option<&'static str>,
}

/// What the dispatcher does next.
pub enum Next {
    Done,
    /// Every question is answered and `resuming` is sent: continue the session.
    Resume {
        checkpoint: Box<Checkpoint>,
        decision_id: String,
        resolution_key: String,
        driver: Arc<EnabledDriver>,
    },
}

impl Resolver<'_> {
    pub fn resolve(&self, r: Resolve) -> Next {
        match self.store.claim_resolution(&r.idempotency_key) {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(run_id = %r.run_id, decision_id = %r.decision_id, "duplicate attention.resolve ignored (same idempotency_key)");
                return Next::Done;
            }
            Err(e) => {
                tracing::error!(run_id = %r.run_id, decision_id = %r.decision_id, "cannot record the resolution, so it is not acted on: {e}");
                return Next::Done;
            }
        }
        let checkpoint = match Checkpoint::load(self.store, &r.run_id) {
            Ok(c) => c.filter(|c| c.state == State::Suspended),
            Err(e) => {
                tracing::error!(run_id = %r.run_id, "cannot read the run's checkpoint: {e}");
                None
            }
        };
        let Some(mut cp) = checkpoint else {
            let detail = match self.running {
                Some(d) if crate::driver::by_id(d).is_none_or(|d| d.resumable.is_none()) => NOT_RESUMABLE.to_string(),
                Some(_) => "the run is running on this peer, not waiting for an answer".to_string(),
                None => format!("no run `{}` is waiting for an answer on this peer", r.run_id),
            };
            let state =
                if r.resolution.status == ResolutionStatus::Cancelled { ReceiptState::Cancelled } else { ReceiptState::ResumeFailed };
            let detail = (state == ReceiptState::ResumeFailed).then_some(detail);
            self.receipt(&r, state, None, detail, source_client(self.running.unwrap_or("")));
            return Next::Done;
        };
        let client = source_client(&cp.driver);
        let session = cp.session.clone();
        let (total, index) = (cp.questions.len(), cp.questions.iter().position(|q| q.decision_id == r.decision_id));
        let Some(index) = index else {
            let detail = format!("decision `{}` is not one of the questions run `{}` is waiting for", r.decision_id, r.run_id);
            self.receipt(&r, ReceiptState::ResumeFailed, Some(&session), Some(detail), client);
            return Next::Done;
        };
        if r.resolution.status == ResolutionStatus::Cancelled {
            self.receipt(&r, ReceiptState::Cancelled, Some(&session), None, client);
            self.end_run(&cp, "attention cancelled".into());
            return Next::Done;
        }
        let named = r.driver.clone().unwrap_or_else(|| cp.driver.clone());
        let driver = self.drivers.get(named.as_str()).filter(|_| named == cp.driver).cloned();
        let Some(driver) = driver.filter(|d| d.resumable.is_some()) else {
            let detail = match (crate::driver::by_id(&named), self.drivers.get(named.as_str())) {
                (Some(d), Some(_)) if d.resumable.is_some() && named == cp.driver => {
                    format!("the installed {} cannot park a tool call (2.1.89 or later can)", d.display)
                }
                (Some(d), None) if d.resumable.is_some() && named == cp.driver => format!("driver `{named}` is not available on this peer"),
                _ => NOT_RESUMABLE.to_string(),
            };
            self.receipt(&r, ReceiptState::ResumeFailed, Some(&session), Some(detail.clone()), client);
            self.end_run(&cp, detail);
            return Next::Done;
        };
        // `declined` goes to the CLI like an answer: the model reads what the person said.
        let mut answer = records::answer(&r.resolution);
        if answer.is_empty() && r.resolution.status == ResolutionStatus::Declined {
            answer = "Declined".into();
        }
        let q = &mut cp.questions[index];
        q.answer = Some(answer);
        q.answered_by = Some(r.idempotency_key.clone());
        if let Err(e) = cp.save(self.store) {
            tracing::error!(run_id = %r.run_id, "cannot store the answer: {e}");
            return Next::Done;
        }
        let answered = cp.answered();
        let detail = (total > 1).then(|| format!("{answered} of {total} related answers received."));
        self.receipt(&r, ReceiptState::AnswerReceived, Some(&session), detail, client);
        if answered < total {
            return Next::Done;
        }
        if let Err(e) = plugin::write_answers(&cp.plugin_dir, &cp.tool_use_id, &cp.answers()) {
            let detail = format!("cannot hand the answers to the CLI's hook: {e}");
            self.receipt(&r, ReceiptState::ResumeFailed, Some(&session), Some(detail.clone()), client);
            self.end_run(&cp, detail);
            return Next::Done;
        }
        cp.state = State::Resuming;
        if let Err(e) = cp.save(self.store) {
            tracing::error!(run_id = %r.run_id, "cannot record the resumption: {e}");
        }
        self.receipt(&r, ReceiptState::Resuming, Some(&session), None, client);
        Next::Resume { checkpoint: Box::new(cp), decision_id: r.decision_id, resolution_key: r.idempotency_key, driver }
    }

    /// A `task.cancel` for a run that waits for an answer: it ends now. `false` when the run
    /// is not waiting here.
    pub fn cancel(&self, run_id: &str, reason: &str) -> bool {
        match Checkpoint::load(self.store, run_id) {
            Ok(Some(cp)) if cp.state == State::Suspended => {
                tracing::info!(run_id = %run_id, "cancelling a run that waits for an answer: {reason}");
                self.end_run(&cp, format!("cancelled: {reason}"));
                true
            }
            _ => false,
        }
    }

    fn receipt(&self, r: &Resolve, state: ReceiptState, session: Option<&str>, detail: Option<String>, source_client: &str) {
        self.receipts.send(Receipt {
            run_id: &r.run_id,
            decision_id: &r.decision_id,
            idempotency_key: &r.idempotency_key,
            state,
            session_handle: session,
            detail,
            source_client,
        });
    }

    /// `task.failed` (not recoverable: the session was parked for a person), the checkpoint
    /// forgotten, and the dispatch key released once the terminal message is on disk.
    fn end_run(&self, cp: &Checkpoint, reason: String) {
        let failed =
            PeerMessage::Failed(p::Failed { run_id: cp.run_id.clone(), reason: crate::redact::reason(&reason), recoverable: false });
        let ticket = match self.outbox.push_control(&[failed]) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(run_id = %cp.run_id, "cannot queue the run's task.failed; it stays suspended: {e}");
                return;
            }
        };
        cp.discard(self.store);
        ticket.finish_dispatch_when_committed(self.store.clone(), cp.dispatch_key.clone(), cp.run_id.clone());
    }
}

/// The `source_client` of a driver's receipts (§5.5).
fn source_client(driver: &str) -> &'static str {
    match crate::driver::by_id(driver) {
        Some(d) => d.resumable.map_or(d.id, |r| r.source_client),
        None => "orgx-peer",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::checkpoint::Question;
    use crate::driver::{Attribution, DriverSettings};
    use crate::gateway::frames::{Resolution, ResolutionStatus};
    use serde_json::{json, Value};

    struct World {
        _dir: tempfile::TempDir,
        plugin_dir: std::path::PathBuf,
        store: Store,
        outbox: Outbox,
        receipts: Receipts,
        drivers: BTreeMap<&'static str, Arc<EnabledDriver>>,
    }

    fn world(questions: &[&str]) -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let outbox = Outbox::new(store.clone());
        let receipts = Receipts::new(outbox.clone(), store.clone());
        let plugin_dir = dir.path().join("run").join(super::super::RUN_PLUGIN_DIR);
        let mut drivers = BTreeMap::new();
        for d in crate::driver::ALL {
            let resumable = d.resumable;
            drivers.insert(
                d.id,
                Arc::new(EnabledDriver { driver: d, settings: DriverSettings::default(), attribution: Attribution::default(), resumable }),
            );
        }
        let cp = Checkpoint {
            run_id: "r1".into(),
            dispatch_key: "k1".into(),
            driver: "claude_code".into(),
            session: "sess".into(),
            tool_use_id: "toolu_1".into(),
            tool_name: "AskUserQuestion".into(),
            tool_input: json!({"questions": []}),
            cwd: None,
            plugin_dir: plugin_dir.clone(),
            timeout_seconds: None,
            initiative_id: Some("i".into()),
            workstream_id: None,
            started_at_ms: 1,
            first_response_at: None,
            tokens_used: 10,
            cost_estimate_cents: 1,
            saved_estimate_cents: None,
            questions: questions
                .iter()
                .enumerate()
                .map(|(i, q)| Question { decision_id: format!("d{i}"), text: q.to_string(), answered_by: None, answer: None })
                .collect(),
            state: State::Suspended,
        };
        cp.save(&store).unwrap();
        World { _dir: dir, plugin_dir, store, outbox, receipts, drivers }
    }

    impl World {
        fn resolve(&self, decision: &str, key: &str, status: ResolutionStatus, driver: Option<&str>, answer: Option<Value>) -> Next {
            let resolver =
                Resolver { store: &self.store, outbox: &self.outbox, receipts: &self.receipts, drivers: &self.drivers, running: None };
            let resolution = Resolution { status, answer, note: None, option_id: None, option_ids: None };
            let r = Resolve {
                decision_id: decision.into(),
                run_id: "r1".into(),
                driver: driver.map(Into::into),
                session_handle: None,
                idempotency_key: key.into(),
                resolution,
            };
            resolver.resolve(r)
        }

        /// (kind, state or reason, detail) of everything queued for the socket so far.
        async fn sent(&self) -> Vec<(String, String, String)> {
            self.outbox.flush().committed().await.unwrap();
            let text = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_string();
            self.outbox
                .pending(None, 100)
                .unwrap()
                .iter()
                .map(|e| {
                    let v: Value = serde_json::from_str(&e.message_json).unwrap();
                    let what = if v["kind"] == "task.failed" { text(&v, "reason") } else { text(&v, "state") };
                    (text(&v, "kind"), what, text(&v, "detail"))
                })
                .collect()
        }

        fn owed_http(&self) -> Vec<String> {
            let mut ids: Vec<String> = self.store.owed_receipts().unwrap().into_iter().map(|(id, _)| id).collect();
            ids.sort();
            ids
        }
    }

    fn row(kind: &str, what: &str, detail: &str) -> (String, String, String) {
        (kind.into(), what.into(), detail.into())
    }

    #[tokio::test]
    async fn one_answer_resumes_and_a_duplicate_is_ignored() {
        let w = world(&["Which style?"]);
        let next = w.resolve("d0", "res-1", ResolutionStatus::Approved, None, Some(json!("Formal")));
        let Next::Resume { checkpoint, decision_id, resolution_key, .. } = next else { panic!("no resume") };
        assert_eq!((decision_id.as_str(), resolution_key.as_str(), checkpoint.state), ("d0", "res-1", State::Resuming));
        let answers: Value = serde_json::from_slice(&std::fs::read(w.plugin_dir.join("answers/toolu_1.json")).unwrap()).unwrap();
        assert_eq!(answers, json!({"answers": {"Which style?": "Formal"}}), "where the hook finds it");
        let again = w.resolve("d0", "res-1", ResolutionStatus::Approved, None, Some(json!("Casual")));
        assert!(matches!(again, Next::Done), "the same key is seen once, across restarts too (it is stored)");
        let receipt = |s: &str| row("continuation.receipt", s, "");
        assert_eq!(w.sent().await, [receipt("answer_received"), receipt("resuming")]);
        assert_eq!(w.owed_http(), ["d0:answer_received", "d0:resuming"], "each also owed over HTTP until a 2xx");
    }

    #[tokio::test]
    async fn a_bundle_waits_for_every_answer() {
        let w = world(&["First?", "Second?"]);
        assert!(matches!(w.resolve("d1", "a", ResolutionStatus::Approved, None, Some(json!(["x", "y"]))), Next::Done));
        let Next::Resume { checkpoint, decision_id, .. } = w.resolve("d0", "b", ResolutionStatus::Declined, None, None) else {
            panic!("the last answer completes the bundle")
        };
        assert_eq!(decision_id, "d0", "the receipts after answer_received belong to the completing decision");
        assert_eq!(checkpoint.answers(), json!({"First?": "Declined", "Second?": "x, y"}).as_object().unwrap().clone());
        let sent = w.sent().await;
        assert_eq!(
            sent,
            [
                row("continuation.receipt", "answer_received", "1 of 2 related answers received."),
                row("continuation.receipt", "answer_received", "2 of 2 related answers received."),
                row("continuation.receipt", "resuming", ""),
            ]
        );
    }

    #[tokio::test]
    async fn refusals_end_the_run_or_leave_it_waiting_as_the_spec_says() {
        // (decision, status, driver named, expected messages, still waiting afterwards)
        type Row = (&'static str, ResolutionStatus, Option<&'static str>, Vec<(String, String, String)>, bool);
        let table: Vec<Row> = vec![
            (
                "d0",
                ResolutionStatus::Cancelled,
                None,
                vec![row("continuation.receipt", "cancelled", ""), row("task.failed", "attention cancelled", "")],
                false,
            ),
            (
                "d0",
                ResolutionStatus::Approved,
                Some("codex"),
                vec![row("continuation.receipt", "resume_failed", NOT_RESUMABLE), row("task.failed", NOT_RESUMABLE, "")],
                false,
            ),
            (
                "d0",
                ResolutionStatus::Approved,
                Some("no_such_driver"),
                vec![row("continuation.receipt", "resume_failed", NOT_RESUMABLE), row("task.failed", NOT_RESUMABLE, "")],
                false,
            ),
            (
                "d9",
                ResolutionStatus::Approved,
                None,
                vec![row("continuation.receipt", "resume_failed", "decision `d9` is not one of the questions run `r1` is waiting for")],
                true,
            ),
        ];
        for (decision, status, driver, want, waiting) in table {
            let w = world(&["Q?"]);
            assert!(matches!(w.resolve(decision, "key", status, driver, None), Next::Done), "{decision} {status:?} {driver:?}");
            tokio::task::yield_now().await;
            assert_eq!(w.sent().await, want, "{decision} {status:?} {driver:?}");
            assert_eq!(Checkpoint::load(&w.store, "r1").unwrap().is_some(), waiting, "{decision} {status:?} {driver:?}");
        }
    }

    #[tokio::test]
    async fn a_run_not_waiting_here_gets_resume_failed_only() {
        let w = world(&["Q?"]);
        w.store.clear_checkpoint("r1").unwrap();
        assert!(matches!(w.resolve("d0", "k", ResolutionStatus::Approved, None, None), Next::Done));
        assert_eq!(w.sent().await, [row("continuation.receipt", "resume_failed", "no run `r1` is waiting for an answer on this peer")]);
        let resolver = Resolver { store: &w.store, outbox: &w.outbox, receipts: &w.receipts, drivers: &w.drivers, running: Some("codex") };
        let r = Resolve {
            decision_id: "d0".into(),
            run_id: "r1".into(),
            driver: None,
            session_handle: None,
            idempotency_key: "k2".into(),
            resolution: Resolution { status: ResolutionStatus::Approved, answer: None, note: None, option_id: None, option_ids: None },
        };
        resolver.resolve(r);
        assert_eq!(
            w.sent().await.last().unwrap(),
            &row("continuation.receipt", "resume_failed", NOT_RESUMABLE),
            "a codex run cannot be resumed"
        );
    }

    #[tokio::test]
    async fn a_cancel_ends_a_waiting_run() {
        let w = world(&["Q?"]);
        let resolver = Resolver { store: &w.store, outbox: &w.outbox, receipts: &w.receipts, drivers: &w.drivers, running: None };
        assert!(resolver.cancel("r1", "user stopped it"));
        assert!(!resolver.cancel("r1", "again"), "nothing waits any more");
        assert_eq!(w.sent().await, [row("task.failed", "cancelled: user stopped it", "")]);
    }
}
