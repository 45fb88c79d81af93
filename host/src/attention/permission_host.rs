//! `orgx-peer mcp permission-host`: the MCP server (stdio, newline-delimited JSON-RPC 2.0)
//! the plugin declares, whose one tool the run names in `--permission-prompt-tool`.
//!
//! In `-p` mode the real CLI offers `AskUserQuestion` only when such a tool exists, and asks
//! it about every permission prompt of the run (a tool the repository's settings do not
//! allow). No person is at the terminal of a dispatched run, so every prompt is denied, with
//! a message that names the tool and says how to allow it. The questions themselves never
//! reach this server: the `PreToolUse` hook parks them first (`hook`).

use std::io::{self, BufRead, Write};
use std::process::ExitCode;

use serde_json::{json, Value};

use super::plugin::PERMISSION_TOOL_NAME;

/// The longest request line read; a longer one is answered with a parse error and skipped.
pub const MAX_LINE_BYTES: usize = 4 << 20;
/// The longest tool name quoted back in a deny message.
const MAX_NAME_CHARS: usize = 200;

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

/// The protocol version answered when the client names none.
const DEFAULT_PROTOCOL_VERSION: &str = "2025-06-18";

/// The deny message for a permission prompt about `tool`.
pub fn deny_message(tool: &str) -> String {
    let tool: String = tool.chars().filter(|c| !c.is_control() && *c != '`').take(MAX_NAME_CHARS).collect();
    let tool = if tool.is_empty() { "this tool".to_string() } else { format!("`{tool}`") };
    format!(
        "orgx-peer: no one is at this terminal to approve {tool} in a dispatched run; allow it in the Claude Code settings of this repository (permissions.allow) or with --allowedTools in ORGX_CLAUDE_EXTRA_ARGS"
    )
}

fn tool_definition() -> Value {
    json!({
        "name": PERMISSION_TOOL_NAME,
        "description": "Decides a permission prompt of a dispatched OrgX run: there is no one to ask, so it denies, saying how to allow the tool instead.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "tool_name": {"type": "string", "description": "The tool that asks for permission"},
                "input": {"type": "object", "description": "The tool's input"},
                "tool_use_id": {"type": "string", "description": "The tool call's id"},
            },
            "required": ["tool_name", "input"],
        },
    })
}

