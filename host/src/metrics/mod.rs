//! Prometheus metrics: the one registry every part of the peer records into, served over
//! HTTP only when `ORGX_METRICS_ADDR` asks for it (`server`, `addr`).
//!
//! A leaf module: it depends on nothing else in the crate, so the gateway, the runs, the
//! outbox and the components all record here without knowing about each other. Recording is
//! always on and serving is opt-in, so no call site asks whether metrics are enabled: an
//! atomic add costs nanoseconds, a branch on a setting at every site would cost clarity.
//!
//! The registry is process-wide ([`global`]) rather than a handle threaded through every
//! constructor: a process runs one peer, and its metrics are the process's, as its logs are.
//! Tests that assert exact values build their own [`Metrics`].
//!
//! The hot path takes no lock. What is counted per line or per frame is a plain `Counter`
//! (an `Arc<AtomicU64>`); a labelled series is looked up in its `Family` (a read lock and a
//! hash) once per run, per fault or per beat, never per line — a run resolves its series once
//! ([`Metrics::run_meters`]) and then only increments. Label values are `&'static str` or
//! come from signed manifests, so a server cannot grow the series without bound.

pub mod addr;
pub mod server;

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub use addr::{MetricsAddr, MetricsAddrError};

/// Every metric name starts with this (`orgx_peer_runs_total`).
pub const PREFIX: &str = "orgx_peer";

/// How a run ended, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Completed,
    Failed,
    Cancelled,
    TimedOut,
    /// Refused before a CLI started (unknown driver, over the limit, shutting down, v2).
    Refused,
}

impl RunOutcome {
    fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Completed => "completed",
            RunOutcome::Failed => "failed",
            RunOutcome::Cancelled => "cancelled",
            RunOutcome::TimedOut => "timed_out",
            RunOutcome::Refused => "refused",
        }
    }
}

/// Which heartbeat, and what the server answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    License,
    Presence,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeatOutcome {
    Ok,
    /// The license heartbeat's HTTP 402: the peer runs degraded.
    Revoked,
    Error,
}

