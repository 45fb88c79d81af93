//! Claude Code: `claude -p <prompt> --output-format stream-json --verbose`, mapped by the
//! built-in `plugins/claude-code` component (shared/spec/claude-stream-json.md).

use std::path::Path;
use std::time::Duration;

use super::probe::{self, Probe};
use super::{attribution_from_detection, Builtin, Command, Detection, Driver, Launch};

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
};

fn command(launch: &Launch<'_>) -> Command {
    let mut args = vec!["-p".into(), launch.prompt.into(), "--output-format".into(), "stream-json".into(), "--verbose".into()];
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
    }
}
