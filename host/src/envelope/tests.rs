use serde_json::{json, Value};

use super::digest::{canonical, contract_digest};
use super::*;

fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/envelope").join(name);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

#[test]
fn the_digest_matches_what_javascript_computes() {
    let (cases, vectors) = (fixture("cases.json"), fixture("vectors.json"));
    let cases = cases.as_array().unwrap();
    assert_eq!(cases.len(), vectors.as_array().unwrap().len());
    for (case, vector) in cases.iter().zip(vectors.as_array().unwrap()) {
        let name = case["name"].as_str().unwrap();
        assert_eq!(vector["name"], name);
        let mut top = case["value"].clone();
        for k in ["digest", "receiptDigest", "merkleRoot", "signature"] {
            top.as_object_mut().unwrap().remove(k);
        }
        assert_eq!(canonical(&top).unwrap(), vector["canonical"].as_str().unwrap(), "{name}: canonical text");
        assert_eq!(contract_digest(&case["value"]).unwrap(), vector["digest"].as_str().unwrap(), "{name}: digest");
    }
}

/// The fixture envelope with its real digest: valid for run `run-v2`, key `key-v2`, `ws-test`.
fn valid() -> Value {
    let mut env = fixture("cases.json")[0]["value"].clone();
    env["digest"] = json!(contract_digest(&env).unwrap());
    env
}

fn dispatched() -> Dispatched<'static> {
    Dispatched { run_id: "run-v2", idempotency_key: "key-v2", workspace_id: "ws-test", initiative_id: Some("init-1"), workstream_id: None }
}

/// Change `env`, then put its digest right (so each case fails its own rule, not the digest).
fn with(change: impl Fn(&mut Value)) -> Value {
    let mut env = valid();
    change(&mut env);
    if env.get("digest").and_then(Value::as_str).is_some_and(|d| d.len() == 71) {
        env["digest"] = json!(contract_digest(&env).unwrap());
    }
    env
}

#[test]
fn a_valid_envelope_is_refused_for_want_of_evidence() {
    assert_eq!(validate(Some(&valid()), &dispatched()), Ok(()));
    assert_eq!(
        refusal(Some(&valid()), &dispatched(), "claude_code"),
        "protocol v2 finalization is not supported by the claude_code driver: a CLI run yields no verification evidence"
    );
}

#[test]
fn every_rule_of_7_2_fails_with_its_message() {
    let d = "sha256:".to_string() + &"a".repeat(64);
    type Case = (&'static str, Value, &'static str);
    let table: Vec<Case> = vec![
        ("no envelope", Value::Null, "execution envelope is missing or not an object"),
        ("field missing", with(|e| drop(e.as_object_mut().unwrap().remove("nodeId"))), "execution envelope is missing `nodeId`"),
        ("wrong type", with(|e| e["budget"]["humanMinutes"] = json!("1.5")), "field `budget.humanMinutes` must be a number"),
        ("bad actor", with(|e| e["producer"]["actor"]["type"] = json!("robot")), "`producer.actor.type` must be one of"),
        ("schema", with(|e| e["schemaVersion"] = json!("2.0.0")), "execution envelope schema version unsupported"),
        ("workspace", with(|e| e["workRef"]["workspaceId"] = json!("")), "execution envelope requires a workspace reference"),
        (
            "lineage",
            with(|e| e["workRef"] = json!({"workspaceId": "ws-test"})),
            "execution envelope requires goal, objective, or initiative lineage",
        ),
        (
            "nested",
            with(|e| e["workRef"] = json!({"workspaceId": "ws-test", "goalId": "g", "taskId": "t"})),
            "nested work requires initiative lineage",
        ),
        ("digest pattern", with(|e| e["contextManifestDigest"] = json!("sha256:ABC")), "execution envelope contains an invalid digest"),
        (
            "list digest",
            with(|e| e["toolManifestDigests"] = json!(["sha256:".to_string() + &"F".repeat(64)])),
            "execution envelope contains an invalid digest",
        ),
        ("skill dupes", with(|e| e["skillVersionDigests"] = json!([d, d])), "execution envelope skill digests must be unique"),
        ("tool dupes", with(|e| e["toolManifestDigests"] = json!([d, d])), "execution envelope tool digests must be unique"),
        ("run id", with(|e| e["runId"] = json!("other")), "dispatch identity does not match execution envelope"),
        ("idempotency", with(|e| e["idempotencyKey"] = json!("other")), "dispatch identity does not match execution envelope"),
        (
            "other workspace",
            with(|e| e["workRef"]["workspaceId"] = json!("ws-other")),
            "execution envelope lineage does not match the task",
        ),
        (
            "other initiative",
            with(|e| e["workRef"]["initiativeId"] = json!("init-9")),
            "execution envelope lineage does not match the task",
        ),
        (
            "tampered",
            {
                let mut e = valid();
                e["nodeId"] = json!("node-2");
                e
            },
            "execution envelope digest does not match its contents",
        ),
    ];
    for (name, env, want) in table {
        let got = validate(Some(&env).filter(|e| !e.is_null()), &dispatched()).unwrap_err().to_string();
        assert!(got.contains(want), "{name}: {got}");
        assert_eq!(refusal(Some(&env).filter(|e| !e.is_null()), &dispatched(), "codex"), got, "{name}: the refusal is the reason");
    }
}
