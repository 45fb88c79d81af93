//! Figures, not pass/fail: `cargo bench --bench replay` prints
//! 1. replay throughput of a long real transcript corpus through the WASM components (the
//!    live pipeline) vs the same mapper and matcher code compiled natively, side by side in
//!    one run, and their ratio (target ≤ 1.5×);
//! 2. the same for the Codex and opencode long-session transcripts, through their own
//!    mappers (the whole pipeline, and the mapper alone), beside the Claude figure;
//! 3. per-event matching cost in the WASM matcher at 10, 1,000 and 10,000 rules, and the
//!    ratio of 10,000 to 10 (target ≤ 4×).
//!
//! Rounds alternate between the contenders so machine noise hits both alike; medians are
//! reported.

use std::path::PathBuf;

#[path = "../../tests/common/mod.rs"]
mod common;
use common::generated_rules;
use std::time::{Duration, Instant, SystemTime};

use orgx_mapper_claude_code as native_mapper;
use orgx_matcher_skill_rules as native_matcher;
use orgx_peer::components::ActiveComponents;
use orgx_peer::rules::{Rule, RuleOn, RuleSet};
use orgx_peer::run::pipeline::{RunPipeline, RunSpec};
use orgx_peer::sandbox::{matcher_types as m, types as t, Limits, MapperInstance, MatcherInstance, Sandbox};

const ROUNDS: usize = 7;

fn transcript(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/transcripts").join(name)
}

/// Any transcript's first line, its middle repeated `copies` times, then its last line.
fn corpus_of(name: &str, copies: usize) -> Vec<Vec<u8>> {
    let text = std::fs::read(transcript(name)).unwrap_or_else(|e| panic!("tests/fixtures/transcripts/{name}: {e}"));
    let mut lines: Vec<Vec<u8>> = text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect();
    let last = lines.pop().expect("a last line");
    let first = lines.remove(0);
    let mut out = vec![first];
    for _ in 0..copies {
        out.extend(lines.iter().cloned());
    }
    out.push(last);
    out
}

/// The whole pipeline natively for an SDK mapper: map every line, match every subject, end.
fn native_replay_sdk<M: orgx_peer_sdk::Mapper>(rules: &[Rule], lines: &[Vec<u8>]) -> usize {
    let mut mapper = M::begin(orgx_peer_sdk::RunContext::new("bench", None));
    let (mut matcher, _) = native_matcher::Matcher::new("bench", rules.iter().map(native_rule).collect());
    let mut n = 0;
    for line in lines {
        for event in mapper.map_line(line) {
            n += 1;
            if let orgx_peer_sdk::Event::Step(step) = &event {
                if let Some(subject) = &step.subject {
                    n += matcher.check(subject.on, &subject.text, step.evidence_ref.as_deref().unwrap_or("")).len();
                }
            }
            if matches!(event, orgx_peer_sdk::Event::Terminal(_)) {
                return n;
            }
        }
    }
    std::hint::black_box(mapper.end(orgx_peer_sdk::EndReason::Exited(orgx_peer_sdk::ProcessExit::Code(0)), None));
    n + 1
}

/// The live pipeline for `driver`'s built-in mapper, ended as a process that exited 0.
fn wasm_replay_driver(components: &ActiveComponents, driver: &str, rules: &[Rule], lines: &[Vec<u8>]) -> usize {
    let (mut run, first) = RunPipeline::start(RunSpec {
        context: orgx_peer::sandbox::convert::run_context("bench", None, driver),
        mapper: &components.mapper(driver).component,
        matcher: &components.matcher.component,
        rules,
        prepared: None,
        started_at: SystemTime::now(),
        limits: Limits::default(),
    });
    let mut n = first.len();
    for line in lines {
        n += run.on_line(line).len();
    }
    n + run.on_end(&t::EndReason::Exited(t::ProcessExit::Code(0)), None).len()
}

