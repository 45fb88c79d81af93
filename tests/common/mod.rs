//! Helpers shared by the integration tests: where the guest components and the shared
//! transcripts are, and how to start a run's pipeline over them.
#![allow(dead_code)]

pub mod peer;
pub mod push;

use std::path::PathBuf;
use std::time::SystemTime;

use orgx_peer::components::ActiveComponents;
use orgx_peer::protocol::PeerMessage;
use orgx_peer::rules::{Rule, RuleOn};
use orgx_peer::run::pipeline::{RunPipeline, RunSpec};
use orgx_peer::sandbox::{defaults, Limits, LoadedComponent, Sandbox};

/// A guest component: a built-in one from the binary, or a test guest built by
/// `tests/artifacts` (`tests/guests/*`, the author template).
pub fn guest_wasm(crate_name: &str) -> Vec<u8> {
    match crate_name {
        "orgx-mapper-claude-code" => return orgx_peer::driver::claude_code::DRIVER.mapper.wasm.to_vec(),
        "orgx-matcher-skill-rules" => return defaults::SKILL_RULES_MATCHER.to_vec(),
        _ => {}
    }
    let path = orgx_test_artifacts::wasm_path(crate_name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("guest component {} missing ({e}); tests/artifacts builds it", path.display()))
}

/// The tagged test mapper (`tests/guests/tagged`) with its tag patched to `vNNNN` and `mode`
/// (`ok` behaves, `tr` traps on every line, `qb` traps on lines containing `boom`): distinct,
/// validly built versions without rebuilding.
pub fn tagged_guest(version: u32, mode: &str) -> Vec<u8> {
    let mut bytes = guest_wasm("orgx-test-guest-tagged");
    let from = b"ORGX-TAG:v0001:ok.";
    let at = bytes.windows(from.len()).position(|w| w == from).expect("tag in the tagged guest");
    bytes[at..at + from.len()].copy_from_slice(format!("ORGX-TAG:v{version:04}:{mode}.").as_bytes());
    bytes
}

/// The real CLIs' transcripts, copied byte for byte from `shared/transcripts/` into the
/// repository so a clone needs nothing beside it (`fixtures::transcripts_equal_the_recorded_shared_copy`
/// checks the copy against their recorded digests).
pub fn transcripts_dir() -> PathBuf {
    fixtures_dir().join("transcripts")
}

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

pub fn defaults(sandbox: &Sandbox) -> ActiveComponents {
    ActiveComponents::load(sandbox, "claude_code", None, None).expect("built-in components load")
}

/// Start a run over `mapper` and `matcher` with `limits`.
pub fn start_run(
    run_id: &str,
    mapper: &LoadedComponent,
    matcher: &LoadedComponent,
    rules: &[Rule],
    limits: Limits,
) -> (RunPipeline, Vec<PeerMessage>) {
    RunPipeline::start(RunSpec {
        context: orgx_peer::sandbox::convert::run_context(run_id, None, "claude_code"),
        mapper,
        matcher,
        rules,
        prepared: None,
        started_at: SystemTime::now(),
        limits,
    })
}

/// `n` distinct rules of the shapes rule authors write: literal paths, command prefixes,
/// alternations, classes and lookarounds around literals.
pub fn generated_rules(n: usize) -> Vec<Rule> {
    (0..n)
        .map(|i| {
            let (pattern, on) = match i % 5 {
                0 => (format!("^Bash (sudo )?deploy-{i}\\b"), RuleOn::ToolCall),
                1 => (format!("secrets/key-{i}\\.(pem|der)\\n"), RuleOn::FileEdit),
                2 => (format!("(?:curl|wget) .*internal-{i}\\.example"), RuleOn::ToolCall),
                3 => (format!("TODO\\(ticket-{i}\\)(?!:)"), RuleOn::FileEdit),
                _ => (format!("(?<=token=)tok{i}[A-Za-z0-9]{{8}}"), RuleOn::FileEdit),
            };
            Rule {
                skill_id: format!("skill-{}", i / 10),
                pattern,
                on,
                dedupe_fingerprint: format!("fp-{i}"),
                evidence_kind: "generated".into(),
            }
        })
        .collect()
}

/// `rules` as the body of `GET /api/v1/plan-skills` (one skill per skill id, in order).
pub fn plan_skills(rules: &[Rule]) -> serde_json::Value {
    let mut skills: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
    for r in rules {
        let on = match r.on {
            RuleOn::FileEdit => "file_edit",
            RuleOn::ToolCall => "tool_call",
        };
        let rule = serde_json::json!({"pattern": r.pattern, "on": on, "dedupe_fingerprint": r.dedupe_fingerprint, "evidence_kind": r.evidence_kind});
        match skills.last_mut() {
            Some((id, list)) if *id == r.skill_id => list.push(rule),
            _ => skills.push((r.skill_id.clone(), vec![rule])),
        }
    }
    serde_json::json!({"skills": skills.into_iter().map(|(id, rules)| serde_json::json!({"id": id, "rules": rules})).collect::<Vec<_>>()})
}
