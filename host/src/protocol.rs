//! The peer → server messages of OrgX Gateway Protocol v1, as they go on the wire.
//!
//! Field and kind names here are byte-exact with `shared/spec/gateway-protocol.md`. These types
//! are plain data: what a message *means* is decided in the sandboxed mapper; the host only
//! stamps `run_id` and wall-clock times onto what the component produced.

use serde::{Deserialize, Serialize};

/// One peer → server frame. Serialized as a JSON object with a `kind` discriminator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum PeerMessage {
    #[serde(rename = "task.started")]
    Started(Started),
    #[serde(rename = "task.step")]
    Step(StepMessage),
    #[serde(rename = "task.deviation")]
    Deviation(Deviation),
    #[serde(rename = "task.completed")]
    Completed(Completed),
    #[serde(rename = "task.failed")]
    Failed(Failed),
    /// v3: the run waits for a person; not terminal (§3.6).
    #[serde(rename = "task.suspended")]
    Suspended(Suspended),
    /// v3: how the answer to a suspended run's question is being handled (§3.7).
    #[serde(rename = "continuation.receipt")]
    ContinuationReceipt(ContinuationReceipt),
    /// Extension (`docs/component-push.md`): the answer to a `component.push`.
    #[serde(rename = "component.ack")]
    ComponentAck(ComponentAck),
    /// Extension: a component was taken out of service after repeated faults.
    #[serde(rename = "component.quarantined")]
    ComponentQuarantined(ComponentQuarantined),
}

impl PeerMessage {
    pub fn run_id(&self) -> &str {
        match self {
            PeerMessage::Started(m) => &m.run_id,
            PeerMessage::Step(m) => &m.run_id,
            PeerMessage::Deviation(m) => &m.run_id,
            PeerMessage::Completed(m) => &m.run_id,
            PeerMessage::Failed(m) => &m.run_id,
            PeerMessage::Suspended(m) => &m.run_id,
            PeerMessage::ContinuationReceipt(m) => &m.run_id,
            // Not part of any run.
            PeerMessage::ComponentAck(_) | PeerMessage::ComponentQuarantined(_) => "",
        }
    }

    /// `task.completed` and `task.failed` end a run; exactly one of them is sent per run.
    pub fn is_terminal(&self) -> bool {
        matches!(self, PeerMessage::Completed(_) | PeerMessage::Failed(_))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            PeerMessage::Started(_) => "task.started",
            PeerMessage::Step(_) => "task.step",
            PeerMessage::Deviation(_) => "task.deviation",
            PeerMessage::Completed(_) => "task.completed",
            PeerMessage::Failed(_) => "task.failed",
            PeerMessage::Suspended(_) => "task.suspended",
            PeerMessage::ContinuationReceipt(_) => "continuation.receipt",
            PeerMessage::ComponentAck(_) => "component.ack",
            PeerMessage::ComponentQuarantined(_) => "component.quarantined",
        }
    }

    /// The compact JSON text of the frame.
    pub fn to_json(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_string(self).expect("protocol messages always serialize")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Started {
    pub run_id: String,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_handle: Option<String>,
}

/// `task.suspended` (§3.6): `reason` is always `attention`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suspended {
    pub run_id: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_handle: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `continuation.receipt` (§3.7); `protocol_version` is always 3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContinuationReceipt {
    pub protocol_version: u64,
    pub run_id: String,
    pub decision_id: String,
    pub idempotency_key: String,
    pub state: ReceiptState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_handle: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub occurred_at: String,
}

/// A continuation receipt's `state` (§8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptState {
    AnswerReceived,
    Resuming,
    Resumed,
    ResumeFailed,
    Cancelled,
}