/// Codex's and opencode's long sessions through their own mappers, WASM vs native.
fn other_drivers(components: &ActiveComponents, rules: &[Rule], quick: bool) {
    type Native = fn(&[Rule], &[Vec<u8>]) -> usize;
    let drivers: [(&str, &str, Native); 2] = [
        ("codex", "codex/long-session.ndjson", native_replay_sdk::<orgx_mapper_codex::Mapper>),
        ("opencode", "opencode/long-session.ndjson", native_replay_sdk::<orgx_mapper_opencode::Mapper>),
    ];
    for (driver, name, native) in drivers {
        let lines = corpus_of(name, if quick { 1 } else { 40 });
        let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
        let (mut wasm_t, mut native_t, mut map_w, mut map_n) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut wasm_n, mut native_n) = (0, 0);
        for _ in 0..if quick { 1 } else { ROUNDS } {
            let t0 = Instant::now();
            native_n = native(rules, &lines);
            native_t.push(t0.elapsed());
            let t0 = Instant::now();
            wasm_n = wasm_replay_driver(components, driver, rules, &lines);
            wasm_t.push(t0.elapsed());
            // The mapper alone, in the sandbox.
            let mut inst = MapperInstance::new(&components.mapper(driver).component, Limits::default()).unwrap();
            inst.begin(&orgx_peer::sandbox::convert::run_context("b", None, driver)).unwrap();
            let t0 = Instant::now();
            for line in &lines {
                std::hint::black_box(inst.map_line(line).unwrap());
            }
            map_w.push(t0.elapsed());
            let t0 = Instant::now();
            match driver {
                "codex" => mapper_only::<orgx_mapper_codex::Mapper>(&lines),
                _ => mapper_only::<orgx_mapper_opencode::Mapper>(&lines),
            }
            map_n.push(t0.elapsed());
        }
        let (w, n, mw, mn) = (median(wasm_t), median(native_t), median(map_w), median(map_n));
        println!(
            "\n== {driver}: long-session corpus, {} lines, {:.1} MiB ({native_n} native events, {wasm_n} messages)",
            lines.len(),
            bytes as f64 / (1 << 20) as f64
        );
        println!(
            "native   {:>9.2} ms   wasm {:>9.2} ms   ratio wasm/native = {:.2}x",
            n.as_secs_f64() * 1e3,
            w.as_secs_f64() * 1e3,
            w.as_secs_f64() / n.as_secs_f64()
        );
        println!(
            "mapper only: native {:.2} ms, wasm {:.2} ms ({:.2}x)",
            mn.as_secs_f64() * 1e3,
            mw.as_secs_f64() * 1e3,
            mw.as_secs_f64() / mn.as_secs_f64()
        );
    }
}

fn mapper_only<M: orgx_peer_sdk::Mapper>(lines: &[Vec<u8>]) {
    let mut mapper = M::begin(orgx_peer_sdk::RunContext::new("b", None));
    for line in lines {
        std::hint::black_box(mapper.map_line(line));
    }
}

