//! Prepared matchers (WIT 0.3.0): a rules version compiled once, and each run started from a
//! snapshot of the instance that compiled it (`sandbox::snapshot`, `components::prepared`).
//! What must hold: a run from the snapshot matches exactly like a run that prepares its own
//! rules; no run sees another's state; a matcher that misbehaves while preparing costs only
//! the snapshot (runs then prepare their rules themselves); and a 0.2.0 matcher still serves.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{defaults, generated_rules, guest_wasm};
use orgx_peer::components::prepared::{PreparedRules, RulesStart};
use orgx_peer::protocol::PeerMessage;
use orgx_peer::rules::{Rule, RuleOn};
use orgx_peer::run::pipeline::{RunPipeline, RunSpec};
use orgx_peer::sandbox::snapshot::{PrepareError, MAX_SNAPSHOT_MEMORY};
use orgx_peer::sandbox::{matcher_types as m, types as t, FaultKind, Limits, LoadedComponent, MatcherInstance, Sandbox, WitVersion};

/// The generated WIT records have no `PartialEq`: they compare by their `Debug` text.
fn debug<T: std::fmt::Debug + ?Sized>(value: &T) -> String {
    format!("{value:?}")
}

fn wit(rules: &[Rule]) -> Vec<m::Rule> {
    rules.iter().map(Into::into).collect()
}

fn rule(skill: &str, pattern: &str, on: RuleOn) -> Rule {
    Rule { skill_id: skill.into(), pattern: pattern.into(), on, dedupe_fingerprint: format!("fp-{skill}"), evidence_kind: "k".into() }
}

fn subject(on: t::RuleOn, text: &str) -> t::MatchSubject {
    t::MatchSubject { on, text: text.into() }
}

/// Subjects that fire some of `generated_rules` (and one that fires none), each twice: the
/// second time, dedupe must keep it quiet.
fn subjects() -> Vec<t::MatchSubject> {
    let once = [
        subject(t::RuleOn::ToolCall, "Bash sudo deploy-0 --now"),
        subject(t::RuleOn::FileEdit, "secrets/key-11.pem\nBEGIN"),
        subject(t::RuleOn::ToolCall, "Bash curl -s https://internal-22.example/x"),
        subject(t::RuleOn::FileEdit, "src/a.rs\n// TODO(ticket-33) later"),
        subject(t::RuleOn::FileEdit, "cfg.env\ntoken=tok44abcdEFGH"),
        subject(t::RuleOn::ToolCall, "Read README.md"),
    ];
    once.iter().chain(once.iter()).cloned().collect()
}

/// Every deviation `instance` returns over `subjects`, in order.
fn deviations(instance: &mut MatcherInstance, subjects: &[t::MatchSubject]) -> Vec<m::Deviation> {
    subjects.iter().enumerate().flat_map(|(i, s)| instance.check(s, &format!("e{i}")).unwrap()).collect()
}

fn from_snapshot(prepared: &LoadedComponent, run_id: &str) -> MatcherInstance {
    let mut instance = MatcherInstance::new(prepared, Limits::default()).unwrap();
    instance.begin_prepared(run_id).unwrap();
    instance
}

