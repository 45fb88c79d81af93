//! What an operator types besides `start`: `--version`, shell completions, the man page and
//! `doctor`, through the real binary (doctor against the OrgX stand-in on 127.0.0.1).

mod common;

use std::process::{Command, Output};

use common::peer::KEY;
use orgx_test_support::fake_claude_bin;
use orgx_test_support::fake_orgx::FakeOrgx;
use serde_json::json;

fn peer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orgx-peer")).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn version_names_the_commit_and_the_wit_versions_served() {
    for flag in ["--version", "-V"] {
        let out = peer(&[flag]);
        assert!(out.status.success());
        let text = stdout(&out);
        let want = format!("orgx-peer {} (commit ", env!("CARGO_PKG_VERSION"));
        assert!(text.starts_with(&want), "{text}");
        assert!(text.trim_end().ends_with("; WIT 0.1.0, 0.2.0)"), "{text}");
    }
}

#[test]
fn completions_and_the_man_page_cover_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let bash = peer(&["completions", "bash"]);
    assert!(bash.status.success());
    let script = dir.path().join("orgx-peer.bash");
    std::fs::write(&script, &bash.stdout).unwrap();
    let syntax = Command::new("bash").arg("-n").arg(&script).output().unwrap();
    assert!(syntax.status.success(), "bash -n: {}", String::from_utf8_lossy(&syntax.stderr));
    let zsh = stdout(&peer(&["completions", "zsh"]));
    assert!(zsh.starts_with("#compdef orgx-peer"), "{}", &zsh[..zsh.len().min(80)]);
    let fish = stdout(&peer(&["completions", "fish"]));
    let man = peer(&["man"]);
    assert!(man.status.success());
    let man = stdout(&man);
    assert!(man.lines().any(|l| l.starts_with(".TH orgx-peer 1")), "a section-1 man page");
    for sub in ["start", "detect", "status", "replay", "plugin", "doctor", "completions"] {
        assert!(stdout(&bash).contains(sub) && zsh.contains(sub) && fish.contains(sub), "completions know `{sub}`");
        assert!(man.contains(sub), "the man page lists `{sub}`");
    }
}

/// The doctor's environment: the stand-in server, the scripted claude, no other driver.
fn doctor(server: &FakeOrgx, data: &std::path::Path, extra: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_orgx-peer"));
    cmd.arg("doctor")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", data)
        .env("ORGX_API_KEY", KEY)
        .env("ORGX_WORKSPACE_ID", "ws-test")
        .env("ORGX_BASE_URL", server.base_url())
        .env("ORGX_PEER_DATA_DIR", data)
        .env("ORGX_CLAUDE_BIN", fake_claude_bin())
        .env("ORGX_CODEX_BIN", "/nonexistent/codex")
        .env("ORGX_OPENCODE_BIN", "/nonexistent/opencode");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn line<'a>(report: &'a str, name: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.split_once(' ').is_some_and(|(_, rest)| rest.starts_with(&format!("{name} "))))
        .unwrap_or_else(|| panic!("no `{name}` line in\n{report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_each_thing_and_fails_on_what_a_dispatch_needs() {
    let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
    let data = tempfile::tempdir().unwrap();

    let ok = doctor(&server, data.path(), &[]);
    let report = stdout(&ok);
    assert_eq!(ok.status.code(), Some(0), "{report}");
    assert!(line(&report, "driver claude_code").starts_with("✓") && line(&report, "driver claude_code").contains("2.1.330"), "{report}");
    assert!(line(&report, "driver codex").starts_with("!"), "a missing optional driver is a note, not a failure: {report}");
    assert!(line(&report, "drivers").contains("can run: claude_code"), "{report}");
    for name in ["settings", "data dir", "server", "components"] {
        assert!(line(&report, name).starts_with("✓"), "{name}: {report}");
    }
    assert!(server.calls("/api/v1/licenses").is_empty(), "doctor records no activation");

    let wrong = "oxk_wrong_0000000000";
    let refused = doctor(&server, data.path(), &[("ORGX_API_KEY", wrong)]);
    let report = stdout(&refused);
    assert_eq!(refused.status.code(), Some(1), "{report}");
    assert!(line(&report, "server").starts_with("✗") && line(&report, "server").contains("refused the key"), "{report}");
    assert!(report.contains("fix: check ORGX_API_KEY"), "{report}");
    assert!(!report.contains(wrong) && !String::from_utf8_lossy(&refused.stderr).contains(wrong), "the key is never printed");

    let no_driver = doctor(&server, data.path(), &[("ORGX_CLAUDE_BIN", "/nonexistent/claude")]);
    let report = stdout(&no_driver);
    assert_eq!(no_driver.status.code(), Some(1), "{report}");
    assert!(line(&report, "drivers").starts_with("✗"), "{report}");

    let no_key = doctor(&server, data.path(), &[("ORGX_API_KEY", "")]);
    let report = stdout(&no_key);
    assert_eq!(no_key.status.code(), Some(1), "{report}");
    assert!(line(&report, "settings").contains("ORGX_API_KEY is not set"), "{report}");
}