fn demo_rules() -> Vec<Rule> {
    let body = std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/rules/demo.json")).unwrap();
    let mut rules = RuleSet::from_plan_skills(&body).unwrap().rules;
    rules.push(Rule {
        skill_id: "echo".into(),
        pattern: "^Bash echo (\\d+)$".into(),
        on: RuleOn::ToolCall,
        dedupe_fingerprint: "echo".into(),
        evidence_kind: "bash_command".into(),
    });
    rules
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn wasm_replay(components: &ActiveComponents, rules: &[Rule], lines: &[Vec<u8>]) -> usize {
    let (mut run, first) = RunPipeline::start(RunSpec {
        context: orgx_peer::sandbox::convert::run_context("bench", None, "claude_code"),
        mapper: &components.mapper("claude_code").component,
        matcher: &components.matcher.component,
        rules,
        prepared: None,
        started_at: SystemTime::now(),
        limits: Limits::default(),
    });
    let mut n = first.len();
    for line in lines {
        n += run.on_line(line).len();
    }
    assert!(run.is_done(), "the corpus ends with a result line");
    n
}

fn native_rule(r: &Rule) -> native_matcher::Rule {
    native_matcher::Rule {
        skill_id: r.skill_id.clone(),
        pattern: r.pattern.clone(),
        on: match r.on {
            RuleOn::FileEdit => native_matcher::RuleOn::FileEdit,
            RuleOn::ToolCall => native_matcher::RuleOn::ToolCall,
        },
        dedupe_fingerprint: r.dedupe_fingerprint.clone(),
        evidence_kind: r.evidence_kind.clone(),
    }
}

/// The subjects a matcher sees for the edit-tools and long-session transcripts.
fn subjects() -> Vec<(t::MatchSubject, String)> {
    let mut out = Vec::new();
    for name in ["edit-tools.ndjson", "long-session.ndjson", "success-tools.ndjson"] {
        let text = std::fs::read(transcript(name)).unwrap();
        let mut mapper = native_mapper::Mapper::new(native_mapper::RunContext::new("s", None));
        for line in text.split(|b| *b == b'\n') {
            for event in mapper.map_line(line) {
                if let native_mapper::Event::Step(step) = event {
                    if let Some(s) = step.subject {
                        let on = match s.on {
                            native_mapper::RuleOn::FileEdit => t::RuleOn::FileEdit,
                            native_mapper::RuleOn::ToolCall => t::RuleOn::ToolCall,
                        };
                        out.push((t::MatchSubject { on, text: s.text }, step.evidence_ref.unwrap_or_default()));
                    }
                }
            }
        }
    }
    out
}

/// Mean time per `check` call in a fresh WASM matcher loaded with `rules`.
fn wasm_match_cost(
    components: &ActiveComponents,
    rules: &[Rule],
    subjects: &[(t::MatchSubject, String)],
    reps: usize,
) -> (Duration, Duration) {
    let mut inst = MatcherInstance::new(&components.matcher.component, Limits::default()).unwrap();
    let wit: Vec<m::Rule> = rules.iter().map(Into::into).collect();
    let t0 = Instant::now();
    let warnings = inst.begin("bench", &wit).unwrap();
    let setup = t0.elapsed();
    assert!(warnings.is_empty(), "generated rules compile: {:?}", warnings.first());
    let t0 = Instant::now();
    let mut calls = 0u32;
    for _ in 0..reps {
        for (subject, evidence) in subjects {
            std::hint::black_box(inst.check(subject, evidence).unwrap());
            calls += 1;
        }
    }
    (t0.elapsed() / calls, setup)
}

fn main() {
    // `cargo test` runs benches with `--bench`-less args in test mode; stay quick there.
    let quick = std::env::args().any(|a| a == "--test");
    let copies = if quick { 1 } else { 40 };
    let sandbox = Sandbox::new(Limits::default()).unwrap();
    let components = ActiveComponents::load(&sandbox, "claude_code", None, None).unwrap();
    let lines = corpus_of("long-session.ndjson", copies);
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    let rules = demo_rules();

    println!(
        "== replay throughput: long-session corpus, {} lines, {:.1} MiB, {} rules",
        lines.len(),
        bytes as f64 / (1 << 20) as f64,
        rules.len()
    );
    let (mut wasm_t, mut native_t) = (Vec::new(), Vec::new());
    let (mut wasm_n, mut native_n) = (0, 0);
    for _ in 0..if quick { 1 } else { ROUNDS } {
        let t0 = Instant::now();
        native_n = native_replay_sdk::<native_mapper::Mapper>(&rules, &lines);
        native_t.push(t0.elapsed());
        let t0 = Instant::now();
        wasm_n = wasm_replay(&components, &rules, &lines);
        wasm_t.push(t0.elapsed());
    }
    let (w, n) = (median(wasm_t), median(native_t));
    let mibs = |d: Duration| bytes as f64 / (1 << 20) as f64 / d.as_secs_f64();
    let lps = |d: Duration| lines.len() as f64 / d.as_secs_f64();
    println!("native   {:>9.2} ms  {:>8.1} MiB/s  {:>10.0} lines/s  ({} events)", n.as_secs_f64() * 1e3, mibs(n), lps(n), native_n);
    println!("wasm     {:>9.2} ms  {:>8.1} MiB/s  {:>10.0} lines/s  ({} messages)", w.as_secs_f64() * 1e3, mibs(w), lps(w), wasm_n);
    println!("ratio    wasm/native = {:.2}x   (target <= 1.5x)", w.as_secs_f64() / n.as_secs_f64());

    // Where the time goes: the mapper alone, native vs in the sandbox, and the bare cost of
    // a call across the boundary.
    let (mut wm, mut nm, mut calls) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..if quick { 1 } else { ROUNDS } {
        let mut native = native_mapper::Mapper::new(native_mapper::RunContext::new("b", None));
        let t0 = Instant::now();
        for line in &lines {
            std::hint::black_box(native.map_line(line));
        }
        nm.push(t0.elapsed());
        let mut inst = MapperInstance::new(&components.mapper("claude_code").component, Limits::default()).unwrap();
        inst.begin(&orgx_peer::sandbox::convert::run_context("b", None, "claude_code")).unwrap();
        let t0 = Instant::now();
        for line in &lines {
            std::hint::black_box(inst.map_line(line).unwrap());
        }
        wm.push(t0.elapsed());
        let t0 = Instant::now();
        for _ in 0..lines.len() {
            std::hint::black_box(inst.map_line(b"x").unwrap());
        }
        calls.push(t0.elapsed());
    }
    let (wm, nm, calls) = (median(wm), median(nm), median(calls));
    println!(
        "mapper only: native {:.2} ms, wasm {:.2} ms ({:.2}x); empty call {:.0} ns",
        nm.as_secs_f64() * 1e3,
        wm.as_secs_f64() * 1e3,
        wm.as_secs_f64() / nm.as_secs_f64(),
        calls.as_secs_f64() * 1e9 / lines.len() as f64
    );
    // The guest's own code, net of the boundary: what is left to win inside the component.
    let net = wm.saturating_sub(calls);
    println!(
        "mapper code net of the per-line call: wasm {:.2} ms vs native {:.2} ms ({:.2}x)",
        net.as_secs_f64() * 1e3,
        nm.as_secs_f64() * 1e3,
        net.as_secs_f64() / nm.as_secs_f64()
    );

    other_drivers(&components, &rules, quick);

    let subjects = subjects();
    let reps = if quick { 1 } else { 50 };
    println!("\n== matching cost per event (WASM matcher; {} subjects x {} reps per size)", subjects.len(), reps);
    let mut costs = Vec::new();
    for n in [10usize, 1_000, 10_000] {
        let rules = generated_rules(n);
        let mut per = Vec::new();
        let mut setup = Duration::ZERO;
        for _ in 0..if quick { 1 } else { 5 } {
            let (c, s) = wasm_match_cost(&components, &rules, &subjects, reps);
            per.push(c);
            setup = s;
        }
        let c = median(per);
        println!("{n:>6} rules  {:>9.2} us/event   (begin: compile rules {:.1} ms)", c.as_secs_f64() * 1e6, setup.as_secs_f64() * 1e3);
        costs.push(c);
    }
    println!("ratio    10,000 rules / 10 rules = {:.2}x   (target <= 4x)", costs[2].as_secs_f64() / costs[0].as_secs_f64());

    run_start(&sandbox, &components, &subjects, quick);
}

/// What starting one run's matcher costs: instantiating the built-in matcher and compiling the
/// rules in it (what a run without a snapshot does), against instantiating the rules' prepared
/// snapshot and `begin` (what the daemon's runs do), side by side at each size; and the one-time
/// cost of making the snapshot.
fn run_start(sandbox: &Sandbox, components: &ActiveComponents, subjects: &[(t::MatchSubject, String)], quick: bool) {
    let matcher = &components.matcher.component;
    let rounds = if quick { 1 } else { 15 };
    println!("\n== start a run's matcher (median of {rounds}; instantiate + rules)");
    for n in [10usize, 1_000, 10_000] {
        let wit: Vec<m::Rule> = generated_rules(n).iter().map(Into::into).collect();
        let prepared = sandbox.prepare_matcher(matcher, matcher.source().expect("0.3.0 keeps its bytes"), &wit).unwrap();
        let (mut own, mut snap, mut first, mut memory) = (Vec::new(), Vec::new(), Vec::new(), 0);
        for r in 0..rounds {
            let t0 = Instant::now();
            let mut inst = MatcherInstance::new(matcher, Limits::default()).unwrap();
            std::hint::black_box(inst.begin(&format!("own-{r}"), &wit).unwrap());
            own.push(t0.elapsed());
            memory = inst.largest_memory();
            drop(inst);
            let t0 = Instant::now();
            let mut inst = MatcherInstance::new(&prepared.component, Limits::default()).unwrap();
            inst.begin_prepared(&format!("snap-{r}")).unwrap();
            snap.push(t0.elapsed());
            // A run's first check touches the prepared memory (copy-on-write pages) for the
            // first time, and builds the automata of the rules it runs.
            let t0 = Instant::now();
            for (subject, evidence) in subjects.iter().take(8) {
                std::hint::black_box(inst.check(subject, evidence).unwrap());
            }
            first.push(t0.elapsed());
        }
        let (own, snap, first) = (median(own), median(snap), median(first));
        println!(
            "{n:>6} rules  compile per run {:>8.2} ms   from the snapshot {:>6.3} ms ({:.0}x), its first 8 checks {:.3} ms   snapshot made once in {:.0} ms ({} KiB; prepared memory {:.1} MiB)",
            own.as_secs_f64() * 1e3,
            snap.as_secs_f64() * 1e3,
            own.as_secs_f64() / snap.as_secs_f64(),
            first.as_secs_f64() * 1e3,
            prepared.total_time.as_secs_f64() * 1e3,
            prepared.snapshot_bytes >> 10,
            memory as f64 / (1 << 20) as f64
        );
    }
}
