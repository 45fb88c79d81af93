//! The two heartbeats: the license heartbeat (on boot, then every 7 days) and the presence
//! heartbeat (on every socket open, then every 20 s). Neither may ever stop the peer:
//! failures retry with backoff, and a revoked license (HTTP 402) only marks the peer degraded.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use std::collections::BTreeMap;

use crate::driver::Detection;
use crate::gateway::backoff::{Backoff, BackoffPolicy};
use crate::gateway::session::LinkState;
use crate::http::Api;
use crate::metrics::{self, Beat, BeatOutcome};

/// What the last beats said, for `orgx-peer status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BeatStatus {
    pub last_license_ok: Option<String>,
    pub last_license_error: Option<String>,
    pub degraded: bool,
    pub last_presence_ok: Option<String>,
    pub last_presence_error: Option<String>,
}

pub type SharedBeats = Arc<Mutex<BeatStatus>>;

fn now() -> String {
    crate::time::iso8601(SystemTime::now())
}

/// Post the license heartbeat now, every `interval`, and whenever `components` changes (a
/// swap or a quarantine); `body` is rebuilt on each beat so the fingerprint follows the
/// active components.
#[allow(clippy::too_many_arguments)]
pub async fn license_loop<T: Send + Sync>(
    api: Api,
    body: impl Fn() -> Value,
    interval: Duration,
    backoff: BackoffPolicy,
    status: SharedBeats,
    mut components: watch::Receiver<T>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut follow = true;
    loop {
        let mut retry = Backoff::new(backoff);
        loop {
            match api.license_heartbeat(&body()).await {
                Ok(_) => {
                    let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
                    s.last_license_ok = Some(now());
                    s.last_license_error = None;
                    if s.degraded {
                        tracing::info!("license heartbeat accepted again; no longer degraded");
                    }
                    s.degraded = false;
                    metrics::global().heartbeat(Beat::License, BeatOutcome::Ok);
                    tracing::info!("license heartbeat accepted");
                    break;
                }
                Err(e) if e.status() == Some(StatusCode::PAYMENT_REQUIRED) => {
                    let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
                    s.degraded = true;
                    s.last_license_error = Some(e.to_string());
                    metrics::global().heartbeat(Beat::License, BeatOutcome::Revoked);
                    tracing::warn!("license revoked (HTTP 402): running degraded; runs and deviations continue");
                    break;
                }
                Err(e) => {
                    status.lock().unwrap_or_else(|p| p.into_inner()).last_license_error = Some(e.to_string());
                    metrics::global().heartbeat(Beat::License, BeatOutcome::Error);
                    let delay = retry.next_delay();
                    tracing::warn!(retry_in_ms = delay.as_millis() as u64, "license heartbeat failed: {e}");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = crate::shutdown::raised(&mut shutdown) => return,
                    }
                }
            }
        }
        let changed = async {
            if !follow || components.changed().await.is_err() {
                follow = false;
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = changed => tracing::info!("active components changed; sending the license heartbeat with the new fingerprint"),
            _ = crate::shutdown::raised(&mut shutdown) => return,
        }
    }
}