#[test]
fn a_run_from_the_snapshot_matches_exactly_like_a_run_that_prepares_its_rules() {
    let sandbox = Sandbox::new(Limits::default()).unwrap();
    let matcher = defaults(&sandbox).matcher.component;
    assert_eq!(matcher.wit_version(), WitVersion::V0_3_0);
    let mut rules = generated_rules(1_000);
    // Two rules the matcher refuses: the warnings come from `prepare`, once.
    rules.push(rule("bad-syntax", "(", RuleOn::ToolCall));
    rules.push(rule("bad-count", &format!("x{{{}}}", "7".repeat(40)), RuleOn::ToolCall));
    let prepared = sandbox.prepare_matcher(&matcher, matcher.source().expect("a 0.3.0 matcher keeps its bytes"), &wit(&rules)).unwrap();
    let subjects = subjects();
    for run in ["run-a", "run-b", "run-c"] {
        let mut own = MatcherInstance::new(&matcher, Limits::default()).unwrap();
        let own_warnings = own.begin(run, &wit(&rules)).unwrap();
        let want = deviations(&mut own, &subjects);
        let got = deviations(&mut from_snapshot(&prepared.component, run), &subjects);
        assert_eq!(debug(&got), debug(&want), "run {run}");
        assert_eq!(debug(&prepared.warnings), debug(&own_warnings));
        // Six rules fire (`tok4` + 8 also matches `tok44abcdEFGH`), once each, with this
        // run's id in their keys.
        let keys: Vec<&str> = got.iter().map(|d| d.dedupe_key.as_str()).collect();
        let want = ["skill-0:fp-0", "skill-1:fp-11", "skill-2:fp-22", "skill-3:fp-33", "skill-0:fp-4", "skill-4:fp-44"];
        assert_eq!(keys, want.map(|k| format!("{k}:{run}")));
    }
    assert_eq!(prepared.warnings.iter().map(|w| w.index).collect::<Vec<_>>(), [1_000, 1_001]);
    // The snapshot is the original component to logs, faults and quarantine.
    assert_eq!(prepared.component.info.sha256, matcher.info.sha256);
    assert!(prepared.prepare_time > Duration::ZERO && prepared.total_time >= prepared.prepare_time);
}

/// The preparer guest's dedupe keys end with its instance's check count, which `begin` does
/// not reset: a count of 1 on each run's first check means each run began from the
/// snapshot, never from another run's instance.
#[test]
fn every_run_starts_from_the_state_prepare_left_not_from_another_run() {
    let sandbox = Sandbox::new(Limits::default()).unwrap();
    let preparer = sandbox
        .load("preparer", &guest_wasm("orgx-test-guest-preparer"))
        .unwrap()
        .with_source(|| orgx_peer::sandbox::component::Source::Shared(guest_wasm("orgx-test-guest-preparer").into()));
    let rules = [rule("deploy", "deploy", RuleOn::ToolCall), rule("hold:3", "", RuleOn::ToolCall)];
    let prepared = sandbox.prepare_matcher(&preparer, preparer.source().unwrap(), &wit(&rules)).unwrap();
    let s = subject(t::RuleOn::ToolCall, "Bash deploy");
    for run in ["one", "two", "three"] {
        let mut instance = from_snapshot(&prepared.component, run);
        let keys: Vec<String> = (0..3).flat_map(|_| instance.check(&s, "e").unwrap()).map(|d| d.dedupe_key).collect();
        assert_eq!(keys, [1, 2, 3].map(|n| format!("deploy:{run}:{n}")));
        // The 3 MiB `prepare` held is in every run's memory, not rebuilt.
        assert_eq!(instance.check(&s, "e").unwrap()[0].evidence_kind, "held:3");
    }
}

/// A guest that printed in `prepare` keeps the stdout stream its standard library opened, and
/// a snapshot cannot carry it (a run from one would trap: "unknown handle index"). The host
/// sees the open resource and makes no snapshot; the runs compile their rules themselves
/// and print as they like.
#[test]
fn a_guest_that_keeps_a_stream_open_after_prepare_gets_no_snapshot_and_its_runs_still_print() {
    let sandbox = Sandbox::new(Limits::default()).unwrap();
    let bytes = guest_wasm("orgx-test-guest-preparer");
    let preparer =
        sandbox.load("preparer", &bytes).unwrap().with_source(|| orgx_peer::sandbox::component::Source::Shared(bytes.clone().into()));
    let rules = [rule("print", "", RuleOn::ToolCall), rule("say", "say", RuleOn::ToolCall)];
    let err = sandbox.prepare_matcher(&preparer, preparer.source().unwrap(), &wit(&rules)).err().expect("no snapshot");
    assert!(matches!(err, PrepareError::Snapshot { .. }) && err.to_string().contains("left WASI resources open"), "{err}");
    let mut own = MatcherInstance::new(&preparer, Limits::default()).unwrap();
    own.begin("r", &wit(&rules)).unwrap();
    let d = own.check(&subject(t::RuleOn::ToolCall, "say:hello"), "e").unwrap();
    assert_eq!(d.iter().map(|d| d.skill_id.as_str()).collect::<Vec<_>>(), ["say"]);
}

