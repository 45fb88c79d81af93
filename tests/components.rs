//! Pushed components through the registry: one test per admission stage (each refusal names
//! its stage and leaves the active component serving), activation, persistence across
//! restarts, quarantine, and the zero-loss swap under load. How fast a refusal is acknowledged
//! (the 1 s target) is a figure `cargo bench --bench components` prints, not a timed test: a
//! loaded 2-core CI machine once took 1.4 s to compile the guest the instantiate stage refuses.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::guest_wasm;
use common::push::{manifest_for, open_registry as open, push_of, registry_config as config, signed_push};
use common::tagged_guest as tagged;
use orgx_peer::components::registry::Registry;
use orgx_peer::components::RunReport;
use orgx_peer::gateway::frames::ComponentPush;
use orgx_peer::protocol::{AckStatus, ComponentAck, PeerMessage};
use orgx_peer::sandbox::{Limits, Sandbox};
use orgx_peer::store::Store;
use orgx_peer::trust::{Envelope, SecretKey, Slot};
use serde_json::json;
use sha2::{Digest, Sha256};

struct Rig {
    dir: tempfile::TempDir,
    key: SecretKey,
    registry: Arc<Registry>,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate().unwrap();
    let registry = open(dir.path(), &key, 16 << 20);
    Rig { dir, key, registry }
}

async fn admit(registry: &Arc<Registry>, push: ComponentPush) -> (ComponentAck, Duration) {
    let t = Instant::now();
    let ack = orgx_peer::dispatcher::push::answer(registry, push, None).await;
    let took = t.elapsed();
    match ack {
        PeerMessage::ComponentAck(a) => (a, took),
        other => panic!("not an ack: {other:?}"),
    }
}

fn active_sha(registry: &Registry, slot: Slot) -> String {
    registry.snapshot().get(slot).component.info.sha256.clone()
}

/// Refused at `stage`, with the slot unchanged.
async fn assert_refused(rig: &Rig, push: ComponentPush, slot: Slot, stage: &str, words: &str) {
    let before = active_sha(&rig.registry, slot);
    let (ack, _) = admit(&rig.registry, push).await;
    assert_eq!(ack.status, AckStatus::Rejected, "{ack:?}");
    assert_eq!(ack.stage.as_deref(), Some(stage), "{ack:?}");
    assert!(ack.reason.as_deref().unwrap_or("").contains(words), "reason should mention `{words}`: {ack:?}");
    assert_eq!(active_sha(&rig.registry, slot), before, "stage {stage}: the active component changed");
}

#[tokio::test]
async fn a_good_push_activates_and_new_snapshots_get_it() {
    let rig = rig();
    let old = rig.registry.snapshot();
    let bytes = tagged(1, "ok");
    let (ack, took) = admit(&rig.registry, signed_push(&rig.key, Slot::Mapper("claude_code"), "tagged", 1, &bytes)).await;
    assert_eq!(ack.status, AckStatus::Activated, "{ack:?}");
    assert_eq!((ack.component.slot.as_str(), ack.component.version), ("mapper:claude_code", 1));
    let now = rig.registry.snapshot();
    assert_eq!(now.mapper("claude_code").component.info.sha256, hex::encode(Sha256::digest(&bytes)));
    assert_eq!(now.mapper("claude_code").version, 1);
    assert_eq!(now.mapper("claude_code").key_id.as_deref(), Some(rig.key.public().id().as_str()));
    // A snapshot taken before the swap (a run in flight) still holds the old component.
    assert_eq!(old.mapper("claude_code").component.info.name, "claude-code");
    eprintln!("cold push -> active: {took:?}");

    // The same push again (a server retry) is acknowledged and changes nothing.
    let (again, _) = admit(&rig.registry, signed_push(&rig.key, Slot::Mapper("claude_code"), "tagged", 1, &bytes)).await;
    assert_eq!(again.status, AckStatus::Activated, "{again:?}");
}

#[tokio::test]
async fn stage_manifest() {
    let rig = rig();
    let mut push = signed_push(&rig.key, Slot::Matcher, "m", 1, b"x");
    push.manifest = json!({ "slot": "matcher", "name": "m" });
    assert_refused(&rig, push, Slot::Matcher, "manifest", "missing field").await;
    let mut push = signed_push(&rig.key, Slot::Matcher, "m", 1, b"x");
    push.manifest["slot"] = json!("mapper:cursor");
    assert_refused(&rig, push, Slot::Matcher, "manifest", "unknown slot").await;
    let mut push = signed_push(&rig.key, Slot::Matcher, "m", 1, b"x");
    push.url = Some("/api/v1/components/x".into());
    assert_refused(&rig, push, Slot::Matcher, "manifest", "exactly one of").await;
}

