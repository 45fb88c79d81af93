//! A scripted stand-in of the OpenAI Responses API on 127.0.0.1, for running the real Codex
//! CLI offline (a `[model_providers.<id>]` whose `base_url` is [`FakeResponses::base_url`]).
//! `POST …/responses` requests that offer tools get the scripted turns in order, streamed as
//! the API streams them (`response.created`, `response.output_item.added/.done`,
//! `response.output_text.delta`, `response.completed` with `usage`); anything after the
//! script gets a plain "Done." with zero usage, so a run's token totals are exactly the
//! script's. A failing stand-in answers every request with one HTTP status, forever.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

use crate::http::{read_request, respond_json, send_event, start_sse, Request};

/// One output item of a scripted response.
#[derive(Debug, Clone)]
pub enum Item {
    /// A `reasoning` item; its summary is what `codex exec --json` prints.
    Reasoning(String),
    /// An assistant `message`.
    Text(String),
    /// A `function_call` to `exec_command` (the CLI's shell tool) running `cmd`.
    Exec(String),
    /// A `custom_tool_call` to the freeform `apply_patch` tool, with the whole patch text.
    Patch(String),
    /// Any other `function_call`, with its JSON arguments.
    Function { name: String, arguments: Value },
}

impl Item {
    /// A patch that creates `path` (relative to the CLI's working directory) with `content`.
    pub fn add_file(path: &str, content: &str) -> Item {
        let body: String = content.lines().map(|l| format!("+{l}\n")).collect();
        Item::Patch(format!("*** Begin Patch\n*** Add File: {path}\n{body}*** End Patch\n"))
    }

    /// A patch that replaces the line `old` of `path` with `new`.
    pub fn update_file(path: &str, old: &str, new: &str) -> Item {
        Item::Patch(format!("*** Begin Patch\n*** Update File: {path}\n@@\n-{old}\n+{new}\n*** End Patch\n"))
    }
}

/// One scripted model response. `input_tokens` is the whole prompt, cached part included, as
/// the API counts it; `output_tokens` includes `reasoning_tokens`.
#[derive(Debug, Clone)]
pub struct Turn {
    pub items: Vec<Item>,
    pub input_tokens: u64,
    pub cached_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    /// Held after the items, before `response.completed`: lets a test cancel mid-stream.
    pub delay: Duration,
    /// End with `response.failed` carrying this message instead of `response.completed`.
    pub fail: Option<String>,
}

impl Turn {
    pub fn new(items: Vec<Item>, input_tokens: u64, cached_tokens: u64, output_tokens: u64) -> Turn {
        Turn { items, input_tokens, cached_tokens, output_tokens, reasoning_tokens: 0, delay: Duration::ZERO, fail: None }
    }

    pub fn failed(message: &str) -> Turn {
        Turn { fail: Some(message.to_string()), ..Turn::new(vec![], 0, 0, 0) }
    }

    pub fn delayed(mut self, delay: Duration) -> Turn {
        self.delay = delay;
        self
    }

    /// What `codex exec` reports for this turn: `input_tokens + output_tokens`.
    pub fn tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

#[derive(Default)]
struct State {
    script: Vec<Turn>,
    next: usize,
    requests: Vec<Request>,
}

#[derive(Clone)]
pub struct FakeResponses {
    addr: std::net::SocketAddr,
    /// `Some(status)`: every request gets that status (401, 500, …) with an OpenAI error body.
    status: Option<u16>,
    state: Arc<Mutex<State>>,
}

impl FakeResponses {
    pub async fn start(script: Vec<Turn>) -> FakeResponses {
        Self::listen(None, script).await
    }

    /// Answers every request with HTTP `status`, forever (the CLI's retries included).
    pub async fn failing(status: u16) -> FakeResponses {
        Self::listen(Some(status), vec![]).await
    }

    async fn listen(status: Option<u16>, script: Vec<Turn>) -> FakeResponses {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let fake = FakeResponses { addr, status, state: Arc::new(Mutex::new(State { script, ..State::default() })) };
        let f = fake.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let f = f.clone();
                tokio::spawn(async move { f.serve(stream).await });
            }
        });
        fake
    }

    /// The provider's `base_url`; the CLI appends `/responses`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn turns_served(&self) -> usize {
        self.state.lock().unwrap().next
    }

    /// `(call_id, output)` of every tool result the CLI sent back, in order, deduplicated
    /// (each request repeats the whole history).
    pub fn tool_outputs(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for req in self.requests() {
            for item in req.body["input"].as_array().into_iter().flatten() {
                let kind = item["type"].as_str().unwrap_or("");
                if kind != "function_call_output" && kind != "custom_tool_call_output" {
                    continue;
                }
                let id = item["call_id"].as_str().unwrap_or("").to_string();
                // `output` is a string, or content parts of `input_text`.
                let text = match &item["output"] {
                    Value::String(s) => s.clone(),
                    v => v.as_array().into_iter().flatten().filter_map(|p| p["text"].as_str()).collect(),
                };
                if !out.iter().any(|(i, _)| *i == id) {
                    out.push((id, text));
                }
            }
        }
        out
    }

    async fn serve(&self, mut stream: TcpStream) {
        let Some(req) = read_request(&mut stream).await else {
            return;
        };
        let turn = {
            let mut st = self.state.lock().unwrap();
            st.requests.push(req.clone());
            let n = st.requests.len();
            let next = (self.status.is_none() && req.has_tools() && st.next < st.script.len()).then(|| {
                st.next += 1;
                (st.next, st.script[st.next - 1].clone())
            });
            (n, next)
        };
        let (n, scripted) = turn;
        let rid = format!("req_fake_{n:06}");
        if let Some(status) = self.status {
            let _ = respond_json(&mut stream, status, &rid, &error_body(status)).await;
            return;
        }
        if req.method != "POST" || !req.path.ends_with("/responses") {
            let _ =
                respond_json(&mut stream, 404, &rid, &json!({"error": {"message": "not found", "type": "invalid_request_error"}})).await;
            return;
        }
        let (n, turn) = scripted.unwrap_or((0, Turn::new(vec![Item::Text("Done.".into())], 0, 0, 0)));
        let _ = stream_turn(&mut stream, &rid, n, &turn).await;
    }
}

