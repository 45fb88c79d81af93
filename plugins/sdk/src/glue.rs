//! The wit-bindgen glue, wasm32 only: the generated bindings of `wit/v0.3.0`, the one place
//! that converts between them and the native types, and the per-instance state behind the
//! `export_mapper!` / `export_matcher!` macros.
//!
//! One component instance serves one run, so the run's mapper or matcher lives in a
//! thread-local of the instance: the generated `Guest` functions are free functions.

use std::cell::RefCell;

use crate::types as n;
use crate::{Mapper, Matcher};

pub mod mapper {
    wit_bindgen::generate!({
        path: "../../wit/v0.3.0",
        world: "mapper-component",
        pub_export_macro: true,
        default_bindings_module: "orgx_peer_sdk::glue::mapper",
    });
}

pub mod matcher {
    wit_bindgen::generate!({
        path: "../../wit/v0.3.0",
        world: "matcher-component",
        pub_export_macro: true,
        default_bindings_module: "orgx_peer_sdk::glue::matcher",
    });
}

use mapper::orgx::peer::types as w;
use matcher::exports::orgx::peer::matcher as wm;
use matcher::orgx::peer::types as wmt;

trait DynMapper {
    fn map_line(&mut self, line: &[u8]) -> Vec<n::Event>;
    fn end(&mut self, reason: n::EndReason, stderr_tail: Option<String>) -> n::Terminal;
}

impl<M: Mapper> DynMapper for M {
    fn map_line(&mut self, line: &[u8]) -> Vec<n::Event> {
        Mapper::map_line(self, line)
    }
    fn end(&mut self, reason: n::EndReason, stderr_tail: Option<String>) -> n::Terminal {
        Mapper::end(self, reason, stderr_tail)
    }
}

trait DynMatcher {
    fn begin(&mut self, run_id: &str);
    fn check(&mut self, subject: &n::MatchSubject, evidence_ref: &str) -> Vec<n::Deviation>;
}

impl<M: Matcher> DynMatcher for M {
    fn begin(&mut self, run_id: &str) {
        Matcher::begin(self, run_id)
    }

    fn check(&mut self, subject: &n::MatchSubject, evidence_ref: &str) -> Vec<n::Deviation> {
        Matcher::check(self, subject, evidence_ref)
    }
}

thread_local! {
    static MAPPER: RefCell<Option<Box<dyn DynMapper>>> = const { RefCell::new(None) };
    static MATCHER: RefCell<Option<Box<dyn DynMatcher>>> = const { RefCell::new(None) };
}

pub fn mapper_begin<M: Mapper>(ctx: w::RunContext) {
    let mapper: Box<dyn DynMapper> = Box::new(M::begin(run_context(ctx)));
    MAPPER.with(|m| *m.borrow_mut() = Some(mapper));
}

pub fn mapper_map_line(line: &[u8]) -> Vec<w::Event> {
    MAPPER.with(|m| match m.borrow_mut().as_mut() {
        Some(mapper) => mapper.map_line(line).into_iter().map(event).collect(),
        None => Vec::new(),
    })
}

pub fn mapper_end<M: Mapper>(reason: w::EndReason, stderr_tail: Option<String>) -> w::Terminal {
    let reason = match reason {
        w::EndReason::Exited(w::ProcessExit::Code(c)) => n::EndReason::Exited(n::ProcessExit::Code(c)),
        w::EndReason::Exited(w::ProcessExit::Signal(s)) => n::EndReason::Exited(n::ProcessExit::Signal(s)),
        w::EndReason::Cancelled(r) => n::EndReason::Cancelled(r),
        w::EndReason::TimedOut(s) => n::EndReason::TimedOut(s),
    };
    let t = MAPPER.with(|m| {
        let mut m = m.borrow_mut();
        // `end` without `begin` (a process that printed nothing): a mapper with an empty context.
        let mapper = m.get_or_insert_with(|| Box::new(M::begin(n::RunContext::default())));
        mapper.end(reason, stderr_tail)
    });
    terminal(t)
}

pub fn matcher_prepare<M: Matcher>(rules: Vec<wm::Rule>) -> Vec<wm::RuleWarning> {
    let rules = rules
        .into_iter()
        .map(|r| n::Rule {
            skill_id: r.skill_id,
            pattern: r.pattern,
            on: rule_on(r.on),
            dedupe_fingerprint: r.dedupe_fingerprint,
            evidence_kind: r.evidence_kind,
        })
        .collect();
    let (matcher, warnings) = M::prepare(rules);
    let matcher: Box<dyn DynMatcher> = Box::new(matcher);
    MATCHER.with(|m| *m.borrow_mut() = Some(matcher));
    warnings.into_iter().map(|w| wm::RuleWarning { index: w.index, message: w.message }).collect()
}

