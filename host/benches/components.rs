//! Figures, not pass/fail: `cargo bench --bench components` prints
//! 1. push → active for the ~200 KB built-in mapper, signed as a pushed version: cold (the
//!    first time: verify, compile, self-test, persist) and warm (the same bytes again under a
//!    higher version: compiled code from the peer's verified cache, self-test already passed
//!    by those stored bytes; and a restart restoring every slot), each against wasmtime's bare
//!    `Component::new` of the same bytes in the same run: targets cold ≤ 1.25× the bare
//!    compile (admission overhead ≤ 25 %) and warm ≤ 2 % of cold. The registry compiles as
//!    the daemon's does, in a child of the release binary; a cold push compiled in-process
//!    is printed beside it;
//! 2. the zero-loss swap under load: runs started from the live snapshot while versions are
//!    swapped underneath, every message checked to come from the run's version, in order;
//! 3. push → refusal acknowledged, one figure per admission stage (the pushes
//!    `tests/components.rs` checks for stage and reason): target < 1 s each, the slowest being
//!    the stages that must compile the bytes first.
//!
//! Cold and warm rounds alternate so machine noise hits both alike; medians are reported.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

#[path = "../../tests/common/mod.rs"]
mod common;

use common::push::{manifest_for, open_registry, open_registry_in, push_of, signed_push};
use common::{guest_wasm, tagged_guest};
use orgx_peer::components::registry::Registry;
use orgx_peer::gateway::frames::ComponentPush;
use orgx_peer::protocol::{AckStatus, PeerMessage};
use orgx_peer::sandbox::{Compiler, Limits, Sandbox};
use orgx_peer::trust::{SecretKey, Slot};

const ROUNDS: usize = 7;

/// The registry as the daemon opens it: components compile in a child of the release binary.
fn open(dir: &Path, key: &SecretKey) -> Arc<Registry> {
    let exe = std::path::PathBuf::from(env!("CARGO_BIN_EXE_orgx-peer"));
    open_registry_in(Sandbox::new(Limits::default()).unwrap().with_compiler(Compiler::Subprocess { exe }), dir, key, 16 << 20)
}

/// The same with Cranelift in this process (one-shot commands; the figure before the child).
fn open_in_process(dir: &Path, key: &SecretKey) -> Arc<Registry> {
    open_registry(dir, key, 16 << 20)
}

