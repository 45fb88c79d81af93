//! The sandbox contains hostile components: each attack ends only the run it was in, with a
//! `task.failed` (recoverable) naming the component and the limit, within the configured
//! bounds; forbidden imports and malformed bytes are refused at load, naming the stage.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{defaults, guest_wasm, start_run};
use orgx_peer::components::registry::Registry;
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

/// One row of the matrix docs/reliability.md keeps.
struct Row {
    attack: &'static str,
    stopped_by: String,
    took: Duration,
    serving: &'static str,
}

/// Every attack a hostile component can make, at run time and at admission, printed as the
/// matrix docs/reliability.md keeps: the attack, the limit or stage that stopped it (words of
/// the reason), how long containment took, and that the host then served on (a fresh run of
/// the same component, or the slot's active component unchanged and mapping a line).
#[test]
fn every_hostile_component_is_contained_and_the_host_serves_on() {
    let l = test_limits();
    let mut rows = Vec::new();
    let runtime: &[(&str, &str, &str, Duration)] = &[
        ("loop", "infinite loop", "time limit (200 ms)", l.call_deadline + SLACK),
        ("bomb", "memory bomb", "memory limit (33554432 bytes", l.call_deadline + SLACK),
        ("trap", "panic (trap)", "trapped in `map-line`: wasm `unreachable` executed (a Rust guest panics this way", SLACK),
        (
            "recurse",
            "stack overflow (unbounded recursion)",
            "trapped in `map-line`: stack overflow: the call used more than its 1024 KiB wasm stack limit",
            SLACK,
        ),
        ("huge", "8 MiB output", "output limit (1048576 bytes", l.call_deadline + SLACK),
        ("flood", "100,000-event list for one line", "per-call limit of 1000 events: `map-line` returned 100000", l.call_deadline + SLACK),
    ];
    for &(line, attack, words, bound) in runtime {
        let took = assert_contained(line, words, bound);
        if line == "loop" {
            assert!(took >= l.call_deadline, "stopped before its deadline: {took:?}");
        }
        rows.push(Row { attack, stopped_by: format!("{words}…"), took, serving: "yes: a fresh run of it maps lines" });
    }
    rows.push(log_flood_row());
    rows.push(setup_loop_row());
    rows.push(just_under_the_memory_limit_row());
    rows.extend(tokio::runtime::Runtime::new().unwrap().block_on(admission_rows()));

    eprintln!("| attack | stopped by | contained in | host then serves |");
    eprintln!("|---|---|---:|---|");
    for r in &rows {
        eprintln!("| {} | {} | {:.1} ms | {} |", r.attack, r.stopped_by, r.took.as_secs_f64() * 1e3, r.serving);
    }
}

/// 5,000 stderr lines from one call: capped at the guest-log limit, the run goes on.
fn log_flood_row() -> Row {
    let rig = rig();
    let (mut run, _) = start_run("r-spam", &rig.hostile, &rig.matcher, &[], test_limits());
    let t = Instant::now();
    let out = run.on_line(b"spam");
    let took = t.elapsed();
    assert!(!run.is_done(), "{out:?}");
    let out = run.on_line(b"after");
    assert!(matches!(out.as_slice(), [PeerMessage::Started(_), PeerMessage::Step(_)]), "{out:?}");
    Row {
        attack: "log flood (5,000 stderr lines)",
        stopped_by: "guest log limit (4 KiB here, 64 KiB by default); the rest dropped with one warning".into(),
        took,
        serving: "yes: the same run maps its next line",
    }
}

/// An endless loop in `begin`: the setup deadline.
fn setup_loop_row() -> Row {
    let rig = rig();
    let t = Instant::now();
    let (run, out) = start_run("loop-in-begin", &rig.hostile, &rig.matcher, &[], test_limits());
    let took = t.elapsed();
    assert!(run.is_done() && took < test_limits().setup_deadline + SLACK, "{took:?}");
    assert!(
        matches!(out.as_slice(), [PeerMessage::Started(_), PeerMessage::Failed(f)] if f.reason.contains("time limit (500 ms) in `begin`")),
        "{out:?}"
    );
    let (mut next, _) = start_run("r-next", &rig.hostile, &rig.matcher, &[], test_limits());
    assert!(!next.on_line(b"still here").is_empty());
    Row {
        attack: "loop in setup (`begin`)",
        stopped_by: "time limit (500 ms) in `begin`…".into(),
        took,
        serving: "yes: a fresh run of it maps lines",
    }
}

/// 28 MiB allocated and freed on each of 20 calls under a 32 MiB limit: inside the rules, so
/// the run goes on; what the instance holds never passes the limit (the limiter would trap).
fn just_under_the_memory_limit_row() -> Row {
    let rig = rig();
    let (mut run, _) = start_run("r-nearly", &rig.hostile, &rig.matcher, &[], test_limits());
    let line = format!("nearly:{}", 28 << 20);
    let t = Instant::now();
    for i in 0..20 {
        let out = run.on_line(line.as_bytes());
        let step = out.iter().find_map(|m| match m {
            PeerMessage::Step(s) => Some(s.step.summary.clone()),
            _ => None,
        });
        assert_eq!(step.as_deref(), Some("held 29360128 bytes"), "call {i}: {out:?}");
    }
    let took = t.elapsed() / 20;
    assert!(!run.is_done());
    Row {
        attack: "allocates just under the memory limit on every call (28 of 32 MiB, 20 calls)",
        stopped_by: "nothing to stop: within the memory limit, every call served".into(),
        took,
        serving: "yes: the run goes on (time is per call)",
    }
}