pub fn matcher_begin<M: Matcher>(run_id: String) {
    MATCHER.with(|m| {
        let mut m = m.borrow_mut();
        // `begin` without `prepare`: a matcher of no rules, as a run with none would have.
        let matcher = m.get_or_insert_with(|| Box::new(M::prepare(Vec::new()).0));
        matcher.begin(&run_id);
    })
}

pub fn matcher_check(subject: wmt::MatchSubject, evidence_ref: String) -> Vec<wm::Deviation> {
    let subject = n::MatchSubject { on: rule_on(subject.on), text: subject.text };
    MATCHER.with(|m| match m.borrow_mut().as_mut() {
        Some(matcher) => matcher
            .check(&subject, &evidence_ref)
            .into_iter()
            .map(|d| wm::Deviation {
                skill_id: d.skill_id,
                evidence_kind: d.evidence_kind,
                evidence_ref: d.evidence_ref,
                dedupe_key: d.dedupe_key,
                severity: d.severity.map(|s| match s {
                    n::Severity::Info => wmt::Severity::Info,
                    n::Severity::Warn => wmt::Severity::Warn,
                    n::Severity::Error => wmt::Severity::Error,
                }),
            })
            .collect(),
        None => Vec::new(),
    })
}

fn rule_on(o: wmt::RuleOn) -> n::RuleOn {
    match o {
        wmt::RuleOn::FileEdit => n::RuleOn::FileEdit,
        wmt::RuleOn::ToolCall => n::RuleOn::ToolCall,
    }
}

fn sub_type(s: w::SourceSubType) -> n::SourceSubType {
    match s {
        w::SourceSubType::Subscription => n::SourceSubType::Subscription,
        w::SourceSubType::ApiKey => n::SourceSubType::ApiKey,
        w::SourceSubType::EnterpriseKey => n::SourceSubType::EnterpriseKey,
        w::SourceSubType::UserManaged => n::SourceSubType::UserManaged,
    }
}

fn run_context(ctx: w::RunContext) -> n::RunContext {
    n::RunContext {
        run_id: ctx.run_id,
        cwd: ctx.cwd,
        driver: ctx.driver,
        detection: ctx.detection.map(|d| n::Detection { source_sub_type: d.source_sub_type.map(sub_type), auth_method: d.auth_method }),
        provider_id: ctx.provider_id,
        model: ctx.model,
        pricing: ctx.pricing.map(|p| n::Pricing { input: p.input, cached_input: p.cached_input, output: p.output }),
    }
}

fn provider_ref(r: n::ProviderRef) -> w::ProviderRef {
    match r {
        n::ProviderRef::Absent => w::ProviderRef::Absent,
        n::ProviderRef::Unknown => w::ProviderRef::Unknown,
        n::ProviderRef::Id(id) => w::ProviderRef::Id(id),
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
        n::Event::Suspended(s) => w::Event::Suspended(w::Suspension {
            session_handle: s.session_handle,
            tool_use_id: s.tool_use_id,
            tool_name: s.tool_name,
            tool_input: s.tool_input,
            tokens_used: s.tokens_used,
            cost_estimate_cents: s.cost_estimate_cents,
            saved_estimate_cents: s.saved_estimate_cents,
        }),
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
            provider_id: provider_ref(c.provider_id),
            observed_provider_id: provider_ref(c.observed_provider_id),
            source_sub_type: match c.source_sub_type {
                n::SourceSubType::Subscription => w::SourceSubType::Subscription,
                n::SourceSubType::ApiKey => w::SourceSubType::ApiKey,
                n::SourceSubType::EnterpriseKey => w::SourceSubType::EnterpriseKey,
                n::SourceSubType::UserManaged => w::SourceSubType::UserManaged,
            },
            source_driver: c.source_driver,
            cost_estimate_cents: c.cost_estimate_cents,
            saved_estimate_cents: c.saved_estimate_cents,
        }),
        n::Terminal::Failed(f) => w::Terminal::Failed(w::Failed { reason: f.reason, recoverable: f.recoverable }),
    }
}
