//! How a run ends. opencode prints no closing line, so what decides the terminal is gathered
//! from the lines as they pass (`Run`: token and cost totals, the last step's finish reason,
//! the last `error` line, whether a permission was refused) and settled in `Run::terminal`
//! by rule 7 of the contract, first matching case first. Attribution comes from the host's
//! `provider_id`, since the stream never names a provider.

use serde_json::Value;

use orgx_peer_sdk::text;
use orgx_peer_sdk::types::{Completed, EndReason, Failed, OutcomeKind, ProcessExit, Provider, ProviderRef, SourceSubType, Terminal};

const REASON_MAX_CHARS: usize = 300;

/// The start of a tool error that means "refused by permission" (auto-rejected in `run` mode).
const PERMISSION_REJECTED: &str = "The user rejected permission";

/// What the lines of one run leave for its terminal.
#[derive(Debug, Default)]
pub struct Run {
    tokens: u64,
    cost_usd: f64,
    /// `None` before any `step_finish`, or when the last one had no reason.
    last_reason: Option<String>,
    error: Option<Value>,
    rejected: bool,
}

impl Run {
    pub fn on_step_finish(&mut self, part: Option<&Value>) {
        self.tokens = self.tokens.saturating_add(step_tokens(part.and_then(|p| p.get("tokens"))));
        if let Some(cost) = part.and_then(|p| p.get("cost")).and_then(Value::as_f64).filter(|c| c.is_finite()) {
            self.cost_usd += cost;
        }
        self.last_reason = part.and_then(|p| p.get("reason")).and_then(Value::as_str).map(str::to_string);
    }

    /// The latest `error` line wins: it is the one closest to the end of the run.
    pub fn on_error(&mut self, error: Option<&Value>) {
        self.error = Some(error.cloned().unwrap_or(Value::Null));
    }

    pub fn on_tool_state(&mut self, state: Option<&Value>) {
        let field = |k: &str| state.and_then(|s| s.get(k)).and_then(Value::as_str);
        if field("status") == Some("error") && field("error").is_some_and(|e| e.starts_with(PERMISSION_REJECTED)) {
            self.rejected = true;
        }
    }

    /// Rule 7 of the mapping contract; the first case that applies wins.
    pub fn terminal(&self, reason: &EndReason, stderr_tail: Option<&str>, provider_id: Option<&str>) -> Terminal {
        match reason {
            EndReason::Cancelled(r) if r.trim().is_empty() => return failed("cancelled", false),
            EndReason::Cancelled(r) => return failed(&format!("cancelled: {r}"), false),
            EndReason::TimedOut(n) => return failed(&format!("timed out after {n} s"), true),
            EndReason::Exited(_) => {}
        }
        if let Some(error) = &self.error {
            return failed(&error_reason(error), error_recoverable(error));
        }
        match reason {
            EndReason::Exited(ProcessExit::Signal(n)) => failed(&format!("opencode killed by {}", signal_name(*n)), true),
            EndReason::Exited(ProcessExit::Code(n)) if *n != 0 => {
                let line = stderr_tail.and_then(|t| t.lines().rev().map(str::trim).find(|l| !l.is_empty()));
                failed(&line.map_or_else(|| format!("opencode exited {n}"), str::to_string), false)
            }
            _ if self.last_reason.as_deref() == Some("stop") || self.rejected => self.completed(provider_id),
            _ => {
                let last = self.last_reason.as_deref().unwrap_or("none");
                failed(&format!("opencode stopped before the turn finished (last step: {last})"), false)
            }
        }
    }

    fn completed(&self, provider_id: Option<&str>) -> Terminal {
        // The host passes the provider part of `<provider>/<model>`; a whole model id is
        // tolerated. With none (replay knows no settings) the provider is unknown, and an
        // explicit `null` says so instead of leaving the field out, which would read as "not
        // applicable".
        let provider_id = provider_id.map(|p| p.split('/').next().unwrap_or(p).trim()).filter(|p| !p.is_empty());
        Terminal::Completed(Completed {
            outcome_kind: if self.rejected { OutcomeKind::Blocked } else { OutcomeKind::Shipped },
            tokens_used: self.tokens,
            provider: provider_id.map_or(Provider::Other, provider_of),
            provider_id: ProviderRef::Absent,
            observed_provider_id: provider_id.map_or(ProviderRef::Unknown, |p| ProviderRef::Id(p.to_string())),
            source_sub_type: SourceSubType::UserManaged,
            source_driver: "opencode".into(),
            cost_estimate_cents: cents(self.cost_usd),
            saved_estimate_cents: None,
        })
    }
}

