//! Native mirrors of the WIT types of `wit/v0.3.0/orgx-peer.wit`, so component logic
//! compiles and runs natively too: the benchmarks compare the very same code natively and in
//! the sandbox, and unit tests run without a WebAssembly runtime. The glue (`glue.rs`)
//! converts between these and the generated types; every field here has a WIT twin.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    FileEdit,
    ToolCall,
    Chat,
    SkillFire,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleOn {
    FileEdit,
    ToolCall,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Anthropic,
    Openai,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceSubType {
    Subscription,
    ApiKey,
    EnterpriseKey,
    UserManaged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    Shipped,
    Blocked,
    Abandoned,
    AwaitingReview,
}

/// `provider_id` / `observed_provider_id`: left out, `null`, or a string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ProviderRef {
    #[default]
    Absent,
    Unknown,
    Id(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchSubject {
    pub on: RuleOn,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub kind: StepKind,
    pub summary: String,
    pub evidence_ref: Option<String>,
    pub confidence: Option<f32>,
    pub subject: Option<MatchSubject>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    pub outcome_kind: OutcomeKind,
    pub tokens_used: u64,
    pub provider: Provider,
    pub provider_id: ProviderRef,
    pub observed_provider_id: ProviderRef,
    pub source_sub_type: SourceSubType,
    pub source_driver: String,
    pub cost_estimate_cents: u64,
    pub saved_estimate_cents: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub reason: String,
    pub recoverable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Terminal {
    Completed(Completed),
    Failed(Failed),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspension {
    pub session_handle: Option<String>,
    pub tool_use_id: String,
    pub tool_name: String,
    /// The tool call's input as compact JSON.
    pub tool_input: String,
    pub tokens_used: u64,
    pub cost_estimate_cents: u64,
    pub saved_estimate_cents: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Started(Option<String>),
    FirstResponse,
    Step(Step),
    Terminal(Terminal),
    Suspended(Suspension),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessExit {
    Code(i32),
    Signal(i32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    Exited(ProcessExit),
    Cancelled(String),
    TimedOut(u32),
}

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pricing {
    pub input: f64,
    pub cached_input: f64,
    pub output: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Detection {
    pub source_sub_type: Option<SourceSubType>,
    pub auth_method: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunContext {
    pub run_id: String,
    pub cwd: Option<String>,
    pub driver: String,
    /// The host's cached detection of the CLI; `None` in `replay`.
    pub detection: Option<Detection>,
    pub provider_id: Option<String>,
    pub model: Option<String>,
    pub pricing: Option<Pricing>,
}

impl RunContext {
    /// A context with only a run id and working directory (tests, replay).
    pub fn new(run_id: impl Into<String>, cwd: Option<String>) -> RunContext {
        RunContext { run_id: run_id.into(), cwd, ..RunContext::default() }
    }
}

/// One flattened rule from `GET /api/v1/plan-skills`.
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deviation {
    pub skill_id: String,
    pub evidence_kind: String,
    pub evidence_ref: String,
    pub dedupe_key: String,
    pub severity: Option<Severity>,
}