#[tokio::test]
async fn stage_size() {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate().unwrap();
    let registry = open(dir.path(), &key, 64 << 10);
    let rig = Rig { dir, key, registry };
    let bytes = guest_wasm("orgx-matcher-skill-rules");
    assert!(bytes.len() > 64 << 10);
    assert_refused(&rig, signed_push(&rig.key, Slot::Matcher, "big", 1, &bytes), Slot::Matcher, "size", "at most 65536").await;
}

#[tokio::test]
async fn stage_signature() {
    let rig = rig();
    let bytes = tagged(1, "ok");
    let m = manifest_for(&rig.key, Slot::Mapper("claude_code"), "tagged", 1, &bytes);
    assert_refused(&rig, push_of(&m, "", &bytes), Slot::Mapper("claude_code"), "signature", "unsigned").await;

    let stranger = SecretKey::generate().unwrap();
    assert_refused(
        &rig,
        signed_push(&stranger, Slot::Mapper("claude_code"), "tagged", 1, &bytes),
        Slot::Mapper("claude_code"),
        "signature",
        "does not trust",
    )
    .await;

    // Signed, then the manifest edited: a higher version claimed without a new signature.
    let sig = rig.key.sign(&m).unwrap();
    let mut forged = m.clone();
    forged.version = 99;
    assert_refused(&rig, push_of(&forged, &sig, &bytes), Slot::Mapper("claude_code"), "signature", "does not match").await;

    // A signature for the matcher slot replayed into the mapper slot.
    let mut other_slot = m.clone();
    other_slot.slot = Slot::Matcher;
    other_slot.world = Slot::Matcher.world().into();
    let sig = rig.key.sign(&other_slot).unwrap();
    assert_refused(&rig, push_of(&m, &sig, &bytes), Slot::Mapper("claude_code"), "signature", "does not match").await;
}

#[tokio::test]
async fn stage_version_refuses_rollback() {
    let rig = rig();
    let (ack, _) = admit(&rig.registry, signed_push(&rig.key, Slot::Mapper("claude_code"), "tagged", 5, &tagged(5, "ok"))).await;
    assert_eq!(ack.status, AckStatus::Activated, "{ack:?}");
    // An older, validly signed version: a replay.
    assert_refused(
        &rig,
        signed_push(&rig.key, Slot::Mapper("claude_code"), "tagged", 4, &tagged(4, "ok")),
        Slot::Mapper("claude_code"),
        "version",
        "not newer than 5",
    )
    .await;
    // The same version number with other bytes.
    assert_refused(
        &rig,
        signed_push(&rig.key, Slot::Mapper("claude_code"), "tagged", 5, &tagged(6, "ok")),
        Slot::Mapper("claude_code"),
        "version",
        "not newer",
    )
    .await;
}

#[tokio::test]
async fn stage_world() {
    let rig = rig();
    // The manifest names a world the slot does not serve.
    let bytes = guest_wasm("orgx-matcher-skill-rules");
    let mut m = manifest_for(&rig.key, Slot::Matcher, "m", 1, &bytes);
    m.world = "orgx:peer/mapper-component".into();
    let sig = rig.key.sign(&m).unwrap();
    assert_refused(&rig, push_of(&m, &sig, &bytes), Slot::Matcher, "world", "serves world").await;
    // A WIT version the host does not serve.
    let mut m = manifest_for(&rig.key, Slot::Matcher, "m", 1, &bytes);
    m.wit_version = "0.4.0".into();
    let sig = rig.key.sign(&m).unwrap();
    assert_refused(&rig, push_of(&m, &sig, &bytes), Slot::Matcher, "world", "versions 0.1.0, 0.2.0, 0.3.0, not `0.4.0`").await;
    // A served version, but not the one the bytes implement (the built-in is 0.3.0).
    let mut m = manifest_for(&rig.key, Slot::Matcher, "m", 1, &bytes);
    m.wit_version = "0.1.0".into();
    let sig = rig.key.sign(&m).unwrap();
    assert_refused(
        &rig,
        push_of(&m, &sig, &bytes),
        Slot::Matcher,
        "world",
        "the manifest signed WIT `0.1.0`, but the bytes implement `orgx:peer/matcher-component@0.3.0`",
    )
    .await;
    // A correct manifest, but the bytes are a matcher signed for the mapper slot.
    assert_refused(&rig, signed_push(&rig.key, Slot::Mapper("claude_code"), "m", 1, &bytes), Slot::Mapper("claude_code"), "world", "needs")
        .await;
}

