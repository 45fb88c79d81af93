//! The attention plugin (`host/src/attention/plugin.rs`) with the real Claude Code CLI
//! (pinned in `tests/node/`) and the scripted Anthropic stand-in, no OrgX server: the CLI
//! loads the plugin this binary writes, runs its hook (`orgx-peer hook pre-tool-use`) and asks
//! its permission host (`orgx-peer mcp permission-host`). Each test runs inside a private
//! network namespace with only loopback when the machine allows it (`offline::run_isolated`),
//! on top of the offline settings of `FakeModel::cli_env`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use orgx_peer::attention::plugin;
use orgx_test_support::fake_model::{Block, FakeModel, Turn};
use orgx_test_support::offline::{claude_bin, run_isolated};
use serde_json::{json, Map, Value};

/// One CLI process may take this long (Node-sized start-up, a busy 2-core machine).
const CLI_TIMEOUT: Duration = Duration::from_secs(300);

const QUESTION: &str = "Which greeting style should greeting.txt use?";

fn orgx_peer_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_orgx-peer"))
}

/// A temporary git repository for the CLI to work in.
fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    assert!(std::process::Command::new("git").args(["init", "-q"]).current_dir(dir.path()).status().unwrap().success());
    dir
}

/// The plugin directory of a run, written as the daemon writes it.
fn plugin_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugin");
    plugin::write(&dir, orgx_peer_bin()).unwrap();
    (tmp, dir)
}

struct Run {
    lines: Vec<Value>,
    stdout: String,
    stderr: String,
    code: Option<i32>,
    took: Duration,
}

impl Run {
    fn results(&self) -> Vec<&Value> {
        self.lines.iter().filter(|l| l["type"] == "result").collect()
    }

    fn result(&self) -> &Value {
        let r = self.results();
        assert_eq!(r.len(), 1, "exactly one result line\n{}", self.dump());
        r[0]
    }

    fn init(&self) -> &Value {
        self.lines
            .iter()
            .find(|l| l["type"] == "system" && l["subtype"] == "init")
            .unwrap_or_else(|| panic!("no system/init line\n{}", self.dump()))
    }

    fn dump(&self) -> String {
        format!("exit {:?} after {:?}\n--- stdout\n{}--- stderr\n{}", self.code, self.took, self.stdout, self.stderr)
    }
}

/// `claude <args>` in `cwd`, with a cleared environment plus `PATH` and `env`, stdin from
/// /dev/null; waits for the exit (bounded by [`CLI_TIMEOUT`]).
async fn claude(cwd: &Path, env: &[(String, String)], args: &[&str]) -> Run {
    let mut cmd = tokio::process::Command::new(claude_bin());
    cmd.args(args).current_dir(cwd).env_clear();
    cmd.env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()));
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let started = Instant::now();
    let child = cmd.spawn().expect("spawn claude");
    let out = tokio::time::timeout(CLI_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("claude {args:?} did not exit within {CLI_TIMEOUT:?}"))
        .expect("wait for claude");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}")))
        .collect();
    Run { lines, stdout, stderr: String::from_utf8_lossy(&out.stderr).into_owned(), code: out.status.code(), took: started.elapsed() }
}

/// The flags every process of an attention run gets: the plugin and its permission host.
fn attention_args<'a>(plugin_dir: &'a str, tool: &'a str) -> [&'a str; 7] {
    ["--output-format", "stream-json", "--verbose", "--plugin-dir", plugin_dir, "--permission-prompt-tool", tool]
}

/// The agent-loop requests the model got (those that offer tools), in order.
fn agent_requests(model: &FakeModel) -> Vec<Value> {
    model
        .requests()
        .into_iter()
        .filter(|(path, body)| path.starts_with("/v1/messages") && body["tools"].as_array().is_some_and(|t| !t.is_empty()))
        .map(|(_, body)| body)
        .collect()
}

