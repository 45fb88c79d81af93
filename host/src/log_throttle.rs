//! A warning that a flood cannot turn into a flood of log lines.
//!
//! A hostile or broken server can send 100,000 bad frames; logging each one would fill the
//! user's journal and cost more than skipping the frame. The first occurrence is logged at
//! once (it is usually the one that explains the rest), later ones at most once per
//! interval, with the count of those suppressed in between.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct LogThrottle {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    pub const fn new(interval: Duration) -> LogThrottle {
        LogThrottle { interval, last: None, suppressed: 0 }
    }

    /// Whether to log this occurrence now; `Some(n)` with how many were suppressed since the
    /// last line logged, `None` to stay quiet.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_the_first_then_once_per_interval_with_the_count_between() {
        let t0 = Instant::now();
        let mut t = LogThrottle::new(Duration::from_secs(10));
        // (ms after start, expected answer)
        let table: &[(u64, Option<u64>)] = &[
            (0, Some(0)),
            (1, None),
            (2, None),
            (9_999, None),
            (10_000, Some(3)),
            (10_001, None),
            (60_000, Some(1)),
            (60_000, None),
            (70_000, Some(1)),
            (90_000, Some(0)),
        ];
        for &(ms, want) in table {
            assert_eq!(t.admit(t0 + Duration::from_millis(ms)), want, "at {ms} ms");
        }
    }

    #[test]
    fn a_hundred_thousand_occurrences_in_a_second_log_once() {
        let t0 = Instant::now();
        let mut t = LogThrottle::new(Duration::from_secs(10));
        let logged = (0..100_000u64).filter(|i| t.admit(t0 + Duration::from_micros(i * 10)).is_some()).count();
        assert_eq!(logged, 1);
        assert_eq!(t.admit(t0 + Duration::from_secs(11)), Some(99_999));
    }
}
