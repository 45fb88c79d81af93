//! Reconnect delays: capped exponential backoff with jitter, reset only after a connection
//! has proved itself by staying up.
//!
//! Resetting on every successful handshake would let a server that accepts and then drops
//! each connection pull the peer into a tight reconnect loop; requiring `stable_after` of
//! uptime keeps such a flap on the backoff curve.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    pub first: Duration,
    pub cap: Duration,
    /// ±fraction of each delay, e.g. 0.2 for ±20 %.
    pub jitter: f64,
    pub stable_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            first: Duration::from_millis(500),
            cap: Duration::from_secs(30),
            jitter: 0.2,
            stable_after: Duration::from_secs(30),
        }
    }
}

#[derive(Debug)]
pub struct Backoff {
    policy: BackoffPolicy,
    attempt: u32,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Backoff {
        Backoff { policy, attempt: 0 }
    }

    /// The delay before the next attempt (jittered), advancing the curve.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.base_delay();
        self.attempt = self.attempt.saturating_add(1);
        let spread = self.policy.jitter.clamp(0.0, 1.0);
        let factor = 1.0 + spread * (fastrand::f64() * 2.0 - 1.0);
        base.mul_f64(factor)
    }

    /// The un-jittered delay for the current attempt.
    pub fn base_delay(&self) -> Duration {
        let doubled = self.policy.first.saturating_mul(1u32 << self.attempt.min(20));
        doubled.min(self.policy.cap)
    }

    /// A connection ended after `uptime`: start over only if it had been stable.
    pub fn connection_ended(&mut self, uptime: Duration) {
        if uptime >= self.policy.stable_after {
            self.attempt = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_within_jitter() {
        let mut b = Backoff::new(BackoffPolicy::default());
        let expected_ms = [500u64, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000];
        for ms in expected_ms {
            let d = b.next_delay().as_secs_f64() * 1000.0;
            let lo = ms as f64 * 0.8 - 0.001;
            let hi = ms as f64 * 1.2 + 0.001;
            assert!(d >= lo && d <= hi, "{d} not within ±20% of {ms}");
        }
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.base_delay(), Duration::from_secs(30), "never overflows past the cap");
    }

    #[test]
    fn resets_only_after_a_stable_connection() {
        let mut b = Backoff::new(BackoffPolicy::default());
        for _ in 0..4 {
            b.next_delay();
        }
        b.connection_ended(Duration::from_secs(2));
        assert_eq!(b.base_delay(), Duration::from_secs(8), "a flapping connection keeps backing off");
        b.connection_ended(Duration::from_secs(31));
        assert_eq!(b.base_delay(), Duration::from_millis(500));
    }
}
