//! `orgx-peer component keygen | sign | verify | inspect | test`, run as a user runs them.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orgx-peer"))
        .args(args)
        .env_remove("ORGX_TRUSTED_KEYS")
        .env_remove("ORGX_TRUSTED_KEYS_FILE")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn keygen_sign_verify_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("author.key");
    let out = cli(&["component", "keygen", "--out", s(&key)]);
    assert!(out.status.success(), "{}", text(&out));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let again = cli(&["component", "keygen", "--out", s(&key)]);
    assert_eq!(again.status.code(), Some(1), "a secret key is never overwritten: {}", text(&again));
    let public = dir.path().join("author.key.pub");

    let wasm = dir.path().join("guard.wasm");
    std::fs::write(&wasm, common::guest_wasm("orgx-matcher-template")).unwrap();
    let out = cli(&["component", "sign", s(&wasm), "--key", s(&key), "--version", "3"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("slot        matcher"), "{}", text(&out));
    let ok = cli(&["component", "verify", s(&wasm), "--trusted-keys-file", s(&public)]);
    assert!(ok.status.success(), "{}", text(&ok));

    let inspect = cli(&["component", "inspect", s(&wasm)]);
    assert!(inspect.status.success(), "{}", text(&inspect));
    assert!(text(&inspect).contains("for slot matcher as guard v3"), "{}", text(&inspect));
    let json: serde_json::Value = serde_json::from_slice(&cli(&["component", "inspect", "--json", s(&wasm)]).stdout).unwrap();
    assert_eq!(json["signature"]["version"], 3);
    assert_eq!(json["signature"]["digest_matches"], true);

    // A key the verifier does not trust, and bytes changed after signing.
    let stranger = dir.path().join("stranger.key");
    assert!(cli(&["component", "keygen", "--out", s(&stranger)]).status.success());
    let untrusted = cli(&["component", "verify", s(&wasm), "--trusted-keys-file", s(&dir.path().join("stranger.key.pub"))]);
    assert_eq!(untrusted.status.code(), Some(1));
    assert!(text(&untrusted).contains("stage `signature`"), "{}", text(&untrusted));
    let mut bytes = std::fs::read(&wasm).unwrap();
    let n = bytes.len() - 1;
    bytes[n] ^= 1;
    std::fs::write(&wasm, bytes).unwrap();
    let tampered = cli(&["component", "verify", s(&wasm), "--trusted-keys-file", s(&public)]);
    assert_eq!(tampered.status.code(), Some(1));
    assert!(text(&tampered).contains("stage `digest`"), "{}", text(&tampered));
    assert!(text(&cli(&["component", "inspect", s(&wasm)])).contains("DIGEST MISMATCH"));

    // The peer would refuse a component with a socket import: it is not signed at all.
    let sneaky = dir.path().join("sneaky.wasm");
    std::fs::write(&sneaky, common::guest_wasm("orgx-test-guest-sneaky")).unwrap();
    let refused = cli(&["component", "sign", s(&sneaky), "--key", s(&key), "--version", "1"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused).contains("wasi:sockets"), "{}", text(&refused));
    assert!(!sneaky.with_extension("wasm.sig").exists());

    // Nor one whose functions have other types than the WIT's; inspect says why, and where.
    let mistyped = dir.path().join("mistyped.wasm");
    std::fs::write(&mistyped, common::guest_wasm("orgx-test-guest-mistyped")).unwrap();
    let inspected = cli(&["component", "inspect", s(&mistyped)]);
    assert_eq!(inspected.status.code(), Some(1), "{}", text(&inspected));
    assert!(text(&inspected).contains("verdict    REFUSED at stage `link`: `orgx:peer/matcher@0.1.0#begin`"), "{}", text(&inspected));
    let json: serde_json::Value = serde_json::from_slice(&cli(&["component", "inspect", "--json", s(&mistyped)]).stdout).unwrap();
    assert_eq!((&json["loadable"], &json["refused"]["stage"]), (&serde_json::json!(false), &serde_json::json!("link")));
    let refused = cli(&["component", "sign", s(&mistyped), "--key", s(&key), "--version", "1"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("stage `link`"), "{}", text(&refused));
}

#[test]
fn plugin_test_compares_with_expectations() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("claude-code.wasm");
    std::fs::write(&wasm, common::guest_wasm("orgx-mapper-claude-code")).unwrap();
    let transcript = common::transcripts_dir().join("success-tools.ndjson");
    let rules = common::fixtures_dir().join("rules/demo.json");
    let args = ["plugin", "test", s(&wasm), "--transcript", s(&transcript), "--rules", s(&rules)];
    let first = cli(&args);
    assert!(first.status.success(), "{}", text(&first));
    let lines = String::from_utf8(first.stdout.clone()).unwrap();
    assert!(lines.lines().next().unwrap().contains(r#""started_at":"<time>""#), "{lines}");
    assert!(lines.contains(r#""kind":"task.deviation""#), "{lines}");
    assert!(lines.lines().last().unwrap().contains(r#""kind":"task.completed""#), "{lines}");

    // Its own output is the expectation: a second run (other wall-clock times) matches.
    let expect = dir.path().join("expected.ndjson");
    std::fs::write(&expect, &lines).unwrap();
    let mut with_expect = args.to_vec();
    with_expect.extend(["--expect", s(&expect)]);
    let same = cli(&with_expect);
    assert!(same.status.success(), "{}", text(&same));

    // One changed token count: exit 1, naming the message.
    std::fs::write(&expect, lines.replace(r#""tokens_used":"#, r#""tokens_used":1"#)).unwrap();
    let differs = cli(&with_expect);
    assert_eq!(differs.status.code(), Some(1));
    let n = lines.lines().count();
    assert!(text(&differs).contains(&format!("MISMATCH at message {n}")), "{}", text(&differs));
}
