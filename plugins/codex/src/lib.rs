//! The default Codex CLI mapper: `codex exec --json` lines in, protocol events out, exactly as
//! `shared/spec/codex-exec-json.md` ("The mapping contract") says. This file owns the run's
//! state and the dispatch on a line's `type`; `items` says what an item becomes, `outcome`
//! how a run ends.
//!
//! Lines are parsed into a generic `serde_json::Value` rather than typed views: the CLI
//! serialises `web_search` items with the `id` key twice, and `Value` keeps the last one, as
//! the contract requires, where a typed struct would reject the line. Anything else — unknown
//! types, bad JSON, invalid UTF-8 — maps to nothing.

mod items;
mod outcome;

use std::collections::HashSet;

use serde_json::Value;

pub use orgx_peer_sdk::types::*;

use items::Timing;

/// One run's mapping state.
pub struct Mapper {
    ctx: RunContext,
    started: bool,
    first_response: bool,
    /// Item ids that already produced their steps; ids restart at `item_0` in every process,
    /// and a mapper lives for one process.
    stepped: HashSet<String>,
    /// The message of the last top-level `error` line: the reason of a non-zero exit that
    /// printed no terminal line.
    last_error: Option<String>,
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
        Mapper { ctx, started: false, first_response: false, stepped: HashSet::new(), last_error: None, done: false }
    }

    /// Map one stdout line (without its newline).
    pub fn map_line(&mut self, line: &[u8]) -> Vec<Event> {
        if self.done {
            return Vec::new();
        }
        // The parser checks UTF-8 as it reads; invalid bytes make the line bad JSON.
        let Ok(value) = serde_json::from_slice::<Value>(line) else { return Vec::new() };
        match value.get("type").and_then(Value::as_str) {
            Some("thread.started") => self.on_thread_started(&value),
            Some("item.started") => self.on_item(value.get("item"), false),
            Some("item.completed") => self.on_item(value.get("item"), true),
            Some("turn.completed") => {
                self.done = true;
                vec![Event::Terminal(outcome::from_turn_completed(value.get("usage"), &self.ctx))]
            }
            Some("turn.failed") => {
                self.done = true;
                let message = value.get("error").and_then(|e| e.get("message")).and_then(Value::as_str);
                vec![Event::Terminal(outcome::from_turn_failed(message, self.last_error.as_deref()))]
            }
            Some("error") => {
                if let Some(message) = value.get("message").and_then(Value::as_str).filter(|m| !m.trim().is_empty()) {
                    self.last_error = Some(message.to_string());
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn on_thread_started(&mut self, value: &Value) -> Vec<Event> {
        if self.started {
            return Vec::new();
        }
        self.started = true;
        vec![Event::Started(value.get("thread_id").and_then(Value::as_str).map(str::to_string))]
    }

    fn on_item(&mut self, item: Option<&Value>, completed: bool) -> Vec<Event> {
        let Some(item) = item.filter(|i| i.is_object()) else { return Vec::new() };
        let kind = item.get("type").and_then(Value::as_str).unwrap_or("");
        let mut out = Vec::new();
        if !self.first_response && kind != "error" {
            self.first_response = true;
            out.push(Event::FirstResponse);
        }
        let due = match items::timing(kind) {
            Timing::FirstSight => true,
            Timing::AtCompletion => completed,
            Timing::Never => false,
        };
        if !due {
            return out;
        }
        // An item without an id cannot be recognised again, so each of its due lines counts.
        let id = item.get("id").and_then(Value::as_str);
        if id.is_none_or(|id| self.stepped.insert(id.to_string())) {
            out.extend(items::steps(kind, id, item, self.ctx.cwd.as_deref()).into_iter().map(Event::Step));
        }
        out
    }

    /// The output ended without `turn.completed` or `turn.failed`.
    pub fn end(&mut self, reason: EndReason, stderr_tail: Option<String>) -> Terminal {
        self.done = true;
        outcome::from_end(&reason, self.last_error.as_deref(), stderr_tail.as_deref())
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod transcripts;
