//! The real Codex and opencode CLIs (pinned in `tests/node/`), run directly, with no peer,
//! against their scripted loopback stand-ins inside a loopback-only network namespace: the
//! scripted model writes a file, runs a shell command and edits the file, and the tests
//! check that it really happened and what the CLIs printed. They prove the stand-ins and the
//! offline set-up before the peer's end-to-end tests build on them.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use orgx_test_support::offline::{self, run_isolated, OfflineCli};
use orgx_test_support::{fake_chat, fake_responses};
use serde_json::Value;

const PROMPT: &str = "Create hello.txt with a greeting, show it, change the greeting, and show it again.";

async fn run(cli: &OfflineCli, cwd: &Path, prompt: &str, limit: Duration) -> Output {
    let started = Instant::now();
    let mut cmd = tokio::process::Command::from(cli.command(cwd, prompt));
    let out =
        tokio::time::timeout(limit, cmd.kill_on_drop(true).output()).await.expect("the CLI finished in time").expect("the CLI started");
    eprintln!("{} ran {:.1} s, {}", cli.program.display(), started.elapsed().as_secs_f64(), out.status);
    out
}

/// Every stdout line, each of which must be one JSON object.
fn json_lines(out: &Output) -> Vec<Value> {
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\nstderr: {stderr}")))
        .inspect(|v| assert!(v.is_object(), "not an object: {v}"))
        .collect()
}

fn types(lines: &[Value]) -> Vec<&str> {
    lines.iter().filter_map(|l| l["type"].as_str()).collect()
}

/// A temporary git repository for the CLI to work in.
fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ok = std::process::Command::new("git").args(["init", "-q"]).current_dir(dir.path()).status().is_ok_and(|s| s.success());
    assert!(ok, "git init");
    dir
}

fn warn_if_not_isolated(isolated: bool) {
    if !isolated {
        eprintln!("warning: no private network namespace here (not root?); relying on the offline settings alone");
    }
}

#[test]
fn codex_writes_runs_and_edits_offline() {
    use fake_responses::{FakeResponses, Item, Turn};
    run_isolated(|isolated| async move {
        warn_if_not_isolated(isolated);
        let (repo, scratch) = (repo(), tempfile::tempdir().unwrap());
        let mut first = Turn::new(
            vec![
                Item::Reasoning("**Planning the file** I need to create hello.txt first.".into()),
                Item::Text("I'll create hello.txt first.".into()),
                Item::add_file("hello.txt", "Hello, world!"),
            ],
            2100,
            0,
            60,
        );
        first.reasoning_tokens = 12;
        let script = vec![
            first,
            Turn::new(vec![Item::Exec("cat hello.txt".into())], 2300, 2048, 25),
            Turn::new(vec![Item::update_file("hello.txt", "Hello, world!", "Hello, rig!")], 2400, 2048, 40),
            Turn::new(vec![Item::Exec("cat hello.txt && wc -c hello.txt".into())], 2500, 2304, 30),
            Turn::new(vec![Item::Text("Done. hello.txt now contains \"Hello, rig!\".".into())], 2600, 2304, 20),
        ];
        let expected: u64 = script.iter().map(Turn::tokens).sum();
        let fake = FakeResponses::start(script).await;
        let cli = offline::codex(scratch.path(), &fake.base_url());
        let out = run(&cli, repo.path(), PROMPT, Duration::from_secs(60)).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "exit {}; stderr: {stderr}", out.status);
        let lines = json_lines(&out);
        assert_eq!(types(&lines).first(), Some(&"thread.started"));
        assert_eq!(types(&lines).last(), Some(&"turn.completed"), "{lines:#?}");

        let done: Vec<&Value> = lines.iter().filter(|l| l["type"] == "item.completed").map(|l| &l["item"]).collect();
        let kinds: Vec<&str> = done.iter().filter_map(|i| i["type"].as_str()).collect();
        assert_eq!(
            kinds,
            ["reasoning", "agent_message", "file_change", "command_execution", "file_change", "command_execution", "agent_message"],
            "{lines:#?}"
        );
        let changes: Vec<&str> =
            done.iter().flat_map(|i| i["changes"].as_array().into_iter().flatten()).filter_map(|c| c["kind"].as_str()).collect();
        assert_eq!(changes, ["add", "update"]);
        let outputs: Vec<&str> =
            done.iter().filter(|i| i["type"] == "command_execution").filter_map(|i| i["aggregated_output"].as_str()).collect();
        assert_eq!(outputs, ["Hello, world!\n", "Hello, rig!\n12 hello.txt\n"]);

        let usage = &lines.last().unwrap()["usage"];
        assert_eq!(usage["input_tokens"].as_u64().unwrap() + usage["output_tokens"].as_u64().unwrap(), expected, "{usage}");
        assert_eq!(usage["cached_input_tokens"], 8704);
        assert_eq!(std::fs::read_to_string(repo.path().join("hello.txt")).unwrap(), "Hello, rig!\n", "the patches really applied");

        // What the CLI sent: only model requests, authenticated, with the tool results back.
        assert_eq!(fake.turns_served(), 5);
        let reqs = fake.requests();
        assert!(
            reqs.iter().all(|r| r.method == "POST" && r.path == "/v1/responses"),
            "{:?}",
            reqs.iter().map(|r| &r.path).collect::<Vec<_>>()
        );
        assert!(reqs.iter().all(|r| r.header("authorization") == Some("<redacted>") && r.body["stream"] == true));
        let results = fake.tool_outputs();
        let ids: Vec<&str> = results.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["call_t1_2", "call_t2_0", "call_t3_0", "call_t4_0"]);
        assert!(results[1].1.contains("Hello, world!") && results[3].1.contains("12 hello.txt"), "{results:?}");
    });
}

