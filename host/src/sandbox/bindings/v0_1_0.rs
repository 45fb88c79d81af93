//! `wit/v0.1.0`, served beside the newest version: a component built and signed against
//! 0.1.0 keeps working unchanged. Its values convert to the newest types here and nowhere
//! else — up for what a component returns, down for what the host hands it. 0.1.0 has no
//! `user-managed` credentials, no provider ids (they are left out) and no suspension.

use super::matcher_types as new_m;
use super::types as new;

pub mod mapper {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "mapper-component",
    });
}

pub mod matcher {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "matcher-component",
        with: { "orgx:peer/types": super::mapper::orgx::peer::types },
    });
}

use mapper::orgx::peer::types as old;
use matcher::exports::orgx::peer::matcher as old_m;

impl From<&new::RunContext> for old::RunContext {
    fn from(c: &new::RunContext) -> old::RunContext {
        old::RunContext { run_id: c.run_id.clone(), cwd: c.cwd.clone() }
    }
}

impl From<&new::EndReason> for old::EndReason {
    fn from(r: &new::EndReason) -> old::EndReason {
        match r {
            new::EndReason::Exited(new::ProcessExit::Code(c)) => old::EndReason::Exited(old::ProcessExit::Code(*c)),
            new::EndReason::Exited(new::ProcessExit::Signal(s)) => old::EndReason::Exited(old::ProcessExit::Signal(*s)),
            new::EndReason::Cancelled(why) => old::EndReason::Cancelled(why.clone()),
            new::EndReason::TimedOut(s) => old::EndReason::TimedOut(*s),
        }
    }
}

impl From<new::RuleOn> for old::RuleOn {
    fn from(on: new::RuleOn) -> old::RuleOn {
        match on {
            new::RuleOn::FileEdit => old::RuleOn::FileEdit,
            new::RuleOn::ToolCall => old::RuleOn::ToolCall,
        }
    }
}

impl From<old::RuleOn> for new::RuleOn {
    fn from(on: old::RuleOn) -> new::RuleOn {
        match on {
            old::RuleOn::FileEdit => new::RuleOn::FileEdit,
            old::RuleOn::ToolCall => new::RuleOn::ToolCall,
        }
    }
}

impl From<&new::MatchSubject> for old::MatchSubject {
    fn from(s: &new::MatchSubject) -> old::MatchSubject {
        old::MatchSubject { on: s.on.into(), text: s.text.clone() }
    }
}

impl From<&new_m::Rule> for old_m::Rule {
    fn from(r: &new_m::Rule) -> old_m::Rule {
        old_m::Rule {
            skill_id: r.skill_id.clone(),
            pattern: r.pattern.clone(),
            on: r.on.into(),
            dedupe_fingerprint: r.dedupe_fingerprint.clone(),
            evidence_kind: r.evidence_kind.clone(),
        }
    }
}

impl From<old_m::RuleWarning> for new_m::RuleWarning {
    fn from(w: old_m::RuleWarning) -> new_m::RuleWarning {
        new_m::RuleWarning { index: w.index, message: w.message }
    }
}

impl From<old_m::Deviation> for new_m::Deviation {
    fn from(d: old_m::Deviation) -> new_m::Deviation {
        new_m::Deviation {
            skill_id: d.skill_id,
            evidence_kind: d.evidence_kind,
            evidence_ref: d.evidence_ref,
            dedupe_key: d.dedupe_key,
            severity: d.severity.map(|s| match s {
                old::Severity::Info => new::Severity::Info,
                old::Severity::Warn => new::Severity::Warn,
                old::Severity::Error => new::Severity::Error,
            }),
        }
    }
}

impl From<old::Terminal> for new::Terminal {
    fn from(t: old::Terminal) -> new::Terminal {
        match t {
            old::Terminal::Completed(c) => new::Terminal::Completed(new::Completed {
                outcome_kind: match c.outcome_kind {
                    old::OutcomeKind::Shipped => new::OutcomeKind::Shipped,
                    old::OutcomeKind::Blocked => new::OutcomeKind::Blocked,
                    old::OutcomeKind::Abandoned => new::OutcomeKind::Abandoned,
                    old::OutcomeKind::AwaitingReview => new::OutcomeKind::AwaitingReview,
                },
                tokens_used: c.tokens_used,
                provider: match c.provider {
                    old::Provider::Anthropic => new::Provider::Anthropic,
                    old::Provider::Openai => new::Provider::Openai,
                    old::Provider::Other => new::Provider::Other,
                },
                provider_id: new::ProviderRef::Absent,
                observed_provider_id: new::ProviderRef::Absent,
                source_sub_type: match c.source_sub_type {
                    old::SourceSubType::Subscription => new::SourceSubType::Subscription,
                    old::SourceSubType::ApiKey => new::SourceSubType::ApiKey,
                    old::SourceSubType::EnterpriseKey => new::SourceSubType::EnterpriseKey,
                },
                source_driver: c.source_driver,
                cost_estimate_cents: c.cost_estimate_cents,
                saved_estimate_cents: c.saved_estimate_cents,
            }),
            old::Terminal::Failed(f) => new::Terminal::Failed(new::Failed { reason: f.reason, recoverable: f.recoverable }),
        }
    }
}

impl From<old::Event> for new::Event {
    fn from(e: old::Event) -> new::Event {
        match e {
            old::Event::Started(handle) => new::Event::Started(handle),
            old::Event::FirstResponse => new::Event::FirstResponse,
            old::Event::Step(s) => new::Event::Step(new::Step {
                kind: match s.kind {
                    old::StepKind::FileEdit => new::StepKind::FileEdit,
                    old::StepKind::ToolCall => new::StepKind::ToolCall,
                    old::StepKind::Chat => new::StepKind::Chat,
                    old::StepKind::SkillFire => new::StepKind::SkillFire,
                },
                summary: s.summary,
                evidence_ref: s.evidence_ref,
                confidence: s.confidence,
                subject: s.subject.map(|m| new::MatchSubject { on: m.on.into(), text: m.text }),
            }),
            old::Event::Terminal(t) => new::Event::Terminal(t.into()),
        }
    }
}
