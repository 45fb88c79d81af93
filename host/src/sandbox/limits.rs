//! The hard limits every component call runs under, and the limiter that enforces memory.
//!
//! CPU and wall-clock time are one budget here: calls run synchronously on a run's own
//! thread, so an epoch deadline (ticked every [`EPOCH_TICK`]) bounds both. Memory is capped
//! per instance by a `ResourceLimiter` that *records* what it denied, so a fault can be
//! reported as "memory limit" rather than as an anonymous trap.

use std::time::Duration;

/// Wasm stack per call: a guest that recurses without bound traps here, named as this limit,
/// instead of eating the host thread's stack.
pub const MAX_WASM_STACK: usize = 1 << 20;

/// How often the engine's epoch advances; deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Limits for one component instance. `Default` is what production uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest linear memory (bytes) an instance may grow to.
    pub max_memory_bytes: usize,
    /// Longest a single per-line call (`map-line`, `check`, `end`) may run.
    pub call_deadline: Duration,
    /// Longest a setup call (`begin`: e.g. compiling thousands of rules) may run.
    pub setup_deadline: Duration,
    /// Most bytes of strings a single call may return to the host.
    pub max_output_bytes: usize,
    /// Most bytes of stdout/stderr an instance may log over its life.
    pub max_log_bytes: usize,
    /// Most events one `map-line` (or deviations one `check`) may return: a real line maps
    /// to a handful, so a longer list is a flood, refused before it becomes messages.
    pub max_items_per_call: usize,
    /// What one run may send in all: messages, and bytes of component-written text.
    pub max_run_messages: u64,
    pub max_run_bytes: u64,
    /// How fast one run may send, sustained; `None` where there is no clock to speak of
    /// (`replay` maps a file as fast as it reads it).
    pub max_run_rate: Option<Rate>,
}

/// A token bucket: `burst` messages at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // A 16 MiB stdout line, parsed, plus its outputs fits with room to spare.
            max_memory_bytes: 256 << 20,
            call_deadline: Duration::from_secs(2),
            setup_deadline: Duration::from_secs(20),
            max_output_bytes: 32 << 20,
            max_log_bytes: 64 << 10,
            // The busiest real line (an assistant turn with many tool calls) maps to tens.
            max_items_per_call: 1_000,
            // The longest recorded session is 8,000 lines: 25 times that is still a real run.
            max_run_messages: 200_000,
            max_run_bytes: 128 << 20,
            // The real CLIs print tens of lines a second; a replayed transcript bursts.
            max_run_rate: Some(Rate { per_second: 5_000, burst: 50_000 }),
        }
    }
}

impl Limits {
    /// A deadline as a count of epoch ticks: rounded up, plus one. The first tick after a
    /// deadline is set can come at any instant of the current tick period, so N ticks last
    /// anywhere in ((N-1)·tick, N·tick]; one extra tick makes a call never stop before its
    /// deadline, and at most one tick (plus scheduling) after it.
    pub fn ticks(deadline: Duration) -> u64 {
        let tick = EPOCH_TICK.as_nanos();
        deadline.as_nanos().div_ceil(tick) as u64 + 1
    }
}

/// Enforces [`Limits::max_memory_bytes`] and remembers a denial for fault reporting.
#[derive(Debug)]
pub struct GuestLimiter {
    max_memory_bytes: usize,
    pub denied_memory: Option<usize>,
    /// The largest linear memory the instance was allowed (what a snapshot of it would hold).
    pub largest_memory: usize,
}

impl GuestLimiter {
    pub fn new(limits: &Limits) -> Self {
        GuestLimiter { max_memory_bytes: limits.max_memory_bytes, denied_memory: None, largest_memory: 0 }
    }
}

impl wasmtime::ResourceLimiter for GuestLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes {
            self.denied_memory = Some(desired);
            // Trap instead of returning -1 from memory.grow: a guest that ignores a failed
            // grow would otherwise go on in an undefined state.
            wasmtime::bail!("memory limit: the component asked for {desired} bytes, the limit is {}", self.max_memory_bytes);
        }
        self.largest_memory = self.largest_memory.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }

    fn instances(&self) -> usize {
        // One component instantiates a handful of core instances (the guest, WASI adapters).
        64
    }

    fn memories(&self) -> usize {
        16
    }

    fn tables(&self) -> usize {
        64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_round_up_plus_one_so_no_deadline_fires_early() {
        assert_eq!(Limits::ticks(Duration::ZERO), 1);
        assert_eq!(Limits::ticks(Duration::from_millis(1)), 2);
        assert_eq!(Limits::ticks(Duration::from_millis(5)), 2);
        assert_eq!(Limits::ticks(Duration::from_millis(6)), 3);
        assert_eq!(Limits::ticks(Duration::from_secs(2)), 401);
        for ms in [1u64, 4, 5, 199, 200, 201, 2000] {
            let d = Duration::from_millis(ms);
            // The worst case: the first tick comes at once, then (ticks - 1) whole periods.
            assert!(EPOCH_TICK * (Limits::ticks(d) - 1) as u32 >= d, "{ms} ms");
        }
    }
}
