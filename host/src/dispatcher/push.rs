//! The edge of the component extension: `component.push` frames become domain values here,
//! the registry decides, and its answers become `component.ack` / `component.quarantined`
//! messages here. The registry never sees a frame or a message (docs/component-push.md).
//!
//! The order is the admission pipeline's: the manifest-only stages run before a byte is
//! decoded or fetched, so an untrusted push cannot make the peer download or compile.

use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;

use crate::components::admission::{Precheck, Rejection, Stage};
use crate::components::registry::{Admitted, Quarantined, Registry};
use crate::components::ComponentId;
use crate::gateway::frames::ComponentPush;
use crate::http::Api;
use crate::protocol::{self as p, PeerMessage};
use crate::trust::{Envelope, Manifest};

/// Answer a `component.push`: every stage, then the acknowledgement to send.
pub async fn answer(registry: &Arc<Registry>, push: ComponentPush, api: Option<&Api>) -> PeerMessage {
    let started = Instant::now();
    let manifest: Result<Manifest, Rejection> =
        serde_json::from_value(push.manifest.clone()).map_err(|e| Rejection::new(Stage::Manifest, format!("`manifest` is malformed: {e}")));
    let component = match &manifest {
        Ok(m) => ComponentId { slot: m.slot.to_string(), name: m.name.clone(), version: m.version, sha256: m.sha256.clone() },
        Err(_) => ComponentId::default(),
    };
    let result = match manifest {
        Ok(manifest) => admit(registry, &push, Envelope { manifest, signature: push.signature.clone().unwrap_or_default() }, api).await,
        Err(r) => Err(r),
    };
    let ms = started.elapsed().as_millis() as u64;
    crate::metrics::global().push_admission(result.as_ref().err().map(|r| r.stage.as_str()));
    let (status, stage, reason) = match &result {
        Ok(a) => {
            tracing::info!(push_id = %push.push_id, slot = %a.slot, name = %a.name, version = a.version, ms, cached = a.cached, changed = a.changed, "pushed component activated");
            (p::AckStatus::Activated, None, None)
        }
        Err(r) => {
            tracing::warn!(push_id = %push.push_id, slot = %component.slot, name = %component.name, version = component.version, ms, "pushed component {r}");
            (p::AckStatus::Rejected, Some(r.stage.as_str().to_string()), Some(r.reason.clone()))
        }
    };
    PeerMessage::ComponentAck(p::ComponentAck { push_id: push.push_id, component: component_ref(component), status, stage, reason })
}

async fn admit(registry: &Arc<Registry>, push: &ComponentPush, envelope: Envelope, api: Option<&Api>) -> Result<Admitted, Rejection> {
    if let Precheck::AlreadyActive { .. } = registry.precheck(&envelope)? {
        return Ok(registry.unchanged(&envelope.manifest));
    }
    let bytes = body(push, api, registry.max_component_bytes()).await?;
    let registry = registry.clone();
    tokio::task::spawn_blocking(move || registry.admit_pushed(envelope, bytes))
        .await
        .unwrap_or_else(|e| Err(Rejection::new(Stage::Compile, format!("admission crashed: {e}"))))
}

/// The pushed bytes: inline base64, or fetched from the server's own origin.
async fn body(push: &ComponentPush, api: Option<&Api>, max: u64) -> Result<Vec<u8>, Rejection> {
    match (&push.bytes_base64, &push.url) {
        (Some(b64), None) => {
            // base64 is 4/3 of the bytes: refuse an oversize body before decoding it.
            if (b64.len() as u64) / 4 * 3 > max + 3 {
                return Err(Rejection::new(Stage::Size, format!("the inline body is over the {max}-byte limit")));
            }
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| Rejection::new(Stage::Manifest, format!("`bytes_base64` is not base64: {e}")))
        }
        (None, Some(url)) => {
            let api = api.ok_or_else(|| Rejection::new(Stage::Fetch, "this peer has no server connection to fetch from"))?;
            let url = api.base.same_base(url).map_err(|e| Rejection::new(Stage::Fetch, e.to_string()))?;
            // Over the size limit is the `size` stage whichever way the bytes come.
            api.fetch_component(url, max).await.map_err(|e| {
                let stage = if matches!(e, crate::http::ApiError::TooLarge { .. }) { Stage::Size } else { Stage::Fetch };
                Rejection::new(stage, e.to_string())
            })
        }
        _ => Err(Rejection::new(Stage::Manifest, "exactly one of `bytes_base64` and `url` is required")),
    }
}

/// The message that tells the server a component was quarantined.
pub fn quarantined_message(q: Quarantined) -> PeerMessage {
    PeerMessage::ComponentQuarantined(p::ComponentQuarantined {
        component: component_ref(q.component),
        faults: q.faults,
        reason: q.reason,
        fallback: component_ref(q.fallback),
    })
}

fn component_ref(c: ComponentId) -> p::ComponentRef {
    p::ComponentRef { slot: c.slot, name: c.name, version: c.version, sha256: c.sha256 }
}
