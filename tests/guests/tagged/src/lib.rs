//! A mapper whose identity and behaviour live in a tag in its data segment, so a test can
//! make many distinct, validly built versions (and faulty ones) by patching bytes instead of
//! rebuilding. The tag is `ORGX-TAG:vNNNN:MM.`: a version, and a mode — `ok` (behave), `tr`
//! (trap on every line: fails the admission self-test), `qb` (trap only on lines containing
//! `boom`: passes the self-test, faults in live runs, so it gets quarantined), `lp` (loop on
//! every line: a self-test that never ends, stopped by the call deadline).

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "mapper-component" });

use exports::orgx::peer::mapper::Guest;
use orgx::peer::types::{Completed, EndReason, Event, Failed, OutcomeKind, Provider, RunContext, SourceSubType, Step, StepKind, Terminal};

static TAG: [u8; 18] = *b"ORGX-TAG:v0001:ok.";

fn tag() -> [u8; 18] {
    // SAFETY: reading a static; volatile so the bytes stay in the data segment, patchable.
    unsafe { std::ptr::read_volatile(&TAG) }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

struct Tagged;

impl Guest for Tagged {
    fn begin(_ctx: RunContext) {}

    fn map_line(line: Vec<u8>) -> Vec<Event> {
        let t = tag();
        let version = String::from_utf8_lossy(&t[9..14]).into_owned();
        match &t[15..17] {
            b"tr" => panic!("tagged {version} traps on every line"),
            b"qb" if contains(&line, b"boom") => panic!("tagged {version} trapped on a boom line"),
            b"lp" => loop {
                std::hint::black_box(&line);
            },
            _ => {}
        }
        if contains(&line, b"\"type\":\"system\"") {
            return vec![Event::Started(None)];
        }
        if contains(&line, b"\"type\":\"result\"") {
            return vec![Event::Terminal(Terminal::Completed(Completed {
                outcome_kind: OutcomeKind::Shipped,
                tokens_used: 0,
                provider: Provider::Anthropic,
                source_sub_type: SourceSubType::ApiKey,
                source_driver: "claude_code".into(),
                cost_estimate_cents: 0,
                saved_estimate_cents: None,
            }))];
        }
        vec![Event::Step(Step {
            kind: StepKind::Chat,
            summary: format!("{version} {}", String::from_utf8_lossy(&line)),
            evidence_ref: None,
            confidence: None,
            subject: None,
        })]
    }

    fn end(_reason: EndReason, _stderr_tail: Option<String>) -> Terminal {
        let t = tag();
        Terminal::Failed(Failed {
            reason: format!("tagged {} ended without a result", String::from_utf8_lossy(&t[9..14])),
            recoverable: true,
        })
    }
}

export!(Tagged);
