//! The sandbox contains hostile components: each attack ends only the run it was in, with a
//! `task.failed` (recoverable) naming the component and the limit, within the configured
//! bounds; forbidden imports and malformed bytes are refused at load, naming the stage.

mod common;

use std::time::{Duration, Instant};

use common::{defaults, guest_wasm, start_run};
use orgx_peer::protocol::PeerMessage;
use orgx_peer::sandbox::{Limits, LoadStage, Sandbox, World};

/// Tight limits so attacks are cut short quickly; generous enough for normal lines.
fn test_limits() -> Limits {
    Limits {
        max_memory_bytes: 32 << 20,
        call_deadline: Duration::from_millis(200),
        setup_deadline: Duration::from_millis(500),
        max_output_bytes: 1 << 20,
        max_log_bytes: 4 << 10,
        ..Limits::default()
    }
}

/// Slack for scheduling on a shared 2-core machine: a contained attack must end within its
/// deadline plus this.
const SLACK: Duration = Duration::from_millis(1500);

struct Rig {
    hostile: orgx_peer::sandbox::LoadedComponent,
    matcher: orgx_peer::sandbox::LoadedComponent,
}

fn rig() -> Rig {
    let sandbox = Sandbox::new(test_limits()).unwrap();
    let hostile = sandbox.load("hostile", &guest_wasm("orgx-test-guest-hostile")).expect("hostile guest loads");
    assert_eq!(hostile.world(), World::Mapper);
    Rig { hostile, matcher: defaults(&sandbox).matcher.component }
}

/// Feed `attack` after a normal line, then check the run failed as expected and that the
/// same component still serves a fresh run.
fn assert_contained(attack: &str, limit_words: &str, bound: Duration) -> Duration {
    let rig = rig();
    let (mut run, first) = start_run("r-attack", &rig.hostile, &rig.matcher, &[], test_limits());
    assert!(first.is_empty(), "{first:?}");
    let ok = run.on_line(b"hello");
    assert!(matches!(ok.as_slice(), [PeerMessage::Started(_), PeerMessage::Step(_)]), "{ok:?}");

    let t = Instant::now();
    let out = run.on_line(attack.as_bytes());
    let took = t.elapsed();
    assert!(took < bound, "`{attack}` took {took:?}, bound {bound:?}");
    match out.as_slice() {
        [PeerMessage::Failed(f)] => {
            assert!(f.recoverable, "{f:?}");
            assert!(f.reason.contains("hostile@sha256:"), "names the component: {}", f.reason);
            assert!(f.reason.contains(limit_words), "names the limit ({limit_words}): {}", f.reason);
        }
        other => panic!("`{attack}` should end the run with one task.failed, got {other:?}"),
    }
    assert!(run.is_done());
    assert!(run.on_line(b"hello").is_empty(), "a failed run takes no more lines");

    // The faulted instance was discarded; a new run gets a fresh one that works.
    let (mut next, _) = start_run("r-next", &rig.hostile, &rig.matcher, &[], test_limits());
    let out = next.on_line(b"still here");
    assert!(matches!(out.as_slice(), [PeerMessage::Started(_), PeerMessage::Step(_)]), "{out:?}");
    took
}

/// Every attack a mapper can make at run time, one row each, printed as the matrix
/// docs/reliability.md keeps: the attack, the limit that stopped it (words of the reason),
/// how long containment took, and that the same component then served a fresh run.
#[test]
fn every_runtime_attack_is_contained_within_its_bound_and_the_host_serves_on() {
    let l = test_limits();
    let rows: &[(&str, &str, &str, Duration)] = &[
        ("loop", "infinite loop", "time limit (200 ms)", l.call_deadline + SLACK),
        ("bomb", "memory bomb", "memory limit (33554432 bytes", l.call_deadline + SLACK),
        ("trap", "panic (trap)", "trapped in `map-line`: wasm `unreachable` executed (a Rust guest panics this way", SLACK),
        (
            "recurse",
            "unbounded recursion",
            "trapped in `map-line`: stack overflow: the call used more than its 1024 KiB wasm stack limit",
            SLACK,
        ),
        ("huge", "8 MiB output", "output limit (1048576 bytes", l.call_deadline + SLACK),
        ("flood", "100,000 events for one line", "per-call limit of 1000 events: `map-line` returned 100000", l.call_deadline + SLACK),
    ];
    eprintln!("| attack | stopped by | contained in | host then serves a fresh run |");
    eprintln!("|---|---|---:|---|");
    for &(line, attack, words, bound) in rows {
        let took = assert_contained(line, words, bound);
        if line == "loop" {
            assert!(took >= l.call_deadline, "stopped before its deadline: {took:?}");
        }
        eprintln!("| {attack} | {words}… | {:.1} ms | yes |", took.as_secs_f64() * 1e3);
    }
}