/// Why a gateway connection ended before the peer reconnected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionEnd {
    /// The server sent a close frame with this code.
    Closed(u16),
    /// The connection broke without a close frame (network, half-open, bad frame).
    Dropped,
    /// No connection was made (refused TCP, TLS, handshake answered non-101).
    ConnectFailed,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    driver: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseLabels {
    close_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BeatLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SlotLabels {
    slot: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComponentLabels {
    component: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdmissionLabels {
    stage: &'static str,
    outcome: &'static str,
}

/// The peer's metrics and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    runs: Family<RunLabels, Counter>,
    lines_read: Counter,
    lines_oversize: Counter,
    frames_sent: Counter,
    outbox_depth: Gauge,
    runs_in_flight: Gauge,
    commit_seconds: Histogram,
    reconnects: Family<CloseLabels, Counter>,
    heartbeats: Family<BeatLabels, Counter>,
    component_calls: Family<SlotLabels, Counter>,
    component_faults: Family<ComponentLabels, Counter>,
    quarantines: Family<ComponentLabels, Counter>,
    push_admissions: Family<AdmissionLabels, Counter>,
}

/// What one run increments per line and per component call: resolved once, at its start.
#[derive(Clone, Default)]
pub struct RunMeters {
    pub lines_read: Counter,
    pub lines_oversize: Counter,
    pub mapper_calls: Counter,
    pub matcher_calls: Counter,
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix(PREFIX);
        let m = Metrics {
            runs: Family::default(),
            lines_read: Counter::default(),
            lines_oversize: Counter::default(),
            frames_sent: Counter::default(),
            outbox_depth: Gauge::default(),
            runs_in_flight: Gauge::default(),
            // 100 µs to ~6.5 s: an fsync on a fast SSD to a disk that is failing.
            commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 17)),
            reconnects: Family::default(),
            heartbeats: Family::default(),
            component_calls: Family::default(),
            component_faults: Family::default(),
            quarantines: Family::default(),
            push_admissions: Family::default(),
            registry: Registry::default(),
        };
        r.register("runs", "Runs ended, by driver and outcome", m.runs.clone());
        r.register("lines_read", "Stdout lines read from the driver CLIs", m.lines_read.clone());
        r.register("lines_oversize", "Stdout lines skipped for exceeding ORGX_MAX_LINE_BYTES", m.lines_oversize.clone());
        r.register(
            "frames_sent",
            "Protocol frames written to the gateway socket (a resend after a reconnect counts again)",
            m.frames_sent.clone(),
        );
        r.register("outbox_depth", "Messages stored and not yet confirmed delivered", m.outbox_depth.clone());
        r.register("runs_in_flight", "Runs in flight", m.runs_in_flight.clone());
        r.register(
            "outbox_commit_seconds",
            "Time of one outbox group commit (a write transaction and its fsync)",
            m.commit_seconds.clone(),
        );
        r.register(
            "gateway_reconnects",
            "Gateway connections that ended and were retried, by close code (dropped, connect_failed when there was none)",
            m.reconnects.clone(),
        );
        r.register("heartbeats", "Heartbeats sent, by kind (license, presence) and outcome (ok, revoked, error)", m.heartbeats.clone());
        r.register("component_calls", "Calls into sandboxed components, by slot", m.component_calls.clone());
        r.register("component_faults", "Component calls that faulted (trap or limit), by component", m.component_faults.clone());
        r.register("component_quarantines", "Components quarantined after repeated faulting runs, by component", m.quarantines.clone());
        r.register(
            "component_push_admissions",
            "Pushed components, by outcome and the stage that refused them (none when activated)",
            m.push_admissions.clone(),
        );
        Metrics { registry: r, ..m }
    }

    /// The OpenMetrics text exposition of everything (ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; a label value that could not be encoded would
        // be a bug here, and a partial scrape says so better than a panic in the daemon.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!("cannot encode the metrics: {e}");
        }
        out
    }

    /// A run ended. `driver` is a known driver id (or `unknown`): never a server's string.
    pub fn run_ended(&self, driver: &'static str, outcome: RunOutcome) {
        self.runs.get_or_create(&RunLabels { driver, outcome: outcome.as_str() }).inc();
    }

    /// The counters a run increments per line and per call; `mapper_slot` is the slot of
    /// its driver's mapper (`mapper:claude_code`).
    pub fn run_meters(&self, mapper_slot: &'static str) -> RunMeters {
        RunMeters {
            lines_read: self.lines_read.clone(),
            lines_oversize: self.lines_oversize.clone(),
            mapper_calls: self.component_calls.get_or_create_owned(&SlotLabels { slot: mapper_slot }),
            matcher_calls: self.component_calls.get_or_create_owned(&SlotLabels { slot: "matcher" }),
        }
    }

    pub fn frame_sent(&self) {
        self.frames_sent.inc();
    }

    pub fn set_outbox_depth(&self, depth: u64) {
        self.outbox_depth.set(depth.min(i64::MAX as u64) as i64);
    }

    pub fn set_runs_in_flight(&self, runs: usize) {
        self.runs_in_flight.set(runs.min(i64::MAX as usize) as i64);
    }

    pub fn commit_took(&self, took: Duration) {
        self.commit_seconds.observe(took.as_secs_f64());
    }

    pub fn reconnect(&self, end: ConnectionEnd) {
        let close_code = match end {
            ConnectionEnd::Closed(code) => code.to_string(),
            ConnectionEnd::Dropped => "dropped".into(),
            ConnectionEnd::ConnectFailed => "connect_failed".into(),
        };
        self.reconnects.get_or_create(&CloseLabels { close_code }).inc();
    }

    pub fn heartbeat(&self, kind: Beat, outcome: BeatOutcome) {
        let kind = match kind {
            Beat::License => "license",
            Beat::Presence => "presence",
        };
        let outcome = match outcome {
            BeatOutcome::Ok => "ok",
            BeatOutcome::Revoked => "revoked",
            BeatOutcome::Error => "error",
        };
        self.heartbeats.get_or_create(&BeatLabels { kind, outcome }).inc();
    }

    /// A component call faulted; `component` is its label (`name@sha256:0123abcd`).
    pub fn component_fault(&self, component: &str) {
        self.component_faults.get_or_create(&ComponentLabels { component: component.to_string() }).inc();
    }

    pub fn quarantined(&self, component: &str) {
        self.quarantines.get_or_create(&ComponentLabels { component: component.to_string() }).inc();
    }

    /// A push was answered: `refused_at` is the stage that refused it, `None` when activated.
    pub fn push_admission(&self, refused_at: Option<&'static str>) {
        let labels = match refused_at {
            Some(stage) => AdmissionLabels { stage, outcome: "rejected" },
            None => AdmissionLabels { stage: "none", outcome: "activated" },
        };
        self.push_admissions.get_or_create(&labels).inc();
    }
}

#[cfg(test)]
mod tests;
