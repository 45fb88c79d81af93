//! A scripted stand-in of the OpenAI Chat Completions API on 127.0.0.1, for running the real
//! opencode CLI offline (an `@ai-sdk/openai-compatible` provider whose `options.baseURL` is
//! [`FakeChat::base_url`]). `POST …/chat/completions` requests that offer tools are the agent
//! loop and get the scripted turns in order, streamed as `chat.completion.chunk`s (text and
//! `tool_calls` deltas, a finish chunk, a usage chunk, `[DONE]`). Requests without tools are
//! opencode's title requests (its `small_model`) and get a short title with zero usage, so a
//! run's token totals are exactly the script's. A failing stand-in answers every request
//! with one HTTP status, forever.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

use crate::http::{read_request, respond_json, send_event, start_sse, Request};

/// One part of a scripted assistant message.
#[derive(Debug, Clone)]
pub enum Part {
    Text(String),
    /// A tool call: opencode's tools are `write` {filePath, content}, `bash` {command,
    /// description}, `edit` {filePath, oldString, newString}, `read` {filePath}, …
    Tool {
        name: String,
        arguments: Value,
    },
}

impl Part {
    pub fn write(path: &str, content: &str) -> Part {
        Part::Tool { name: "write".into(), arguments: json!({"filePath": path, "content": content}) }
    }

    /// A shell command (`sleep 30` makes a tool that is still running, for cancel tests).
    pub fn bash(command: &str) -> Part {
        Part::Tool { name: "bash".into(), arguments: json!({"command": command, "description": format!("Run: {command}")}) }
    }

    pub fn edit(path: &str, old: &str, new: &str) -> Part {
        Part::Tool { name: "edit".into(), arguments: json!({"filePath": path, "oldString": old, "newString": new}) }
    }
}

/// One scripted model response. `prompt_tokens` includes `cached_tokens`, and
/// `completion_tokens` includes `reasoning_tokens`, as the API counts them.
#[derive(Debug, Clone)]
pub struct Turn {
    pub parts: Vec<Part>,
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    pub completion_tokens: u64,
    pub reasoning_tokens: u64,
    /// Held after the parts, before the finish chunk: lets a test cancel mid-stream.
    pub delay: Duration,
}

impl Turn {
    pub fn new(parts: Vec<Part>, prompt_tokens: u64, cached_tokens: u64, completion_tokens: u64) -> Turn {
        Turn { parts, prompt_tokens, cached_tokens, completion_tokens, reasoning_tokens: 0, delay: Duration::ZERO }
    }

    pub fn delayed(mut self, delay: Duration) -> Turn {
        self.delay = delay;
        self
    }

    /// What opencode reports for this turn as `step_finish.part.tokens.total`.
    pub fn tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

#[derive(Default)]
struct State {
    script: Vec<Turn>,
    next: usize,
    requests: Vec<Request>,
}

#[derive(Clone)]
pub struct FakeChat {
    addr: std::net::SocketAddr,
    status: Option<u16>,
    state: Arc<Mutex<State>>,
}

impl FakeChat {
    pub async fn start(script: Vec<Turn>) -> FakeChat {
        Self::listen(None, script).await
    }

    /// Answers every request with HTTP `status`, forever. (opencode retries a 500 for about
    /// 74 s before giving up; a 401 is not retried.)
    pub async fn failing(status: u16) -> FakeChat {
        Self::listen(Some(status), vec![]).await
    }

