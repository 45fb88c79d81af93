//! How a run ends: `turn.completed` → `task.completed` (tokens, attribution, money from the
//! configured pricing), `turn.failed` → `task.failed` (with the passing-cause rule), and the
//! endings without either (exit, signal, cancel, timeout).

use serde_json::Value;

use orgx_peer_sdk::text::{cut_chars, reason};
use orgx_peer_sdk::types::{
    Completed, EndReason, Failed, OutcomeKind, Pricing, ProcessExit, Provider, ProviderRef, RunContext, SourceSubType, Terminal,
};

const REASON_MAX_CHARS: usize = 300;

/// A reason from CLI text: one line, credentials redacted, cut.
fn failed(text: &str, recoverable: bool) -> Terminal {
    Terminal::Failed(Failed { reason: reason(text, REASON_MAX_CHARS), recoverable })
}

/// A reason the host's own facts make (as the Claude Code mapper words them): only cut.
fn ended(text: &str, recoverable: bool) -> Terminal {
    Terminal::Failed(Failed { reason: cut_chars(text, REASON_MAX_CHARS), recoverable })
}

/// A `usage` count; missing or not a count → 0.
fn count(usage: Option<&Value>, key: &str) -> u64 {
    usage.and_then(|u| u.get(key)).and_then(Value::as_u64).unwrap_or(0)
}

/// `input_tokens + output_tokens`: cached input is already inside input, reasoning inside
/// output.
pub fn tokens(usage: Option<&Value>) -> u64 {
    count(usage, "input_tokens").saturating_add(count(usage, "output_tokens"))
}

/// The run's cost in cents, `floor(usd × 100 + 0.5)`, from USD-per-million-token prices.
pub fn cents(usage: Option<&Value>, pricing: &Pricing) -> u64 {
    let input = count(usage, "input_tokens");
    let cached = count(usage, "cached_input_tokens").min(input);
    let output = count(usage, "output_tokens");
    let per_million = (input - cached) as f64 * pricing.input + cached as f64 * pricing.cached_input + output as f64 * pricing.output;
    // usd × 100 = per_million / 10^4: one division keeps exact halves (0.5 cents) exact.
    let x = per_million / 10_000.0;
    if x.is_finite() && x > 0.0 {
        (x + 0.5).floor() as u64
    } else {
        0
    }
}

/// The credential kind comes from the host's cached detection, never from the stream.
pub fn sub_type(ctx: &RunContext) -> SourceSubType {
    ctx.detection.as_ref().and_then(|d| d.source_sub_type).unwrap_or(SourceSubType::UserManaged)
}

/// Map a `turn.completed` line's `usage`.
pub fn from_turn_completed(usage: Option<&Value>, ctx: &RunContext) -> Terminal {
    let sub_type = sub_type(ctx);
    let money = ctx.pricing.as_ref().map(|p| cents(usage, p));
    let (cost, saved) = match (sub_type, money) {
        (_, None) => (0, None),
        (SourceSubType::Subscription, Some(m)) => (0, Some(m)),
        (_, Some(m)) => (m, None),
    };
    Terminal::Completed(Completed {
        // Refused patches print nothing, so the stream cannot show a blocked run.
        outcome_kind: OutcomeKind::Shipped,
        tokens_used: tokens(usage),
        provider: Provider::Openai,
        provider_id: ProviderRef::Absent,
        observed_provider_id: ProviderRef::Absent,
        source_sub_type: sub_type,
        source_driver: "codex".into(),
        cost_estimate_cents: cost,
        saved_estimate_cents: saved,
    })
}

/// Does `message` show a cause that passes (worth retrying later)?
pub fn passing_cause(message: &str) -> bool {
    let lower = message.to_lowercase();
    let words = ["high demand", "overloaded", "rate limit", "timeout", "timed out", "stream disconnected"];
    words.iter().any(|w| lower.contains(w))
        || message.match_indices("unexpected status").any(|(at, m)| passing_status(&message[at + m.len()..]))
}

/// `rest` starts (after blanks) with a 3-digit HTTP status of 408, 409, 429 or 5xx.
fn passing_status(rest: &str) -> bool {
    let rest = rest.trim_start();
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits != 3 {
        return false;
    }
    matches!(rest[..3].parse::<u16>(), Ok(408 | 409 | 429 | 500..=599))
}

