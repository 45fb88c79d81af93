//! How a run ends: the `result` line mapped to `task.completed` / `task.failed`, and the
//! endings without one (exit, signal, cancel, timeout). Money and tokens follow the
//! contract's arithmetic exactly: cents round half up, missing usage fields count zero.

use serde_json::Value;

use orgx_peer_sdk::types::{
    Completed, EndReason, Failed, OutcomeKind, ProcessExit, Provider, ProviderRef, SourceSubType, Suspension, Terminal,
};

const REASON_MAX_CHARS: usize = 300;

/// A `task.failed` whose reason may come from the CLI: one line, credentials redacted
/// (protocol spec §6), at most 300 characters.
fn failed(reason: &str, recoverable: bool) -> Terminal {
    Terminal::Failed(Failed { reason: orgx_peer_sdk::text::reason(reason, REASON_MAX_CHARS), recoverable })
}

/// `floor(usd × 100 + 0.5)`; negative, NaN or absent → 0.
pub fn cents(usd: Option<f64>) -> u64 {
    match usd {
        Some(x) if x.is_finite() && x > 0.0 => (x * 100.0 + 0.5).floor() as u64,
        _ => 0,
    }
}

/// input + output + cache creation + cache read tokens of `usage`.
pub fn tokens(usage: Option<&Value>) -> u64 {
    let field = |k: &str| usage.and_then(|u| u.get(k)).and_then(Value::as_u64).unwrap_or(0);
    ["input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"]
        .iter()
        .map(|k| field(k))
        .fold(0u64, u64::saturating_add)
}

/// This process's money in USD. `total_cost_usd` is the contract's figure, but a resumed
/// 2.1.330 process reports it over the whole session (claude-stream-json.md, "Money on
/// resume"), so the host, which sums the processes of a run, would count the first one
/// twice. This process's own cost is `model_usage_since_last_result` (2.1.330; equal to
/// `total_cost_usd` in every single-process transcript); without it, a deferral that made no
/// API call (a second one, on resume: zero `usage`) cost nothing, and otherwise
/// `total_cost_usd` is this process's (2.1.197 reports per process).
fn process_usd(result: &Value) -> Option<f64> {
    if let Some(models) = result.get("model_usage_since_last_result").and_then(Value::as_object) {
        return Some(models.values().filter_map(|m| m.get("costUSD").and_then(Value::as_f64)).sum());
    }
    let deferred = result.get("stop_reason").and_then(Value::as_str) == Some("tool_deferred");
    if deferred && tokens(result.get("usage")) == 0 {
        return Some(0.0);
    }
    result.get("total_cost_usd").and_then(Value::as_f64)
}

/// (cost, saved) in cents: a subscription run costs nothing and saves what it would have.
fn money(result: &Value, sub_type: SourceSubType) -> (u64, Option<u64>) {
    let money = cents(process_usd(result));
    match sub_type {
        SourceSubType::Subscription => (0, Some(money)),
        _ => (money, None),
    }
}

/// A `result` that parked a tool call for a person (`stop_reason: "tool_deferred"` with its
/// `deferred_tool_use`; the subtype says `success`, so it is checked first): the run suspends.
pub fn suspension(result: &Value, sub_type: SourceSubType) -> Option<Suspension> {
    if result.get("stop_reason").and_then(Value::as_str) != Some("tool_deferred") {
        return None;
    }
    let call = result.get("deferred_tool_use")?;
    let text = |k: &str| call.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    let (cost, saved) = money(result, sub_type);
    Some(Suspension {
        session_handle: result.get("session_id").and_then(Value::as_str).map(str::to_string),
        tool_use_id: text("id")?,
        tool_name: text("name")?,
        tool_input: call.get("input").unwrap_or(&Value::Null).to_string(),
        tokens_used: tokens(result.get("usage")),
        cost_estimate_cents: cost,
        saved_estimate_cents: saved,
    })
}