/// The admission attacks of a server that signs its own components: each refused at its
/// stage, acknowledged, with the slot's active component unchanged and serving.
async fn admission_rows() -> Vec<Row> {
    use common::push::{manifest_for, open_registry, push_of, signed_push};
    use common::tagged_guest;
    use orgx_peer::protocol::{AckStatus, ComponentAck};
    use orgx_peer::trust::{SecretKey, Slot};

    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate().unwrap();
    let registry = open_registry(dir.path(), &key, 16 << 20);
    let small_dir = tempfile::tempdir().unwrap();
    let small = open_registry(small_dir.path(), &key, 64 << 10);
    let mapper = Slot::Mapper("claude_code");
    let tagged = tagged_guest(1, "ok");
    let m = manifest_for(&key, mapper, "tagged", 1, &tagged);
    let stranger = SecretKey::generate().unwrap();
    let forged = {
        let mut f = m.clone();
        f.version = 99;
        push_of(&f, &key.sign(&m).unwrap(), &tagged)
    };
    let replayed = {
        let mut other = m.clone();
        other.slot = Slot::Matcher;
        other.world = Slot::Matcher.world().into();
        push_of(&m, &key.sign(&other).unwrap(), &tagged)
    };
    let activated =
        orgx_peer::dispatcher::push::answer(&registry, signed_push(&key, mapper, "tagged", 5, &tagged_guest(5, "ok")), None).await;
    assert!(matches!(&activated, PeerMessage::ComponentAck(a) if a.status == AckStatus::Activated), "{activated:?}");

    /// An admission row: the attack, the registry it is pushed to, the push, the slot it aims
    /// at, the stage that must refuse it and words its reason must hold.
    type Case<'a> = (&'static str, &'a Arc<Registry>, orgx_peer::gateway::frames::ComponentPush, Slot, &'static str, &'static str);
    let cases: Vec<Case> = vec![
        (
            "forbidden import (`wasi:sockets`)",
            &registry,
            signed_push(&key, Slot::Matcher, "sneaky", 1, &guest_wasm("orgx-test-guest-sneaky")),
            Slot::Matcher,
            "imports",
            "wasi:sockets",
        ),
        (
            "mistyped export (right names, other types)",
            &registry,
            signed_push(&key, Slot::Matcher, "mistyped", 1, &guest_wasm("orgx-test-guest-mistyped")),
            Slot::Matcher,
            "link",
            "does not have the type",
        ),
        (
            "memory bomb at instantiation",
            &registry,
            signed_push(&key, Slot::Matcher, "greedy", 1, &guest_wasm("orgx-test-guest-greedy")),
            Slot::Matcher,
            "instantiate",
            "memory",
        ),
        ("unsigned", &registry, push_of(&m, "", &tagged), mapper, "signature", "unsigned"),
        (
            "signed by a key the peer does not trust",
            &registry,
            signed_push(&stranger, mapper, "tagged", 6, &tagged),
            mapper,
            "signature",
            "does not trust",
        ),
        ("bad signature (manifest edited after signing)", &registry, forged, mapper, "signature", "does not match"),
        ("cross-slot replay (a matcher signature on a mapper push)", &registry, replayed, mapper, "signature", "does not match"),
        (
            "rollback (a validly signed older version)",
            &registry,
            signed_push(&key, mapper, "tagged", 4, &tagged_guest(4, "ok")),
            mapper,
            "version",
            "not newer than 5",
        ),
        (
            "oversize (over `ORGX_MAX_COMPONENT_BYTES`, 64 KiB here)",
            &small,
            signed_push(&key, Slot::Matcher, "big", 1, &guest_wasm("orgx-matcher-skill-rules")),
            Slot::Matcher,
            "size",
            "at most 65536",
        ),
        (
            "slow self-test (a loop on every line)",
            &registry,
            signed_push(&key, mapper, "tagged", 7, &tagged_guest(7, "lp")),
            mapper,
            "self_test",
            "time limit",
        ),
        (
            "trap in the self-test",
            &registry,
            signed_push(&key, mapper, "tagged", 8, &tagged_guest(8, "tr")),
            mapper,
            "self_test",
            "trapped",
        ),
        (
            "not a component",
            &registry,
            signed_push(&key, Slot::Matcher, "junk", 1, b"\0asm not a component"),
            Slot::Matcher,
            "compile",
            "not a valid component",
        ),
    ];
    let mut rows = Vec::new();
    for (attack, registry, push, slot, stage, words) in cases {
        let before = registry.snapshot().get(slot).component.info.sha256.clone();
        let t = Instant::now();
        let ack = orgx_peer::dispatcher::push::answer(registry, push, None).await;
        let took = t.elapsed();
        let PeerMessage::ComponentAck(ComponentAck { status, stage: got, reason, .. }) = ack else {
            panic!("{attack}: not an ack: {ack:?}")
        };
        let reason = reason.unwrap_or_default();
        assert_eq!((status, got.as_deref()), (AckStatus::Rejected, Some(stage)), "{attack}: {reason}");
        assert!(reason.contains(words), "{attack}: {reason}");
        let active = registry.snapshot();
        assert_eq!(active.get(slot).component.info.sha256, before, "{attack}: the active component changed");
        let (mut run, _) = start_run("r-after", &active.get(mapper).component, &active.matcher.component, &[], Limits::default());
        assert!(
            !run.on_line(br#"{"type":"system","subtype":"init","session_id":"s"}"#).is_empty(),
            "{attack}: the active mapper does not serve"
        );
        rows.push(Row {
            attack,
            stopped_by: format!("stage `{stage}`: {}", reason.chars().take(90).collect::<String>()),
            took,
            serving: "yes: answered `component.ack` rejected; the active one unchanged, mapping",
        });
    }
    rows
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
