//! The default Claude Code mapper: `claude --output-format stream-json` lines in, protocol
//! events out, exactly as `shared/spec/claude-stream-json.md` says.
//!
//! The logic is plain Rust (`Mapper`), compiled natively for tests and the benchmark, and
//! into a WebAssembly component (`component`, wasm only) for the host. A line is parsed
//! with a real JSON parser into a borrowed view that keeps only what the contract reads;
//! anything else — unknown types, bad JSON, invalid UTF-8 — maps to nothing.

mod outcome;
mod tools;

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use orgx_peer_sdk::text;
pub use orgx_peer_sdk::types::*;

/// The fields of a stream-json line the contract reads; everything else is skipped.
#[derive(Deserialize)]
struct LineView<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    subtype: Option<Cow<'a, str>>,
    #[serde(borrow)]
    session_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    cwd: Option<Cow<'a, str>>,
    #[serde(rename = "apiKeySource", borrow)]
    api_key_source: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct MessageView<'a> {
    #[serde(borrow, default)]
    content: Vec<BlockView<'a>>,
}

#[derive(Deserialize)]
struct BlockView<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    input: Option<Value>,
}

/// One run's mapping state.
pub struct Mapper {
    ctx: RunContext,
    init_cwd: Option<String>,
    started: bool,
    first_response: bool,
    sub_type: SourceSubType,
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
        Mapper { ctx, init_cwd: None, started: false, first_response: false, sub_type: SourceSubType::ApiKey, done: false }
    }

    fn cwd(&self) -> Option<&str> {
        self.ctx.cwd.as_deref().or(self.init_cwd.as_deref())
    }

    /// Map one stdout line (without its newline).
    pub fn map_line(&mut self, line: &[u8]) -> Vec<Event> {
        if self.done {
            return Vec::new();
        }
        // The parser checks UTF-8 where it reads; invalid bytes make the line bad JSON.
        let Ok(view) = serde_json::from_slice::<LineView<'_>>(line) else { return Vec::new() };
        match view.kind.as_deref() {
            Some("system") if view.subtype.as_deref() == Some("init") => self.on_init(view),
            Some("assistant") => self.on_assistant(view.message),
            Some("result") => match serde_json::from_slice::<Value>(line) {
                Ok(result) => {
                    self.done = true;
                    match outcome::suspension(&result, self.sub_type) {
                        Some(s) => vec![Event::Suspended(s)],
                        None => vec![Event::Terminal(outcome::from_result(&result, self.sub_type))],
                    }
                }
                Err(_) => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    fn on_init(&mut self, view: LineView<'_>) -> Vec<Event> {
        if self.started {
            return Vec::new();
        }
        self.started = true;
        self.init_cwd = view.cwd.map(Cow::into_owned);
        self.sub_type = match view.api_key_source.as_deref() {
            Some("none") => SourceSubType::Subscription,
            _ => SourceSubType::ApiKey,
        };
        vec![Event::Started(view.session_id.map(Cow::into_owned))]
    }

    fn on_assistant(&mut self, message: Option<&RawValue>) -> Vec<Event> {
        let mut out = Vec::new();
        if !self.first_response {
            self.first_response = true;
            out.push(Event::FirstResponse);
        }
        let Some(message) = message.and_then(|m| serde_json::from_str::<MessageView<'_>>(m.get()).ok()) else {
            return out;
        };
        for block in message.content {
            match block.kind.as_ref() {
                "text" => {
                    let summary = text::summary(text::one_line(block.text.as_deref().unwrap_or("")).trim());
                    if !summary.is_empty() {
                        out.push(Event::Step(Step { kind: StepKind::Chat, summary, evidence_ref: None, confidence: None, subject: None }));
                    }
                }
                "tool_use" => {
                    let name = block.name.as_deref().unwrap_or("");
                    let input = block.input.unwrap_or(Value::Null);
                    let step = tools::tool_step(block.id.as_deref(), name, &input, self.cwd());
                    out.push(Event::Step(step));
                }
                _ => {}
            }
        }
        out
    }

    /// The output ended without a `result` line.
    pub fn end(&mut self, reason: EndReason, stderr_tail: Option<String>) -> Terminal {
        self.done = true;
        outcome::from_end(&reason, stderr_tail.as_deref())
    }
}

#[cfg(test)]
mod tests;
