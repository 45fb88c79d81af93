//! The two heartbeats: the license heartbeat (on boot, then every 7 days) and the presence
//! heartbeat (on every socket open, then every 20 s). Neither may ever stop the peer:
//! failures retry with backoff, and a revoked license (HTTP 402) only marks the peer degraded.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::gateway::backoff::{Backoff, BackoffPolicy};
use crate::gateway::session::LinkState;
use crate::http::Api;

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
                    tracing::info!("license heartbeat accepted");
                    break;
                }
                Err(e) if e.status() == Some(StatusCode::PAYMENT_REQUIRED) => {
                    let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
                    s.degraded = true;
                    s.last_license_error = Some(e.to_string());
                    tracing::warn!("license revoked (HTTP 402): running degraded; runs and deviations continue");
                    break;
                }
                Err(e) => {
                    status.lock().unwrap_or_else(|p| p.into_inner()).last_license_error = Some(e.to_string());
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
                }
                Err(e) => {
                    tracing::debug!("presence heartbeat failed: {e}");
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
pub fn license_body(workspace_id: &str, plugin_name: &str, fingerprint: &str, runner_instance_id: Option<&str>) -> Value {
    let mut body = json!({
        "workspace_id": workspace_id,
        "plugin_name": plugin_name,
        "version": env!("CARGO_PKG_VERSION"),
        "manifest_fingerprint": fingerprint,
        // Dev builds are unsigned.
        "signature": "",
    });
    if let Some(id) = runner_instance_id {
        body["runner_instance_id"] = json!(id);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_follows_components() {
        let a = manifest_fingerprint(&["aa", "bb"]);
        assert_eq!(a, manifest_fingerprint(&["aa", "bb"]));
        assert_ne!(a, manifest_fingerprint(&["aa", "bc"]));
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64);
    }
}
