//! A stand-in for the Claude Code CLI, for what the real one cannot be made to do on cue.
//! It accepts claude's arguments and behaves per `FAKE_CLAUDE_MODE`:
//! `replay` (print `FAKE_CLAUDE_TRANSCRIPT`, `FAKE_CLAUDE_DELAY_MS` between lines or
//! `FAKE_CLAUDE_RATE` lines a second; `@NOW@` in a line becomes the Unix time in ns as it is
//! printed, for latency benches),
//! `no-result`, `exit-nonzero`, `huge-line` (`FAKE_CLAUDE_LINE_MB`), `ignore-sigterm`
//! (it and two grandchildren ignore SIGTERM; pids go to `FAKE_CLAUDE_PIDFILE`), `hang`,
//! `chatty-stderr`, `env-dump`.

use std::io::Write;
use std::time::Duration;

const INIT: &str = r#"{"type":"system","subtype":"init","cwd":"CWD","session_id":"fake-session","tools":["Bash","Write"],"apiKeySource":"ANTHROPIC_API_KEY","claude_code_version":"2.1.330"}"#;

fn result(text: &str) -> String {
    serde_json::json!({"type":"result","subtype":"success","is_error":false,"result":text,"total_cost_usd":0.01,
        "usage":{"input_tokens":10,"output_tokens":5,"cache_creation_input_tokens":0,"cache_read_input_tokens":0},
        "permission_denials":[],"terminal_reason":"completed"})
    .to_string()
}

fn say(out: &mut impl Write, line: &str) {
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--version") {
        println!("2.1.330 (Claude Code)");
        return;
    }
    if args.len() >= 2 && args[0] == "auth" && args[1] == "status" {
        println!(r#"{{"loggedIn":true,"authMethod":"api_key","subscriptionType":null}}"#);
        return;
    }
    let env = |k: &str| std::env::var(k).ok();
    let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default();
    let init = INIT.replace("CWD", &cwd);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match env("FAKE_CLAUDE_MODE").as_deref().unwrap_or("replay") {
        "replay" => {
            let path = env("FAKE_CLAUDE_TRANSCRIPT").expect("FAKE_CLAUDE_TRANSCRIPT");
            let delay = env("FAKE_CLAUDE_DELAY_MS").and_then(|d| d.parse().ok()).unwrap_or(0);
            // A fixed rate keeps to an absolute schedule, so a slow write is caught up on
            // instead of stretching every later interval.
            let rate: Option<f64> = env("FAKE_CLAUDE_RATE").and_then(|r| r.parse().ok());
            let t0 = std::time::Instant::now();
            for (i, line) in std::fs::read_to_string(path).expect("transcript").lines().enumerate() {
                if let Some(rate) = rate {
                    let due = t0 + Duration::from_secs_f64(i as f64 / rate);
                    std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
                }
                if line.contains("@NOW@") {
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
                    say(&mut out, &line.replace("@NOW@", &now.to_string()));
                } else {
                    say(&mut out, line);
                }
                std::thread::sleep(Duration::from_millis(delay));
            }
            std::process::exit(env("FAKE_CLAUDE_EXIT").and_then(|c| c.parse().ok()).unwrap_or(0));
        }
        "no-result" => {
            say(&mut out, &init);
            say(&mut out, r#"{"type":"assistant","message":{"content":[{"type":"text","text":"working"}]}}"#);
        }
        "exit-nonzero" => {
            eprintln!("fatal: something broke");
            std::process::exit(3);
        }
        "huge-line" => {
            say(&mut out, &init);
            let mb: usize = env("FAKE_CLAUDE_LINE_MB").and_then(|m| m.parse().ok()).unwrap_or(20);
            let junk = "x".repeat(mb << 20);
            say(&mut out, &format!(r#"{{"type":"user","junk":"{junk}"}}"#));
            say(&mut out, r#"{"type":"assistant","message":{"content":[{"type":"text","text":"after the huge line"}]}}"#);
            say(&mut out, &result("done"));
        }
        "ignore-sigterm" => {
            // SAFETY: setting a signal disposition to SIG_IGN.
            unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
            let mut pids = vec![std::process::id().to_string()];
            for _ in 0..2 {
                // Never waited on, on purpose: these are the grandchildren the peer's cancel
                // must kill through the process group.
                #[allow(clippy::zombie_processes)]
                let child = std::process::Command::new("sh").args(["-c", "trap '' TERM; exec sleep 1000"]).spawn().expect("sh");
                pids.push(child.id().to_string());
            }
            if let Some(f) = env("FAKE_CLAUDE_PIDFILE") {
                std::fs::write(f, pids.join("\n")).expect("pidfile");
            }
            say(&mut out, &init);
            loop {
                std::thread::sleep(Duration::from_secs(1000));
            }
        }
        "hang" => {
            say(&mut out, &init);
            loop {
                std::thread::sleep(Duration::from_secs(1000));
            }
        }
        "chatty-stderr" => {
            let chunk = "e".repeat(1 << 20);
            let mut err = std::io::stderr().lock();
            for _ in 0..50 {
                let _ = writeln!(err, "{chunk}");
            }
            say(&mut out, &init);
            say(&mut out, &result("chatty done"));
        }
        "env-dump" => {
            let keys: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
            let report = serde_json::json!({"keys": keys, "cwd": cwd, "argv": args, "run_id": env("ORGX_RUN_ID")}).to_string();
            if let Some(f) = env("FAKE_CLAUDE_REPORT") {
                std::fs::write(f, &report).expect("report file");
            }
            say(&mut out, &init);
            say(&mut out, &result("env dumped"));
        }
        other => {
            eprintln!("fake-claude: unknown FAKE_CLAUDE_MODE {other}");
            std::process::exit(2);
        }
    }
}