/// Is an API failure worth retrying elsewhere or later?
fn api_error_recoverable(status: Option<&Value>, text: &str) -> bool {
    if let Some(code) = status.and_then(Value::as_u64) {
        return matches!(code, 408 | 409 | 429 | 529) || (500..600).contains(&code);
    }
    let t = text.to_ascii_lowercase();
    ["overloaded", "capacity", "rate limit", "rate-limit", "rate_limit", "too many requests", "timeout", "timed out"]
        .iter()
        .any(|w| t.contains(w))
}

fn joined_errors(result: &Value) -> Option<String> {
    let errors: Vec<&str> = result.get("errors")?.as_array()?.iter().filter_map(Value::as_str).collect();
    (!errors.is_empty()).then(|| errors.join("; "))
}

/// Map a `result` line.
pub fn from_result(result: &Value, sub_type: SourceSubType) -> Terminal {
    let subtype = result.get("subtype").and_then(Value::as_str).unwrap_or("");
    let is_error = result.get("is_error").and_then(Value::as_bool).unwrap_or(false);
    let text = result.get("result").and_then(Value::as_str).unwrap_or("");
    match (subtype, is_error) {
        ("success", false) => {
            let denied = result.get("permission_denials").and_then(Value::as_array).is_some_and(|d| !d.is_empty());
            let (cost, saved) = money(result, sub_type);
            Terminal::Completed(Completed {
                outcome_kind: if denied { OutcomeKind::Blocked } else { OutcomeKind::Shipped },
                tokens_used: tokens(result.get("usage")),
                provider: Provider::Anthropic,
                provider_id: ProviderRef::Absent,
                observed_provider_id: ProviderRef::Absent,
                source_sub_type: sub_type,
                source_driver: "claude_code".into(),
                cost_estimate_cents: cost,
                saved_estimate_cents: saved,
            })
        }
        ("success", true) => {
            let reason = if text.is_empty() { "claude reported an API error" } else { text };
            failed(reason, api_error_recoverable(result.get("api_error_status"), text))
        }
        ("error_max_turns", _) => failed(&joined_errors(result).unwrap_or_else(|| "error_max_turns".into()), true),
        ("error_during_execution", _) => {
            let reason = joined_errors(result)
                .or_else(|| result.get("terminal_reason").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string))
                .unwrap_or_else(|| "error_during_execution".into());
            failed(&reason, true)
        }
        (other, _) => {
            let reason = joined_errors(result).unwrap_or_else(|| format!("claude result {other}"));
            failed(&reason, true)
        }
    }
}