fn admit(rt: &tokio::runtime::Runtime, registry: &Arc<Registry>, p: ComponentPush) -> Duration {
    let t = Instant::now();
    let ack = rt.block_on(orgx_peer::dispatcher::push::answer(registry, p, None));
    let took = t.elapsed();
    match ack {
        PeerMessage::ComponentAck(a) if a.status == AckStatus::Activated => took,
        other => panic!("push refused: {}", other.to_json()),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The built-in mapper plus a custom section naming the round: the same code under a digest
/// no cache has seen, so the first push of it really compiles.
fn unique_mapper(round: usize) -> Vec<u8> {
    let mut bytes = orgx_peer::driver::claude_code::DRIVER.mapper.wasm.to_vec();
    let name = b"orgx-bench";
    let payload = format!("round {round} {:?}", SystemTime::now());
    let body_len = 1 + name.len() + payload.len();
    assert!(body_len < 128 && name.len() < 128, "one-byte LEB128 lengths");
    bytes.extend([0u8, body_len as u8, name.len() as u8]);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload.as_bytes());
    bytes
}

fn push_to_active(rt: &tokio::runtime::Runtime, key: &SecretKey) {
    let (mut cold, mut warm, mut restore, mut bare) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut cold_in_process = Vec::new();
    let mut size = 0;
    // The yardstick: wasmtime compiling the same bytes, nothing else, in an engine configured
    // as the sandbox's (each round's bytes are new to both).
    let engine = orgx_peer::sandbox::engine::SandboxEngine::new().unwrap();
    for round in 0..ROUNDS {
        let bytes = unique_mapper(round);
        size = bytes.len();
        let t = Instant::now();
        wasmtime::component::Component::new(engine.engine(), &bytes).unwrap();
        bare.push(t.elapsed());
        let dir = tempfile::tempdir().unwrap();
        let registry = open(dir.path(), key);
        cold.push(admit(rt, &registry, signed_push(key, Slot::Mapper("claude_code"), "bench", 1, &bytes)));
        warm.push(admit(rt, &registry, signed_push(key, Slot::Mapper("claude_code"), "bench", 2, &bytes)));
        drop(registry);
        let t = Instant::now();
        let registry = open(dir.path(), key);
        restore.push(t.elapsed());
        assert_eq!(registry.snapshot().mapper("claude_code").version, 2);
        let bytes = unique_mapper(ROUNDS + round);
        let dir = tempfile::tempdir().unwrap();
        let registry = open_in_process(dir.path(), key);
        cold_in_process.push(admit(rt, &registry, signed_push(key, Slot::Mapper("claude_code"), "bench", 1, &bytes)));
    }
    let (cold, warm, bare) = (median(cold), median(warm), median(bare));
    println!("push -> active, {} KB mapper ({ROUNDS} rounds, median)", size / 1024);
    println!("  bare wasmtime Component::new of the same bytes      {:>8.1} ms", ms(bare));
    println!(
        "  cold (verify + compile + self-test + persist)      {:>8.1} ms   {:.2}x the bare compile   target <= 1.25x",
        ms(cold),
        cold.as_secs_f64() / bare.as_secs_f64()
    );
    let cold_in_process = median(cold_in_process);
    println!(
        "  cold, compiling in this process instead of a child {:>8.1} ms   {:.2}x the bare compile",
        ms(cold_in_process),
        cold_in_process.as_secs_f64() / bare.as_secs_f64()
    );
    println!(
        "  warm re-push (verify + cached code + persist)       {:>8.1} ms   {:.1} % of cold   target <= 2 %",
        ms(warm),
        warm.as_secs_f64() / cold.as_secs_f64() * 100.0
    );
    println!("  warm restart: every slot restored (verify + cached code, built-ins included) {:>6.1} ms", ms(median(restore)));
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn swap_under_load(rt: &tokio::runtime::Runtime, key: &SecretKey) {
    const LINES: usize = 500;
    const WORKERS: usize = 2;
    const SWAPS: u32 = 8;
    let dir = tempfile::tempdir().unwrap();
    let registry = open(dir.path(), key);
    admit(rt, &registry, signed_push(key, Slot::Mapper("claude_code"), "tagged", 1, &tagged_guest(1, "ok")));
    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    let (runs, bad) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (registry, stop) = (&registry, &stop);
                s.spawn(move || {
                    let (mut runs, mut bad) = (Vec::new(), 0usize);
                    while !stop.load(Ordering::Relaxed) {
                        let snap = registry.snapshot();
                        let prefix = format!("v{:04} ", snap.mapper("claude_code").version);
                        let run_id = format!("w{w}-{}", runs.len());
                        let (mut run, mut out) = common::start_run(
                            &run_id,
                            &snap.mapper("claude_code").component,
                            &snap.matcher.component,
                            &[],
                            Limits::default(),
                        );
                        for i in 0..LINES {
                            out.extend(run.on_line(format!("{{\"seq\":{i}}}").as_bytes()));
                        }
                        out.extend(run.on_line(br#"{"type":"result"}"#));
                        let steps_ok = out[1..=LINES].iter().enumerate().all(|(i, m)| match m {
                            PeerMessage::Step(s) => s.step.summary == format!("{prefix}{{\"seq\":{i}}}"),
                            _ => false,
                        });
                        let shape_ok = out.len() == LINES + 2
                            && matches!(out[0], PeerMessage::Started(_))
                            && matches!(out[LINES + 1], PeerMessage::Completed(_));
                        bad += usize::from(!(steps_ok && shape_ok));
                        runs.push(snap.mapper("claude_code").version);
                    }
                    (runs, bad)
                })
            })
            .collect();
        let mut swap_times = Vec::new();
        for v in 2..=SWAPS + 1 {
            std::thread::sleep(Duration::from_millis(100));
            swap_times.push(admit(
                rt,
                &registry,
                signed_push(key, Slot::Mapper("claude_code"), "tagged", v as u64, &tagged_guest(v, "ok")),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::Relaxed);
        println!("  swap latency under load (cold pushes of the tagged mapper): median {:.1} ms", ms(median(swap_times)));
        let mut all = Vec::new();
        let mut bad = 0;
        for w in workers {
            let (r, b) = w.join().unwrap();
            all.extend(r);
            bad += b;
        }
        (all, bad)
    });
    let secs = t0.elapsed().as_secs_f64();
    let mut versions = runs.clone();
    versions.sort();
    versions.dedup();
    let lines = runs.len() * (LINES + 1);
    println!(
        "  {} runs on {WORKERS} threads, {lines} lines in {secs:.2} s = {:.0} lines/s, across {SWAPS} swaps; versions seen {:?}; runs with a lost, doubled, mixed or out-of-order message: {bad}",
        runs.len(),
        lines as f64 / secs,
        versions
    );
}

/// One refused push per stage, each against a fresh registry (so the version stage has a
/// newer version to refuse against and no cache warms another stage's compile).
fn refusals(rt: &tokio::runtime::Runtime, key: &SecretKey) {
    let mapper = Slot::Mapper("claude_code");
    let tagged = tagged_guest(1, "ok");
    let mut flipped = tagged.clone();
    *flipped.last_mut().unwrap() ^= 1;
    let mut manifest = signed_push(key, Slot::Matcher, "m", 1, b"x");
    manifest.manifest = serde_json::json!({ "slot": "matcher", "name": "m" });
    let m = manifest_for(key, mapper, "tagged", 1, &tagged);
    let cases: Vec<(&str, u64, ComponentPush)> = vec![
        ("manifest", 16 << 20, manifest),
        ("size", 64 << 10, signed_push(key, Slot::Matcher, "big", 1, &guest_wasm("orgx-matcher-skill-rules"))),
        ("signature", 16 << 20, push_of(&m, "", &tagged)),
        ("digest", 16 << 20, push_of(&m, &key.sign(&m).unwrap(), &flipped)),
        ("version", 16 << 20, signed_push(key, mapper, "tagged", 4, &tagged_guest(4, "ok"))),
        ("world", 16 << 20, signed_push(key, mapper, "m", 1, &guest_wasm("orgx-matcher-skill-rules"))),
        ("compile", 16 << 20, signed_push(key, Slot::Matcher, "junk", 1, b"\0asm not a component")),
        ("imports", 16 << 20, signed_push(key, Slot::Matcher, "sneaky", 1, &guest_wasm("orgx-test-guest-sneaky"))),
        ("link", 16 << 20, signed_push(key, Slot::Matcher, "mistyped", 1, &guest_wasm("orgx-test-guest-mistyped"))),
        ("instantiate", 16 << 20, signed_push(key, Slot::Matcher, "greedy", 1, &guest_wasm("orgx-test-guest-greedy"))),
        ("self_test", 16 << 20, signed_push(key, mapper, "tagged", 1, &tagged_guest(1, "tr"))),
    ];
    println!("push -> refusal acknowledged ({ROUNDS} rounds, median; target < 1000 ms each)");
    for (stage, max_bytes, push) in cases {
        let mut took = Vec::new();
        for _ in 0..ROUNDS {
            let dir = tempfile::tempdir().unwrap();
            let registry = open_registry(dir.path(), key, max_bytes);
            if stage == "version" {
                admit(rt, &registry, signed_push(key, mapper, "tagged", 5, &tagged_guest(5, "ok")));
            }
            let t = Instant::now();
            let ack = rt.block_on(orgx_peer::dispatcher::push::answer(&registry, push.clone(), None));
            took.push(t.elapsed());
            match ack {
                PeerMessage::ComponentAck(a) if a.status == AckStatus::Rejected && a.stage.as_deref() == Some(stage) => {}
                other => panic!("stage {stage}: expected a refusal there, got {}", other.to_json()),
            }
        }
        let worst = *took.iter().max().unwrap();
        println!("  {stage:<12} {:>8.1} ms   worst {:>8.1} ms", ms(median(took)), ms(worst));
    }
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let key = SecretKey::generate().unwrap();
    push_to_active(&rt, &key);
    println!("zero-loss swap under load");
    swap_under_load(&rt, &key);
    refusals(&rt, &key);
}