#[tokio::test]
async fn stage_fetch_refuses_other_hosts_without_a_request() {
    let rig = rig();
    let bytes = tagged(1, "ok");
    let mut push = signed_push(&rig.key, Slot::Mapper("claude_code"), "tagged", 1, &bytes);
    push.bytes_base64 = None;
    push.url = Some("https://evil.example/x.wasm".into());
    let base = orgx_peer::gateway::endpoint::BaseUrl::parse("http://127.0.0.1:9").unwrap();
    let api = orgx_peer::http::Api::new(base, orgx_peer::secret::ApiKey::new("oxk_test_key_1234".into()).unwrap()).unwrap();
    let ack = orgx_peer::dispatcher::push::answer(&rig.registry, push, Some(&api)).await;
    let PeerMessage::ComponentAck(ack) = ack else { panic!() };
    assert_eq!(ack.stage.as_deref(), Some("fetch"), "{ack:?}");
}

#[tokio::test]
async fn stage_digest() {
    let rig = rig();
    let bytes = tagged(1, "ok");
    let m = manifest_for(&rig.key, Slot::Mapper("claude_code"), "tagged", 1, &bytes);
    let sig = rig.key.sign(&m).unwrap();
    let mut other = bytes.clone();
    let last = other.len() - 1;
    other[last] ^= 1;
    assert_refused(&rig, push_of(&m, &sig, &other), Slot::Mapper("claude_code"), "digest", "hash to").await;
    assert_refused(&rig, push_of(&m, &sig, &bytes[..bytes.len() - 1]), Slot::Mapper("claude_code"), "digest", "bytes arrived").await;
}

#[tokio::test]
async fn stage_compile() {
    let rig = rig();
    let garbage = b"\0asm this is not a component at all".to_vec();
    assert_refused(&rig, signed_push(&rig.key, Slot::Matcher, "junk", 1, &garbage), Slot::Matcher, "compile", "not a valid component")
        .await;
}

#[tokio::test]
async fn stage_imports() {
    let rig = rig();
    let bytes = guest_wasm("orgx-test-guest-sneaky");
    assert_refused(&rig, signed_push(&rig.key, Slot::Matcher, "sneaky", 1, &bytes), Slot::Matcher, "imports", "wasi:sockets").await;
}

#[tokio::test]
async fn stage_link() {
    let rig = rig();
    let bytes = guest_wasm("orgx-test-guest-mistyped");
    assert_refused(
        &rig,
        signed_push(&rig.key, Slot::Matcher, "mistyped", 1, &bytes),
        Slot::Matcher,
        "link",
        "`orgx:peer/matcher@0.1.0#begin` does not have the type",
    )
    .await;
}

#[tokio::test]
async fn stage_instantiate() {
    let rig = rig();
    let bytes = guest_wasm("orgx-test-guest-greedy");
    assert_refused(&rig, signed_push(&rig.key, Slot::Matcher, "greedy", 1, &bytes), Slot::Matcher, "instantiate", "memory").await;
}

#[tokio::test]
async fn stage_self_test() {
    let rig = rig();
    assert_refused(
        &rig,
        signed_push(&rig.key, Slot::Mapper("claude_code"), "tagged", 1, &tagged(1, "tr")),
        Slot::Mapper("claude_code"),
        "self_test",
        "trapped",
    )
    .await;
}