/// A matcher that misbehaves in `prepare` gets no snapshot, and says why; the host is fine.
#[test]
fn a_matcher_that_misbehaves_while_preparing_gets_no_snapshot_and_says_why() {
    let limits = Limits { setup_deadline: Duration::from_millis(300), ..Limits::default() };
    let sandbox = Sandbox::new(limits).unwrap();
    let bytes = guest_wasm("orgx-test-guest-preparer");
    let preparer =
        sandbox.load("preparer", &bytes).unwrap().with_source(|| orgx_peer::sandbox::component::Source::Shared(bytes.clone().into()));
    let wasm = preparer.source().unwrap();

    let err = sandbox.prepare_matcher(&preparer, wasm, &wit(&[rule("loop", "", RuleOn::ToolCall)])).err().expect("a loop in prepare");
    let PrepareError::Fault(fault) = &err else { panic!("{err}") };
    assert_eq!((fault.call, &fault.kind), ("prepare", &FaultKind::Deadline(Duration::from_millis(300))), "{err}");
    assert!(err.to_string().contains("preparer@sha256:"), "{err}");

    let big = format!("hold:{}", (MAX_SNAPSHOT_MEMORY >> 20) + 16);
    let err = sandbox.prepare_matcher(&preparer, wasm, &wit(&[rule(&big, "", RuleOn::ToolCall)])).err().expect("too much memory");
    assert!(matches!(err, PrepareError::Snapshot { .. }), "{err}");
    assert!(err.to_string().contains("a snapshot may hold"), "{err}");

    // Bytes that are not the component's: wizer refuses them before anything runs.
    let err = sandbox.prepare_matcher(&preparer, b"\0asm not a component", &[]).err().expect("garbage");
    assert!(matches!(err, PrepareError::Instrument { .. }), "{err}");

    // The same sandbox prepares a well-behaved rules version afterwards.
    assert!(sandbox.prepare_matcher(&preparer, wasm, &wit(&[rule("deploy", "deploy", RuleOn::ToolCall)])).is_ok());
}

/// `PreparedRules` serves the snapshot of the newest (matcher, rules) pair: rules equal in
/// content are the same version (the server sends them again on every connect), other
/// rules or another matcher are not.
#[test]
fn the_prepared_rules_serve_only_their_own_matcher_and_rules_version() {
    let sandbox = Sandbox::new(Limits::default()).unwrap();
    let matcher = defaults(&sandbox).matcher.component;
    let cache = PreparedRules::default();
    // 1,000 rules take the built-in matcher about 20 ms to compile: worth a snapshot.
    let v1 = Arc::new(generated_rules(1_000));
    assert!(cache.get(&matcher, &v1).is_none());
    assert_eq!(cache.start_of(&matcher, &v1), RulesStart::Pending);
    assert!(cache.refresh(&sandbox, &matcher, &v1));
    assert!(cache.get(&matcher, &v1).is_some());
    assert_eq!(cache.start_of(&matcher, &v1), RulesStart::Snapshot);
    assert!(cache.get(&matcher, &Arc::new(generated_rules(1_000))).is_some(), "equal content, another Arc");
    let v2 = Arc::new(generated_rules(1_001));
    assert!(cache.get(&matcher, &v2).is_none());
    assert!(cache.refresh(&sandbox, &matcher, &v2));
    assert!(cache.get(&matcher, &v1).is_none(), "only the newest pair is kept");
    // Rules that compile in under 2 ms are not worth a snapshot's memory, nor are no rules.
    for cheap in [Arc::new(generated_rules(5)), Arc::new(Vec::new())] {
        assert!(!cache.refresh(&sandbox, &matcher, &cheap));
        assert_eq!(cache.start_of(&matcher, &cheap), RulesStart::PerRun);
    }
    // Another matcher (0.2.0: it compiles its rules per run) is never served another's
    // snapshot, and gets none of its own.
    let legacy = sandbox.load("legacy", &guest_wasm("orgx-test-guest-legacy")).unwrap();
    assert!(cache.get(&legacy, &v2).is_none());
    assert!(!cache.refresh(&sandbox, &legacy, &v2));
    assert!(cache.get(&legacy, &v2).is_none());
}

