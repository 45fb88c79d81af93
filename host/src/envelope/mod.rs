//! Version 2 dispatches (spec §7): the `execution_envelope` checked exactly as §7.2 says, and
//! the refusal that follows a valid one.
//!
//! No driver of this peer can produce the verification evidence a v2 finalization needs (a
//! CLI run yields no action or verification source ids, §7.6), so claiming one would be a
//! lie: a v2 dispatch is validated, then refused before any CLI starts. The validation still
//! matters — it is the reason the server sees, and it is what a future finalizing driver
//! runs first.

pub mod digest;

use serde_json::Value;

use digest::DigestError;

/// Why an execution envelope is refused (§7.2's messages, which the server shows as they are).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("execution envelope is missing or not an object")]
    NotAnObject,
    #[error("execution envelope is missing `{0}`")]
    Missing(String),
    #[error("execution envelope field `{field}` must be {what}")]
    WrongType { field: String, what: String },
    #[error("execution envelope schema version unsupported")]
    SchemaVersion,
    #[error("execution envelope requires a workspace reference")]
    NoWorkspace,
    #[error("execution envelope requires goal, objective, or initiative lineage")]
    NoLineage,
    #[error("nested work requires initiative lineage")]
    NestedWithoutInitiative,
    #[error("execution envelope contains an invalid digest")]
    InvalidDigest,
    #[error("execution envelope skill digests must be unique")]
    DuplicateSkills,
    #[error("execution envelope tool digests must be unique")]
    DuplicateTools,
    #[error("dispatch identity does not match execution envelope")]
    Identity,
    #[error("execution envelope lineage does not match the task")]
    LineageMismatch,
    #[error("execution envelope digest does not match its contents")]
    DigestMismatch,
    #[error("execution envelope cannot be digested: {0}")]
    Undigestable(#[source] DigestError),
}

/// The dispatch fields validation compares the envelope with.
pub struct Dispatched<'a> {
    pub run_id: &'a str,
    pub idempotency_key: &'a str,
    /// The workspace of the connection.
    pub workspace_id: &'a str,
    pub initiative_id: Option<&'a str>,
    pub workstream_id: Option<&'a str>,
}

/// Why a v2 dispatch does not run: the `task.failed` reason (`recoverable: false`).
pub fn refusal(envelope: Option<&Value>, d: &Dispatched<'_>, driver: &str) -> String {
    match validate(envelope, d) {
        Err(reason) => reason.to_string(),
        Ok(()) => format!("protocol v2 finalization is not supported by the {driver} driver: a CLI run yields no verification evidence"),
    }
}

const DIGESTS: [&str; 5] = ["digest", "missionContractDigest", "contextManifestDigest", "capabilityLeaseDigest", "runtimeProfileDigest"];

/// §7.2, in the SDK's order, with its messages; then the lineage checks of the OpenCode peer
/// and the recomputed digest of §7.5.
pub fn validate(envelope: Option<&Value>, d: &Dispatched<'_>) -> Result<(), EnvelopeError> {
    let env = envelope.filter(|v| v.is_object()).ok_or(EnvelopeError::NotAnObject)?;
    shape(env.as_object().expect("checked to be an object"))?;
    if str_field(env, "schemaVersion") != "1.0.0" {
        return Err(EnvelopeError::SchemaVersion);
    }
    let work = &env["workRef"];
    if str_field(work, "workspaceId").is_empty() {
        return Err(EnvelopeError::NoWorkspace);
    }
    if ["goalId", "objectiveId", "initiativeId"].iter().all(|k| str_field(work, k).is_empty()) {
        return Err(EnvelopeError::NoLineage);
    }
    if ["workstreamId", "milestoneId", "taskId"].iter().any(|k| !str_field(work, k).is_empty())
        && str_field(work, "initiativeId").is_empty()
    {
        return Err(EnvelopeError::NestedWithoutInitiative);
    }
    let list = |k: &str| env[k].as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>()).unwrap_or_default();
    let (skills, tools) = (list("skillVersionDigests"), list("toolManifestDigests"));
    let singles: Vec<&str> = DIGESTS.iter().map(|k| str_field(env, k)).collect();
    if !singles.iter().copied().chain(skills.iter().copied()).chain(tools.iter().copied()).all(is_digest) {
        return Err(EnvelopeError::InvalidDigest);
    }
    if has_duplicates(&skills) {
        return Err(EnvelopeError::DuplicateSkills);
    }
    if has_duplicates(&tools) {
        return Err(EnvelopeError::DuplicateTools);
    }
    if str_field(env, "runId") != d.run_id || str_field(env, "idempotencyKey") != d.idempotency_key {
        return Err(EnvelopeError::Identity);
    }
    let lineage_ok = str_field(work, "workspaceId") == d.workspace_id
        && d.initiative_id.is_none_or(|i| str_field(work, "initiativeId") == i)
        && d.workstream_id.is_none_or(|w| str_field(work, "workstreamId") == w);
    if !lineage_ok {
        return Err(EnvelopeError::LineageMismatch);
    }
    match digest::contract_digest(env) {
        Ok(computed) if computed == str_field(env, "digest") => Ok(()),
        Ok(_) => Err(EnvelopeError::DigestMismatch),
        Err(e) => Err(EnvelopeError::Undigestable(e)),
    }
}

