//! Native mirrors of the WIT types (`wit/orgx-peer.wit`), so the mapping logic compiles and
//! runs natively too: the benchmark compares this very code natively and in the sandbox,
//! and the unit tests run without a WebAssembly runtime.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunContext {
    pub run_id: String,
    pub cwd: Option<String>,
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    Shipped,
    Blocked,
    Abandoned,
    AwaitingReview,
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    pub outcome_kind: OutcomeKind,
    pub tokens_used: u64,
    pub provider: Provider,
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

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Started(Option<String>),
    FirstResponse,
    Step(Step),
    Terminal(Terminal),
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