/// The run's output ended without a `result` line.
pub fn from_end(reason: &EndReason, stderr_tail: Option<&str>) -> Terminal {
    match reason {
        EndReason::Exited(ProcessExit::Code(0)) => failed("claude exited without a result", false),
        EndReason::Exited(ProcessExit::Code(n)) => {
            let tail = stderr_tail.map(str::trim).filter(|t| !t.is_empty());
            let reason = match tail {
                Some(t) => format!("claude exited with status {n}: {}", orgx_peer_sdk::text::one_line(t)),
                None => format!("claude exited with status {n}"),
            };
            failed(&reason, false)
        }
        EndReason::Exited(ProcessExit::Signal(s)) => failed(&format!("claude was killed by signal {s}"), true),
        EndReason::Cancelled(r) => failed(&format!("cancelled: {r}"), false),
        EndReason::TimedOut(n) => failed(&format!("timed out after {n} s"), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cents_round_half_up() {
        let table = [
            (Some(0.01784), 2),
            (Some(0.025), 3),
            (Some(0.0025), 0),
            (Some(0.005), 1),
            (Some(0.58904), 59),
            (Some(-1.0), 0),
            (Some(f64::NAN), 0),
            (None, 0),
            (Some(0.0), 0),
        ];
        for (usd, want) in table {
            assert_eq!(cents(usd), want, "{usd:?}");
        }
    }

    #[test]
    fn tokens_sum_and_missing_fields_count_zero() {
        assert_eq!(tokens(Some(&json!({"input_tokens": 3900, "output_tokens": 90, "cache_read_input_tokens": 2200}))), 6190);
        assert_eq!(tokens(Some(&json!({"input_tokens": "x", "output_tokens": -1}))), 0);
        assert_eq!(tokens(None), 0);
    }

    #[test]
    fn subscription_runs_report_savings() {
        let r = json!({"subtype": "success", "is_error": false, "total_cost_usd": 0.25, "usage": {}});
        match from_result(&r, SourceSubType::Subscription) {
            Terminal::Completed(c) => assert_eq!((c.cost_estimate_cents, c.saved_estimate_cents), (0, Some(25))),
            t => panic!("{t:?}"),
        }
        match from_result(&r, SourceSubType::ApiKey) {
            Terminal::Completed(c) => assert_eq!((c.cost_estimate_cents, c.saved_estimate_cents), (25, None)),
            t => panic!("{t:?}"),
        }
    }

    #[test]
    fn permission_denials_block() {
        let r = json!({"subtype": "success", "is_error": false, "permission_denials": [{"tool_name": "Bash"}]});
        assert!(matches!(from_result(&r, SourceSubType::ApiKey), Terminal::Completed(c) if c.outcome_kind == OutcomeKind::Blocked));
    }

    #[test]
    fn api_errors_recoverable_by_status_then_text() {
        let table = [
            (json!(500), "x", true),
            (json!(529), "x", true),
            (json!(429), "x", true),
            (json!(408), "x", true),
            (json!(409), "x", true),
            (json!(401), "overloaded", false),
            (json!(400), "x", false),
            (json!(null), "Overloaded: try later", true),
            (json!(null), "Request timed out", true),
            (json!(null), "Rate limit reached", true),
            (json!(null), "Not logged in · Please run /login", false),
        ];
        for (status, text, want) in table {
            let r = json!({"subtype": "success", "is_error": true, "result": text, "api_error_status": status});
            match from_result(&r, SourceSubType::ApiKey) {
                Terminal::Failed(f) => {
                    assert_eq!(f.recoverable, want, "{status} {text}");
                    assert_eq!(f.reason, text);
                }
                t => panic!("{t:?}"),
            }
        }
    }

    #[test]
    fn reasons_from_the_cli_are_one_line_and_redacted() {
        let r = json!({"subtype": "success", "is_error": true, "result": "Invalid API key\nBearer sk-ant-abcdefgh123 rejected"});
        match from_result(&r, SourceSubType::ApiKey) {
            Terminal::Failed(f) => assert_eq!(f.reason, "Invalid API key Bearer [redacted] rejected"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn error_subtypes() {
        let r = json!({"subtype": "error_during_execution", "is_error": true, "errors": ["a", "b"]});
        assert_eq!(from_result(&r, SourceSubType::ApiKey), failed("a; b", true));
        let r = json!({"subtype": "error_during_execution", "is_error": true, "errors": [], "terminal_reason": "aborted_tools"});
        assert_eq!(from_result(&r, SourceSubType::ApiKey), failed("aborted_tools", true));
        let r = json!({"subtype": "error_something_new", "is_error": true});
        assert_eq!(from_result(&r, SourceSubType::ApiKey), failed("claude result error_something_new", true));
        let long = "e".repeat(400);
        let r = json!({"subtype": "error_max_turns", "errors": [long]});
        match from_result(&r, SourceSubType::ApiKey) {
            Terminal::Failed(f) => assert_eq!(f.reason.chars().count(), 300),
            t => panic!("{t:?}"),
        }
    }

    #[test]
    fn endings_without_a_result() {
        assert_eq!(from_end(&EndReason::Exited(ProcessExit::Code(0)), None), failed("claude exited without a result", false));
        assert_eq!(
            from_end(&EndReason::Exited(ProcessExit::Code(3)), Some("fatal: boom\n")),
            failed("claude exited with status 3: fatal: boom", false)
        );
        assert_eq!(from_end(&EndReason::Exited(ProcessExit::Code(1)), None), failed("claude exited with status 1", false));
        assert_eq!(from_end(&EndReason::Exited(ProcessExit::Signal(9)), None), failed("claude was killed by signal 9", true));
        assert_eq!(from_end(&EndReason::Cancelled("user".into()), None), failed("cancelled: user", false));
        assert_eq!(from_end(&EndReason::TimedOut(60), None), failed("timed out after 60 s", true));
    }
}