/// Post the presence heartbeat on every socket open and every `interval` after.
pub async fn presence_loop(
    api: Api,
    body: impl Fn() -> Value,
    interval: Duration,
    mut link: watch::Receiver<LinkState>,
    status: SharedBeats,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut was_connected = false;
    loop {
        let connected = *link.borrow_and_update() == LinkState::Connected;
        let opened = connected && !was_connected;
        was_connected = connected;
        if opened || connected {
            match api.presence_heartbeat(&body()).await {
                Ok(_) => {
                    let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
                    s.last_presence_ok = Some(now());
                    s.last_presence_error = None;
                    metrics::global().heartbeat(Beat::Presence, BeatOutcome::Ok);
                }
                Err(e) => {
                    tracing::debug!("presence heartbeat failed: {e}");
                    metrics::global().heartbeat(Beat::Presence, BeatOutcome::Error);
                    status.lock().unwrap_or_else(|p| p.into_inner()).last_presence_error = Some(e.to_string());
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = link.changed() => {}
            _ = crate::shutdown::raised(&mut shutdown) => return,
        }
    }
}

/// `manifest_fingerprint`: a digest of the host version and the active components' digests.
pub fn manifest_fingerprint(component_digests: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(format!("orgx-peer/{}\n", env!("CARGO_PKG_VERSION")));
    for d in component_digests {
        h.update(d.as_bytes());
        h.update(b"\n");
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// The presence body's `host_platform`.
pub fn host_platform() -> String {
    format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH)
}

/// Convenience for building the license body.
/// The license heartbeat body: exactly its five fields (spec §5.1; no `runner_instance_id`,
/// which goes in the presence heartbeat).
pub fn license_body(workspace_id: &str, plugin_name: &str, fingerprint: &str) -> Value {
    json!({
        "workspace_id": workspace_id,
        "plugin_name": plugin_name,
        "version": env!("CARGO_PKG_VERSION"),
        "manifest_fingerprint": fingerprint,
        // Dev builds are unsigned.
        "signature": "",
    })
}

/// A managed runner's activation (`ORGX_ACTIVATION_ATTEMPT_ID` + `ORGX_RUNNER_ROLE`): both or
/// neither, and only with a `runner_instance_id` (config checks this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    pub attempt_id: String,
    /// `candidate` or `canonical`.
    pub role: &'static str,
}

/// What a presence heartbeat reports, all of it cached (a beat never spawns a process).
pub struct Presence<'a> {
    pub workspace_id: &'a str,
    pub plugin_id: &'a str,
    pub installation_id: &'a str,
    pub runner_instance_id: Option<&'a str>,
    pub activation: Option<&'a Activation>,
    /// The drivers this peer runs (`drivers_installed`).
    pub drivers: &'a [&'static str],
    pub detections: &'a BTreeMap<&'static str, Detection>,
    pub online: bool,
    pub runs_in_flight: usize,
    /// The version offered on the socket, as a number.
    pub protocol_version: u64,
}

/// `metadata.auth_status` in the spec's vocabulary.
pub fn auth_status(d: &Detection) -> &'static str {
    match (d.installed, d.logged_in) {
        (false, _) => "not_installed",
        (true, Some(true)) => "authenticated",
        (true, Some(false)) => "sign_in_required",
        (true, None) => "probe_failed",
    }
}

