//! Native mirrors of the matcher's WIT types, so the matching logic runs natively too (tests,
//! benchmark) and in the sandbox.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleOn {
    FileEdit,
    ToolCall,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub skill_id: String,
    pub pattern: String,
    pub on: RuleOn,
    pub dedupe_fingerprint: String,
    pub evidence_kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleWarning {
    pub index: u32,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deviation {
    pub skill_id: String,
    pub evidence_kind: String,
    pub evidence_ref: String,
    pub dedupe_key: String,
    pub severity: Option<Severity>,
}
