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

#[test]
fn infinite_loop_is_stopped_at_the_deadline() {
    let took = assert_contained("loop", "time limit (200 ms)", test_limits().call_deadline + SLACK);
    assert!(took >= test_limits().call_deadline, "stopped before its deadline: {took:?}");
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    assert_contained("bomb", "memory limit (33554432 bytes", test_limits().call_deadline + SLACK);
}

#[test]
fn trap_ends_only_its_run() {
    assert_contained("trap", "trapped in `map-line`", SLACK);
}

#[test]
fn unbounded_recursion_traps_on_the_stack_limit() {
    assert_contained("recurse", "trapped in `map-line`", SLACK);
}

#[test]
fn huge_output_is_refused() {
    assert_contained("huge", "output limit (1048576 bytes", test_limits().call_deadline + SLACK);
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