/// Map a `turn.failed` line; a line without `error.message` falls back to the last `error`
/// line, the closest thing the stream has to a cause.
pub fn from_turn_failed(message: Option<&str>, last_error: Option<&str>) -> Terminal {
    let message = message.filter(|m| !m.trim().is_empty()).or(last_error).unwrap_or("codex turn failed");
    failed(message, passing_cause(message))
}

/// The Linux name of signal `n` (1..31).
pub fn signal_name(n: i32) -> Option<&'static str> {
    #[rustfmt::skip]
    const NAMES: [&str; 31] = [
        /*  1 */ "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
        /*  9 */ "SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT",
        /* 17 */ "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU",
        /* 25 */ "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS",
    ];
    usize::try_from(n).ok().and_then(|n| n.checked_sub(1)).and_then(|i| NAMES.get(i)).copied()
}

/// The run's output ended with neither `turn.completed` nor `turn.failed`.
pub fn from_end(end: &EndReason, last_error: Option<&str>, stderr_tail: Option<&str>) -> Terminal {
    match end {
        EndReason::Cancelled(r) => ended(&format!("cancelled: {r}"), false),
        EndReason::TimedOut(n) => ended(&format!("timed out after {n} s"), true),
        EndReason::Exited(ProcessExit::Signal(s)) => {
            let name = signal_name(*s).map_or_else(|| format!("signal {s}"), str::to_string);
            ended(&format!("codex killed by {name}"), true)
        }
        EndReason::Exited(ProcessExit::Code(0)) => ended("codex exited without a turn result", false),
        EndReason::Exited(ProcessExit::Code(n)) => {
            let last_stderr_line = stderr_tail.and_then(|t| t.lines().rev().find(|l| !l.trim().is_empty()));
            let cause = [last_error, last_stderr_line].into_iter().flatten().find(|t| !reason(t, REASON_MAX_CHARS).is_empty());
            match cause {
                Some(text) => failed(text, false),
                None => ended(&format!("codex exited {n}"), false),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orgx_peer_sdk::types::Detection;
    use serde_json::json;

    fn fail(reason: &str, recoverable: bool) -> Terminal {
        Terminal::Failed(Failed { reason: reason.into(), recoverable })
    }

    fn ctx(sub_type: Option<SourceSubType>, pricing: Option<Pricing>) -> RunContext {
        let detection = sub_type.map(|s| Detection { source_sub_type: Some(s), auth_method: None });
        RunContext { detection, pricing, ..RunContext::new("r", None) }
    }

    fn money(usage: Value, ctx: &RunContext) -> (u64, Option<u64>) {
        match from_turn_completed(Some(&usage), ctx) {
            Terminal::Completed(c) => (c.cost_estimate_cents, c.saved_estimate_cents),
            t => panic!("{t:?}"),
        }
    }

    const PRICE: Pricing = Pricing { input: 1.25, cached_input: 0.125, output: 10.0 };

    #[test]
    fn tokens_are_input_plus_output_only() {
        let usage = json!({"input_tokens": 57000, "cached_input_tokens": 51200, "cache_write_input_tokens": 9, "output_tokens": 650, "reasoning_output_tokens": 60});
        assert_eq!(tokens(Some(&usage)), 57_650);
        assert_eq!(tokens(Some(&json!({"output_tokens": 7}))), 7);
        assert_eq!(tokens(Some(&json!({"input_tokens": "5", "output_tokens": -1}))), 0);
        assert_eq!(tokens(Some(&json!({"input_tokens": u64::MAX, "output_tokens": 1}))), u64::MAX);
        assert_eq!(tokens(None), 0);
    }

    #[test]
    fn cents_follow_the_formula_and_round_half_up() {
        let p = |input, cached_input, output| Pricing { input, cached_input, output };
        let table = [
            // (5800 × 1.25 + 51200 × 0.125 + 650 × 10) / 10^6 USD = 2.015 cents
            (json!({"input_tokens": 57000, "cached_input_tokens": 51200, "output_tokens": 650}), PRICE, 2),
            // 1000 × 5 / 10^6 USD = 0.5 cents: half rounds up, not to even
            (json!({"input_tokens": 1000}), p(5.0, 0.0, 0.0), 1),
            (json!({"input_tokens": 3000}), p(5.0, 0.0, 0.0), 2),
            (json!({"input_tokens": 5000}), p(5.0, 0.0, 0.0), 3),
            (json!({"input_tokens": 999}), p(5.0, 0.0, 0.0), 0),
            // cached tokens are priced at the cached rate, not twice
            (json!({"input_tokens": 10000, "cached_input_tokens": 10000}), p(100.0, 1.0, 0.0), 1),
            (json!({"output_tokens": 1_000_000}), p(0.0, 0.0, 15.0), 1500),
            // more cached than input: nothing negative
            (json!({"input_tokens": 10, "cached_input_tokens": 20}), p(1000.0, 0.0, 0.0), 0),
            (json!({}), PRICE, 0),
            (json!({"input_tokens": 1000}), p(f64::NAN, 0.0, 0.0), 0),
            (json!({"input_tokens": 1000}), p(-5.0, 0.0, 0.0), 0),
        ];
        for (usage, pricing, want) in table {
            assert_eq!(cents(Some(&usage), &pricing), want, "{usage} {pricing:?}");
        }
    }

    #[test]
    fn money_by_credential_kind() {
        let usage = json!({"input_tokens": 57000, "cached_input_tokens": 51200, "output_tokens": 650});
        assert_eq!(money(usage.clone(), &ctx(Some(SourceSubType::ApiKey), Some(PRICE))), (2, None));
        assert_eq!(money(usage.clone(), &ctx(Some(SourceSubType::UserManaged), Some(PRICE))), (2, None));
        assert_eq!(money(usage.clone(), &ctx(None, Some(PRICE))), (2, None));
        assert_eq!(money(usage.clone(), &ctx(Some(SourceSubType::Subscription), Some(PRICE))), (0, Some(2)));
        assert_eq!(money(usage.clone(), &ctx(Some(SourceSubType::Subscription), None)), (0, None));
        assert_eq!(money(usage, &ctx(Some(SourceSubType::ApiKey), None)), (0, None));
    }

    #[test]
    fn attribution_comes_from_detection_not_the_stream() {
        let table = [
            (None, SourceSubType::UserManaged),
            (Some(Detection { source_sub_type: None, auth_method: Some("env_key".into()) }), SourceSubType::UserManaged),
            (
                Some(Detection { source_sub_type: Some(SourceSubType::Subscription), auth_method: Some("chatgpt".into()) }),
                SourceSubType::Subscription,
            ),
            (Some(Detection { source_sub_type: Some(SourceSubType::ApiKey), auth_method: Some("api_key".into()) }), SourceSubType::ApiKey),
            (Some(Detection { source_sub_type: Some(SourceSubType::UserManaged), auth_method: None }), SourceSubType::UserManaged),
        ];
        for (detection, want) in table {
            let ctx = RunContext { detection: detection.clone(), ..RunContext::new("r", None) };
            let want = Terminal::Completed(Completed {
                outcome_kind: OutcomeKind::Shipped,
                tokens_used: 3,
                provider: Provider::Openai,
                provider_id: ProviderRef::Absent,
                observed_provider_id: ProviderRef::Absent,
                source_sub_type: want,
                source_driver: "codex".into(),
                cost_estimate_cents: 0,
                saved_estimate_cents: None,
            });
            assert_eq!(from_turn_completed(Some(&json!({"input_tokens": 1, "output_tokens": 2})), &ctx), want, "{detection:?}");
        }
    }

    #[test]
    fn passing_causes() {
        let table = [
            ("We’re currently experiencing high demand, which may cause temporary errors.", true),
            ("unexpected status 401 Unauthorized: Incorrect API key provided: sk-test.... (fake server)", false),
            ("Missing environment variable: `OPENAI_API_KEY`.", false),
            ("unexpected status 500 Internal Server Error", true),
            ("unexpected status 503 Service Unavailable", true),
            ("unexpected status 599", true),
            ("unexpected status 429 Too Many Requests", true),
            ("unexpected status 408 Request Timeout", true),
            ("unexpected status 409 Conflict", true),
            ("unexpected status 400 Bad Request", false),
            ("unexpected status 403 Forbidden", false),
            ("unexpected status 600", false),
            ("unexpected status 5000", false),
            ("unexpected status: 500", false),
            ("status 500", false),
            ("HTTP 500 from upstream", false),
            ("unexpected status 404 x; then unexpected status 502 y", true),
            ("The model is OVERLOADED", true),
            ("Rate Limit reached for requests", true),
            ("request TIMEOUT", true),
            ("operation timed out", true),
            ("stream disconnected before completion: connection reset", true),
            ("Timed Out waiting", true),
            ("rate-limited", false),
            ("", false),
        ];
        for (message, want) in table {
            assert_eq!(passing_cause(message), want, "{message:?}");
        }
    }

    #[test]
    fn turn_failed_reasons_are_one_line_redacted_and_cut() {
        assert_eq!(from_turn_failed(Some("a\nb Bearer abc.def"), None), fail("a b Bearer [redacted]", false));
        assert_eq!(
            from_turn_failed(Some("Incorrect API key provided: sk-proj-abcdefgh123"), None),
            fail("Incorrect API key provided: sk-[redacted]", false)
        );
        match from_turn_failed(Some(&format!("stream disconnected {}", "é".repeat(400))), None) {
            Terminal::Failed(f) => assert_eq!((f.reason.chars().count(), f.recoverable), (300, true)),
            t => panic!("{t:?}"),
        }
        assert_eq!(from_turn_failed(None, Some("Reconnecting... 1/5 (timeout)")), fail("Reconnecting... 1/5 (timeout)", true));
        assert_eq!(from_turn_failed(Some("  "), None), fail("codex turn failed", false));
    }

    #[test]
    fn signal_names() {
        let table = [
            (1, "SIGHUP"),
            (2, "SIGINT"),
            (6, "SIGABRT"),
            (9, "SIGKILL"),
            (11, "SIGSEGV"),
            (13, "SIGPIPE"),
            (15, "SIGTERM"),
            (16, "SIGSTKFLT"),
            (19, "SIGSTOP"),
            (31, "SIGSYS"),
        ];
        for (n, want) in table {
            assert_eq!(signal_name(n), Some(want), "{n}");
        }
        for n in [0, 32, 64, -9] {
            assert_eq!(signal_name(n), None, "{n}");
        }
    }

    #[test]
    fn endings_without_a_turn_result() {
        let exited = |n| EndReason::Exited(ProcessExit::Code(n));
        let killed = |n| EndReason::Exited(ProcessExit::Signal(n));
        let table = [
            (EndReason::Cancelled("user asked".into()), None, None, fail("cancelled: user asked", false)),
            (EndReason::Cancelled(String::new()), None, None, fail("cancelled: ", false)),
            (EndReason::TimedOut(600), Some("boom"), Some("tail"), fail("timed out after 600 s", true)),
            (killed(9), Some("boom"), None, fail("codex killed by SIGKILL", true)),
            (killed(11), None, None, fail("codex killed by SIGSEGV", true)),
            (killed(15), None, Some("tail"), fail("codex killed by SIGTERM", true)),
            (killed(40), None, None, fail("codex killed by signal 40", true)),
            (exited(0), Some("Reconnecting... 1/5 (x)"), Some("tail"), fail("codex exited without a turn result", false)),
            (exited(1), Some("Reconnecting... 5/5 (timeout)"), Some("tail"), fail("Reconnecting... 5/5 (timeout)", false)),
            (exited(1), None, Some("fatal: key sk-abcdefghijkl\n"), fail("fatal: key sk-[redacted]", false)),
            (exited(1), None, Some("first\nlast line\n\n"), fail("last line", false)),
            (exited(2), None, Some("  "), fail("codex exited 2", false)),
            (exited(2), None, None, fail("codex exited 2", false)),
            (exited(-1), None, None, fail("codex exited -1", false)),
        ];
        for (end, last_error, tail, want) in table {
            assert_eq!(from_end(&end, last_error, tail), want, "{end:?} {last_error:?} {tail:?}");
        }
        match from_end(&exited(1), None, Some(&"x".repeat(500))) {
            Terminal::Failed(f) => assert_eq!(f.reason.len(), 300),
            t => panic!("{t:?}"),
        }
    }
}
