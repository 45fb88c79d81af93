//! What one run may send in all: a count of messages, of bytes, and a sustained rate.
//!
//! A component's per-call limits (time, memory, output, items) bound one call; a component
//! that returns a little on every line can still flood the server, the outbox and the data
//! dir over a run. The budget is charged with what each call returned, before it becomes
//! messages, so an overrun ends the run as a fault of the component that caused it — the
//! same path (task.failed, quarantine count) as any other limit.

use std::time::Instant;

use crate::sandbox::limits::{Limits, Rate};

/// Which budget a run went over, and its limit as a user reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overrun {
    pub what: &'static str,
    pub limit: String,
}

#[derive(Debug)]
pub struct RunBudget {
    max_messages: u64,
    max_bytes: u64,
    messages: u64,
    bytes: u64,
    bucket: Option<Bucket>,
}

/// A token bucket over messages: full at `burst`, refilled at `per_second`.
#[derive(Debug)]
struct Bucket {
    rate: Rate,
    tokens: f64,
    last: Instant,
}

impl RunBudget {
    pub fn new(limits: &Limits, now: Instant) -> RunBudget {
        let bucket = limits.max_run_rate.map(|rate| Bucket { rate, tokens: f64::from(rate.burst), last: now });
        RunBudget { max_messages: limits.max_run_messages, max_bytes: limits.max_run_bytes, messages: 0, bytes: 0, bucket }
    }

    /// Count `messages` carrying `bytes` of component-written text, or say which budget
    /// they would break. Nothing is counted on an overrun: the run ends there.
    pub fn charge(&mut self, messages: u64, bytes: u64, now: Instant) -> Result<(), Overrun> {
        let (total, total_bytes) = (self.messages + messages, self.bytes + bytes);
        if total > self.max_messages {
            return Err(Overrun { what: "message", limit: format!("{} messages", self.max_messages) });
        }
        if total_bytes > self.max_bytes {
            return Err(Overrun { what: "byte", limit: format!("{} bytes of text", self.max_bytes) });
        }
        if let Some(b) = self.bucket.as_mut() {
            let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens = (b.tokens + elapsed * f64::from(b.rate.per_second)).min(f64::from(b.rate.burst));
            b.last = now;
            if b.tokens < messages as f64 {
                let Rate { per_second, burst } = b.rate;
                return Err(Overrun { what: "rate", limit: format!("{per_second} messages/s, bursts of {burst}") });
            }
            b.tokens -= messages as f64;
        }
        (self.messages, self.bytes) = (total, total_bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits(messages: u64, bytes: u64, rate: Option<(u32, u32)>) -> Limits {
        let max_run_rate = rate.map(|(per_second, burst)| Rate { per_second, burst });
        Limits { max_run_messages: messages, max_run_bytes: bytes, max_run_rate, ..Limits::default() }
    }

    #[test]
    fn each_budget_refuses_the_charge_that_would_break_it() {
        let t0 = Instant::now();
        // (limits, charges as (messages, bytes, ms after start), index of the refused one, which budget)
        type Case = (Limits, &'static [(u64, u64, u64)], Option<(usize, &'static str)>);
        let cases: &[Case] = &[
            (limits(10, 1 << 20, None), &[(5, 0, 0), (5, 0, 0)], None),
            (limits(10, 1 << 20, None), &[(5, 0, 0), (5, 0, 0), (1, 0, 0)], Some((2, "message"))),
            (limits(10, 1 << 20, None), &[(11, 0, 0)], Some((0, "message"))),
            (limits(100, 100, None), &[(1, 60, 0), (1, 40, 0), (1, 1, 0)], Some((2, "byte"))),
            // A burst of 10, then 10 per second: 10 at once pass, an 11th at once does not.
            (limits(1000, 1 << 20, Some((10, 10))), &[(10, 0, 0), (1, 0, 0)], Some((1, "rate"))),
            // ... but after half a second five more fit, and a sixth does not.
            (limits(1000, 1 << 20, Some((10, 10))), &[(10, 0, 0), (5, 0, 500), (1, 0, 500)], Some((2, "rate"))),
            // The bucket never holds more than the burst, however long the run was idle.
            (limits(1000, 1 << 20, Some((10, 10))), &[(1, 0, 60_000), (10, 0, 60_000)], Some((1, "rate"))),
            // A steady rate under the limit runs for ever.
            (limits(u64::MAX, u64::MAX, Some((10, 10))), &[(5, 0, 0), (5, 0, 1000), (5, 0, 2000), (5, 0, 3000)], None),
        ];
        for (n, (limits, charges, refused)) in cases.iter().enumerate() {
            let mut budget = RunBudget::new(limits, t0);
            let mut got = None;
            for (i, &(m, b, ms)) in charges.iter().enumerate() {
                if let Err(o) = budget.charge(m, b, t0 + Duration::from_millis(ms)) {
                    got = Some((i, o.what));
                    break;
                }
            }
            assert_eq!(got, *refused, "case {n}");
        }
    }

    #[test]
    fn an_overrun_names_its_limit_for_the_user() {
        let mut budget = RunBudget::new(&limits(3, 1 << 20, None), Instant::now());
        let o = budget.charge(4, 0, Instant::now()).unwrap_err();
        assert_eq!(o, Overrun { what: "message", limit: "3 messages".into() });
        let mut budget = RunBudget::new(&limits(9, 9, Some((5_000, 50_000))), Instant::now());
        assert_eq!(budget.charge(1, 10, Instant::now()).unwrap_err().limit, "9 bytes of text");
        let mut budget = RunBudget::new(&limits(100, 100, Some((2, 3))), Instant::now());
        assert_eq!(budget.charge(4, 0, Instant::now()).unwrap_err().limit, "2 messages/s, bursts of 3");
    }
}