fn failed(reason: &str, recoverable: bool) -> Terminal {
    Terminal::Failed(Failed { reason: text::reason(reason, REASON_MAX_CHARS), recoverable })
}

/// The reference peer's rule: by substring of the provider id.
pub fn provider_of(provider_id: &str) -> Provider {
    if provider_id.contains("anthropic") {
        Provider::Anthropic
    } else if provider_id.contains("openai") {
        Provider::Openai
    } else {
        Provider::Other
    }
}

/// `tokens.total`, else the five-way sum it stands for; missing fields count zero.
pub fn step_tokens(tokens: Option<&Value>) -> u64 {
    let field = |v: Option<&Value>, k: &str| v.and_then(|v| v.get(k)).and_then(Value::as_u64).unwrap_or(0);
    if let Some(total) = tokens.and_then(|t| t.get("total")).and_then(Value::as_u64) {
        return total;
    }
    let cache = tokens.and_then(|t| t.get("cache"));
    [field(tokens, "input"), field(tokens, "output"), field(tokens, "reasoning"), field(cache, "read"), field(cache, "write")]
        .into_iter()
        .fold(0, u64::saturating_add)
}

/// `floor(usd × 100 + 0.5)`; negative or NaN → 0. The cents are first rounded to 1e-9 so that
/// a sum of decimal costs that lands a hair under a half (3.4999999999999996) still rounds up.
pub fn cents(usd: f64) -> u64 {
    let c = ((usd * 100.0) * 1e9).round() / 1e9;
    if c.is_finite() && c > 0.0 {
        (c + 0.5).floor() as u64
    } else {
        0
    }
}

/// `error.data.message`, else `error.name`.
fn error_reason(error: &Value) -> String {
    let message = error.get("data").and_then(|d| d.get("message")).and_then(Value::as_str).filter(|m| !m.trim().is_empty());
    let name = error.get("name").and_then(Value::as_str).filter(|n| !n.trim().is_empty());
    message.or(name).unwrap_or("opencode reported an error").to_string()
}

/// `isRetryable` when it is a boolean, else by `statusCode` when it is a number.
fn error_recoverable(error: &Value) -> bool {
    let data = error.get("data");
    if let Some(retryable) = data.and_then(|d| d.get("isRetryable")).and_then(Value::as_bool) {
        return retryable;
    }
    match data.and_then(|d| d.get("statusCode")).and_then(Value::as_f64) {
        Some(code) => code == 408.0 || code == 409.0 || code == 429.0 || (code.fract() == 0.0 && (500.0..600.0).contains(&code)),
        None => false,
    }
}

