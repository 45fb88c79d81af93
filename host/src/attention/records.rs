//! The attention records a suspension becomes (spec §5.4: one per question), and the answer
//! a resolution carries (§8.4). Pure functions of their inputs, so the wire shapes are
//! tested here, byte-exact, without a server.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::driver::Resumable;
use crate::gateway::frames::Resolution;

/// The most questions one parked call may file (`AskUserQuestion` asks 1–4): each is an HTTP
/// call and a record in OrgX, so a runaway tool input cannot make thousands.
pub const MAX_QUESTIONS: usize = 16;

/// One question of a parked `AskUserQuestion` call.
#[derive(Debug, Clone, PartialEq)]
pub struct Asked {
    pub text: String,
    pub header: Option<String>,
    pub multi: bool,
    /// (label, description)
    pub options: Vec<(String, Option<String>)>,
}

/// The questions of a tool input (`questions[]`); none when the input has no usable question.
pub fn questions(tool_input: &Value) -> Vec<Asked> {
    let Some(list) = tool_input.get("questions").and_then(Value::as_array) else { return Vec::new() };
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    list.iter()
        .filter_map(|q| {
            let options = q.get("options").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            Some(Asked {
                text: text(q, "question").filter(|t| !t.trim().is_empty())?,
                header: text(q, "header").filter(|t| !t.trim().is_empty()),
                multi: q.get("multiSelect").and_then(Value::as_bool).unwrap_or(false),
                options: options.iter().filter_map(|o| Some((text(o, "label")?, text(o, "description")))).collect(),
            })
        })
        .collect()
}

/// `<prefix>:<first 32 hex of sha256("<session>:<tool_use_id>")>`: the bundle's key; each
/// question's record key appends `:<index>`.
pub fn bundle_key(prefix: &str, session: &str, tool_use_id: &str) -> String {
    let digest = Sha256::digest(format!("{session}:{tool_use_id}").as_bytes());
    format!("{prefix}:{}", &hex::encode(digest)[..32])
}

/// What every record of one suspension shares.
pub struct Suspension<'a> {
    pub resumable: &'a Resumable,
    pub run_id: &'a str,
    pub initiative_id: &'a str,
    pub workstream_id: Option<&'a str>,
    pub session: &'a str,
    pub tool_use_id: &'a str,
    pub tool_name: &'a str,
}

/// The body of `POST /api/client/live/attention` for question `index` of `all`.
pub fn record(s: &Suspension<'_>, all: &[Asked], index: usize) -> Value {
    let q = &all[index];
    let n = all.len();
    let bundle = bundle_key(s.resumable.key_prefix, s.session, s.tool_use_id);
    let about = q.header.clone().unwrap_or_default();
    let context = if n > 1 { format!("Question {} of {n}. {about}", index + 1).trim_end().to_string() } else { about };
    let options: Vec<Value> = q
        .options
        .iter()
        .map(|(label, description)| {
            let mut o = json!({"id": label, "label": label});
            if let Some(d) = description {
                o["description"] = json!(d);
            }
            o
        })
        .collect();
    let mode = match (q.multi, q.options.is_empty()) {
        (_, true) => "free_text",
        (true, false) => "multi_select",
        (false, false) => "single_select",
    };
    let mut body = json!({
        "initiative_id": s.initiative_id,
        "run_id": s.run_id,
        "idempotency_key": format!("{bundle}:{index}"),
        "question": q.text,
        "context": context,
        "blocking": true,
        "attention_kind": "question",
        "response_mode": mode,
        "source_client": s.resumable.source_client,
        "source_tool": s.tool_name,
        "source_session_id": s.session,
        "source_event_id": format!("{}:{index}", s.tool_use_id),
        "continuation": {
            "strategy": "resume_session",
            "session_handle": s.session,
            "tool_call_id": s.tool_use_id,
            "capability_version": s.resumable.capability_version,
        },
        "metadata": { s.resumable.key_prefix: { "bundle_key": bundle, "question_index": index, "question_count": n } },
    });
    if !options.is_empty() {
        body["options"] = Value::Array(options);
    }
    if let Some(w) = s.workstream_id {
        body["workstream_id"] = json!(w);
    }
    body
}

/// The answer a resolution carries (§8.4): `answer`, else `option_ids`, else `option_id`,
/// else `note`, else the empty string; arrays joined with `", "` as the hook's `answers` want.
pub fn answer(r: &Resolution) -> String {
    fn joined(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Array(items) => items.iter().map(joined).collect::<Vec<_>>().join(", "),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }
    if let Some(a) = r.answer.as_ref().filter(|a| !a.is_null()) {
        return joined(a);
    }
    if let Some(ids) = r.option_ids.as_ref().filter(|i| !i.is_empty()) {
        return ids.join(", ");
    }
    r.option_id.clone().or_else(|| r.note.clone()).unwrap_or_default()
}

