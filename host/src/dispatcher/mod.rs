//! Server frames → runs. Deduplicates dispatches, refuses what this peer cannot take, starts
//! runs, routes cancels and answers (`attention.resolve`, handed to `attention::resolve`),
//! continues the runs those answers complete, and tracks what is in flight.
//!
//! Refusals still form a well-formed run on the wire (`task.started`, then `task.failed`),
//! so the server sees the same shape for every run id it dispatched.

pub mod push;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::attention::resolve::{Next, Resolver};
use crate::components::prepared::PreparedRules;
use crate::components::registry::Registry;
use crate::components::ActiveComponents;
use crate::driver::EnabledDriver;
use crate::gateway::frames::{Cancel, ComponentPush, Dispatch, Resolve, ServerFrame};
use crate::http::Api;
use crate::log_throttle::LogThrottle;
use crate::outbox::Outbox;
use crate::protocol::{self as p, PeerMessage};
use crate::rules::Rule;
use crate::run::live::{self, RunConfig};
use crate::run::progress::{Progress, RunView};
use crate::store::{Claim, Store};
use crate::time::iso8601;

/// Refusal warnings: the first at once, then at most one per interval.
static REFUSALS: Mutex<LogThrottle> = Mutex::new(LogThrottle::new(std::time::Duration::from_secs(10)));

struct RunHandle {
    /// Which start of the run this is: a resumed process takes the run id over from the
    /// first one, which must then not remove it when it ends.
    start: u64,
    cancel: watch::Sender<Option<String>>,
    task: JoinHandle<()>,
    progress: Arc<Progress>,
}

/// Shared view of the dispatcher for status reporting.
#[derive(Clone, Default)]
pub struct InFlight(Arc<Mutex<HashMap<String, RunHandle>>>);

