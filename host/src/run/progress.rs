//! What `orgx-peer status` shows of one run in flight: its driver, when it started, how many
//! output lines it has read and its last step.
//!
//! The run's pipeline thread writes it and the status socket reads it, so it is atomics and
//! one short-held lock: a status query never waits on a run, and a run never waits on a
//! status query for longer than one string copy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

/// Longest last-step summary kept: a status line, not a transcript.
const STEP_CHARS: usize = 120;

#[derive(Debug)]
pub struct Progress {
    run_id: String,
    driver: &'static str,
    started_at: SystemTime,
    lines: AtomicU64,
    last_step: Mutex<Option<String>>,
}

/// One run as `status` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunView {
    pub run_id: String,
    pub driver: &'static str,
    pub started_at: String,
    pub elapsed_ms: u64,
    pub lines: u64,
    pub last_step: Option<String>,
}

impl Progress {
    pub fn new(run_id: &str, driver: &'static str) -> Progress {
        Progress {
            run_id: run_id.to_string(),
            driver,
            started_at: SystemTime::now(),
            lines: AtomicU64::new(0),
            last_step: Mutex::new(None),
        }
    }

    pub fn line_read(&self) {
        self.lines.fetch_add(1, Ordering::Relaxed);
    }

    pub fn step(&self, summary: &str) {
        // Summaries are one line on screen whatever the CLI printed.
        let mut short: String = summary.chars().take(STEP_CHARS).map(|c| if c.is_control() { ' ' } else { c }).collect();
        if summary.chars().nth(STEP_CHARS).is_some() {
            short.push('…');
        }
        *self.last_step.lock().unwrap_or_else(|p| p.into_inner()) = Some(short);
    }

    pub fn view(&self) -> RunView {
        RunView {
            run_id: self.run_id.clone(),
            driver: self.driver,
            started_at: crate::time::iso8601(self.started_at),
            elapsed_ms: self.started_at.elapsed().map_or(0, |d| d.as_millis() as u64),
            lines: self.lines.load(Ordering::Relaxed),
            last_step: self.last_step.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lines_and_keeps_the_last_step_on_one_short_line() {
        let p = Progress::new("r1", "claude_code");
        assert_eq!(p.view().last_step, None);
        p.line_read();
        p.line_read();
        p.step("Write a.txt");
        p.step("Bash: echo one\necho two");
        let v = p.view();
        assert_eq!((v.run_id.as_str(), v.driver, v.lines), ("r1", "claude_code", 2));
        assert_eq!(v.last_step.as_deref(), Some("Bash: echo one echo two"));
        p.step(&"x".repeat(500));
        let long = p.view().last_step.unwrap();
        assert_eq!(long.chars().count(), STEP_CHARS + 1);
        assert!(long.ends_with('…'));
        p.step(&"é".repeat(STEP_CHARS));
        assert!(!p.view().last_step.unwrap().ends_with('…'), "exactly the limit is not cut");
    }
}