#[test]
fn codex_401_fails_the_turn() {
    run_isolated(|isolated| async move {
        warn_if_not_isolated(isolated);
        let (repo, scratch) = (repo(), tempfile::tempdir().unwrap());
        let fake = fake_responses::FakeResponses::failing(401).await;
        let cli = offline::codex(scratch.path(), &fake.base_url());
        let out = run(&cli, repo.path(), "say hi", Duration::from_secs(60)).await;
        assert_eq!(out.status.code(), Some(1));
        let lines = json_lines(&out);
        let last = lines.last().unwrap();
        assert_eq!(last["type"], "turn.failed", "{lines:#?}");
        assert!(last["error"]["message"].as_str().unwrap().starts_with("unexpected status 401 Unauthorized"), "{last}");
        assert!(types(&lines).contains(&"error"), "the reconnect notices");
        assert!(!fake.requests().is_empty());
    });
}

#[test]
fn opencode_writes_runs_and_edits_offline() {
    use fake_chat::{FakeChat, Part, Turn};
    run_isolated(|isolated| async move {
        warn_if_not_isolated(isolated);
        let (repo, scratch) = (repo(), tempfile::tempdir().unwrap());
        let file = repo.path().join("hello.txt").display().to_string();
        let mut first =
            Turn::new(vec![Part::Text("I'll create hello.txt first.".into()), Part::write(&file, "Hello, world!\n")], 2100, 0, 60);
        first.reasoning_tokens = 12;
        let script = vec![
            first,
            Turn::new(vec![Part::bash("cat hello.txt")], 2300, 2048, 25),
            Turn::new(vec![Part::edit(&file, "Hello, world!", "Hello, rig!")], 2400, 2048, 40),
            Turn::new(vec![Part::bash("cat hello.txt && wc -c hello.txt")], 2500, 2304, 30),
            Turn::new(vec![Part::Text("Done. hello.txt now contains \"Hello, rig!\".".into())], 2600, 2304, 20),
        ];
        let expected: u64 = script.iter().map(Turn::tokens).sum();
        let fake = FakeChat::start(script).await;
        let cli = offline::opencode(scratch.path(), &fake.base_url());
        let out = run(&cli, repo.path(), PROMPT, Duration::from_secs(90)).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "exit {}; stderr: {stderr}", out.status);
        let lines = json_lines(&out);
        let tools: Vec<&str> = lines.iter().filter(|l| l["type"] == "tool_use").filter_map(|l| l["part"]["tool"].as_str()).collect();
        assert_eq!(tools, ["write", "bash", "edit", "bash"], "{lines:#?}");
        assert!(lines.iter().filter(|l| l["type"] == "tool_use").all(|l| l["part"]["state"]["status"] == "completed"), "{lines:#?}");
        let t = types(&lines);
        assert!(t.contains(&"step_start") && t.contains(&"text"), "{t:?}");
        let finishes: Vec<&Value> = lines.iter().filter(|l| l["type"] == "step_finish").map(|l| &l["part"]).collect();
        assert_eq!(finishes.len(), 5);
        assert_eq!(finishes.last().unwrap()["reason"], "stop");
        let total: u64 = finishes.iter().map(|p| p["tokens"]["total"].as_u64().unwrap()).sum();
        assert_eq!(total, expected);
        let bash_out: Vec<&str> =
            lines.iter().filter(|l| l["part"]["tool"] == "bash").filter_map(|l| l["part"]["state"]["output"].as_str()).collect();
        assert_eq!(bash_out, ["Hello, world!\n", "Hello, rig!\n12 hello.txt\n"]);
        assert_eq!(std::fs::read_to_string(repo.path().join("hello.txt")).unwrap(), "Hello, rig!\n", "the edit really happened");

        assert_eq!(fake.turns_served(), 5);
        let reqs = fake.requests();
        assert!(
            reqs.iter().all(|r| r.method == "POST" && r.path == "/v1/chat/completions"),
            "{:?}",
            reqs.iter().map(|r| &r.path).collect::<Vec<_>>()
        );
        assert!(reqs.iter().any(|r| !r.has_tools()), "a title request went to the stand-in too");
        let ids: Vec<String> = fake.tool_outputs().into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, ["call_t1_1", "call_t2_0", "call_t3_0", "call_t4_0"]);
    });
}