impl InFlight {
    pub fn run_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.lock().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Every run in flight as `status` shows it, oldest first.
    pub fn runs(&self) -> Vec<RunView> {
        let mut runs: Vec<RunView> = self.lock().values().map(|h| h.progress.view()).collect();
        runs.sort_by(|a, b| b.elapsed_ms.cmp(&a.elapsed_ms).then_with(|| a.run_id.cmp(&b.run_id)));
        runs
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every run's task, taken out of the map: shutdown awaits their completion instead of
    /// polling the count.
    pub fn take_tasks(&self) -> Vec<JoinHandle<()>> {
        self.lock().drain().map(|(_, h)| h.task).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RunHandle>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Dispatcher {
    /// The drivers this peer runs (`ORGX_DRIVERS`, else every one detection found).
    pub drivers: BTreeMap<&'static str, Arc<EnabledDriver>>,
    pub run: RunConfig,
    pub outbox: Outbox,
    /// Dispatch dedupe and the runs' process-group records.
    pub store: Store,
    pub components: watch::Receiver<ActiveComponents>,
    pub rules: watch::Receiver<Arc<Vec<Rule>>>,
    /// The newest rules version compiled in the matcher, for runs to start from.
    pub prepared: Arc<PreparedRules>,
    pub max_concurrent_runs: usize,
    pub in_flight: InFlight,
    /// Set when the peer is shutting down: new dispatches are refused.
    pub draining: watch::Receiver<bool>,
    /// Admits pushed components (none: pushes are refused).
    pub registry: Option<Arc<Registry>>,
    /// Fetches pushed components given by URL.
    pub api: Option<Api>,
    /// The workspace of the connection (a v2 envelope's lineage must name it).
    pub workspace_id: String,
}

impl Dispatcher {
    pub fn handle(&self, frame: ServerFrame) {
        match frame {
            ServerFrame::Dispatch(d) => self.dispatch(*d),
            ServerFrame::Cancel(c) => self.cancel(c),
            ServerFrame::Resolve(r) => self.resolve(*r),
            ServerFrame::ComponentPush(push) => self.component_push(*push),
        }
    }

    /// Admission runs on its own task (it may fetch and compile); the acknowledgement goes
    /// through the outbox like every other message.
    fn component_push(&self, push: ComponentPush) {
        let Some(registry) = self.registry.clone() else {
            tracing::warn!(push_id = %push.push_id, "component push ignored: this peer takes no pushes");
            return;
        };
        let (outbox, api) = (self.outbox.clone(), self.api.clone());
        tokio::spawn(async move {
            let ack = push::answer(&registry, push, api.as_ref()).await;
            crate::memory::release_freed();
            if let Err(e) = outbox.push_control(&[ack]) {
                tracing::error!("cannot queue a component acknowledgement: {e}");
            }
        });
    }

    fn dispatch(&self, d: Dispatch) {
        if d.protocol_version == Some(2) {
            // Validated, then refused (§7.6); not remembered for dedupe, so a redelivery is
            // validated again (§7.2).
            let lineage = crate::envelope::Dispatched {
                run_id: &d.run_id,
                idempotency_key: &d.idempotency_key,
                workspace_id: &self.workspace_id,
                initiative_id: d.task.initiative_id.as_deref(),
                workstream_id: d.task.workstream_id.as_deref(),
            };
            let reason = crate::envelope::refusal(d.execution_envelope.as_ref(), &lineage, &d.task.driver);
            self.refuse(&d, reason, false, false);
            return;
        }
        let store = &self.store;
        match store.claim_dispatch(&d.idempotency_key, &d.run_id) {
            Ok(Claim::New) => {}
            Ok(Claim::Duplicate { run_id, finished }) => {
                tracing::info!(run_id = %d.run_id, first_run_id = %run_id, finished, "duplicate dispatch ignored (same idempotency_key)");
                return;
            }
            Err(e) => {
                tracing::error!(run_id = %d.run_id, "cannot record the dispatch: {e}");
                self.refuse(&d, format!("peer storage error: {e}"), true, false);
                return;
            }
        }
        let Some(driver) = self.drivers.get(d.task.driver.as_str()).cloned() else {
            let enabled: Vec<&str> = self.drivers.keys().copied().collect();
            let runs = if enabled.is_empty() {
                "no driver CLI was found at start; see `orgx-peer detect`".to_string()
            } else {
                format!("it runs: {}", enabled.join(", "))
            };
            self.refuse(&d, format!("driver `{}` is not available on this peer ({runs})", d.task.driver), false, true);
            return;
        };
        if *self.draining.borrow() {
            self.refuse(&d, "the peer is shutting down".into(), true, true);
            return;
        }
        let mut runs = self.in_flight.lock();
        runs.retain(|_, h| !h.task.is_finished());
        if runs.len() >= self.max_concurrent_runs {
            drop(runs);
            self.refuse(&d, format!("the peer is at its limit of {} concurrent runs", self.max_concurrent_runs), true, true);
            return;
        }
        tracing::info!(run_id = %d.run_id, title = %d.task.title, "dispatch accepted");
        let (run_id, key) = (d.run_id.clone(), d.idempotency_key.clone());
        self.start(&mut runs, run_id, key, driver, move |with| live::run(d, with));
    }

    /// Start a run's process on a task of its own, tracked in flight. When it ends with its
    /// terminal message, its dispatch is finished and whatever it kept for attention goes; a
    /// run that suspended keeps both until its answer.
    fn start<F>(
        &self,
        runs: &mut HashMap<String, RunHandle>,
        run_id: String,
        key: String,
        driver: Arc<EnabledDriver>,
        go: impl FnOnce(live::RunWith) -> F + Send + 'static,
    ) where
        F: std::future::Future<Output = live::RunEnd> + Send + 'static,
    {
        let (cancel, cancelled) = watch::channel(None);
        let progress = Arc::new(Progress::new(&run_id, driver.driver.id));
        let (components, rules) = (self.components.borrow().clone(), self.rules.borrow().clone());
        let prepared = self.prepared.get(&components.matcher.component, &rules);
        let with =
            live::RunWith { driver, cfg: self.run.clone(), components, rules, prepared, cancel: cancelled, progress: progress.clone() };
        let (store, in_flight, attention) = (self.store.clone(), self.in_flight.clone(), self.run.attention.clone());
        let slot = run_id.clone();
        static STARTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let start = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let task = tokio::spawn(async move {
            if go(with).await == live::RunEnd::Finished {
                if let Some(a) = attention {
                    a.forget_run(&store, &run_id);
                }
                if let Err(e) = store.finish_dispatch(&key) {
                    tracing::error!(run_id = %run_id, "cannot record the finished dispatch: {e}");
                }
            }
            let mut runs = in_flight.lock();
            if runs.get(&run_id).is_some_and(|h| h.start == start) {
                runs.remove(&run_id);
            }
        });
        runs.insert(slot, RunHandle { start, cancel, task, progress });
    }

    fn cancel(&self, c: Cancel) {
        let runs = self.in_flight.lock();
        let reason = c.reason.unwrap_or_default();
        match runs.get(&c.run_id) {
            Some(h) => {
                let _ = h.cancel.send(Some(reason));
            }
            None => {
                drop(runs);
                if !self.resolver(None).is_some_and(|r| r.cancel(&c.run_id, &reason)) {
                    tracing::info!(run_id = %c.run_id, "cancel for a run that is not running here; ignored");
                }
            }
        }
    }

    /// The resolver of `attention.resolve` frames; `None` on a v1 connection.
    fn resolver(&self, running: Option<&'static str>) -> Option<Resolver<'_>> {
        let a = self.run.attention.as_ref()?;
        Some(Resolver { store: &self.store, outbox: &self.outbox, receipts: &a.receipts, drivers: &self.drivers, running })
    }

    fn resolve(&self, r: Resolve) {
        let running = self.in_flight.lock().get(&r.run_id).map(|h| h.progress.view().driver);
        let Some(resolver) = self.resolver(running) else {
            tracing::warn!(run_id = %r.run_id, "attention.resolve on a v1 connection ignored (set ORGX_PROTOCOL_VERSION=3)");
            return;
        };
        let Next::Resume { checkpoint, decision_id, resolution_key, driver } = resolver.resolve(r) else { return };
        // An answered run continues whatever the concurrency limit: it was admitted already.
        tracing::info!(run_id = %checkpoint.run_id, decision_id = %decision_id, "resuming the run with its answers");
        let (run_id, key) = (checkpoint.run_id.clone(), checkpoint.dispatch_key.clone());
        let mut runs = self.in_flight.lock();
        self.start(&mut runs, run_id, key, driver, move |with| live::resume(*checkpoint, decision_id, resolution_key, with));
    }

    /// Cancel every run (shutdown); each ends with its `task.failed`.
    pub fn cancel_all(&self, reason: &str) {
        for h in self.in_flight.lock().values() {
            let _ = h.cancel.send(Some(reason.to_string()));
        }
    }

    /// Refuse a dispatch: `task.started` then `task.failed`; `recorded` when its key was
    /// claimed for dedupe (and is then marked finished once the refusal is stored).
    fn refuse(&self, d: &Dispatch, reason: String, recoverable: bool, recorded: bool) {
        // A dispatch storm is refused run by run: each refusal goes to the server, but the
        // log gets the first and then one line per interval with the count in between.
        tracing::debug!(run_id = %d.run_id, recoverable, "dispatch refused: {reason}");
        let admitted = REFUSALS.lock().unwrap_or_else(|p| p.into_inner()).admit(std::time::Instant::now());
        if let Some(suppressed) = admitted {
            tracing::warn!(run_id = %d.run_id, recoverable, suppressed, "dispatch refused: {reason}");
        }
        // The label is a known driver id, never the server's string: series stay bounded.
        let driver = crate::driver::by_id(&d.task.driver).map_or("unknown", |x| x.id);
        crate::metrics::global().run_ended(driver, crate::metrics::RunOutcome::Refused);
        let now = iso8601(SystemTime::now());
        let msgs = [
            PeerMessage::Started(p::Started { run_id: d.run_id.clone(), started_at: now, session_handle: None }),
            PeerMessage::Failed(p::Failed { run_id: d.run_id.clone(), reason, recoverable }),
        ];
        let ticket = match self.outbox.push_control(&msgs) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(run_id = %d.run_id, "cannot persist the refusal: {e}");
                return;
            }
        };
        if !recorded {
            return;
        }
        ticket.finish_dispatch_when_committed(self.store.clone(), d.idempotency_key.clone(), d.run_id.clone());
    }
}
