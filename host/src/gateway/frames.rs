//! Server → peer frames of Gateway Protocol v1, parsed strictly enough to act on and
//! leniently enough to survive a newer server: unknown fields are ignored, an unknown
//! `kind` or a frame missing a required field is reported (and skipped by the caller).

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Task {
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub repo_path: Option<String>,
    #[serde(default)]
    pub workspace_id: Option<String>,
    #[serde(default)]
    pub initiative_id: Option<String>,
    #[serde(default)]
    pub workstream_id: Option<String>,
    #[serde(default)]
    pub skill_ids: Option<Vec<String>>,
    pub driver: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Dispatch {
    pub run_id: String,
    pub task: Task,
    pub idempotency_key: String,
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// `2` on a proof-carrying dispatch (spec §7), which carries `execution_envelope`.
    #[serde(default)]
    pub protocol_version: Option<u64>,
    #[serde(default)]
    pub execution_envelope: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Cancel {
    pub run_id: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// v3 (§2.3): the answer to a suspended run's question.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Resolve {
    pub decision_id: String,
    pub run_id: String,
    #[serde(default)]
    pub driver: Option<String>,
    #[serde(default)]
    pub session_handle: Option<String>,
    pub idempotency_key: String,
    pub resolution: Resolution,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Resolution {
    pub status: ResolutionStatus,
    #[serde(default)]
    pub answer: Option<serde_json::Value>,
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub option_id: Option<String>,
    #[serde(default)]
    pub option_ids: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolutionStatus {
    Approved,
    Declined,
    Cancelled,
}

/// Extension (`docs/component-push.md`): a signed component for a slot. The manifest stays
/// raw JSON here so that a bad one is *acknowledged* as rejected at stage `manifest` instead of
/// being skipped as a malformed frame; only `push_id` (needed to answer at all) is required.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ComponentPush {
    pub push_id: String,
    #[serde(default)]
    pub manifest: serde_json::Value,
    #[serde(default)]
    pub signature: Option<String>,
    #[serde(default)]
    pub bytes_base64: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
}

/// The largest server frame the peer reads: room for an inline push of the largest component
/// it accepts (base64 is 4/3 of the bytes, plus the manifest), and never under 64 MiB, so a
/// push over the component limit still arrives and is answered at stage `size`.
pub fn max_frame_bytes(max_component_bytes: u64) -> usize {
    const FLOOR: u64 = 64 << 20;
    let inline = max_component_bytes.div_ceil(3).saturating_mul(4).saturating_add(1 << 20);
    usize::try_from(inline.max(FLOOR)).unwrap_or(usize::MAX)
}

#[derive(Debug, Clone, PartialEq)]
pub enum ServerFrame {
    Dispatch(Box<Dispatch>),
    Cancel(Cancel),
    Resolve(Box<Resolve>),
    ComponentPush(Box<ComponentPush>),
}

/// Why a frame was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame is not a JSON object: {0}")]
    NotJson(String),
    #[error("frame has no string `kind`")]
    NoKind,
    #[error("unknown frame kind `{0}`")]
    UnknownKind(String),
    #[error("`{kind}` frame is malformed: {error}")]
    Malformed { kind: String, error: String },
}

impl ServerFrame {
    /// Parse one text frame. The `kind` is read first, skipping every other field without
    /// building it, and only a known kind is then deserialized, straight from the text: a
    /// frame at the 64 MiB limit of a kind this peer skips costs no copy of itself (building a
    /// `serde_json::Value` first held a second 64 MiB; docs/reliability.md, "A hostile server").
    pub fn parse(text: &str) -> Result<ServerFrame, FrameError> {
        #[derive(Deserialize)]
        struct Head<'a> {
            #[serde(default, borrow)]
            kind: Option<std::borrow::Cow<'a, str>>,
        }
        if !text.trim_start().starts_with('{') {
            let why = match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                Ok(_) => "not an object".to_string(),
                Err(e) => e.to_string(),
            };
            return Err(FrameError::NotJson(why));
        }
        let head: Head = serde_json::from_str(text).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => FrameError::NoKind,
            _ => FrameError::NotJson(e.to_string()),
        })?;
        let kind = head.kind.ok_or(FrameError::NoKind)?;
        let malformed = |e: serde_json::Error| FrameError::Malformed { kind: kind.to_string(), error: e.to_string() };
        match &*kind {
            "task.dispatch" => Ok(ServerFrame::Dispatch(Box::new(serde_json::from_str(text).map_err(malformed)?))),
            "task.cancel" => Ok(ServerFrame::Cancel(serde_json::from_str(text).map_err(malformed)?)),
            "attention.resolve" => {
                let r: Resolve = serde_json::from_str(text).map_err(malformed)?;
                if [&r.decision_id, &r.run_id, &r.idempotency_key].iter().any(|f| f.is_empty()) {
                    let error = "`decision_id`, `run_id` and `idempotency_key` must not be empty".into();
                    return Err(FrameError::Malformed { kind: kind.to_string(), error });
                }
                Ok(ServerFrame::Resolve(Box::new(r)))
            }
            "component.push" => {
                let push: ComponentPush = serde_json::from_str(text).map_err(malformed)?;
                if push.push_id.is_empty() || push.push_id.len() > 128 {
                    return Err(FrameError::Malformed { kind: kind.to_string(), error: "`push_id` must be 1-128 characters".into() });
                }
                Ok(ServerFrame::ComponentPush(Box::new(push)))
            }
            _ => Err(FrameError::UnknownKind(kind.chars().take(64).collect())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dispatch_and_cancel() {
        let d = ServerFrame::parse(
            r#"{"kind":"task.dispatch","run_id":"r1","idempotency_key":"k1","timeout_seconds":60,
            "task":{"title":"Fix","driver":"claude_code","skill_ids":["s1"],"repo_path":"/tmp/x","extra":true},"v":2}"#,
        )
        .unwrap();
        match d {
            ServerFrame::Dispatch(d) => {
                assert_eq!(d.run_id, "r1");
                assert_eq!(d.timeout_seconds, Some(60));
                assert_eq!(d.task.skill_ids.as_deref(), Some(&["s1".to_string()][..]));
            }
            _ => panic!(),
        }
        assert_eq!(
            ServerFrame::parse(r#"{"kind":"task.cancel","run_id":"r1"}"#).unwrap(),
            ServerFrame::Cancel(Cancel { run_id: "r1".into(), reason: None })
        );
    }

    #[test]
    fn parses_attention_resolve() {
        let r = ServerFrame::parse(
            r#"{"kind":"attention.resolve","protocol_version":3,"decision_id":"d1","run_id":"r1","idempotency_key":"k1",
            "resolution":{"status":"approved","option_ids":["a","b"],"note":null,"context":{"x":1}},"new":true}"#,
        )
        .unwrap();
        let ServerFrame::Resolve(r) = r else { panic!("{r:?}") };
        assert_eq!((r.decision_id.as_str(), r.resolution.status), ("d1", ResolutionStatus::Approved));
        assert_eq!(r.resolution.option_ids.as_deref(), Some(&["a".to_string(), "b".to_string()][..]));
        let bad: &[(&str, &str)] = &[
            (r#"{"kind":"attention.resolve","decision_id":"d","run_id":"r","idempotency_key":"k"}"#, "missing field `resolution`"),
            (
                r#"{"kind":"attention.resolve","decision_id":"d","run_id":"r","idempotency_key":"k","resolution":{"status":"maybe"}}"#,
                "unknown variant `maybe`",
            ),
            (
                r#"{"kind":"attention.resolve","decision_id":"","run_id":"r","idempotency_key":"k","resolution":{"status":"cancelled"}}"#,
                "must not be empty",
            ),
        ];
        for (text, want) in bad {
            let err = ServerFrame::parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn escaped_kinds_and_fields_in_any_order_parse() {
        let c = ServerFrame::parse(r#"{"run_id":"r1","pad":"x\"y","kind":"task\u002ecancel"}"#).unwrap();
        assert_eq!(c, ServerFrame::Cancel(Cancel { run_id: "r1".into(), reason: None }));
    }

    #[test]
    fn the_frame_limit_holds_an_inline_push_of_the_largest_component() {
        use base64::Engine as _;
        // (largest component, frame limit): the floor, then base64 of the bytes plus 1 MiB.
        let table: &[(u64, u64)] = &[
            (0, 64 << 20),
            (16 << 20, 64 << 20),
            (40 << 20, 64 << 20),
            (48 << 20, 65 << 20),
            (96 << 20, (128 << 20) + (1 << 20)),
            (u64::MAX, u64::MAX),
        ];
        for &(max, limit) in table {
            assert_eq!(max_frame_bytes(max) as u64, limit, "{max}");
        }
        // The default 16 MiB component, inline, with its manifest, fits with room to spare.
        let b64 = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 16 << 20]);
        assert!(b64.len() + 4096 < max_frame_bytes(16 << 20), "{}", b64.len());
    }

    #[test]
    fn bad_frames_are_named() {
        let table: &[(&str, &str)] = &[
            ("not json", "not a JSON object"),
            ("[1]", "not a JSON object"),
            ("{}", "no string `kind`"),
            (r#"{"kind":7}"#, "no string `kind`"),
            (r#"{"kind":"task.explode"}"#, "unknown frame kind `task.explode`"),
            (r#"{"kind":"task.dispatch","run_id":"r"}"#, "`task.dispatch` frame is malformed"),
            (r#"{"kind":"task.cancel"}"#, "`task.cancel` frame is malformed"),
            (r#"{"kind":"component.push","manifest":{}}"#, "missing field `push_id`"),
            (r#"{"kind":"component.push","push_id":""}"#, "`push_id` must be 1-128"),
            (r#"{"kind":"task.dispatch","run_id":"r","idempotency_key":"k","task":{"title":"t"}}"#, "missing field `driver`"),
            ("", "not a JSON object"),
            ("  7", "not a JSON object"),
            (r#"{"kind":"x""#, "not a JSON object"),
            (r#"{"kind":"x"} trailing"#, "not a JSON object"),
            (r#"{"kind":null}"#, "no string `kind`"),
            (r#"{"kind":["task.cancel"]}"#, "no string `kind`"),
            (r#"{"pad":{"deep":[1,2,{"kind":"task.cancel"}]},"kind":"hostile"}"#, "unknown frame kind `hostile`"),
        ];
        for (text, want) in table {
            let err = ServerFrame::parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