#[tokio::test]
async fn accepted_components_survive_a_restart_and_corruption_is_skipped() {
    let rig = rig();
    for v in [1u32, 2] {
        let (ack, _) = admit(&rig.registry, signed_push(&rig.key, Slot::Mapper("claude_code"), "tagged", v as u64, &tagged(v, "ok"))).await;
        assert_eq!(ack.status, AckStatus::Activated);
    }
    let v2 = active_sha(&rig.registry, Slot::Mapper("claude_code"));
    drop(rig.registry);

    // A restart (offline: no server involved) serves v2 again, from the verified cache.
    let t = Instant::now();
    let reopened = open(rig.dir.path(), &rig.key, 16 << 20);
    eprintln!("reopen with a stored component: {:?}", t.elapsed());
    assert_eq!(active_sha(&reopened, Slot::Mapper("claude_code")), v2);
    assert_eq!(reopened.snapshot().mapper("claude_code").version, 2);
    drop(reopened);

    // Every compiled-code artifact damaged: they are recompiled from the verified bytes.
    let cache = rig.dir.path().join("components").join("cache");
    let mut damaged = 0;
    for entry in std::fs::read_dir(&cache).unwrap().flatten() {
        std::fs::write(entry.path(), b"not machine code").unwrap();
        damaged += 1;
    }
    assert!(damaged >= 3, "built-ins and pushed versions are cached: {damaged}");
    let reopened = open(rig.dir.path(), &rig.key, 16 << 20);
    assert_eq!(active_sha(&reopened, Slot::Mapper("claude_code")), v2);
    let fresh = common::start_run(
        "after-cache-damage",
        &reopened.snapshot().mapper("claude_code").component,
        &reopened.snapshot().matcher.component,
        &[],
        Limits::default(),
    )
    .0
    .on_line(b"{\"seq\":0}");
    assert!(matches!(fresh.as_slice(), [PeerMessage::Started(_), PeerMessage::Step(_)]), "{fresh:?}");
    drop(reopened);

    // v2's bytes rot on disk: it is skipped (logged), v1 serves; nothing crashes.
    std::fs::write(rig.dir.path().join("components").join(format!("{v2}.wasm")), b"rotten").unwrap();
    let reopened = open(rig.dir.path(), &rig.key, 16 << 20);
    assert_eq!(reopened.snapshot().mapper("claude_code").version, 1);
    // The floor is kept: v2 cannot come back as a rollback target, v1 cannot be re-pushed.
    let (ack, _) = admit(&reopened, signed_push(&rig.key, Slot::Mapper("claude_code"), "tagged", 2, &tagged(7, "ok"))).await;
    assert_eq!(ack.stage.as_deref(), Some("version"), "{ack:?}");
    drop(reopened);

    // A key that is no longer trusted: its components are not served after a restart.
    let other = SecretKey::generate().unwrap();
    let reopened = open(rig.dir.path(), &other, 16 << 20);
    assert_eq!(reopened.snapshot().mapper("claude_code").version, 0, "components signed by an untrusted key must not serve");
}

fn fault_report(registry: &Registry, faulted: bool) -> Option<PeerMessage> {
    let snap = registry.snapshot();
    let sha = snap.mapper("claude_code").component.info.sha256.clone();
    registry
        .on_run_report(&RunReport {
            served_by: snap.digests().iter().map(|d| d.to_string()).collect(),
            faulted: faulted.then(|| (sha, "component `tagged` trapped in `map-line`".to_string())),
        })
        .map(orgx_peer::dispatcher::push::quarantined_message)
}

