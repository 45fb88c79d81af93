//! The drivers: one coding-agent CLI each, described once, in one file each.
//!
//! A [`Driver`] is everything the host knows about a CLI: its protocol id, the settings that
//! name its binary and extra arguments, how a dispatch becomes its command line (argv, added
//! environment, stdin closed), how to detect it and its login, and the built-in component
//! that maps its output. Generic code (`run/`, `components/`, `sandbox/`, `gateway/`) names
//! no driver: it asks this module. Adding a fourth CLI is one file here, one line in
//! [`ALL`], and one mapper component in `plugins/` (buildkite's one-interface,
//! one-file-per-backend executors are the model).
//!
//! What is decided here never comes from the server: a pushed component can change what a
//! driver's output *means*, never the command line, environment or sandbox flags it runs
//! with (docs/sandbox.md).

pub mod claude_code;
pub mod codex;
pub mod opencode;
pub mod probe;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use serde::Serialize;

use crate::sandbox::types as t;

/// Every driver this peer knows, in the order `detect` and `status` list them.
pub static ALL: &[&Driver] = &[&claude_code::DRIVER, &codex::DRIVER, &opencode::DRIVER];

/// The driver whose slot an unsigned mapper serves when nothing names one.
pub static DEFAULT_MAPPER: &Driver = &claude_code::DRIVER;

/// The driver with protocol id `id` (`claude_code`, `codex`, `opencode`).
pub fn by_id(id: &str) -> Option<&'static Driver> {
    ALL.iter().copied().find(|d| d.id == id)
}

/// The protocol ids of every known driver.
pub fn ids() -> Vec<&'static str> {
    ALL.iter().map(|d| d.id).collect()
}

/// A built-in component compiled into the binary.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    pub name: &'static str,
    pub wasm: &'static [u8],
}

/// A future returned by a driver's detection.
pub type DetectFuture<'a> = Pin<Box<dyn Future<Output = Detection> + Send + 'a>>;

/// One CLI the peer can run.
pub struct Driver {
    /// The protocol id (`task.driver`, `source_driver`, the `drivers` query).
    pub id: &'static str,
    /// Its mapper's component slot, `mapper:<id>` (docs/component-push.md).
    pub slot: &'static str,
    /// How people call it.
    pub display: &'static str,
    /// The setting that names the binary, and its default (looked up on `PATH`).
    pub bin_env: &'static str,
    pub default_bin: &'static str,
    /// The settings with extra arguments for every command line; the first one set wins.
    pub extra_args_env: &'static [&'static str],
    /// Other settings the driver reads (`ORGX_PLUGIN_DIR`, `ORGX_CODEX_SANDBOX`, …).
    pub option_envs: &'static [&'static str],
    /// How to install it, for messages.
    pub install_hint: &'static str,
    /// The built-in mapper of its output (slot `mapper:<id>`).
    pub mapper: Builtin,
    /// A real transcript of its output, bundled: the self-test a new mapper of its slot must
    /// get through (`host/assets/selftest/`).
    pub selftest: &'static str,
    /// The command line for a dispatch.
    pub command: fn(&Launch<'_>) -> Command,
    /// Is it installed, which version, logged in.
    pub detect: for<'a> fn(&'a Path, &'a DriverSettings) -> DetectFuture<'a>,
    /// What the mapper is told beyond run id and directory: detection, provider, pricing.
    pub attribution: fn(&DriverSettings, Option<&Detection>) -> Attribution,
    /// Resumable attention (protocol v3): how the CLI parks a question and continues its
    /// session. `None`: a question cannot suspend this driver's runs, and a resolution for
    /// one gets `resume_failed` (spec §8.1 step 7).
    pub resumable: Option<&'static Resumable>,
}

/// How a CLI takes part in resumable attention (spec §8): the versions that can, the names
/// its records and receipts carry, and the command lines that park and continue a session.
pub struct Resumable {
    /// The oldest CLI version that honours a parked (deferred) tool call.
    pub min_version: (u64, u64, u64),
    /// `source_client` of the records and receipts (`claude-code`).
    pub source_client: &'static str,
    /// `continuation.capability_version` of the records (`claude-hooks-v1`).
    pub capability_version: &'static str,
    /// The records' idempotency-key prefix and `metadata` key (`claude`).
    pub key_prefix: &'static str,
    /// The arguments that hand a run its generated plugin dir (hook + permission host) and
    /// name that dir's permission tool. Both come from `attention::plugin`, which owns the
    /// dir's layout; the driver only knows its CLI's flags.
    pub attention_args: fn(&Path, &str) -> Vec<OsString>,
    /// The command line that continues `session` with the first process's flags.
    pub resume: fn(&Launch<'_>, &str) -> Command,
}

impl Resumable {
    /// Can a CLI that reported `version` (`2.1.330`, `2.1.330 (Claude Code)`) park a call?
    pub fn supports(&self, version: Option<&str>) -> bool {
        let Some(v) = version.and_then(|v| v.split_whitespace().next()) else { return false };
        let mut parts = v.trim_start_matches('v').split('.').map(|p| p.parse::<u64>().ok());
        match (parts.next().flatten(), parts.next().flatten(), parts.next().flatten()) {
            (Some(a), Some(b), Some(c)) => (a, b, c) >= self.min_version,
            _ => false,
        }
    }
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id)
    }
}