/// The answer to one request (`None` for a notification or a stray response).
fn handle(msg: &Value) -> Option<Value> {
    let Some(obj) = msg.as_object() else {
        return Some(error(Value::Null, INVALID_REQUEST, "a request must be a JSON object"));
    };
    let id = obj.get("id").cloned();
    let Some(method) = obj.get("method").and_then(Value::as_str) else {
        // A response from the client (it sends none we asked for), or garbage with an id.
        return match id {
            Some(id) if !obj.contains_key("result") && !obj.contains_key("error") => Some(error(id, INVALID_REQUEST, "no method")),
            _ => None,
        };
    };
    // A notification (`notifications/initialized`, `notifications/cancelled`, …): no answer.
    let id = id?;
    let params = obj.get("params").cloned().unwrap_or(Value::Null);
    let result = match method {
        "initialize" => {
            let version = params.get("protocolVersion").and_then(Value::as_str).unwrap_or(DEFAULT_PROTOCOL_VERSION);
            json!({
                "protocolVersion": version,
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "orgx-peer-permission-host", "version": env!("CARGO_PKG_VERSION")},
            })
        }
        "ping" => json!({}),
        "tools/list" => json!({"tools": [tool_definition()]}),
        "tools/call" => {
            let name = params.get("name").and_then(Value::as_str);
            if name != Some(PERMISSION_TOOL_NAME) {
                return Some(error(id, INVALID_PARAMS, &format!("unknown tool (this server has `{PERMISSION_TOOL_NAME}` only)")));
            }
            let tool = params.pointer("/arguments/tool_name").and_then(Value::as_str).unwrap_or("");
            let decision = json!({"behavior": "deny", "message": deny_message(tool)});
            json!({"content": [{"type": "text", "text": decision.to_string()}]})
        }
        _ => return Some(error(id, METHOD_NOT_FOUND, "method not found")),
    };
    Some(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// What [`read_line`] found.
enum Line {
    /// A line (in the buffer, without its `\n`).
    Complete,
    /// A line longer than [`MAX_LINE_BYTES`], consumed to its end and dropped.
    TooLong,
}

/// The next line of `input` into `line`; `None` at EOF. A last line without `\n` counts.
fn read_line(input: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<Option<Line>> {
    line.clear();
    let mut too_long = false;
    let mut any = false;
    let status = |too_long: bool| if too_long { Line::TooLong } else { Line::Complete };
    loop {
        let buf = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(any.then(|| status(too_long)));
        }
        any = true;
        let (chunk, used, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        if !too_long {
            if line.len() + chunk.len() > MAX_LINE_BYTES {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        input.consume(used);
        if done {
            return Ok(Some(status(too_long)));
        }
    }
}

/// Serve requests from `input` until EOF, one answer line each on `output`.
pub fn serve(mut input: impl BufRead, mut output: impl Write) -> io::Result<()> {
    let mut line = Vec::new();
    while let Some(read) = read_line(&mut input, &mut line)? {
        let answer = match read {
            Line::TooLong => Some(error(Value::Null, PARSE_ERROR, "request line too long")),
            Line::Complete => {
                let text = line.strip_suffix(b"\r").unwrap_or(&line);
                if text.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match serde_json::from_slice::<Value>(text) {
                    Ok(msg) => handle(&msg),
                    Err(_) => Some(error(Value::Null, PARSE_ERROR, "not JSON")),
                }
            }
        };
        if let Some(answer) = answer {
            let mut bytes = serde_json::to_vec(&answer).expect("a JSON value serializes");
            bytes.push(b'\n');
            output.write_all(&bytes)?;
            output.flush()?;
        }
    }
    Ok(())
}

/// The subcommand: stdin and stdout are the protocol; EOF ends it with 0.
pub fn main() -> ExitCode {
    let stdin = io::stdin();
    let stdout = io::stdout();
    match serve(stdin.lock(), stdout.lock()) {
        Ok(()) => ExitCode::SUCCESS,
        // The CLI went away (a closed pipe): nothing left to serve.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orgx-peer mcp permission-host: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(input: &[u8]) -> Vec<Value> {
        let mut out = Vec::new();
        serve(input, &mut out).unwrap();
        assert!(out.is_empty() || out.ends_with(b"\n"));
        out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect()
    }

    #[test]
    fn a_scripted_session_as_the_cli_drives_it() {
        let requests = [
            json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"roots":{}},"clientInfo":{"name":"claude-code","version":"2.1.330"}}}),
            json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
            json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}),
            json!({"jsonrpc":"2.0","id":"two","method":"tools/call","params":{"name":"permission_prompt","arguments":{"tool_name":"Bash","input":{"command":"rm -rf /"},"tool_use_id":"toolu_1"}}}),
            json!({"jsonrpc":"2.0","id":3,"method":"ping"}),
            json!({"jsonrpc":"2.0","id":4,"method":"resources/list"}),
            json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3}}),
            json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"other","arguments":{}}}),
        ];
        let mut input = Vec::new();
        for r in &requests {
            input.extend_from_slice(r.to_string().as_bytes());
            input.push(b'\n');
        }
        let answers = session(&input);
        let deny = json!({"behavior":"deny","message":deny_message("Bash")}).to_string();
        assert_eq!(
            answers,
            [
                json!({"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"orgx-peer-permission-host","version":env!("CARGO_PKG_VERSION")}}}),
                json!({"jsonrpc":"2.0","id":1,"result":{"tools":[tool_definition()]}}),
                json!({"jsonrpc":"2.0","id":"two","result":{"content":[{"type":"text","text":deny}]}}),
                json!({"jsonrpc":"2.0","id":3,"result":{}}),
                json!({"jsonrpc":"2.0","id":4,"error":{"code":METHOD_NOT_FOUND,"message":"method not found"}}),
                json!({"jsonrpc":"2.0","id":5,"error":{"code":INVALID_PARAMS,"message":"unknown tool (this server has `permission_prompt` only)"}}),
            ]
        );
        let tool = &answers[1]["result"]["tools"][0];
        assert_eq!(tool["name"], "permission_prompt");
        assert_eq!(tool["inputSchema"]["type"], "object");
        for (k, t) in [("tool_name", "string"), ("input", "object"), ("tool_use_id", "string")] {
            assert_eq!(tool["inputSchema"]["properties"][k]["type"], t);
        }
        let text: Value = serde_json::from_str(answers[2]["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(text["behavior"], "deny");
        assert!(text["message"].as_str().unwrap().contains("`Bash`"));
    }

    #[test]
    fn the_deny_message_names_the_tool_and_the_way_out() {
        let cases = [("Write", "`Write`"), ("mcp__srv__do", "`mcp__srv__do`"), ("", "this tool"), ("a`b\nc", "`abc`")];
        for (tool, named) in cases {
            let m = deny_message(tool);
            assert!(m.contains(&format!("approve {named} in a dispatched run")), "{m}");
            assert!(m.contains("permissions.allow") && m.contains("--allowedTools") && m.contains("ORGX_CLAUDE_EXTRA_ARGS"), "{m}");
        }
        assert!(deny_message(&"x".repeat(10_000)).len() < 600);
    }

    #[test]
    fn malformed_input_gets_errors_not_a_crash() {
        let mut input = Vec::new();
        input.extend_from_slice(b"not json\n");
        input.extend_from_slice(b"\n   \r\n");
        input.extend_from_slice(b"[1,2]\n");
        input.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":9}\n");
        input.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{}}\n"); // a response: ignored
        input.extend_from_slice(&vec![b'x'; MAX_LINE_BYTES + 10]);
        input.extend_from_slice(b"\n");
        input.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":10,\"method\":\"ping\"}\r\n");
        // The last line without a newline still counts.
        input.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":11,\"method\":\"ping\"}");
        let answers = session(&input);
        let codes: Vec<Value> = answers.iter().map(|a| a["error"]["code"].clone()).collect();
        assert_eq!(
            codes,
            [json!(PARSE_ERROR), json!(INVALID_REQUEST), json!(INVALID_REQUEST), json!(PARSE_ERROR), Value::Null, Value::Null]
        );
        assert_eq!(answers[4], json!({"jsonrpc":"2.0","id":10,"result":{}}));
        assert_eq!(answers[5], json!({"jsonrpc":"2.0","id":11,"result":{}}));
    }

    #[test]
    fn lines_split_across_reads_are_joined() {
        let input = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n";
        for capacity in [1, 2, 3, 7, 64] {
            let mut out = Vec::new();
            serve(io::BufReader::with_capacity(capacity, &input[..]), &mut out).unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n",
                "capacity {capacity}"
            );
        }
    }

    #[test]
    fn eof_at_once_is_a_clean_end() {
        assert!(session(b"").is_empty());
    }

    #[test]
    fn an_initialize_without_a_version_gets_ours() {
        let a = session(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\"}\n");
        assert_eq!(a[0]["result"]["protocolVersion"], DEFAULT_PROTOCOL_VERSION);
    }
}
