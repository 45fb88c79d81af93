//! Claude Code: `claude -p <prompt> --output-format stream-json --verbose`, mapped by the
//! built-in `plugins/claude-code` component (shared/spec/claude-stream-json.md).

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use super::probe::{self, Probe};
use super::{attribution_from_detection, Builtin, Command, Detection, Driver, Launch, Resumable};

pub static DRIVER: Driver = Driver {
    id: "claude_code",
    slot: "mapper:claude_code",
    display: "Claude Code",
    bin_env: "ORGX_CLAUDE_BIN",
    default_bin: "claude",
    // `ORGX_CLAUDE_EXTRA_ARGS` predates the per-driver names and keeps working.
    extra_args_env: &["ORGX_CLAUDE_CODE_EXTRA_ARGS", "ORGX_CLAUDE_EXTRA_ARGS"],
    option_envs: &["ORGX_PLUGIN_DIR"],
    install_hint: "npm install -g @anthropic-ai/claude-code",
    mapper: Builtin { name: "claude-code", wasm: include_bytes!(concat!(env!("ORGX_GUEST_WASM_DIR"), "/orgx_mapper_claude_code.wasm")) },
    selftest: include_str!("../../assets/selftest/claude_code.ndjson"),
    command,
    detect: |bin, _| Box::pin(detect(bin)),
    attribution: attribution_from_detection,
    resumable: Some(&RESUMABLE),
};

/// A `PreToolUse` hook on `AskUserQuestion` answers `defer` (2.1.89 and later), the run ends
/// with `stop_reason: "tool_deferred"`, and `--resume <session> -p ""` continues it
/// (claude-stream-json.md, "Resumable attention").
pub static RESUMABLE: Resumable = Resumable {
    min_version: (2, 1, 89),
    source_client: "claude-code",
    capability_version: "claude-hooks-v1",
    key_prefix: "claude",
    attention_args,
    resume,
};

fn command(launch: &Launch<'_>) -> Command {
    with_flags(vec!["-p".into(), launch.prompt.into()], launch)
}

/// The prompt is empty: the CLI adds its own "Continue from where you left off.", and a
/// non-empty one would be queued mid-turn (two `result` lines). `--permission-mode` and the
/// plugin dirs are not restored from the session, so every flag is given again.
fn resume(launch: &Launch<'_>, session: &str) -> Command {
    with_flags(vec!["--resume".into(), session.into(), "-p".into(), "".into()], launch)
}

/// The plugin dir with the hook and the permission host, and the host's tool named as the
/// one that answers permission prompts (without it `-p` mode never offers `AskUserQuestion`).
fn attention_args(plugin_dir: &Path, permission_tool: &str) -> Vec<OsString> {
    vec!["--plugin-dir".into(), plugin_dir.into(), "--permission-prompt-tool".into(), permission_tool.into()]
}

fn with_flags(mut args: Vec<OsString>, launch: &Launch<'_>) -> Command {
    args.extend(["--output-format".into(), "stream-json".into(), "--verbose".into()]);
    if let Some(dir) = launch.settings.option("ORGX_PLUGIN_DIR") {
        args.push("--plugin-dir".into());
        args.push(dir.into());
    }
    args.extend(launch.settings.extra_args.iter().map(Into::into));
    Command { args, env_add: Vec::new() }
}

/// Claude Code starts Node.js, which can take a while on a cold machine.
const TIMEOUT: Duration = Duration::from_secs(20);

async fn detect(bin: &Path) -> Detection {
    let mut d = match probe::run(bin, &["--version"], TIMEOUT).await {
        Probe::Exited { success: true, stdout, .. } => {
            Detection { installed: true, version: stdout.split_whitespace().next().map(str::to_string), ..Detection::default() }
        }
        _ => return Detection::not_installed(&DRIVER, bin),
    };
    if let Probe::Exited { success: true, stdout, .. } = probe::run(bin, &["auth", "status", "--json"], TIMEOUT).await {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&stdout) {
            d.logged_in = v.get("loggedIn").and_then(|x| x.as_bool());
            d.auth_method = v.get("authMethod").and_then(|x| x.as_str()).map(str::to_string);
            d.subscription_type = v.get("subscriptionType").and_then(|x| x.as_str()).map(str::to_string);
        }
    }
    if d.logged_in == Some(false) {
        d.hint = Some("Claude Code is not logged in: run `claude` once and use /login, or set ANTHROPIC_API_KEY".into());
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::DriverSettings;

    #[test]
    fn command_line() {
        let mut settings = DriverSettings { extra_args: vec!["--model".into(), "opus".into()], ..DriverSettings::default() };
        settings.options.insert("ORGX_PLUGIN_DIR", "/plugins".into());
        let c = (DRIVER.command)(&Launch { prompt: "Fix it", settings: &settings });
        let args: Vec<_> = c.args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["-p", "Fix it", "--output-format", "stream-json", "--verbose", "--plugin-dir", "/plugins", "--model", "opus"]);
        assert!(c.env_add.is_empty());
        let r = (RESUMABLE.resume)(&Launch { prompt: "Fix it", settings: &settings }, "sess-1");
        let args: Vec<_> = r.args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            args,
            ["--resume", "sess-1", "-p", "", "--output-format", "stream-json", "--verbose", "--plugin-dir", "/plugins", "--model", "opus"]
        );
    }

    #[test]
    fn only_versions_that_defer_get_attention() {
        let table: &[(Option<&str>, bool)] = &[
            (Some("2.1.330"), true),
            (Some("2.1.89 (Claude Code)"), true),
            (Some("2.1.88"), false),
            (Some("2.0.999"), false),
            (Some("3.0.0"), true),
            (Some("v2.2.0"), true),
            (Some("2.1"), false),
            (Some("latest"), false),
            (Some(""), false),
            (None, false),
        ];
        for (v, want) in table {
            assert_eq!(RESUMABLE.supports(*v), *want, "{v:?}");
        }
    }
}