/// A driver's local settings (never from the server).
#[derive(Debug, Clone, Default)]
pub struct DriverSettings {
    pub bin: PathBuf,
    pub extra_args: Vec<String>,
    /// `ORGX_<DRIVER>_MODEL`: the model to select, for drivers that take one on the command
    /// line and for attribution.
    pub model: Option<String>,
    /// `ORGX_<DRIVER>_PRICING`: USD per million tokens, `input,cached_input,output`.
    pub pricing: Option<t::Pricing>,
    /// The values of the driver's `option_envs` that are set.
    pub options: BTreeMap<&'static str, String>,
}

impl DriverSettings {
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// A driver this peer runs: what it is, its local settings, and the attribution its
/// detection gave at start-up (cached: detection never runs per dispatch).
#[derive(Clone)]
pub struct EnabledDriver {
    pub driver: &'static Driver,
    pub settings: DriverSettings,
    pub attribution: Attribution,
    /// Resumable attention, when the driver has it and the installed CLI's version can park
    /// a call (decided at start-up from detection).
    pub resumable: Option<&'static Resumable>,
}

/// What a command line is built from.
pub struct Launch<'a> {
    pub prompt: &'a str,
    pub settings: &'a DriverSettings,
}

/// A driver's command: the program is `settings.bin`. The host always closes stdin, removes
/// the gateway key from the environment and adds `ORGX_RUN_ID`; these are the driver's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Command {
    pub args: Vec<OsString>,
    pub env_add: Vec<(OsString, OsString)>,
}

/// What detection found, cached at start-up (never per heartbeat).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Detection {
    pub installed: bool,
    pub version: Option<String>,
    /// `None` when the CLI could not tell.
    pub logged_in: Option<bool>,
    pub auth_method: Option<String>,
    pub subscription_type: Option<String>,
    /// The model the CLI's own configuration selects, where the peer reads it (opencode).
    pub model: Option<String>,
    /// The credential kind the login shows (`subscription`, `api_key`, `user_managed`, …).
    pub source_sub_type: Option<&'static str>,
    /// What to do next, when something is missing.
    pub hint: Option<String>,
}

impl Detection {
    pub fn authenticated(&self) -> bool {
        self.installed && self.logged_in != Some(false)
    }

    pub fn not_installed(driver: &Driver, bin: &Path) -> Detection {
        Detection {
            hint: Some(format!(
                "{} was not found at `{}`: install it ({}) or set {} to its path",
                driver.display,
                bin.display(),
                driver.install_hint,
                driver.bin_env
            )),
            ..Detection::default()
        }
    }
}

/// The attribution part of a mapper's run context.
#[derive(Debug, Clone, Default)]
pub struct Attribution {
    pub detection: Option<t::Detection>,
    pub provider_id: Option<String>,
    pub model: Option<String>,
    pub pricing: Option<t::Pricing>,
}

/// `subscription` / `api_key` / … as the WIT value.
pub fn wit_sub_type(s: &str) -> Option<t::SourceSubType> {
    match s {
        "subscription" => Some(t::SourceSubType::Subscription),
        "api_key" => Some(t::SourceSubType::ApiKey),
        "enterprise_key" => Some(t::SourceSubType::EnterpriseKey),
        "user_managed" => Some(t::SourceSubType::UserManaged),
        _ => None,
    }
}

/// The generic attribution: what detection showed, and the settings' model and pricing.
pub fn attribution_from_detection(settings: &DriverSettings, detection: Option<&Detection>) -> Attribution {
    Attribution {
        detection: detection
            .map(|d| t::Detection { source_sub_type: d.source_sub_type.and_then(wit_sub_type), auth_method: d.auth_method.clone() }),
        provider_id: None,
        model: settings.model.clone(),
        pricing: settings.pricing,
    }
}

/// `ORGX_<DRIVER>_…` names for a driver id: `ORGX_CODEX_MODEL`, `ORGX_CLAUDE_CODE_PRICING`.
pub fn setting_name(driver: &Driver, suffix: &str) -> String {
    format!("ORGX_{}_{suffix}", driver.id.to_ascii_uppercase())
}

/// A boolean setting as people write it: 1/0, true/false, yes/no, on/off (any case).
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "y" | "t" => Some(true),
        "0" | "false" | "no" | "off" | "n" | "f" | "" => Some(false),
        _ => None,
    }
}