#[test]
fn log_flood_is_capped_and_the_run_goes_on() {
    let rig = rig();
    let (mut run, _) = start_run("r-spam", &rig.hostile, &rig.matcher, &[], test_limits());
    let t = Instant::now();
    let out = run.on_line(b"spam");
    assert!(t.elapsed() < test_limits().call_deadline + SLACK);
    assert!(!run.is_done(), "{out:?}");
    let out = run.on_line(b"after");
    assert!(matches!(out.as_slice(), [PeerMessage::Started(_), PeerMessage::Step(_)]), "{out:?}");
}

#[test]
fn a_loop_in_setup_fails_the_run_at_once() {
    let rig = rig();
    let t = Instant::now();
    let (run, out) = start_run("loop-in-begin", &rig.hostile, &rig.matcher, &[], test_limits());
    assert!(t.elapsed() < test_limits().setup_deadline + SLACK);
    assert!(run.is_done());
    match out.as_slice() {
        [PeerMessage::Started(_), PeerMessage::Failed(f)] => {
            assert!(f.recoverable);
            assert!(f.reason.contains("time limit (500 ms) in `begin`"), "{}", f.reason);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_hostile_run_does_not_slow_another_run() {
    let rig = rig();
    let mapper = rig.hostile.clone();
    let matcher = rig.matcher.clone();
    let attacker = std::thread::spawn(move || {
        let (mut run, _) = start_run("r-attacker", &mapper, &matcher, &[], test_limits());
        run.on_line(b"loop")
    });
    let (mut victim, _) = start_run("r-victim", &rig.hostile, &rig.matcher, &[], test_limits());
    let t = Instant::now();
    for i in 0..100 {
        let out = victim.on_line(format!("line {i}").as_bytes());
        assert!(!out.is_empty());
    }
    assert!(t.elapsed() < Duration::from_secs(2), "victim slowed down: {:?}", t.elapsed());
    let attacked = attacker.join().unwrap();
    assert!(
        matches!(attacked.as_slice(), [PeerMessage::Started(_), PeerMessage::Failed(f)] if f.reason.contains("time limit")),
        "{attacked:?}"
    );
}

#[test]
fn a_component_importing_sockets_is_refused_at_load_naming_the_import() {
    let sandbox = Sandbox::new(test_limits()).unwrap();
    let err = sandbox.load("sneaky", &guest_wasm("orgx-test-guest-sneaky")).err().expect("refused");
    assert_eq!(err.stage, LoadStage::Imports);
    let text = err.to_string();
    assert!(text.contains("sneaky@sha256:"), "{text}");
    assert!(text.contains("wasi:sockets/tcp@"), "{text}");
    // inspect still describes it, for the auditor.
    let inspection = sandbox.inspect("sneaky", &guest_wasm("orgx-test-guest-sneaky")).unwrap();
    assert_eq!(inspection.refusal.map(|e| e.stage), Some(LoadStage::Imports));
    let info = inspection.info;
    assert!(info.refused_imports.iter().all(|r| r.import.starts_with("wasi:sockets/")));
    assert!(!info.refused_imports.is_empty());
}

#[test]
fn a_component_with_the_right_names_and_other_types_is_refused_at_link() {
    let sandbox = Sandbox::new(test_limits()).unwrap();
    let err = sandbox.load("mistyped", &guest_wasm("orgx-test-guest-mistyped")).err().expect("refused");
    assert_eq!(err.stage, LoadStage::Link, "{err}");
    let text = err.to_string();
    assert!(text.contains("mistyped@sha256:"), "{text}");
    assert!(text.contains("`orgx:peer/matcher@0.1.0#begin` does not have the type the WIT gives it"), "{text}");
}

#[test]
fn malformed_bytes_are_refused_at_compile() {
    let sandbox = Sandbox::new(test_limits()).unwrap();
    let core_module = b"\0asm\x01\0\0\0";
    for (name, bytes) in [("empty", &b""[..]), ("garbage", b"not wasm at all"), ("core-module", core_module)] {
        let err = sandbox.load(name, bytes).err().unwrap_or_else(|| panic!("{name} must be refused"));
        assert_eq!(err.stage, LoadStage::Compile, "{name}: {err}");
    }
}

#[test]
fn a_component_of_the_wrong_world_is_refused_where_the_other_is_needed() {
    let sandbox = Sandbox::new(test_limits()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostile.wasm");
    std::fs::write(&path, guest_wasm("orgx-test-guest-hostile")).unwrap();
    let err = orgx_peer::components::ActiveComponents::load(&sandbox, "claude_code", None, Some(&path)).err().expect("refused");
    assert!(err.to_string().contains("but slot `matcher` needs a `orgx:peer/matcher-component`"), "{err}");
}

/// Feed `lines` to a run of `mapper` + `matcher` under `limits` until it fails; the index of
/// the line that ended it, and the `task.failed` reason.
fn first_failure(mapper: &str, matcher: &str, limits: Limits, lines: &[&str]) -> Option<(usize, String)> {
    let sandbox = Sandbox::new(limits).unwrap();
    let load = |name: &str| match name {
        "skill-rules" => defaults(&sandbox).matcher.component,
        other => sandbox.load(other, &guest_wasm(&format!("orgx-test-guest-{other}"))).unwrap(),
    };
    let (mapper, matcher) = (load(mapper), load(matcher));
    let (mut run, _) = start_run("r-budget", &mapper, &matcher, &[], limits);
    for (i, line) in lines.iter().enumerate() {
        let out = run.on_line(line.as_bytes());
        if let Some(PeerMessage::Failed(f)) = out.last() {
            assert!(f.recoverable, "{f:?}");
            assert!(run.is_done());
            return Some((i, f.reason.clone()));
        }
    }
    None
}

#[test]
fn a_run_that_floods_a_little_on_every_line_ends_at_its_budget() {
    use orgx_peer::sandbox::limits::Rate;
    let unlimited = Limits { max_run_messages: u64::MAX, max_run_bytes: u64::MAX, max_run_rate: None, ..test_limits() };
    // "many" returns 999 one-byte steps, just under the per-call limit; "hello" one step.
    let many = ["hello", "many", "many", "many", "many", "many", "many", "many"];
    // (limits, the line that must end the run, words of its reason)
    let cases = [
        (Limits { max_run_messages: 5_000, ..unlimited }, Some(6), "the run's message limit (5000 messages) in `map-line`"),
        (Limits { max_run_bytes: 5_000, ..unlimited }, Some(6), "the run's byte limit (5000 bytes of text) in `map-line`"),
        (
            Limits { max_run_rate: Some(Rate { per_second: 1, burst: 3_000 }), ..unlimited },
            Some(4),
            "the run's rate limit (1 messages/s, bursts of 3000)",
        ),
        // The production defaults let this much through.
        (Limits { max_run_messages: 200_000, ..test_limits() }, None, ""),
    ];
    for (limits, line, words) in cases {
        let got = first_failure("hostile", "skill-rules", limits, &many);
        assert_eq!(got.as_ref().map(|g| g.0), line, "{words}: {got:?}");
        if let Some((_, reason)) = got {
            assert!(reason.contains("hostile@sha256:") && reason.contains(words), "{words}: {reason}");
        }
    }
}

#[test]
fn a_matcher_flood_is_refused_per_call_and_per_run_naming_the_matcher() {
    let one_call = first_failure("hostile", "flooder", test_limits(), &["subject:flood:3", "subject:flood:20000"]);
    let (line, reason) = one_call.expect("the flood ends the run");
    assert_eq!(line, 1, "{reason}");
    assert!(reason.contains("flooder@sha256:") && reason.contains("per-call limit of 1000 deviations: `check` returned 20000"), "{reason}");

    let limits = Limits { max_run_messages: 3_500, ..test_limits() };
    let lines = ["subject:flood:999"; 4];
    let (line, reason) = first_failure("hostile", "flooder", limits, &lines).expect("the run's budget ends it");
    // Each line is one step (mapper), then 999 deviations (matcher): three lines are 3,000
    // messages; the fourth line's step fits, its deviations do not.
    assert_eq!(line, 3, "{reason}");
    assert!(reason.contains("flooder@sha256:") && reason.contains("the run's message limit (3500 messages) in `check`"), "{reason}");
}

/// The attack as it was found: a million one-byte events for one line, under the production
/// limits (where they fit in the guest's memory). Refused before any becomes a message.
#[test]
fn a_million_events_under_production_limits_end_the_run_before_any_is_sent() {
    let sandbox = Sandbox::new(Limits::default()).unwrap();
    let hostile = sandbox.load("hostile", &guest_wasm("orgx-test-guest-hostile")).unwrap();
    let matcher = defaults(&sandbox).matcher.component;
    let (mut run, _) = start_run("r-flood", &hostile, &matcher, &[], Limits::default());
    let t = Instant::now();
    let out = run.on_line(b"flood-1m");
    let took = t.elapsed();
    match out.as_slice() {
        [PeerMessage::Started(_), PeerMessage::Failed(f)] => {
            assert!(f.recoverable);
            assert!(f.reason.contains("per-call limit of 1000 events: `map-line` returned 1000000"), "{}", f.reason);
        }
        other => panic!("expected task.started + task.failed only, got {} messages", other.len()),
    }
    eprintln!("1,000,000 events for one line: refused in {:.1} ms, 2 messages sent", took.as_secs_f64() * 1e3);
}
