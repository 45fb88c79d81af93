//! The one place where the sandbox's WIT values and the host's own types meet: plan-skills
//! rules go in as WIT records, and what components return comes out as protocol values.
//! Older WIT versions convert to the newest types in `bindings::v0_1_0`; everything here
//! speaks the newest.

use super::bindings::{matcher_types as m, types as t};
use crate::protocol as p;
use crate::rules::{Rule, RuleOn};

impl From<&Rule> for m::Rule {
    fn from(r: &Rule) -> m::Rule {
        m::Rule {
            skill_id: r.skill_id.clone(),
            pattern: r.pattern.clone(),
            on: match r.on {
                RuleOn::FileEdit => t::RuleOn::FileEdit,
                RuleOn::ToolCall => t::RuleOn::ToolCall,
            },
            dedupe_fingerprint: r.dedupe_fingerprint.clone(),
            evidence_kind: r.evidence_kind.clone(),
        }
    }
}

impl From<t::StepKind> for p::StepKind {
    fn from(k: t::StepKind) -> p::StepKind {
        match k {
            t::StepKind::FileEdit => p::StepKind::FileEdit,
            t::StepKind::ToolCall => p::StepKind::ToolCall,
            t::StepKind::Chat => p::StepKind::Chat,
            t::StepKind::SkillFire => p::StepKind::SkillFire,
        }
    }
}

impl From<t::Severity> for p::Severity {
    fn from(s: t::Severity) -> p::Severity {
        match s {
            t::Severity::Info => p::Severity::Info,
            t::Severity::Warn => p::Severity::Warn,
            t::Severity::Error => p::Severity::Error,
        }
    }
}

impl From<t::OutcomeKind> for p::OutcomeKind {
    fn from(k: t::OutcomeKind) -> p::OutcomeKind {
        match k {
            t::OutcomeKind::Shipped => p::OutcomeKind::Shipped,
            t::OutcomeKind::Blocked => p::OutcomeKind::Blocked,
            t::OutcomeKind::Abandoned => p::OutcomeKind::Abandoned,
            t::OutcomeKind::AwaitingReview => p::OutcomeKind::AwaitingReview,
        }
    }
}

impl From<t::Provider> for p::Provider {
    fn from(k: t::Provider) -> p::Provider {
        match k {
            t::Provider::Anthropic => p::Provider::Anthropic,
            t::Provider::Openai => p::Provider::Openai,
            t::Provider::Other => p::Provider::Other,
        }
    }
}

impl From<t::SourceSubType> for p::SourceSubType {
    fn from(k: t::SourceSubType) -> p::SourceSubType {
        match k {
            t::SourceSubType::Subscription => p::SourceSubType::Subscription,
            t::SourceSubType::ApiKey => p::SourceSubType::ApiKey,
            t::SourceSubType::EnterpriseKey => p::SourceSubType::EnterpriseKey,
            t::SourceSubType::UserManaged => p::SourceSubType::UserManaged,
        }
    }
}

/// `provider_id` / `observed_provider_id`: absent stays absent, unknown is `null`.
pub fn provider_ref(r: t::ProviderRef) -> Option<Option<String>> {
    match r {
        t::ProviderRef::Absent => None,
        t::ProviderRef::Unknown => Some(None),
        t::ProviderRef::Id(id) => Some(Some(id)),
    }
}

/// A mapper context with what every run knows: its id, directory and driver. Detection,
/// provider and pricing are filled in by the caller where it knows them.
pub fn run_context(run_id: impl Into<String>, cwd: Option<String>, driver: &str) -> t::RunContext {
    t::RunContext { run_id: run_id.into(), cwd, driver: driver.into(), detection: None, provider_id: None, model: None, pricing: None }
}
