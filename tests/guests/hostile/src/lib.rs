//! A hostile mapper for the sandbox tests. Each stdout line names a misbehaviour; anything
//! else maps to one chat step, so a test can show the host still works around the attack.

use std::cell::RefCell;

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "mapper-component" });

use exports::orgx::peer::mapper::Guest;
use orgx::peer::types::{EndReason, Event, Failed, MatchSubject, RuleOn, RunContext, Step, StepKind, Terminal};

struct Hostile;

thread_local! {
    static HOARD: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

#[allow(unconditional_recursion)]
fn recurse(n: u64) -> u64 {
    // `black_box` keeps the compiler from turning the recursion into a loop.
    std::hint::black_box(recurse(std::hint::black_box(n + 1))) + 1
}

fn one_byte_step() -> Event {
    Event::Step(Step { kind: StepKind::Chat, summary: "x".into(), evidence_ref: None, confidence: None, subject: None })
}

impl Guest for Hostile {
    fn begin(ctx: RunContext) {
        if ctx.run_id == "loop-in-begin" {
            loop {
                std::hint::black_box(());
            }
        }
    }

    fn map_line(line: Vec<u8>) -> Vec<Event> {
        match line.as_slice() {
            b"loop" => loop {
                std::hint::black_box(());
            },
            b"bomb" => HOARD.with(|h| loop {
                // Touch every page so the memory is really committed.
                h.borrow_mut().push(vec![1u8; 1 << 20]);
            }),
            b"trap" => panic!("hostile guest panics on purpose"),
            b"recurse" => {
                recurse(0);
                Vec::new()
            }
            b"huge" => vec![Event::Step(Step {
                kind: StepKind::Chat,
                summary: "x".repeat(8 << 20),
                evidence_ref: None,
                confidence: None,
                subject: None,
            })],
            // A flood: 100,000 or a million one-byte steps for one line (the per-call item
            // limit), and just under that limit on every line (the run's budgets).
            b"flood" => (0..100_000).map(|_| one_byte_step()).collect(),
            b"flood-1m" => (0..1_000_000).map(|_| one_byte_step()).collect(),
            b"many" => (0..999).map(|_| one_byte_step()).collect(),
            b"spam" => {
                for _ in 0..5_000 {
                    eprintln!("hostile guest floods its stderr");
                }
                Vec::new()
            }
            // `nearly:N`: allocate N bytes (each page touched), free them, map one step. Just
            // under the memory limit on every call is within the rules: the run must go on,
            // and what the instance holds stays at its limit (its memory never shrinks).
            l if l.starts_with(b"nearly:") => {
                let n: usize = String::from_utf8_lossy(&l[7..]).parse().unwrap_or(0);
                let v = std::hint::black_box(vec![1u8; n]);
                vec![Event::Step(Step {
                    kind: StepKind::Chat,
                    summary: format!("held {} bytes", v.len()),
                    evidence_ref: None,
                    confidence: None,
                    subject: None,
                })]
            }
            // `subject:TEXT`: a tool-call step whose subject the matcher sees (the flooding
            // matcher reads `flood:N` there).
            l if l.starts_with(b"subject:") => vec![Event::Step(Step {
                kind: StepKind::ToolCall,
                summary: "tool call".into(),
                evidence_ref: Some("ev".into()),
                confidence: None,
                subject: Some(MatchSubject { on: RuleOn::ToolCall, text: String::from_utf8_lossy(&l[8..]).into_owned() }),
            })],
            _ => vec![Event::Step(Step {
                kind: StepKind::Chat,
                summary: String::from_utf8_lossy(&line).into_owned(),
                evidence_ref: None,
                confidence: None,
                subject: None,
            })],
        }
    }

    fn end(_reason: EndReason, _stderr_tail: Option<String>) -> Terminal {
        Terminal::Failed(Failed { reason: "hostile guest ended".into(), recoverable: false })
    }
}

export!(Hostile);