/// The `tool_result` block for `id` in the last message of `request`.
fn tool_result<'a>(request: &'a Value, id: &str) -> &'a Value {
    let last = request["messages"].as_array().and_then(|m| m.last()).expect("messages");
    last["content"]
        .as_array()
        .and_then(|c| c.iter().find(|b| b["type"] == "tool_result" && b["tool_use_id"] == id))
        .unwrap_or_else(|| panic!("no tool_result for {id} in the last message: {last}"))
}

/// A tool_result's content as text (a string, or the text blocks joined).
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks.iter().filter_map(|b| b["text"].as_str()).collect::<Vec<_>>().join("\n"),
        other => other.to_string(),
    }
}

fn ask_input() -> Value {
    json!({"questions": [{
        "question": QUESTION,
        "header": "Greeting",
        "options": [
            {"label": "Formal", "description": "Good day to you."},
            {"label": "Casual", "description": "Hey there!"}
        ],
        "multiSelect": false
    }]})
}

#[test]
fn ask_user_question_is_deferred_by_the_hook_and_resumed_with_the_answer() {
    run_isolated(|isolated| async move {
        eprintln!("loopback-only network namespace: {isolated}");
        let repo = repo();
        let home = tempfile::tempdir().unwrap();
        let (_keep, dir) = plugin_dir();
        let dir_s = dir.display().to_string();
        let tool = plugin::permission_prompt_tool();
        let script = vec![
            Turn::new(
                vec![
                    Block::Text("Before I write the file I need one decision from you.".into()),
                    Block::ToolUse { name: "AskUserQuestion".into(), input: ask_input() },
                ],
                1500,
                60,
            ),
            Turn::new(vec![Block::Text("Done: you picked the formal greeting.".into())], 1700, 20),
        ];
        let model = FakeModel::start(script).await;
        let env = model.cli_env(home.path());

        // The first process: the model asks, the hook defers, the process ends parked.
        let mut args = vec!["-p", "Write greeting.txt, but ask me which greeting style to use first."];
        args.extend(attention_args(&dir_s, &tool));
        let first = claude(repo.path(), &env, &args).await;
        eprintln!("first process: {:?}", first.took);
        assert_eq!(first.code, Some(0), "{}", first.dump());
        let init = first.init();
        let tools: Vec<&str> = init["tools"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert!(tools.contains(&"AskUserQuestion"), "AskUserQuestion offered: {tools:?}");
        // The CLI takes the tool `--permission-prompt-tool` names out of the tool list
        // exactly when that name is the server's tool (observed with 2.1.330: a wrong name
        // leaves `mcp__plugin_orgx-peer_orgx__permission_prompt` listed, and the first
        // permission prompt ends the process with exit 1 and no result line).
        assert!(!tools.contains(&tool.as_str()), "{tool} is the permission prompt tool, not a tool of the model: {tools:?}");
        let plugins = init["plugins"].as_array().unwrap();
        assert!(
            plugins.iter().any(|p| p["name"] == plugin::PLUGIN_NAME && p["version"] == env!("CARGO_PKG_VERSION")),
            "the plugin is loaded: {plugins:?}"
        );
        let server = format!("plugin:{}:{}", plugin::PLUGIN_NAME, plugin::MCP_SERVER);
        assert!(
            init["mcp_servers"].as_array().unwrap().iter().any(|s| s["name"] == server.as_str() && s["status"] == "connected"),
            "{server} connected: {}",
            init["mcp_servers"]
        );
        let result = first.result();
        assert_eq!(result["stop_reason"], "tool_deferred", "{}", first.dump());
        assert_eq!(result["subtype"], "success");
        assert_eq!(result["is_error"], false);
        let deferred = &result["deferred_tool_use"];
        assert_eq!(deferred["name"], "AskUserQuestion");
        assert_eq!(deferred["input"], ask_input(), "the parked call, input exactly as the model sent it");
        let id = deferred["id"].as_str().expect("deferred_tool_use.id").to_string();
        let session = result["session_id"].as_str().expect("session_id").to_string();
        assert_eq!(agent_requests(&model).len(), 1, "no request after the deferral");
        assert!(first.stderr.is_empty(), "{}", first.dump());

        // A person answers in OrgX; the daemon records it for the hook, and resumes.
        let mut answers = Map::new();
        answers.insert(QUESTION.into(), json!("Formal"));
        plugin::write_answers(&dir, &id, &answers).unwrap();
        let mut args = vec!["--resume", session.as_str(), "-p", ""];
        args.extend(attention_args(&dir_s, &tool));
        let resumed = claude(repo.path(), &env, &args).await;
        eprintln!("resumed process: {:?}", resumed.took);
        assert_eq!(resumed.code, Some(0), "{}", resumed.dump());
        let result = resumed.result();
        assert_eq!(result["subtype"], "success", "{}", resumed.dump());
        assert_eq!(result["is_error"], false);
        assert_eq!(result["stop_reason"], "end_turn", "{}", resumed.dump());
        assert_eq!(result["terminal_reason"], "completed");
        assert_eq!(result["result"], "Done: you picked the formal greeting.");
        assert_eq!(result["session_id"], session.as_str(), "the same session");
        assert!(result.get("deferred_tool_use").is_none_or(Value::is_null));
        // The hook's answer, as the CLI reports it before system/init.
        assert!(
            resumed.lines.iter().any(|l| l["type"] == "attachment" && l.to_string().contains("answered in OrgX")),
            "the hook_success attachment\n{}",
            resumed.dump()
        );

        let requests = agent_requests(&model);
        assert_eq!(requests.len(), 2, "one request after the resume");
        let answer = tool_result(&requests[1], &id);
        assert_ne!(answer["is_error"], true, "{answer}");
        let text = text_of(&answer["content"]);
        assert!(text.contains(QUESTION) && text.contains("Formal"), "the answer reached the model: {text}");
        assert_eq!(model.turns_served(), 2);
    });
}

#[test]
fn a_permission_prompt_is_denied_by_the_permission_host() {
    run_isolated(|isolated| async move {
        eprintln!("loopback-only network namespace: {isolated}");
        let repo = repo();
        let home = tempfile::tempdir().unwrap();
        let (_keep, dir) = plugin_dir();
        let dir_s = dir.display().to_string();
        let tool = plugin::permission_prompt_tool();
        let target = repo.path().join("greeting.txt");
        let write_input = json!({"file_path": target.display().to_string(), "content": "Good day to you.\n"});
        let script = vec![
            Turn::new(vec![Block::ToolUse { name: "Write".into(), input: write_input.clone() }], 1000, 30),
            Turn::new(vec![Block::Text("I could not write greeting.txt.".into())], 1200, 10),
        ];
        let model = FakeModel::start(script).await;
        let env = model.cli_env(home.path());

        // Write is neither allowed by settings nor by flags: a permission prompt.
        let mut args = vec!["-p", "Write greeting.txt."];
        args.extend(attention_args(&dir_s, &tool));
        let run = claude(repo.path(), &env, &args).await;
        eprintln!("process: {:?}", run.took);
        assert_eq!(run.code, Some(0), "{}", run.dump());
        let result = run.result();
        assert_eq!(result["subtype"], "success", "{}", run.dump());
        assert_eq!(result["terminal_reason"], "completed", "{}", run.dump());
        let denials = result["permission_denials"].as_array().expect("permission_denials");
        assert_eq!(denials.len(), 1, "{denials:?}");
        assert_eq!(denials[0]["tool_name"], "Write");
        assert_eq!(denials[0]["tool_input"], write_input);
        let id = denials[0]["tool_use_id"].as_str().expect("tool_use_id").to_string();
        assert!(!target.exists(), "the denied Write did not happen");

        let requests = agent_requests(&model);
        assert_eq!(requests.len(), 2);
        let denied = tool_result(&requests[1], &id);
        assert_eq!(denied["is_error"], true, "{denied}");
        let text = text_of(&denied["content"]);
        assert!(
            text.contains("orgx-peer: no one is at this terminal to approve `Write` in a dispatched run"),
            "the deny message reached the model: {text}"
        );
        assert!(text.contains("permissions.allow") && text.contains("--allowedTools"), "{text}");
        assert_eq!(model.turns_served(), 2);
    });
}