/// The body of a continuation receipt's POST (§5.5): absent optionals left out.
pub fn receipt_body(m: &crate::protocol::ContinuationReceipt, source_client: &str) -> Value {
    let mut b = Map::new();
    b.insert("run_id".into(), json!(m.run_id));
    b.insert("source_client".into(), json!(source_client));
    b.insert("state".into(), json!(m.state.as_str()));
    b.insert("idempotency_key".into(), json!(m.idempotency_key));
    if let Some(s) = &m.session_handle {
        b.insert("session_handle".into(), json!(s));
    }
    if let Some(d) = &m.detail {
        b.insert("detail".into(), json!(d));
    }
    b.insert("occurred_at".into(), json!(m.occurred_at));
    Value::Object(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::frames::ResolutionStatus;

    use crate::driver::claude_code::RESUMABLE as CLAUDE;

    fn input() -> Value {
        let text = include_str!("../../../tests/fixtures/transcripts/attention/2.1.330/ask-defer.hook-stdin.json");
        let calls: Value = serde_json::from_str(text).unwrap();
        calls[0]["tool_input"].clone()
    }

    #[test]
    fn a_real_question_becomes_one_record_with_every_field() {
        let qs = questions(&input());
        assert_eq!(qs.len(), 1);
        let s = Suspension {
            resumable: &CLAUDE,
            run_id: "run-1",
            initiative_id: "init-1",
            workstream_id: None,
            session: "e001cdf9-10b2-4a00-b006-13711e656180",
            tool_use_id: "toolu_attn_ask_0001",
            tool_name: "AskUserQuestion",
        };
        let body = record(&s, &qs, 0);
        let key = bundle_key("claude", s.session, s.tool_use_id);
        let want = json!({
            "initiative_id": "init-1",
            "run_id": "run-1",
            "idempotency_key": format!("{key}:0"),
            "question": "Which greeting style should greeting.txt use?",
            "context": "Greeting",
            "options": [
                {"id": "Formal", "label": "Formal", "description": "Good day to you."},
                {"id": "Casual", "label": "Casual", "description": "Hey there!"}
            ],
            "blocking": true,
            "attention_kind": "question",
            "response_mode": "single_select",
            "source_client": "claude-code",
            "source_tool": "AskUserQuestion",
            "source_session_id": s.session,
            "source_event_id": "toolu_attn_ask_0001:0",
            "continuation": {"strategy": "resume_session", "session_handle": s.session, "tool_call_id": "toolu_attn_ask_0001", "capability_version": "claude-hooks-v1"},
            "metadata": {"claude": {"bundle_key": key, "question_index": 0, "question_count": 1}}
        });
        assert_eq!(body, want);
        // sha256("e001…:toolu_attn_ask_0001"), first 32 hex digits, computed independently.
        let digest = hex::encode(Sha256::digest(b"e001cdf9-10b2-4a00-b006-13711e656180:toolu_attn_ask_0001"));
        assert_eq!(key, format!("claude:{}", &digest[..32]));
        assert_eq!(key.len(), "claude:".len() + 32);
    }

    #[test]
    fn a_bundle_numbers_its_questions_and_modes_follow_the_input() {
        let input = json!({"questions": [
            {"question": "Which files?", "header": "Files", "multiSelect": true, "options": [{"label": "a"}, {"label": "b"}]},
            {"question": "Anything else?"},
            {"question": "  "},
            {"header": "no text"}
        ]});
        let qs = questions(&input);
        assert_eq!(qs.len(), 2, "questions without text are not asked");
        let s = Suspension {
            resumable: &CLAUDE,
            run_id: "r",
            initiative_id: "i",
            workstream_id: Some("w"),
            session: "s",
            tool_use_id: "t",
            tool_name: "AskUserQuestion",
        };
        let (a, b) = (record(&s, &qs, 0), record(&s, &qs, 1));
        assert_eq!((a["context"].as_str(), a["response_mode"].as_str()), (Some("Question 1 of 2. Files"), Some("multi_select")));
        assert_eq!((b["context"].as_str(), b["response_mode"].as_str()), (Some("Question 2 of 2."), Some("free_text")));
        assert!(b.get("options").is_none());
        assert_eq!(a["workstream_id"], "w");
        assert_eq!(a["metadata"]["claude"]["question_count"], 2);
        assert_ne!(a["idempotency_key"], b["idempotency_key"]);
    }

    #[test]
    fn the_answer_comes_from_the_first_field_present() {
        let r = |answer: Option<Value>, ids: Option<Vec<&str>>, id: Option<&str>, note: Option<&str>| Resolution {
            status: ResolutionStatus::Approved,
            answer,
            note: note.map(Into::into),
            option_id: id.map(Into::into),
            option_ids: ids.map(|v| v.into_iter().map(Into::into).collect()),
        };
        let table: &[(Resolution, &str)] = &[
            (r(Some(json!("Formal")), Some(vec!["x"]), Some("y"), Some("n")), "Formal"),
            (r(Some(json!(["a", "b"])), None, None, None), "a, b"),
            (r(Some(json!(7)), None, None, None), "7"),
            (r(Some(Value::Null), Some(vec!["a", "c"]), Some("y"), None), "a, c"),
            (r(None, Some(vec![]), Some("Casual"), Some("n")), "Casual"),
            (r(None, None, None, Some("use your judgement")), "use your judgement"),
            (r(None, None, None, None), ""),
        ];
        for (res, want) in table {
            assert_eq!(answer(res), *want, "{res:?}");
        }
    }
}