/// The string at `key`, or "" (absent and non-string fields fail `shape` first).
fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

fn has_duplicates(items: &[&str]) -> bool {
    let mut seen = std::collections::HashSet::new();
    !items.iter().all(|i| seen.insert(*i))
}

/// The required fields with the JSON types of §7.1; the message names the first one wrong.
fn shape(env: &serde_json::Map<String, Value>) -> Result<(), EnvelopeError> {
    use Kind::*;
    let required: &[(&str, Kind)] = &[
        ("schemaVersion", Str),
        ("producer", Obj),
        ("id", Str),
        ("runId", Str),
        ("attemptId", Str),
        ("idempotencyKey", Str),
        ("workRef", Obj),
        ("missionId", Str),
        ("missionContractDigest", Str),
        ("nodeId", Str),
        ("contextManifestDigest", Str),
        ("capabilityLeaseId", Str),
        ("capabilityLeaseDigest", Str),
        ("runtimeProfileDigest", Str),
        ("qualityBarVersionId", Str),
        ("skillVersionDigests", StrList),
        ("toolManifestDigests", StrList),
        ("budget", Obj),
        ("requestedAt", Str),
        ("digest", Str),
    ];
    for (field, kind) in required {
        check(env.get(*field), *kind, field)?;
    }
    if let Some(deadline) = env.get("deadline").filter(|v| !v.is_null()) {
        check(Some(deadline), Str, "deadline")?;
    }
    let producer = &env["producer"];
    check(producer.get("actor"), Obj, "producer.actor")?;
    check(producer.get("service"), Str, "producer.service")?;
    check(producer.get("serviceVersion"), Str, "producer.serviceVersion")?;
    let actor = &producer["actor"];
    check(actor.get("id"), Str, "producer.actor.id")?;
    let kinds = ["human", "agent", "service", "external_agent", "system"];
    if !actor.get("type").and_then(Value::as_str).is_some_and(|t| kinds.contains(&t)) {
        return Err(EnvelopeError::WrongType { field: "producer.actor.type".into(), what: format!("one of {}", kinds.join(", ")) });
    }
    for (k, v) in env["workRef"].as_object().into_iter().flatten() {
        if !v.is_string() {
            return Err(EnvelopeError::WrongType { field: format!("workRef.{k}"), what: "a string".into() });
        }
    }
    let budget = &env["budget"];
    check(budget.get("modelCostMicros"), Str, "budget.modelCostMicros")?;
    check(budget.get("toolCostMicros"), Str, "budget.toolCostMicros")?;
    check(budget.get("humanMinutes"), Num, "budget.humanMinutes")?;
    if let Some(v) = budget.get("maximumLatencyMs") {
        check(Some(v), Num, "budget.maximumLatencyMs")?;
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Num,
    Obj,
    StrList,
}

fn check(v: Option<&Value>, kind: Kind, field: &str) -> Result<(), EnvelopeError> {
    let (ok, what) = match kind {
        Kind::Str => (v.is_some_and(Value::is_string), "a string"),
        Kind::Num => (v.is_some_and(Value::is_number), "a number"),
        Kind::Obj => (v.is_some_and(Value::is_object), "an object"),
        Kind::StrList => (v.and_then(Value::as_array).is_some_and(|a| a.iter().all(Value::is_string)), "a list of strings"),
    };
    match (v, ok) {
        (_, true) => Ok(()),
        (None, _) => Err(EnvelopeError::Missing(field.to_string())),
        (Some(_), false) => Err(EnvelopeError::WrongType { field: field.to_string(), what: what.to_string() }),
    }
}

#[cfg(test)]
mod tests;