fn error_body(status: u16) -> Value {
    match status {
        401 => {
            json!({"error": {"message": "Incorrect API key provided: sk-test.... (fake server)", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}})
        }
        429 => {
            json!({"error": {"message": "Rate limit reached (fake server)", "type": "requests", "param": null, "code": "rate_limit_exceeded"}})
        }
        _ => {
            json!({"error": {"message": "The server had an error while processing your request (fake server)", "type": "server_error", "param": null, "code": null}})
        }
    }
}

/// The JSON of item `i` of turn `n`, as `response.output_item.done` carries it.
fn item_json(n: usize, i: usize, item: &Item) -> Value {
    let call_id = format!("call_t{n}_{i}");
    match item {
        Item::Reasoning(t) => {
            json!({"type": "reasoning", "id": format!("rs_t{n}_{i}"), "summary": [{"type": "summary_text", "text": t}], "encrypted_content": null})
        }
        Item::Text(t) => {
            json!({"type": "message", "id": format!("msg_t{n}_{i}"), "role": "assistant", "status": "completed", "content": [{"type": "output_text", "text": t, "annotations": []}]})
        }
        Item::Exec(cmd) => {
            json!({"type": "function_call", "id": format!("fc_t{n}_{i}"), "status": "completed", "name": "exec_command", "arguments": json!({"cmd": cmd}).to_string(), "call_id": call_id})
        }
        Item::Function { name, arguments } => {
            json!({"type": "function_call", "id": format!("fc_t{n}_{i}"), "status": "completed", "name": name, "arguments": arguments.to_string(), "call_id": call_id})
        }
        Item::Patch(input) => {
            json!({"type": "custom_tool_call", "id": format!("ctc_t{n}_{i}"), "status": "completed", "name": "apply_patch", "input": input, "call_id": call_id})
        }
    }
}

async fn stream_turn(stream: &mut TcpStream, rid: &str, n: usize, turn: &Turn) -> std::io::Result<()> {
    start_sse(stream, rid).await?;
    let id = format!("resp_t{n}");
    let mut seq = 0u64;
    let mut event = |kind: &str, mut data: Value| {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(seq);
        seq += 1;
        (kind.to_string(), data.to_string())
    };
    let mut events =
        vec![event("response.created", json!({"response": {"id": id, "object": "response", "status": "in_progress", "output": []}}))];
    for (i, item) in turn.items.iter().enumerate() {
        let done = item_json(n, i, item);
        let mut added = done.clone();
        added["status"] = json!("in_progress");
        if let Item::Text(t) = item {
            added["content"] = json!([]);
            events.push(event("response.output_item.added", json!({"output_index": i, "item": added})));
            events.push(event(
                "response.output_text.delta",
                json!({"item_id": done["id"], "output_index": i, "content_index": 0, "delta": t}),
            ));
        } else {
            events.push(event("response.output_item.added", json!({"output_index": i, "item": added})));
        }
        events.push(event("response.output_item.done", json!({"output_index": i, "item": done})));
    }
    for (kind, data) in &events {
        send_event(stream, Some(kind), data).await?;
    }
    if !turn.delay.is_zero() {
        tokio::time::sleep(turn.delay).await;
    }
    let (kind, data) = match &turn.fail {
        Some(message) => event(
            "response.failed",
            json!({"response": {"id": id, "status": "failed", "error": {"code": "server_error", "message": message}}}),
        ),
        None => {
            let usage = json!({
                "input_tokens": turn.input_tokens,
                "input_tokens_details": {"cached_tokens": turn.cached_tokens},
                "output_tokens": turn.output_tokens,
                "output_tokens_details": {"reasoning_tokens": turn.reasoning_tokens},
                "total_tokens": turn.input_tokens + turn.output_tokens,
            });
            event("response.completed", json!({"response": {"id": id, "object": "response", "status": "completed", "usage": usage}}))
        }
    };
    send_event(stream, Some(&kind), &data).await
}
