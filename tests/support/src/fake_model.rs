//! A scripted stand-in of the Anthropic Messages API on 127.0.0.1, for running the real
//! Claude Code CLI offline (`ANTHROPIC_BASE_URL`). Requests that offer tools are the agent
//! loop and get the scripted turns in order, streamed as server-sent events exactly as the
//! API streams them; any other request (titles, quota probes) gets a short text answer with
//! zero usage, so the run's token totals are exactly the script's.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One content block of a scripted response.
#[derive(Debug, Clone)]
pub enum Block {
    Text(String),
    ToolUse { name: String, input: Value },
}

/// One scripted model response.
#[derive(Debug, Clone)]
pub struct Turn {
    pub blocks: Vec<Block>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_input_tokens: u64,
}

impl Turn {
    pub fn new(blocks: Vec<Block>, input_tokens: u64, output_tokens: u64) -> Turn {
        Turn { blocks, input_tokens, output_tokens, cache_read_input_tokens: 0 }
    }

    pub fn tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens + self.cache_read_input_tokens
    }
}

#[derive(Default)]
struct State {
    script: Vec<Turn>,
    next: usize,
    requests: Vec<(String, Value)>,
}

#[derive(Clone)]
pub struct FakeModel {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<State>>,
}

impl FakeModel {
    pub async fn start(script: Vec<Turn>) -> FakeModel {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let model = FakeModel { addr, state: Arc::new(Mutex::new(State { script, ..State::default() })) };
        let m = model.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let m = m.clone();
                tokio::spawn(async move { m.serve(stream).await });
            }
        });
        model
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// (path, body) of every request.
    pub fn requests(&self) -> Vec<(String, Value)> {
        self.state.lock().unwrap().requests.clone()
    }

    /// How many scripted turns were served.
    pub fn turns_served(&self) -> usize {
        self.state.lock().unwrap().next
    }

    /// Environment for running the real CLI against this stand-in, offline.
    pub fn cli_env(&self, home: &std::path::Path) -> Vec<(String, String)> {
        [
            ("ANTHROPIC_BASE_URL", self.base_url()),
            ("ANTHROPIC_API_KEY", "sk-ant-test-offline-0000".to_string()),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".into()),
            ("DISABLE_AUTOUPDATER", "1".into()),
            ("DISABLE_TELEMETRY", "1".into()),
            ("DISABLE_ERROR_REPORTING", "1".into()),
            ("CLAUDE_CODE_MAX_RETRIES", "0".into()),
            // As root the CLI refuses --dangerously-skip-permissions outside a sandbox.
            ("IS_SANDBOX", "1".into()),
            ("HOME", home.display().to_string()),
            ("CLAUDE_CONFIG_DIR", home.join(".claude").display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    async fn serve(&self, mut stream: TcpStream) {
        loop {
            let Some((path, body)) = read_request(&mut stream).await else { return };
            let agent_loop = body.get("tools").and_then(Value::as_array).is_some_and(|t| !t.is_empty());
            let streaming = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
            let turn = {
                let mut st = self.state.lock().unwrap();
                st.requests.push((path.clone(), body.clone()));
                if agent_loop && st.next < st.script.len() {
                    st.next += 1;
                    Some(st.script[st.next - 1].clone())
                } else {
                    None
                }
            };
            if !path.starts_with("/v1/messages") || path.starts_with("/v1/messages/count_tokens") {
                let reply = json!({"input_tokens": 0}).to_string();
                let _ = respond(&mut stream, "application/json", &reply).await;
                continue;
            }
            let (turn, n) = match turn {
                Some(t) => (t, self.turns_served()),
                None => (Turn::new(vec![Block::Text("Done.".into())], 0, 0), 0),
            };
            let ok = if streaming {
                respond(&mut stream, "text/event-stream", &sse(&turn, n)).await
            } else {
                respond(&mut stream, "application/json", &message(&turn, n).to_string()).await
            };
            if ok.is_err() {
                return;
            }
        }
    }
}

async fn read_request(stream: &mut TcpStream) -> Option<(String, Value)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let path = head.split_whitespace().nth(1)?.to_string();
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&buf[head_end..(head_end + len).min(buf.len())]).unwrap_or(Value::Null);
    Some((path, body))
}

async fn respond(stream: &mut TcpStream, content_type: &str, body: &str) -> std::io::Result<()> {
    let head = format!("HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nrequest-id: req_fake\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await
}

fn stop_reason(turn: &Turn) -> &'static str {
    if turn.blocks.iter().any(|b| matches!(b, Block::ToolUse { .. })) {
        "tool_use"
    } else {
        "end_turn"
    }
}

fn tool_id(n: usize, i: usize) -> String {
    format!("toolu_fake_{n}_{i}")
}

fn message(turn: &Turn, n: usize) -> Value {
    let content: Vec<Value> = turn
        .blocks
        .iter()
        .enumerate()
        .map(|(i, b)| match b {
            Block::Text(t) => json!({"type": "text", "text": t}),
            Block::ToolUse { name, input } => json!({"type": "tool_use", "id": tool_id(n, i), "name": name, "input": input}),
        })
        .collect();
    json!({"id": format!("msg_fake_{n}"), "type": "message", "role": "assistant", "model": "claude-fake", "content": content,
        "stop_reason": stop_reason(turn), "stop_sequence": null,
        "usage": {"input_tokens": turn.input_tokens, "output_tokens": turn.output_tokens, "cache_creation_input_tokens": 0, "cache_read_input_tokens": turn.cache_read_input_tokens}})
}

fn sse(turn: &Turn, n: usize) -> String {
    let mut out = String::new();
    let mut event = |name: &str, data: Value| out.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    let mut start = message(turn, n);
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    start["usage"]["output_tokens"] = json!(0);
    event("message_start", json!({"type": "message_start", "message": start}));
    for (i, b) in turn.blocks.iter().enumerate() {
        match b {
            Block::Text(t) => {
                event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}),
                );
                event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": t}}),
                );
            }
            Block::ToolUse { name, input } => {
                event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": i, "content_block": {"type": "tool_use", "id": tool_id(n, i), "name": name, "input": {}}}),
                );
                event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": input.to_string()}}),
                );
            }
        }
        event("content_block_stop", json!({"type": "content_block_stop", "index": i}));
    }
    event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason(turn), "stop_sequence": null}, "usage": {"output_tokens": turn.output_tokens}}),
    );
    event("message_stop", json!({"type": "message_stop"}));
    out
}
