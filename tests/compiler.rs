//! The daemon compiles components in a child of its own binary (`sandbox::compiler`): the
//! child's code behaves as the in-process compile's, its refusals read the same, a child that
//! dies or answers nonsense is contained (refused, or compiled here instead), and the child
//! inherits nothing of the daemon's environment.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::transcripts_dir;
use orgx_peer::rules::{Rule, RuleOn};
use orgx_peer::run::replay::{replay, ReplayOptions};
use orgx_peer::sandbox::compiler::CompileError;
use orgx_peer::sandbox::{Compiler, Limits, LoadStage, Sandbox};

fn peer_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_orgx-peer"))
}

fn child_sandbox(exe: PathBuf) -> Sandbox {
    Sandbox::new(Limits::default()).unwrap().with_compiler(Compiler::Subprocess { exe })
}

/// A stand-in "compiler" that runs `body` as a shell script (it gets `compile-component` as $1).
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Every message of a replay of the `edit-tools` transcript through the built-in components as
/// `sandbox` compiles them (all three mappers and the matcher), with rules that fire.
fn messages(sandbox: &Sandbox) -> Vec<String> {
    let components = common::defaults(sandbox);
    // Rules that fire on any edit and any tool call, so the matcher's code is exercised too.
    let rule = |on, fp: &str| Rule {
        skill_id: "any".into(),
        pattern: "[a-z]".into(),
        on,
        dedupe_fingerprint: fp.into(),
        evidence_kind: "test".into(),
    };
    let rules = [rule(RuleOn::FileEdit, "edit"), rule(RuleOn::ToolCall, "tool")];
    let opts = ReplayOptions {
        transcript: transcripts_dir().join("edit-tools.ndjson"),
        driver: "claude_code".into(),
        run_id: "compiler-run".into(),
        cwd: None,
        max_line_bytes: orgx_peer::run::DEFAULT_MAX_LINE_BYTES,
        limits: Limits::default(),
    };
    let mut out = Vec::new();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(replay(&components, &rules, &opts, |m| out.push(m.to_json()))).unwrap();
    // Timestamps differ between two runs; everything else must not.
    out.iter().map(|j| strip_times(j)).collect()
}

fn strip_times(json: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if k.ends_with("_at") || k == "ts" || k == "duration_ms" {
                        *x = serde_json::Value::Null;
                    } else {
                        walk(x);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v.to_string()
}

#[test]
fn code_compiled_in_the_child_maps_a_transcript_exactly_as_code_compiled_in_process() {
    let here = messages(&Sandbox::new(Limits::default()).unwrap());
    let child = messages(&child_sandbox(peer_exe()));
    assert!(here.len() > 3, "the transcript maps to a run: {here:?}");
    assert!(here.iter().any(|m| m.contains("task.deviation")), "the rules fire on it: {here:?}");
    assert_eq!(child, here);
}

enum Want {
    /// Loads (compiled by the child, or here after the child could not be used).
    Loads,
    /// Refused at the compile stage with a message containing each of these.
    Refused(&'static [&'static str]),
}

#[test]
fn every_child_failure_is_refused_or_compiled_here_never_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mapper = orgx_peer::driver::claude_code::DRIVER.mapper.wasm;
    let rows: Vec<(&str, PathBuf, &[u8], Want)> = vec![
        ("the peer's own child, a valid component", peer_exe(), mapper, Want::Loads),
        ("the peer's own child, garbage bytes", peer_exe(), b"not wasm at all", Want::Refused(&["not a valid component", "magic header"])),
        ("the peer's own child, an empty input", peer_exe(), b"", Want::Refused(&["not a valid component"])),
        ("no such executable: compiled here", dir.path().join("missing"), mapper, Want::Loads),
        (
            "a child killed by a signal",
            script(dir.path(), "killed", "kill -9 $$"),
            mapper,
            Want::Refused(&["the compiler process ended with", "signal: 9", "was not loaded"]),
        ),
        (
            "a child that fails without answering",
            script(dir.path(), "fails", "cat >/dev/null; echo 'out of memory' >&2; exit 3"),
            mapper,
            Want::Refused(&["exit status: 3", "out of memory"]),
        ),
        (
            "a child answering bytes that are not code: compiled here",
            script(dir.path(), "nonsense", "cat >/dev/null; echo 'not code'"),
            mapper,
            Want::Loads,
        ),
        ("a child that exits before reading its input", script(dir.path(), "early", "exit 0"), mapper, Want::Loads),
    ];
    for (name, exe, bytes, want) in rows {
        let got = child_sandbox(exe).load("case", bytes);
        match (want, got) {
            (Want::Loads, Ok(c)) => assert_eq!(c.world(), orgx_peer::sandbox::World::Mapper, "{name}"),
            (Want::Refused(words), Err(e)) => {
                assert_eq!(e.stage, LoadStage::Compile, "{name}: {e}");
                for w in words {
                    assert!(e.message.contains(w), "{name}: {w:?} not in {:?}", e.message);
                }
            }
            (Want::Loads, Err(e)) => panic!("{name}: refused: {e}"),
            (Want::Refused(_), Ok(_)) => panic!("{name}: loaded"),
        }
    }
}

#[test]
fn a_refusal_reads_the_same_from_the_child_as_from_this_process() {
    let engine = orgx_peer::sandbox::engine::SandboxEngine::new().unwrap();
    for bytes in [&b"not wasm at all"[..], b"\0asm\x01\0\0\0", b"\0asm\x0d\0\x01\0\x01"] {
        let here = Compiler::InProcess.compile(engine.engine(), bytes).err().unwrap_or_else(|| panic!("must be refused here"));
        let child = Compiler::Subprocess { exe: peer_exe() }
            .compile(engine.engine(), bytes)
            .err()
            .unwrap_or_else(|| panic!("must be refused by the child"));
        match (&here, &child) {
            (CompileError::Invalid(a), CompileError::Invalid(b)) => assert_eq!(a, b),
            _ => panic!("{here} / {child}"),
        }
    }
}

#[test]
fn the_child_inherits_nothing_of_the_daemons_environment() {
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("env");
    // `env` lists what the child was given; `sh` itself adds only PWD, SHLVL and `_`.
    let exe = script(dir.path(), "record", &format!("/usr/bin/env > '{}'; exit 3", seen.display()));
    // This test process has PATH, HOME and the rest; none may reach the child.
    assert!(std::env::var_os("PATH").is_some());
    let err = child_sandbox(exe).load("case", orgx_peer::driver::claude_code::DRIVER.mapper.wasm).err().expect("refused");
    assert!(err.message.contains("exit status: 3"), "{err}");
    let env = std::fs::read_to_string(&seen).unwrap();
    let names: Vec<&str> = env.lines().filter_map(|l| l.split_once('=').map(|(k, _)| k)).collect();
    let unexpected: Vec<&&str> = names.iter().filter(|n| !["PWD", "SHLVL", "_", "OLDPWD"].contains(n)).collect();
    assert!(unexpected.is_empty(), "the child saw {unexpected:?}");
}
