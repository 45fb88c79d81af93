//! The WebAssembly face of the mapper: wit-bindgen glue between the WIT types and the native
//! ones. One component instance serves one run, so the run's `Mapper` lives in a
//! thread-local of the instance.

use std::cell::RefCell;

use crate::types as n;

wit_bindgen::generate!({ path: "../../wit", world: "mapper-component" });

use exports::orgx::peer::mapper::Guest;
use orgx::peer::types as w;

thread_local! {
    static MAPPER: RefCell<Option<crate::Mapper>> = const { RefCell::new(None) };
}

struct Component;

impl Guest for Component {
    fn begin(ctx: w::RunContext) {
        let mapper = crate::Mapper::new(n::RunContext { run_id: ctx.run_id, cwd: ctx.cwd });
        MAPPER.with(|m| *m.borrow_mut() = Some(mapper));
    }

    fn map_line(line: Vec<u8>) -> Vec<w::Event> {
        MAPPER.with(|m| match m.borrow_mut().as_mut() {
            Some(mapper) => mapper.map_line(&line).into_iter().map(event).collect(),
            None => Vec::new(),
        })
    }

    fn end(reason: w::EndReason, stderr_tail: Option<String>) -> w::Terminal {
        let reason = match reason {
            w::EndReason::Exited(w::ProcessExit::Code(c)) => n::EndReason::Exited(n::ProcessExit::Code(c)),
            w::EndReason::Exited(w::ProcessExit::Signal(s)) => n::EndReason::Exited(n::ProcessExit::Signal(s)),
            w::EndReason::Cancelled(r) => n::EndReason::Cancelled(r),
            w::EndReason::TimedOut(s) => n::EndReason::TimedOut(s),
        };
        let t = MAPPER.with(|m| {
            let mut m = m.borrow_mut();
            let mapper = m.get_or_insert_with(|| crate::Mapper::new(n::RunContext { run_id: String::new(), cwd: None }));
            mapper.end(reason, stderr_tail)
        });
        terminal(t)
    }
}

fn event(e: n::Event) -> w::Event {
    match e {
        n::Event::Started(h) => w::Event::Started(h),
        n::Event::FirstResponse => w::Event::FirstResponse,
        n::Event::Step(s) => w::Event::Step(w::Step {
            kind: match s.kind {
                n::StepKind::FileEdit => w::StepKind::FileEdit,
                n::StepKind::ToolCall => w::StepKind::ToolCall,
                n::StepKind::Chat => w::StepKind::Chat,
                n::StepKind::SkillFire => w::StepKind::SkillFire,
            },
            summary: s.summary,
            evidence_ref: s.evidence_ref,
            confidence: s.confidence,
            subject: s.subject.map(|m| w::MatchSubject {
                on: match m.on {
                    n::RuleOn::FileEdit => w::RuleOn::FileEdit,
                    n::RuleOn::ToolCall => w::RuleOn::ToolCall,
                },
                text: m.text,
            }),
        }),
        n::Event::Terminal(t) => w::Event::Terminal(terminal(t)),
    }
}

fn terminal(t: n::Terminal) -> w::Terminal {
    match t {
        n::Terminal::Completed(c) => w::Terminal::Completed(w::Completed {
            outcome_kind: match c.outcome_kind {
                n::OutcomeKind::Shipped => w::OutcomeKind::Shipped,
                n::OutcomeKind::Blocked => w::OutcomeKind::Blocked,
                n::OutcomeKind::Abandoned => w::OutcomeKind::Abandoned,
                n::OutcomeKind::AwaitingReview => w::OutcomeKind::AwaitingReview,
            },
            tokens_used: c.tokens_used,
            provider: match c.provider {
                n::Provider::Anthropic => w::Provider::Anthropic,
                n::Provider::Openai => w::Provider::Openai,
                n::Provider::Other => w::Provider::Other,
            },
            source_sub_type: match c.source_sub_type {
                n::SourceSubType::Subscription => w::SourceSubType::Subscription,
                n::SourceSubType::ApiKey => w::SourceSubType::ApiKey,
                n::SourceSubType::EnterpriseKey => w::SourceSubType::EnterpriseKey,
            },
            source_driver: c.source_driver,
            cost_estimate_cents: c.cost_estimate_cents,
            saved_estimate_cents: c.saved_estimate_cents,
        }),
        n::Terminal::Failed(f) => w::Terminal::Failed(w::Failed { reason: f.reason, recoverable: f.recoverable }),
    }
}

export!(Component);