impl ReceiptState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptState::AnswerReceived => "answer_received",
            ReceiptState::Resuming => "resuming",
            ReceiptState::Resumed => "resumed",
            ReceiptState::ResumeFailed => "resume_failed",
            ReceiptState::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMessage {
    pub run_id: String,
    pub step: Step,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    FileEdit,
    ToolCall,
    Chat,
    SkillFire,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub kind: StepKind,
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deviation {
    pub run_id: String,
    pub skill_id: String,
    pub evidence_kind: String,
    pub evidence_ref: String,
    pub dedupe_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    Shipped,
    Blocked,
    Abandoned,
    AwaitingReview,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Anthropic,
    Openai,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceSubType {
    Subscription,
    ApiKey,
    EnterpriseKey,
    UserManaged,
}

/// `provider_id` / `observed_provider_id` keep three states (spec §3.4): `None` is left out,
/// `Some(None)` is `null`, `Some(Some(id))` is the string. Serde alone reads `null` as `None`.
mod tristate {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completed {
    pub run_id: String,
    pub outcome_kind: OutcomeKind,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_response_at: Option<String>,
    pub completed_at: String,
    pub tokens_used: u64,
    pub provider: Provider,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "tristate::deserialize")]
    pub provider_id: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "tristate::deserialize")]
    pub observed_provider_id: Option<Option<String>>,
    pub source_sub_type: SourceSubType,
    pub source_driver: String,
    pub cost_estimate_cents: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_estimate_cents: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failed {
    pub run_id: String,
    pub reason: String,
    pub recoverable: bool,
}

/// Which component a component message is about, as the manifest named it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ComponentRef {
    pub slot: String,
    pub name: String,
    pub version: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    Activated,
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentAck {
    pub push_id: String,
    #[serde(flatten)]
    pub component: ComponentRef,
    pub status: AckStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentQuarantined {
    #[serde(flatten)]
    pub component: ComponentRef,
    pub faults: u32,
    pub reason: String,
    /// What serves the slot now (`slot` repeated).
    pub fallback: ComponentRef,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_field_names_are_byte_exact() {
        let m = PeerMessage::Started(Started {
            run_id: "r1".into(),
            started_at: "2026-01-01T00:00:00.000Z".into(),
            session_handle: Some("s".into()),
        });
        assert_eq!(m.to_json(), r#"{"kind":"task.started","run_id":"r1","started_at":"2026-01-01T00:00:00.000Z","session_handle":"s"}"#);
        let m = PeerMessage::Step(StepMessage {
            run_id: "r1".into(),
            step: Step { kind: StepKind::FileEdit, summary: "Write a.txt".into(), evidence_ref: Some("toolu_1".into()), confidence: None },
        });
        assert_eq!(
            m.to_json(),
            r#"{"kind":"task.step","run_id":"r1","step":{"kind":"file_edit","summary":"Write a.txt","evidence_ref":"toolu_1"}}"#
        );
        let m = PeerMessage::Failed(Failed { run_id: "r".into(), reason: "x".into(), recoverable: true });
        assert_eq!(m.to_json(), r#"{"kind":"task.failed","run_id":"r","reason":"x","recoverable":true}"#);
    }

    #[test]
    fn component_messages_match_the_extension_document() {
        let component = ComponentRef { slot: "matcher".into(), name: "acme".into(), version: 7, sha256: "ab".into() };
        let m = PeerMessage::ComponentAck(ComponentAck {
            push_id: "p1".into(),
            component: component.clone(),
            status: AckStatus::Rejected,
            stage: Some("signature".into()),
            reason: Some("bad".into()),
        });
        assert_eq!(
            m.to_json(),
            r#"{"kind":"component.ack","push_id":"p1","slot":"matcher","name":"acme","version":7,"sha256":"ab","status":"rejected","stage":"signature","reason":"bad"}"#
        );
        assert!(!m.is_terminal());
        assert_eq!(m.run_id(), "");
        let q = PeerMessage::ComponentQuarantined(ComponentQuarantined {
            component: component.clone(),
            faults: 3,
            reason: "trap".into(),
            fallback: ComponentRef { version: 0, name: "skill-rules".into(), ..component },
        });
        assert_eq!(
            q.to_json(),
            r#"{"kind":"component.quarantined","slot":"matcher","name":"acme","version":7,"sha256":"ab","faults":3,"reason":"trap","fallback":{"slot":"matcher","name":"skill-rules","version":0,"sha256":"ab"}}"#
        );
    }

    #[test]
    fn enums_use_protocol_spelling() {
        let j = |v: serde_json::Value| v.as_str().unwrap().to_string();
        assert_eq!(j(serde_json::to_value(OutcomeKind::AwaitingReview).unwrap()), "awaiting_review");
        assert_eq!(j(serde_json::to_value(SourceSubType::ApiKey).unwrap()), "api_key");
        assert_eq!(j(serde_json::to_value(StepKind::SkillFire).unwrap()), "skill_fire");
        assert_eq!(j(serde_json::to_value(Provider::Anthropic).unwrap()), "anthropic");
    }
}