#[test]
fn opencode_401_prints_an_error() {
    run_isolated(|isolated| async move {
        warn_if_not_isolated(isolated);
        let (repo, scratch) = (repo(), tempfile::tempdir().unwrap());
        let fake = fake_chat::FakeChat::failing(401).await;
        let cli = offline::opencode(scratch.path(), &fake.base_url());
        let out = run(&cli, repo.path(), "say hi", Duration::from_secs(90)).await;
        assert_eq!(out.status.code(), Some(1));
        let lines = json_lines(&out);
        let error = lines.iter().find(|l| l["type"] == "error").unwrap_or_else(|| panic!("no error line: {lines:#?}"));
        assert_eq!(error["error"]["name"], "APIError");
        assert_eq!(error["error"]["data"]["statusCode"], 401);
        assert_eq!(error["error"]["data"]["isRetryable"], false);
    });
}

#[test]
fn the_namespace_has_only_loopback() {
    run_isolated(|isolated| async move {
        if !isolated {
            eprintln!("skipped: no private network namespace here (not root?)");
            return;
        }
        // No route but loopback: a public address fails at once instead of timing out.
        let err = std::net::TcpStream::connect_timeout(&"1.1.1.1:443".parse().unwrap(), Duration::from_secs(2)).expect_err("no way out");
        assert_ne!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
        assert!(std::net::UdpSocket::bind("0.0.0.0:0").unwrap().connect("8.8.8.8:53").is_err(), "no route for UDP either");
        // Loopback itself works, and is this namespace's own: a listener here is reachable.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_ok());
        // A new thread of this one is still inside (children and the blocking pool inherit it).
        let inner =
            std::thread::spawn(|| std::net::TcpStream::connect_timeout(&"1.1.1.1:443".parse().unwrap(), Duration::from_secs(2)).is_err());
        assert!(inner.join().unwrap());
    });
}