/// A matcher built against 0.2.0 keeps working beside 0.3.0: its rules and deviations go
/// through the host's 0.2.0 conversions, per run.
#[test]
fn a_0_2_0_matcher_still_compiles_its_rules_per_run_and_serves() {
    let sandbox = Sandbox::new(Limits::default()).unwrap();
    let legacy = sandbox.load("legacy", &guest_wasm("orgx-test-guest-legacy")).unwrap();
    assert_eq!((legacy.wit_version(), legacy.prepares(), legacy.source().is_some()), (WitVersion::V0_2_0, false, false));
    let rules = [rule("deploy", "deploy", RuleOn::ToolCall), rule("empty", "", RuleOn::ToolCall), rule("env", ".env", RuleOn::FileEdit)];
    let mut instance = MatcherInstance::new(&legacy, Limits::default()).unwrap();
    let warnings = instance.begin("r1", &wit(&rules)).unwrap();
    assert_eq!(debug(&warnings), debug(&[m::RuleWarning { index: 1, message: "empty pattern".into() }]));
    let d = instance.check(&subject(t::RuleOn::ToolCall, "Bash deploy"), "e1").unwrap();
    assert_eq!(
        debug(&d),
        debug(&[m::Deviation {
            skill_id: "deploy".into(),
            evidence_kind: "k".into(),
            evidence_ref: "e1".into(),
            dedupe_key: "deploy:fp-deploy:r1".into(),
            severity: Some(t::Severity::Error),
        }])
    );
    assert!(instance.check(&subject(t::RuleOn::ToolCall, "Bash deploy"), "e2").unwrap().is_empty());
    assert!(instance.check(&subject(t::RuleOn::ToolCall, "x/.env"), "e3").unwrap().is_empty(), "wrong `on`");
    let err = sandbox.prepare_matcher(&legacy, &guest_wasm("orgx-test-guest-legacy"), &[]).err().unwrap();
    assert!(matches!(err, PrepareError::NotPreparable(_)), "{err}");
}

/// The pipeline: a run given the prepared snapshot sends the same messages as one that is
/// not, deviations included.
#[test]
fn a_run_started_from_the_snapshot_sends_what_a_run_without_it_sends() {
    let sandbox = Sandbox::new(Limits::default()).unwrap();
    let c = defaults(&sandbox);
    let (mapper, matcher) = (&c.mapper("claude_code").component, &c.matcher.component);
    let rules = vec![rule("shell", "^Bash ", RuleOn::ToolCall), rule("edits", "\\.py\\n", RuleOn::FileEdit)];
    let prepared = sandbox.prepare_matcher(matcher, matcher.source().unwrap(), &wit(&rules)).unwrap();
    let lines = std::fs::read(common::transcripts_dir().join("success-tools.ndjson")).unwrap();
    let run = |prepared| {
        let (mut run, mut out) = RunPipeline::start(RunSpec {
            context: orgx_peer::sandbox::convert::run_context("r-snap", None, "claude_code"),
            mapper,
            matcher,
            rules: &rules,
            prepared,
            started_at: std::time::SystemTime::UNIX_EPOCH,
            limits: Limits::default(),
        });
        for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            out.extend(run.on_line(line));
        }
        out.into_iter().map(|m| strip_times(&m)).collect::<Vec<_>>()
    };
    let (with, without) = (run(Some(&prepared)), run(None));
    assert_eq!(with, without);
    let deviations: Vec<&serde_json::Value> = with.iter().filter(|m| m["kind"] == "task.deviation").collect();
    assert!(!deviations.is_empty(), "the transcript fires the shell rule: {with:#?}");
    assert!(deviations.iter().all(|d| d["dedupe_key"].as_str().unwrap().ends_with(":r-snap")), "{deviations:#?}");
}

/// A message as JSON, less the wall-clock fields two runs cannot share.
fn strip_times(m: &PeerMessage) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
    if let Some(o) = v.as_object_mut() {
        for k in ["ts", "started_at", "first_response_at", "completed_at", "ended_at"] {
            o.remove(k);
        }
    }
    v
}