    async fn listen(status: Option<u16>, script: Vec<Turn>) -> FakeChat {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let fake = FakeChat { addr, status, state: Arc::new(Mutex::new(State { script, ..State::default() })) };
        let f = fake.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let f = f.clone();
                tokio::spawn(async move { f.serve(stream).await });
            }
        });
        fake
    }

    /// The provider's `options.baseURL`; the CLI appends `/chat/completions`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn turns_served(&self) -> usize {
        self.state.lock().unwrap().next
    }

    /// `(tool_call_id, content)` of every tool result the CLI sent back, deduplicated.
    pub fn tool_outputs(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for req in self.requests() {
            for msg in req.body["messages"].as_array().into_iter().flatten().filter(|m| m["role"] == "tool") {
                let id = msg["tool_call_id"].as_str().unwrap_or("").to_string();
                let text = match &msg["content"] {
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
        let (n, scripted) = {
            let mut st = self.state.lock().unwrap();
            st.requests.push(req.clone());
            let n = st.requests.len();
            let next = (self.status.is_none() && req.has_tools() && st.next < st.script.len()).then(|| {
                st.next += 1;
                (st.next, st.script[st.next - 1].clone())
            });
            (n, next)
        };
        let rid = format!("req_fake_{n:06}");
        if let Some(status) = self.status {
            let _ = respond_json(&mut stream, status, &rid, &error_body(status)).await;
            return;
        }
        if req.method != "POST" || !req.path.ends_with("/chat/completions") {
            let _ =
                respond_json(&mut stream, 404, &rid, &json!({"error": {"message": "not found", "type": "invalid_request_error"}})).await;
            return;
        }
        let (n, turn) = match scripted {
            Some(t) => t,
            // A title request, or the agent loop past the end of the script.
            None if !req.has_tools() => (0, Turn::new(vec![Part::Text("Scripted task".into())], 0, 0, 0)),
            None => (0, Turn::new(vec![Part::Text("Done.".into())], 0, 0, 0)),
        };
        let _ = if req.body["stream"] == json!(true) {
            stream_turn(&mut stream, &rid, n, &turn).await
        } else {
            respond_json(&mut stream, 200, &rid, &completion(n, &turn)).await
        };
    }
}

fn error_body(status: u16) -> Value {
    match status {
        401 => {
            json!({"error": {"message": "Incorrect API key provided: sk-test.... (fake server)", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}})
        }
        _ => {
            json!({"error": {"message": "The server had an error while processing your request (fake server)", "type": "server_error", "param": null, "code": null}})
        }
    }
}

fn usage(turn: &Turn) -> Value {
    json!({
        "prompt_tokens": turn.prompt_tokens,
        "completion_tokens": turn.completion_tokens,
        "total_tokens": turn.tokens(),
        "prompt_tokens_details": {"cached_tokens": turn.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": turn.reasoning_tokens},
    })
}

fn finish_reason(turn: &Turn) -> &'static str {
    if turn.parts.iter().any(|p| matches!(p, Part::Tool { .. })) {
        "tool_calls"
    } else {
        "stop"
    }
}

fn chunk(n: usize, delta: Value, finish: Option<&str>) -> String {
    json!({"id": format!("chatcmpl-t{n}"), "object": "chat.completion.chunk", "created": 0, "model": "fake-coder",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    .to_string()
}

async fn stream_turn(stream: &mut TcpStream, rid: &str, n: usize, turn: &Turn) -> std::io::Result<()> {
    start_sse(stream, rid).await?;
    send_event(stream, None, &chunk(n, json!({"role": "assistant", "content": ""}), None)).await?;
    let mut tool_index = 0;
    for (i, part) in turn.parts.iter().enumerate() {
        let delta = match part {
            Part::Text(t) => json!({"content": t}),
            Part::Tool { name, arguments } => {
                tool_index += 1;
                json!({"tool_calls": [{"index": tool_index - 1, "id": format!("call_t{n}_{i}"), "type": "function",
                    "function": {"name": name, "arguments": arguments.to_string()}}]})
            }
        };
        send_event(stream, None, &chunk(n, delta, None)).await?;
    }
    if !turn.delay.is_zero() {
        tokio::time::sleep(turn.delay).await;
    }
    send_event(stream, None, &chunk(n, json!({}), Some(finish_reason(turn)))).await?;
    let last = json!({"id": format!("chatcmpl-t{n}"), "object": "chat.completion.chunk", "created": 0, "model": "fake-coder", "choices": [], "usage": usage(turn)});
    send_event(stream, None, &last.to_string()).await?;
    send_event(stream, None, "[DONE]").await
}

/// The non-streaming answer, in case a caller asks for one.
fn completion(n: usize, turn: &Turn) -> Value {
    let text: String = turn.parts.iter().filter_map(|p| if let Part::Text(t) = p { Some(t.as_str()) } else { None }).collect();
    let calls: Vec<Value> = turn
        .parts
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p {
            Part::Tool { name, arguments } => Some(
                json!({"id": format!("call_t{n}_{i}"), "type": "function", "function": {"name": name, "arguments": arguments.to_string()}}),
            ),
            Part::Text(_) => None,
        })
        .collect();
    let mut message = json!({"role": "assistant", "content": text});
    if !calls.is_empty() {
        message["tool_calls"] = json!(calls);
    }
    json!({"id": format!("chatcmpl-t{n}"), "object": "chat.completion", "created": 0, "model": "fake-coder",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(turn)}], "usage": usage(turn)})
}