/// Linux signal names (x86-64 and arm64 numbering).
pub fn signal_name(n: i32) -> String {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    match usize::try_from(n).ok().and_then(|i| i.checked_sub(1)).and_then(|i| NAMES.get(i)) {
        Some(name) => (*name).to_string(),
        None => format!("signal {n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn exit(code: i32) -> EndReason {
        EndReason::Exited(ProcessExit::Code(code))
    }

    fn fail(reason: &str, recoverable: bool) -> Terminal {
        Terminal::Failed(Failed { reason: reason.into(), recoverable })
    }

    fn finished(reason: &str) -> Run {
        let mut run = Run::default();
        run.on_step_finish(Some(&json!({"reason": reason, "tokens": {"total": 10}, "cost": 0.01})));
        run
    }

    fn api_error(data: Value) -> Value {
        json!({"name": "APIError", "data": data})
    }

    #[test]
    fn cents_round_half_up() {
        let table = [
            (0.006833, 1),
            (0.00875, 1),
            (0.005, 1),
            (0.0049, 0),
            (0.025, 3),
            (0.015, 2),
            (0.0035, 0),
            (0.0, 0),
            (-1.0, 0),
            (f64::NAN, 0),
            (1.0, 100),
        ];
        for (usd, want) in table {
            assert_eq!(cents(usd), want, "{usd}");
        }
        // Six step costs that sum to exactly 3.5 cents in decimals, but to 3.4999999999999996 in
        // binary: the half must still round up.
        let costs = [0.005034, 0.009363, 0.000984, 0.009406, 0.001112, 0.009101];
        let sum = costs.iter().fold(0.0_f64, |a, c| a + c);
        assert!(sum * 100.0 < 3.5 && (sum * 100.0 + 0.5).floor() == 3.0, "the float sum is a hair under: {sum}");
        assert_eq!(cents(sum), 4);
    }

    #[test]
    fn costs_sum_over_steps() {
        let mut run = Run::default();
        for cost in [
            json!(0.005034),
            json!(0.009363),
            json!(0.000984),
            json!(0.009406),
            json!(0.001112),
            json!(0.009101),
            json!("0.5"),
            json!(null),
        ] {
            run.on_step_finish(Some(&json!({"reason": "stop", "cost": cost})));
        }
        match run.terminal(&exit(0), None, Some("fake")) {
            Terminal::Completed(c) => assert_eq!((c.cost_estimate_cents, c.tokens_used), (4, 0)),
            t => panic!("{t:?}"),
        }
    }

    #[test]
    fn tokens_prefer_total_else_the_five_way_sum() {
        let table = [
            (json!({"total": 2325, "input": 252, "output": 25, "reasoning": 0, "cache": {"write": 0, "read": 2048}}), 2325),
            (json!({"input": 252, "output": 25, "reasoning": 3, "cache": {"write": 7, "read": 2048}}), 2335),
            (json!({"input": 100, "output": 5}), 105),
            (json!({"total": "x", "input": 1, "cache": {"read": 2}}), 3),
            (json!({"input": -4, "output": 1.5, "cache": 9}), 0),
            (json!({}), 0),
            (json!(7), 0),
        ];
        for (tokens, want) in table {
            assert_eq!(step_tokens(Some(&tokens)), want, "{tokens}");
        }
        assert_eq!(step_tokens(None), 0);
    }

    #[test]
    fn recoverable_from_is_retryable_then_status_code() {
        let table = [
            (json!({"isRetryable": true, "statusCode": 401}), true),
            (json!({"isRetryable": false, "statusCode": 500}), false),
            (json!({"isRetryable": "yes", "statusCode": 503}), true),
            (json!({"statusCode": 408}), true),
            (json!({"statusCode": 409}), true),
            (json!({"statusCode": 429}), true),
            (json!({"statusCode": 500}), true),
            (json!({"statusCode": 599}), true),
            (json!({"statusCode": 600}), false),
            (json!({"statusCode": 499}), false),
            (json!({"statusCode": 401}), false),
            (json!({"statusCode": 400}), false),
            (json!({"statusCode": "500"}), false),
            (json!({"message": "m"}), false),
        ];
        for (data, want) in table {
            assert_eq!(error_recoverable(&api_error(data.clone())), want, "{data}");
        }
        assert!(!error_recoverable(&json!(null)));
    }

    #[test]
    fn error_reasons() {
        let mut run = Run::default();
        run.on_error(Some(&api_error(json!({"message": "first", "isRetryable": true}))));
        run.on_error(Some(&api_error(json!({"message": "Bad key sk-abcdefgh1234\nsecond line", "statusCode": 401}))));
        assert_eq!(run.terminal(&exit(1), None, None), fail("Bad key sk-[redacted] second line", false));
        let table = [
            (json!({"name": "UnknownError", "data": {"message": "  ", "ref": "err_1"}}), "UnknownError"),
            (json!({"name": "ProviderAuthError", "data": {}}), "ProviderAuthError"),
            (json!({"name": 5}), "opencode reported an error"),
            (json!(null), "opencode reported an error"),
        ];
        for (error, want) in table {
            let mut run = Run::default();
            run.on_error(Some(&error));
            assert_eq!(run.terminal(&exit(1), None, None), fail(want, false), "{error}");
        }
        let mut run = Run::default();
        run.on_error(Some(&api_error(json!({ "message": "é".repeat(400) }))));
        match run.terminal(&exit(1), None, None) {
            Terminal::Failed(f) => assert_eq!(f.reason.chars().count(), 300),
            t => panic!("{t:?}"),
        }
    }

    #[test]
    fn terminal_precedence() {
        let mut errored = finished("stop");
        errored.on_error(Some(&api_error(json!({"message": "boom", "statusCode": 503}))));
        let stopped = finished("stop");
        let signal = |n| EndReason::Exited(ProcessExit::Signal(n));
        let table: [(&Run, EndReason, Option<&str>, Terminal); 12] = [
            // 1. The host's own ending beats everything the lines say.
            (&errored, EndReason::Cancelled("operator".into()), None, fail("cancelled: operator", false)),
            (&errored, EndReason::Cancelled(String::new()), None, fail("cancelled", false)),
            (&stopped, EndReason::TimedOut(90), None, fail("timed out after 90 s", true)),
            // 2. An error line beats the exit, even a signal or a clean exit.
            (&errored, signal(15), None, fail("boom", true)),
            (&errored, exit(0), None, fail("boom", true)),
            (&errored, exit(1), Some("stderr text"), fail("boom", true)),
            // 3. A signal beats a finished turn.
            (&stopped, signal(15), None, fail("opencode killed by SIGTERM", true)),
            (&stopped, signal(9), None, fail("opencode killed by SIGKILL", true)),
            // 4. Non-zero exit: the last non-empty stderr line, else the status.
            (&stopped, exit(2), Some("first\nFatal: sk-abcdefgh1234 refused\n\n  \n"), fail("Fatal: sk-[redacted] refused", false)),
            (&stopped, exit(2), Some(" \n"), fail("opencode exited 2", false)),
            (&stopped, exit(137), None, fail("opencode exited 137", false)),
            // 6. Exit 0 without a final "stop".
            (&finished("tool-calls"), exit(0), None, fail("opencode stopped before the turn finished (last step: tool-calls)", false)),
        ];
        for (run, reason, stderr, want) in table {
            assert_eq!(run.terminal(&reason, stderr, Some("fake")), want, "{reason:?} {stderr:?}");
        }
        assert_eq!(
            Run::default().terminal(&exit(0), Some("noise"), None),
            fail("opencode stopped before the turn finished (last step: none)", false)
        );
        // 5. Exit 0 after "stop".
        assert!(matches!(stopped.terminal(&exit(0), None, None), Terminal::Completed(c) if c.outcome_kind == OutcomeKind::Shipped));
    }

    #[test]
    fn a_later_step_without_stop_undoes_an_earlier_stop() {
        let mut run = finished("stop");
        run.on_step_finish(Some(&json!({"tokens": {"total": 1}})));
        assert_eq!(run.terminal(&exit(0), None, None), fail("opencode stopped before the turn finished (last step: none)", false));
    }

    #[test]
    fn permission_rejection_blocks_with_or_without_stop() {
        let rejected = json!({"status": "error", "error": "The user rejected permission to use this specific tool call."});
        for last in ["tool-calls", "stop"] {
            let mut run = finished(last);
            run.on_tool_state(Some(&rejected));
            match run.terminal(&exit(0), None, Some("fake")) {
                Terminal::Completed(c) => assert_eq!((c.outcome_kind, c.tokens_used, c.cost_estimate_cents), (OutcomeKind::Blocked, 10, 1)),
                t => panic!("{last}: {t:?}"),
            }
            assert_eq!(run.terminal(&exit(1), None, None), fail("opencode exited 1", false), "a failure still fails");
        }
        let mut run = finished("tool-calls");
        for state in [
            json!({"status": "completed", "error": "The user rejected permission"}),
            json!({"status": "error", "error": "File /w/x not found"}),
            json!({"status": "error", "error": "the user rejected permission"}),
            json!({"status": "error"}),
        ] {
            run.on_tool_state(Some(&state));
        }
        run.on_tool_state(None);
        assert!(!run.rejected);
    }

    #[test]
    fn attribution() {
        let table = [
            (Some("anthropic"), Provider::Anthropic, ProviderRef::Id("anthropic".into())),
            (Some("my-anthropic-proxy"), Provider::Anthropic, ProviderRef::Id("my-anthropic-proxy".into())),
            (Some("openai"), Provider::Openai, ProviderRef::Id("openai".into())),
            (Some("azure-openai"), Provider::Openai, ProviderRef::Id("azure-openai".into())),
            (Some("fake"), Provider::Other, ProviderRef::Id("fake".into())),
            (Some("openrouter/anthropic/claude"), Provider::Other, ProviderRef::Id("openrouter".into())),
            (Some("Anthropic"), Provider::Other, ProviderRef::Id("Anthropic".into())),
            (Some(""), Provider::Other, ProviderRef::Unknown),
            (None, Provider::Other, ProviderRef::Unknown),
        ];
        for (id, provider, observed) in table {
            let Terminal::Completed(c) = finished("stop").terminal(&exit(0), None, id) else { panic!("{id:?}") };
            assert_eq!((c.provider, c.observed_provider_id), (provider, observed), "{id:?}");
            assert_eq!(c.provider_id, ProviderRef::Absent);
            assert_eq!(c.source_sub_type, SourceSubType::UserManaged);
            assert_eq!(c.source_driver, "opencode");
            assert_eq!(c.saved_estimate_cents, None);
        }
    }

    #[test]
    fn signal_names() {
        let table = [(1, "SIGHUP"), (2, "SIGINT"), (9, "SIGKILL"), (15, "SIGTERM"), (16, "SIGSTKFLT"), (29, "SIGIO"), (31, "SIGSYS")];
        for (n, want) in table {
            assert_eq!(signal_name(n), want);
        }
        assert_eq!(signal_name(0), "signal 0");
        assert_eq!(signal_name(34), "signal 34");
        assert_eq!(signal_name(-3), "signal -3");
    }
}
