//! The default opencode mapper: `opencode run --format json` lines in, protocol events out,
//! exactly as `shared/spec/opencode-run-json.md` ("The mapping contract") says.
//!
//! The logic is plain Rust (`Mapper`), compiled natively for tests and into a WebAssembly
//! component for the host. opencode prints only finished parts and never a closing line, so
//! `map_line` yields `task.started`, `first_response_at` and steps, and only `end` decides
//! the terminal, from what the lines left behind (`outcome::Run`). A line is parsed into a
//! `serde_json::Value` and read leniently: a field of an unexpected type reads as absent, and
//! bad JSON, invalid UTF-8 or a line that is not an object maps to nothing.

mod outcome;
mod tools;

use serde_json::Value;

use orgx_peer_sdk::text;
pub use orgx_peer_sdk::types::*;

/// One run's mapping state.
pub struct Mapper {
    ctx: RunContext,
    started: bool,
    first_response: bool,
    run: outcome::Run,
    done: bool,
}

orgx_peer_sdk::export_mapper!(Mapper);

impl orgx_peer_sdk::Mapper for Mapper {
    fn begin(ctx: RunContext) -> Mapper {
        Mapper::new(ctx)
    }

    fn map_line(&mut self, line: &[u8]) -> Vec<Event> {
        Mapper::map_line(self, line)
    }

    fn end(&mut self, reason: EndReason, stderr_tail: Option<String>) -> Terminal {
        Mapper::end(self, reason, stderr_tail)
    }
}

impl Mapper {
    pub fn new(ctx: RunContext) -> Mapper {
        Mapper { ctx, started: false, first_response: false, run: outcome::Run::default(), done: false }
    }

    /// Map one stdout line (without its newline).
    pub fn map_line(&mut self, line: &[u8]) -> Vec<Event> {
        if self.done {
            return Vec::new();
        }
        // The parser checks UTF-8 as it reads; invalid bytes make the line bad JSON.
        let Ok(Value::Object(line)) = serde_json::from_slice::<Value>(line) else { return Vec::new() };
        let mut out = Vec::new();
        if !self.started {
            // Any line counts, even one without a session: the host must see `task.started`
            // before the steps that may follow, and opencode prints no dedicated start line.
            self.started = true;
            out.push(Event::Started(line.get("sessionID").and_then(Value::as_str).map(str::to_string)));
        }
        let part = line.get("part");
        match line.get("type").and_then(Value::as_str) {
            Some("text") => {
                self.responded(&mut out);
                let summary = text::summary(text::one_line(str_at(part, "text")).trim());
                if !summary.is_empty() {
                    out.push(Event::Step(Step { kind: StepKind::Chat, summary, evidence_ref: None, confidence: None, subject: None }));
                }
            }
            // Thinking is a response too, though the default contract gives it no step.
            Some("reasoning") => self.responded(&mut out),
            Some("tool_use") => {
                self.responded(&mut out);
                if let Some(part) = part {
                    self.run.on_tool_state(part.get("state"));
                    out.extend(tools::tool_steps(part, self.ctx.cwd.as_deref()).into_iter().map(Event::Step));
                }
            }
            Some("step_finish") => self.run.on_step_finish(part),
            Some("error") => self.run.on_error(line.get("error")),
            _ => {}
        }
        out
    }

    fn responded(&mut self, out: &mut Vec<Event>) {
        if !self.first_response {
            self.first_response = true;
            out.push(Event::FirstResponse);
        }
    }

    /// stdout closed: opencode never prints a terminal line, so this always decides it.
    pub fn end(&mut self, reason: EndReason, stderr_tail: Option<String>) -> Terminal {
        self.done = true;
        self.run.terminal(&reason, stderr_tail.as_deref(), self.ctx.provider_id.as_deref())
    }
}

/// The string at `key` of an optional object, `""` when absent or not a string.
fn str_at<'a>(value: Option<&'a Value>, key: &str) -> &'a str {
    value.and_then(|v| v.get(key)).and_then(Value::as_str).unwrap_or("")
}

#[cfg(test)]
mod tests;
