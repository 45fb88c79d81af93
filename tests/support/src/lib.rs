//! Loopback stand-ins that the integration tests in `tests/` start themselves: a recording
//! OrgX server (`fake_orgx`), scripted model APIs for the real CLIs (`fake_model`:
//! Anthropic Messages for Claude Code; `fake_responses`: OpenAI Responses for Codex;
//! `fake_chat`: OpenAI Chat Completions for opencode), the offline set-up of those CLIs and
//! a loopback-only network namespace (`offline`), a strict reader of the metrics exposition
//! (`openmetrics`), and a scriptable stand-in for the Claude
//! Code CLI (`fake-claude`, for the misbehaviours the real CLI cannot be made to show).
//! Everything binds 127.0.0.1 only.

pub mod fake_chat;
pub mod fake_model;
pub mod fake_orgx;
pub mod fake_responses;
pub mod http;
pub mod offline;
pub mod openmetrics;

use std::path::PathBuf;

/// The `fake-claude` binary, built next to the test executables.
pub fn fake_claude_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target/<profile>/deps");
    let bin = dir.join("fake-claude");
    assert!(
        bin.exists(),
        "{} missing: run the tests with `scripts/test`, or build it first with `cargo build --release -p orgx-test-support --bins`",
        bin.display()
    );
    bin
}