/// Why a pricing setting is refused.
#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    #[error("{0}")]
    NotANumber(#[from] std::num::ParseFloatError),
    #[error("expected three non-negative numbers: input,cached_input,output (USD per million tokens)")]
    Shape,
}

/// A driver setting that cannot be used; names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {source}")]
pub struct DriverSettingError {
    pub setting: String,
    #[source]
    pub source: PricingError,
}

/// Parse `input,cached_input,output` (USD per million tokens).
pub fn parse_pricing(text: &str) -> Result<t::Pricing, PricingError> {
    let parts: Vec<f64> = text.split(',').map(|p| p.trim().parse::<f64>()).collect::<Result<_, _>>()?;
    match parts[..] {
        [input, cached_input, output] if parts.iter().all(|p| p.is_finite() && *p >= 0.0) => Ok(t::Pricing { input, cached_input, output }),
        _ => Err(PricingError::Shape),
    }
}

/// Read a driver's settings from the environment (and the defaults).
pub fn settings_from_env(driver: &Driver, get: &dyn Fn(&str) -> Option<String>) -> Result<DriverSettings, DriverSettingError> {
    let bin = get(driver.bin_env).filter(|v| !v.trim().is_empty()).unwrap_or_else(|| driver.default_bin.to_string());
    let extra = driver.extra_args_env.iter().find_map(|name| get(name)).unwrap_or_default();
    let model = get(&setting_name(driver, "MODEL")).filter(|m| !m.trim().is_empty());
    let pricing_name = setting_name(driver, "PRICING");
    let pricing = get(&pricing_name)
        .filter(|p| !p.trim().is_empty())
        .map(|p| parse_pricing(&p))
        .transpose()
        .map_err(|source| DriverSettingError { setting: pricing_name, source })?;
    let options = driver.option_envs.iter().filter_map(|name| get(name).map(|v| (*name, v))).collect();
    Ok(DriverSettings {
        bin: PathBuf::from(bin),
        extra_args: extra.split_whitespace().map(str::to_string).collect(),
        model,
        pricing,
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_driver_has_a_distinct_id_setting_and_builtin_mapper() {
        let mut ids = ids();
        ids.dedup();
        assert_eq!(ids, vec!["claude_code", "codex", "opencode"]);
        for d in ALL {
            assert!(d.bin_env.starts_with("ORGX_") && d.bin_env.ends_with("_BIN"), "{}", d.id);
            assert_eq!(d.slot, format!("mapper:{}", d.id));
            assert!(!d.mapper.wasm.is_empty(), "{} has a built-in mapper", d.id);
            assert_eq!(by_id(d.id).map(|x| x.id), Some(d.id));
        }
        assert!(by_id("cursor").is_none());
    }

    #[test]
    fn settings_come_from_the_environment() {
        let env: BTreeMap<&str, &str> = [
            ("ORGX_CODEX_BIN", "/opt/codex"),
            ("ORGX_CODEX_EXTRA_ARGS", "-c model=gpt-5.5  -c x=1"),
            ("ORGX_CODEX_PRICING", "1.25, 0.125,10"),
            ("ORGX_CODEX_SANDBOX", "danger-full-access"),
        ]
        .into();
        let get = |k: &str| env.get(k).map(|v| v.to_string());
        let s = settings_from_env(&codex::DRIVER, &get).unwrap();
        assert_eq!(s.bin, PathBuf::from("/opt/codex"));
        assert_eq!(s.extra_args, vec!["-c", "model=gpt-5.5", "-c", "x=1"]);
        let p = s.pricing.unwrap();
        assert_eq!((p.input, p.cached_input, p.output), (1.25, 0.125, 10.0));
        assert_eq!(s.option("ORGX_CODEX_SANDBOX"), Some("danger-full-access"));
        let none = |_: &str| None;
        let s = settings_from_env(&opencode::DRIVER, &none).unwrap();
        assert_eq!(s.bin, PathBuf::from("opencode"));
        assert!(s.extra_args.is_empty() && s.pricing.is_none() && s.model.is_none());
    }

    #[test]
    fn booleans_as_people_write_them() {
        for (text, want) in [
            ("1", Some(true)),
            ("YES", Some(true)),
            (" on ", Some(true)),
            ("true", Some(true)),
            ("0", Some(false)),
            ("no", Some(false)),
            ("Off", Some(false)),
            ("", Some(false)),
            ("2", None),
            ("yep", None),
        ] {
            assert_eq!(parse_bool(text), want, "{text:?}");
        }
    }

    #[test]
    fn pricing_is_three_non_negative_numbers() {
        for bad in ["", "1,2", "1,2,3,4", "a,b,c", "-1,0,0", "NaN,0,0", "inf,0,0"] {
            assert!(parse_pricing(bad).is_err(), "{bad:?}");
        }
        assert!(parse_pricing("0,0,0").is_ok());
    }
}