#[tokio::test]
async fn a_component_that_keeps_faulting_is_quarantined_to_the_last_good_version() {
    let rig = rig();
    let good = tagged(1, "ok");
    assert_eq!(
        admit(&rig.registry, signed_push(&rig.key, Slot::Mapper("claude_code"), "tagged", 1, &good)).await.0.status,
        AckStatus::Activated
    );
    let bad = tagged(2, "qb");
    assert_eq!(
        admit(&rig.registry, signed_push(&rig.key, Slot::Mapper("claude_code"), "tagged", 2, &bad)).await.0.status,
        AckStatus::Activated
    );

    // Two faults, a clean run (the count is of consecutive faults), then three faults.
    assert!(fault_report(&rig.registry, true).is_none());
    assert!(fault_report(&rig.registry, true).is_none());
    assert!(fault_report(&rig.registry, false).is_none());
    assert!(fault_report(&rig.registry, true).is_none());
    assert!(fault_report(&rig.registry, true).is_none());
    let report = fault_report(&rig.registry, true).expect("quarantined on the third fault in a row");
    let PeerMessage::ComponentQuarantined(q) = &report else { panic!("{report:?}") };
    assert_eq!((q.component.version, q.faults, q.fallback.version), (2, 3, 1), "{q:?}");
    assert_eq!(rig.registry.snapshot().mapper("claude_code").version, 1);
    assert!(report.to_json().starts_with(r#"{"kind":"component.quarantined""#));

    // After a restart the quarantined version stays out of service.
    drop(rig.registry);
    let reopened = open(rig.dir.path(), &rig.key, 16 << 20);
    assert_eq!(reopened.snapshot().mapper("claude_code").version, 1);
    assert_eq!(reopened.quarantined(), vec![hex::encode(Sha256::digest(&bad))]);
    // The fix comes as a newer version.
    assert_eq!(
        admit(&reopened, signed_push(&rig.key, Slot::Mapper("claude_code"), "tagged", 3, &tagged(3, "ok"))).await.0.status,
        AckStatus::Activated
    );
}

#[tokio::test]
async fn the_builtin_is_the_fallback_of_last_resort() {
    let rig = rig();
    assert_eq!(
        admit(&rig.registry, signed_push(&rig.key, Slot::Mapper("claude_code"), "tagged", 1, &tagged(1, "qb"))).await.0.status,
        AckStatus::Activated
    );
    for _ in 0..2 {
        assert!(fault_report(&rig.registry, true).is_none());
    }
    assert!(fault_report(&rig.registry, true).is_some());
    let snap = rig.registry.snapshot();
    assert_eq!((snap.mapper("claude_code").version, snap.mapper("claude_code").component.info.name.as_str()), (0, "claude-code"));
}

/// Envelopes written by `component sign` are what the registry reads from the local directory.
#[test]
fn local_components_need_a_signature_unless_in_dev_mode() {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate().unwrap();
    let store = Store::open(&dir.path().join("peer.redb")).unwrap();
    let registry = Registry::open(Sandbox::new(Limits::default()).unwrap(), store.clone(), config(dir.path(), &key, 16 << 20)).unwrap();
    let bytes = guest_wasm("orgx-matcher-template");
    let refused = registry.admit_local("template", None, bytes.clone()).unwrap_err();
    assert_eq!(refused.stage.as_str(), "signature");
    let m = manifest_for(&key, Slot::Matcher, "template", 1, &bytes);
    let env = Envelope { signature: key.sign(&m).unwrap(), manifest: m };
    let ok = registry.admit_local("template", Some(env), bytes.clone()).unwrap();
    assert_eq!((ok.slot, ok.version, ok.changed), (Slot::Matcher, 1, true));
    drop(registry);

    let mut cfg = config(dir.path(), &key, 16 << 20);
    cfg.dev_unsigned_local = true;
    let dev = Registry::open(Sandbox::new(Limits::default()).unwrap(), store, cfg).unwrap();
    let unsigned = tagged(9, "ok");
    let ok = dev.admit_local("tagged-dev", None, unsigned).unwrap();
    assert_eq!(ok.slot, Slot::Mapper("claude_code"));
    let snap = dev.snapshot();
    assert_eq!(serde_json::to_value(snap.mapper("claude_code").origin).unwrap(), json!("dev-unsigned"));
    assert_eq!(snap.matcher.version, 1, "the signed local matcher was restored");
}

/// Runs started from the registry's snapshot while versions are swapped underneath: every
/// message of a run comes from the version it started with, in order, none lost or doubled.
#[test]
fn swaps_under_load_lose_nothing_and_mix_nothing() {
    const LINES: usize = 400;
    const WORKERS: usize = 3;
    let rig = rig();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let push = |v: u32| {
        rt.block_on(admit(&rig.registry, signed_push(&rig.key, Slot::Mapper("claude_code"), "tagged", v as u64, &tagged(v, "ok")))).0
    };
    assert_eq!(push(1).status, AckStatus::Activated);

    let stop = std::sync::atomic::AtomicBool::new(false);
    let started = Instant::now();
    let results: Vec<Vec<(u64, usize)>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (registry, stop) = (&rig.registry, &stop);
                s.spawn(move || {
                    let mut runs = Vec::new();
                    let mut n = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) || runs.is_empty() {
                        n += 1;
                        let snap = registry.snapshot();
                        let version = snap.mapper("claude_code").version;
                        let run_id = format!("w{w}-r{n}");
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
                        check_run(&run_id, version, &out, LINES);
                        runs.push((version, out.len()));
                    }
                    runs
                })
            })
            .collect();
        for v in 2..=6 {
            std::thread::sleep(Duration::from_millis(150));
            assert_eq!(push(v).status, AckStatus::Activated);
        }
        std::thread::sleep(Duration::from_millis(150));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let elapsed = started.elapsed();
    let runs: Vec<(u64, usize)> = results.into_iter().flatten().collect();
    let lines = runs.len() * (LINES + 1);
    let mut versions: Vec<u64> = runs.iter().map(|r| r.0).collect();
    versions.sort();
    versions.dedup();
    eprintln!(
        "{} runs, {lines} lines in {elapsed:?} ({:.0} lines/s) across versions {versions:?}",
        runs.len(),
        lines as f64 / elapsed.as_secs_f64()
    );
    assert!(versions.len() >= 3, "the swaps should have landed between runs: {versions:?}");
    assert!(lines as f64 / elapsed.as_secs_f64() > 1000.0, "the load should be thousands of lines per second");
}