/// The presence heartbeat body (spec §5.2). The single-valued account fields describe
/// `claude_code` when this peer runs it, else its first driver; `metadata.drivers` (this
/// peer's extension) has every driver's.
pub fn presence_body(p: &Presence<'_>) -> Value {
    let none = Detection::default();
    let main = p.drivers.iter().find(|id| **id == "claude_code").or(p.drivers.first());
    let d = main.and_then(|id| p.detections.get(id)).unwrap_or(&none);
    let drivers: serde_json::Map<String, Value> = p
        .drivers
        .iter()
        .map(|id| {
            let d = p.detections.get(id).unwrap_or(&none);
            let entry = json!({
                "installed": d.installed,
                "authenticated": d.logged_in == Some(true),
                "auth_status": auth_status(d),
                "auth_method": d.auth_method,
                "probe_version": d.version,
            });
            (id.to_string(), entry)
        })
        .collect();
    let ready = p.online && p.drivers.iter().any(|id| p.detections.get(id).is_some_and(Detection::authenticated));
    let mut body = json!({
        "workspace_id": p.workspace_id,
        "plugin_id": p.plugin_id,
        "installation_id": p.installation_id,
        "host_platform": host_platform(),
        "drivers_installed": p.drivers,
        "gateway_version": env!("CARGO_PKG_VERSION"),
        "protocol_version": p.protocol_version,
        "plan_tier": null,
        "subscription_type": d.subscription_type,
        "subscription_active": d.logged_in == Some(true),
        "metadata": {
            "runtime": "peer",
            "transport_online": p.online,
            "runtime_online": true,
            "dispatch_ready": ready,
            "auth_status": if main.is_some() { auth_status(d) } else { "unknown" },
            "auth_method": d.auth_method,
            "probe_version": d.version,
            "queue_depth": p.runs_in_flight,
            "drivers": drivers,
        },
    });
    if let Some(id) = p.runner_instance_id {
        body["runner_instance_id"] = json!(id);
        if let Some(a) = p.activation {
            body["activation_attempt_id"] = json!(a.attempt_id);
            body["runner_role"] = json!(a.role);
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_license_body_has_exactly_its_five_fields() {
        let body = license_body("ws", "@useorgx/orgx-peer", "sha256:00");
        let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["workspace_id", "plugin_name", "version", "manifest_fingerprint", "signature"]);
    }

    fn detection(installed: bool, logged_in: Option<bool>, version: &str) -> Detection {
        Detection { installed, logged_in, version: Some(version.into()), auth_method: Some("api_key".into()), ..Detection::default() }
    }

    #[test]
    fn presence_reports_claude_first_every_driver_and_runs_in_flight() {
        let detections: BTreeMap<&'static str, Detection> =
            [("claude_code", detection(true, Some(false), "2.1.330")), ("codex", detection(true, Some(true), "0.171.0"))].into();
        let activation = Activation { attempt_id: "att-7".into(), role: "candidate" };
        let p = Presence {
            workspace_id: "ws",
            plugin_id: "@useorgx/orgx-peer",
            installation_id: "inst",
            runner_instance_id: Some("runner-1"),
            activation: Some(&activation),
            drivers: &["claude_code", "codex"],
            detections: &detections,
            online: true,
            runs_in_flight: 3,
            protocol_version: 1,
        };
        let b = presence_body(&p);
        assert_eq!(b["protocol_version"], 1, "a number, not `orgx.v1`");
        assert_eq!(b["plan_tier"], Value::Null);
        assert_eq!(b["runner_instance_id"], "runner-1", "top level");
        assert_eq!((b["activation_attempt_id"].as_str(), b["runner_role"].as_str()), (Some("att-7"), Some("candidate")));
        assert_eq!(b["subscription_active"], false, "claude_code is described, and it is signed out");
        let m = &b["metadata"];
        assert_eq!(m["auth_status"], "sign_in_required");
        assert_eq!(m["probe_version"], "2.1.330");
        assert_eq!(m["queue_depth"], 3, "runs in flight, not queued messages");
        assert_eq!(m["dispatch_ready"], true, "codex can take a dispatch");
        assert_eq!(m["drivers"]["codex"]["auth_status"], "authenticated");
        assert_eq!(m["drivers"]["codex"]["probe_version"], "0.171.0");
        let bare = presence_body(&Presence { runner_instance_id: None, online: false, ..p });
        for key in ["runner_instance_id", "activation_attempt_id", "runner_role"] {
            assert!(bare.get(key).is_none(), "{key} only with a runner instance id");
        }
        assert_eq!(bare["metadata"]["dispatch_ready"], false, "not while offline");
    }

    #[test]
    fn auth_status_uses_the_spec_vocabulary() {
        assert_eq!(auth_status(&detection(false, None, "")), "not_installed");
        assert_eq!(auth_status(&detection(true, Some(true), "")), "authenticated");
        assert_eq!(auth_status(&detection(true, Some(false), "")), "sign_in_required");
        assert_eq!(auth_status(&detection(true, None, "")), "probe_failed");
    }

    #[test]
    fn fingerprint_follows_components() {
        let a = manifest_fingerprint(&["aa", "bb"]);
        assert_eq!(a, manifest_fingerprint(&["aa", "bb"]));
        assert_ne!(a, manifest_fingerprint(&["aa", "bc"]));
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64);
    }
}
