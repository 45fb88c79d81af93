//! opencode: `opencode run --format json [-m <provider>/<model>] [--auto] <prompt>`, mapped
//! by the built-in `plugins/opencode` component (shared/spec/opencode-run-json.md).
//!
//! The stream never names the provider, so attribution comes from the model the peer passes
//! (`ORGX_OPENCODE_MODEL`) or, failing that, the `model` of opencode's own configuration.
//! Every run has `OPENCODE_DISABLE_AUTOUPDATE=1` and `OPENCODE_DISABLE_SHARE=1`: a run must
//! never update the CLI under itself or share a session.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::probe::{self, Probe};
use super::{attribution_from_detection, Attribution, Builtin, Command, Detection, Driver, DriverSettings, Launch};

pub static DRIVER: Driver = Driver {
    id: "opencode",
    slot: "mapper:opencode",
    display: "opencode",
    bin_env: "ORGX_OPENCODE_BIN",
    default_bin: "opencode",
    extra_args_env: &["ORGX_OPENCODE_EXTRA_ARGS"],
    option_envs: &["ORGX_OPENCODE_AUTO", "XDG_CONFIG_HOME", "HOME"],
    install_hint: "npm install -g opencode-ai",
    mapper: Builtin { name: "opencode", wasm: include_bytes!(concat!(env!("ORGX_GUEST_WASM_DIR"), "/orgx_mapper_opencode.wasm")) },
    selftest: include_str!("../../assets/selftest/opencode.ndjson"),
    command,
    detect: |bin, settings| Box::pin(detect(bin, settings)),
    attribution,
    // `opencode run` cannot continue a parked question in this form (spec: a driver
    // without resumable attention).
    resumable: None,
};

fn command(launch: &Launch<'_>) -> Command {
    let s = launch.settings;
    let mut args: Vec<std::ffi::OsString> = ["run", "--format", "json"].map(Into::into).to_vec();
    if let Some(model) = &s.model {
        args.push("-m".into());
        args.push(model.into());
    }
    if s.option("ORGX_OPENCODE_AUTO").is_some_and(|v| super::parse_bool(v) == Some(true)) {
        args.push("--auto".into());
    }
    args.extend(s.extra_args.iter().map(Into::into));
    args.push(launch.prompt.into());
    let env_add = [("OPENCODE_DISABLE_AUTOUPDATE", "1"), ("OPENCODE_DISABLE_SHARE", "1")].map(|(k, v)| (k.into(), v.into())).to_vec();
    Command { args, env_add }
}

const TIMEOUT: Duration = Duration::from_secs(5);

async fn detect(bin: &Path, settings: &DriverSettings) -> Detection {
    let mut d = match probe::run(bin, &["--version"], TIMEOUT).await {
        Probe::Exited { success: true, stdout, .. } => Detection { installed: true, version: Some(stdout), ..Detection::default() },
        _ => return Detection::not_installed(&DRIVER, bin),
    };
    // A credential can only be proven by a model call: a configured model counts as logged in.
    let model = settings.model.clone().or_else(|| configured_model(settings));
    d.logged_in = Some(model.is_some());
    d.source_sub_type = Some("user_managed");
    d.model = model;
    if d.logged_in == Some(false) {
        d.hint = Some("opencode has no model configured: set `model` in opencode.json, or ORGX_OPENCODE_MODEL=<provider>/<model>".into());
    }
    d
}

/// `model` from `$XDG_CONFIG_HOME/opencode/opencode.json` (else `~/.config/…`).
fn configured_model(settings: &DriverSettings) -> Option<String> {
    let dir = match settings.option("XDG_CONFIG_HOME") {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(settings.option("HOME")?).join(".config"),
    };
    let text = std::fs::read_to_string(dir.join("opencode").join("opencode.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("model")?.as_str().map(str::to_string)
}

/// The provider route is the part of `<provider>/<model>` before the first `/`.
fn attribution(settings: &DriverSettings, detection: Option<&Detection>) -> Attribution {
    let mut a = attribution_from_detection(settings, detection);
    let model = settings.model.clone().or_else(|| detection.and_then(|d| d.model.clone()));
    a.provider_id = model.as_deref().and_then(|m| m.split_once('/')).map(|(p, _)| p.to_string()).filter(|p| !p.is_empty());
    a.model = model;
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_and_environment() {
        let mut settings = DriverSettings { model: Some("fake/fake-coder".into()), ..DriverSettings::default() };
        let c = (DRIVER.command)(&Launch { prompt: "Fix it", settings: &settings });
        let args: Vec<_> = c.args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["run", "--format", "json", "-m", "fake/fake-coder", "Fix it"]);
        assert!(c.env_add.contains(&("OPENCODE_DISABLE_AUTOUPDATE".into(), "1".into())));
        assert!(c.env_add.contains(&("OPENCODE_DISABLE_SHARE".into(), "1".into())));
        settings.options.insert("ORGX_OPENCODE_AUTO", "yes".into());
        let c = (DRIVER.command)(&Launch { prompt: "Fix it", settings: &settings });
        assert!(c.args.iter().any(|a| a == "--auto"));
    }

    #[test]
    fn provider_is_the_part_before_the_slash() {
        let s = |m: Option<&str>| DriverSettings { model: m.map(str::to_string), ..DriverSettings::default() };
        assert_eq!(attribution(&s(Some("anthropic/claude-x")), None).provider_id.as_deref(), Some("anthropic"));
        assert_eq!(attribution(&s(Some("nope")), None).provider_id, None);
        assert_eq!(attribution(&s(Some("/x")), None).provider_id, None);
        assert_eq!(attribution(&s(None), None).provider_id, None);
        let detected = Detection { model: Some("fake/m".into()), ..Detection::default() };
        assert_eq!(attribution(&s(None), Some(&detected)).provider_id.as_deref(), Some("fake"));
    }
}