/// One `task.started`, LINES steps all from `version` in order, one `task.completed`.
fn check_run(run_id: &str, version: u64, out: &[PeerMessage], lines: usize) {
    assert_eq!(out.len(), lines + 2, "{run_id}: message count");
    assert!(matches!(out[0], PeerMessage::Started(_)), "{run_id}: first message");
    assert!(matches!(out[lines + 1], PeerMessage::Completed(_)), "{run_id}: last message");
    let prefix = format!("v{version:04} ");
    for (i, m) in out[1..=lines].iter().enumerate() {
        let PeerMessage::Step(s) = m else { panic!("{run_id}: message {i} is not a step: {m:?}") };
        let want = format!("{prefix}{{\"seq\":{i}}}");
        assert_eq!(s.step.summary, want, "{run_id}: step {i} (run started on version {version})");
    }
}

#[tokio::test]
async fn a_lost_slot_record_is_rebuilt_and_the_floor_survives() {
    let rig = rig();
    for v in [3u32, 4] {
        let (ack, _) = admit(&rig.registry, signed_push(&rig.key, Slot::Mapper("claude_code"), "tagged", v as u64, &tagged(v, "ok"))).await;
        assert_eq!(ack.status, AckStatus::Activated);
    }
    drop(rig.registry);
    // The peer's store is lost (deleted); the content-addressed components remain.
    std::fs::remove_file(rig.dir.path().join("peer.redb")).unwrap();
    let reopened = open(rig.dir.path(), &rig.key, 16 << 20);
    assert_eq!(reopened.snapshot().mapper("claude_code").version, 4, "the newest stored version serves again");
    let (ack, _) = admit(&reopened, signed_push(&rig.key, Slot::Mapper("claude_code"), "tagged", 2, &tagged(2, "ok"))).await;
    assert_eq!(ack.stage.as_deref(), Some("version"), "a rollback stays refused: {ack:?}");
}

#[tokio::test]
async fn a_mapper_pushed_for_codex_serves_codex_runs_only_and_a_stored_0_1_0_component_keeps_working() {
    use orgx_peer::sandbox::WitVersion;
    let rig = rig();
    let claude_before = active_sha(&rig.registry, Slot::Mapper("claude_code"));
    // `tagged` is built against WIT 0.1.0: an older version the peer still serves.
    let bytes = tagged(1, "ok");
    let (ack, _) = admit(&rig.registry, signed_push(&rig.key, Slot::Mapper("codex"), "tagged", 1, &bytes)).await;
    assert_eq!((ack.status, ack.component.slot.as_str()), (AckStatus::Activated, "mapper:codex"), "{ack:?}");
    let snap = rig.registry.snapshot();
    assert_eq!(snap.mapper("codex").component.info.sha256, hex::encode(Sha256::digest(&bytes)));
    assert_eq!(snap.mapper("codex").component.wit_version(), WitVersion::V0_1_0);
    assert_eq!(active_sha(&rig.registry, Slot::Mapper("claude_code")), claude_before, "other drivers' mappers are untouched");
    assert_eq!(snap.mapper("opencode").component.info.name, "opencode");
    // A codex run through the new mapper: its events come through the 0.1.0 → newest conversion.
    let (mut run, _) = common::start_run("codex-run", &snap.mapper("codex").component, &snap.matcher.component, &[], Limits::default());
    let out = run.on_line(b"{\"seq\":0}");
    assert!(out.iter().any(|m| m.to_json().contains("v0001")), "the pushed mapper mapped the line: {out:?}");
    drop(rig.registry);

    // Stored and signed against 0.1.0, it serves again after a restart on this 0.3.0 peer.
    let reopened = open(rig.dir.path(), &rig.key, 16 << 20);
    let snap = reopened.snapshot();
    assert_eq!((snap.mapper("codex").version, snap.mapper("codex").component.wit_version()), (1, WitVersion::V0_1_0));
    let (mut run, _) =
        common::start_run("codex-after-restart", &snap.mapper("codex").component, &snap.matcher.component, &[], Limits::default());
    assert!(run.on_line(b"{\"seq\":1}").iter().any(|m| m.to_json().contains("v0001")));
}
