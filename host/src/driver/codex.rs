//! The Codex CLI: `codex [extra] exec --json --skip-git-repo-check -s <sandbox> [-m model]
//! <prompt>`, mapped by the built-in `plugins/codex` component
//! (shared/spec/codex-exec-json.md).
//!
//! `-s workspace-write` by default: `exec`'s own default sandbox is read-only and silently
//! refuses every edit while the model claims success. Extra arguments go before `exec`,
//! where Codex takes `-c key=value` overrides.

use std::path::Path;
use std::time::Duration;

use super::probe::{self, Probe};
use super::{attribution_from_detection, Builtin, Command, Detection, Driver, Launch};

pub static DRIVER: Driver = Driver {
    id: "codex",
    slot: "mapper:codex",
    display: "Codex CLI",
    bin_env: "ORGX_CODEX_BIN",
    default_bin: "codex",
    extra_args_env: &["ORGX_CODEX_EXTRA_ARGS"],
    option_envs: &["ORGX_CODEX_SANDBOX"],
    install_hint: "npm install -g @openai/codex",
    mapper: Builtin { name: "codex", wasm: include_bytes!(concat!(env!("ORGX_GUEST_WASM_DIR"), "/orgx_mapper_codex.wasm")) },
    selftest: include_str!("../../assets/selftest/codex.ndjson"),
    command,
    detect: |bin, _| Box::pin(detect(bin)),
    attribution: attribution_from_detection,
    // `codex exec` has no parked-call form; its app-server path keeps the turn open instead
    // (spec §8.1), which `exec --json` does not offer.
    resumable: None,
};

/// The sandbox modes `codex exec -s` accepts.
pub const SANDBOXES: &[&str] = &["read-only", "workspace-write", "danger-full-access"];
pub const DEFAULT_SANDBOX: &str = "workspace-write";

fn command(launch: &Launch<'_>) -> Command {
    let s = launch.settings;
    let sandbox = s.option("ORGX_CODEX_SANDBOX").filter(|v| SANDBOXES.contains(v)).unwrap_or(DEFAULT_SANDBOX);
    let mut args: Vec<std::ffi::OsString> = s.extra_args.iter().map(Into::into).collect();
    args.extend(["exec", "--json", "--skip-git-repo-check", "-s", sandbox].map(Into::into));
    if let Some(model) = &s.model {
        args.push("-m".into());
        args.push(model.into());
    }
    args.push(launch.prompt.into());
    Command { args, env_add: Vec::new() }
}

const TIMEOUT: Duration = Duration::from_secs(5);

async fn detect(bin: &Path) -> Detection {
    let mut d = match probe::run(bin, &["--version"], TIMEOUT).await {
        Probe::Exited { success: true, stdout, .. } => {
            Detection { installed: true, version: stdout.split_whitespace().last().map(str::to_string), ..Detection::default() }
        }
        Probe::NotStarted(_) => return Detection::not_installed(&DRIVER, bin),
        other => {
            let mut d = Detection::not_installed(&DRIVER, bin);
            d.hint = Some(format!("`{} --version` failed ({other:?}): reinstall the Codex CLI ({})", bin.display(), DRIVER.install_hint));
            return d;
        }
    };
    let login = match probe::run(bin, &["login", "status"], TIMEOUT).await {
        // The CLI prints its one line on stderr; read both.
        Probe::Exited { success, stdout, stderr } => Some((success, format!("{stdout}\n{stderr}").trim().to_string())),
        _ => None,
    };
    let (logged_in, auth_method, sub_type) = read_login(login.as_ref().map(|(ok, text)| (*ok, text.as_str())));
    d.logged_in = logged_in;
    d.auth_method = auth_method.map(str::to_string);
    d.source_sub_type = sub_type;
    d.subscription_type = (d.auth_method.as_deref() == Some("chatgpt")).then(|| "chatgpt".to_string());
    if d.logged_in == Some(false) {
        d.hint = Some("Codex is not logged in: run `codex login`, or set OPENAI_API_KEY".into());
    }
    d
}

/// `codex login status` → (logged in, auth method, source sub type), per the spec's table.
fn read_login(out: Option<(bool, &str)>) -> (Option<bool>, Option<&'static str>, Option<&'static str>) {
    let Some((success, text)) = out else { return (None, None, Some("user_managed")) };
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    match (success, line) {
        (true, "Logged in using ChatGPT") => (Some(true), Some("chatgpt"), Some("subscription")),
        (true, l) if l.starts_with("Logged in using an API key") => (Some(true), Some("api_key"), Some("api_key")),
        (true, l) if l.starts_with("Logged in using ") => (Some(true), None, Some("user_managed")),
        (false, "Not logged in") => (Some(false), None, None),
        _ => (None, None, Some("user_managed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::DriverSettings;

    #[test]
    fn command_line() {
        let mut settings = DriverSettings {
            extra_args: vec!["-c".into(), "features.plugins=false".into()],
            model: Some("gpt-5.5".into()),
            ..DriverSettings::default()
        };
        let args = |s: &DriverSettings| -> Vec<String> {
            (DRIVER.command)(&Launch { prompt: "Fix it", settings: s }).args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
        };
        assert_eq!(
            args(&settings),
            ["-c", "features.plugins=false", "exec", "--json", "--skip-git-repo-check", "-s", "workspace-write", "-m", "gpt-5.5", "Fix it"]
        );
        settings.options.insert("ORGX_CODEX_SANDBOX", "danger-full-access".into());
        assert!(args(&settings).windows(2).any(|w| w == ["-s", "danger-full-access"]));
        // A value Codex would not take is not passed through.
        settings.options.insert("ORGX_CODEX_SANDBOX", "none; rm -rf /".into());
        assert!(args(&settings).windows(2).any(|w| w == ["-s", "workspace-write"]));
    }

    #[test]
    fn login_status_table() {
        type Reading = (Option<bool>, Option<&'static str>, Option<&'static str>);
        let table: &[(Option<(bool, &str)>, Reading)] = &[
            (Some((true, "Logged in using ChatGPT")), (Some(true), Some("chatgpt"), Some("subscription"))),
            (Some((true, "Logged in using an API key - sk-proj-***abcd")), (Some(true), Some("api_key"), Some("api_key"))),
            (Some((true, "Logged in using access token")), (Some(true), None, Some("user_managed"))),
            (Some((true, "Logged in using GitHub Copilot (github.com)")), (Some(true), None, Some("user_managed"))),
            (Some((false, "Not logged in")), (Some(false), None, None)),
            (Some((false, "Error checking login status: boom")), (None, None, Some("user_managed"))),
            (Some((true, "")), (None, None, Some("user_managed"))),
            (None, (None, None, Some("user_managed"))),
        ];
        for (out, want) in table {
            assert_eq!(read_login(*out), *want, "{out:?}");
        }
    }
}
