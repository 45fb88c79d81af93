//! `orgx-peer start` settings: every one an environment variable and a flag (and a key of the
//! config file, `config_file`), validated into a `DaemonConfig` before anything starts. A
//! missing or invalid setting is a `ConfigError` that names the variable; `main` turns it into
//! exit code 2.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::daemon::DaemonConfig;
use crate::gateway::backoff::BackoffPolicy;
use crate::gateway::endpoint::{BaseUrl, RunnerInstanceId};
use crate::gateway::version::ProtocolVersion;
use crate::heartbeat::Activation;
use crate::metrics::MetricsAddr;
use crate::secret::ApiKey;
use crate::trust::TrustedKeys;

#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// The config file (TOML; default: `$XDG_CONFIG_HOME/orgx-peer/config.toml`, read when it
    /// exists). Flags and environment variables override it.
    #[arg(long, env = "ORGX_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The `oxk_` API key (scopes `gateway:drive`, `plugin:heartbeat`). Required.
    #[arg(long, env = "ORGX_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// A file holding the API key (for services and containers: the key never sits in a
    /// unit file or an environment). It must not be readable by others (group-readable is
    /// fine: Kubernetes mounts secrets 0440 with `fsGroup`).
    #[arg(long, env = "ORGX_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,
    /// The OrgX workspace this peer serves. Required.
    #[arg(long, env = "ORGX_WORKSPACE_ID")]
    pub workspace_id: Option<String>,
    /// The OrgX server; `http://127.0.0.1:PORT` works for local servers (then `ws://`).
    #[arg(long, env = "ORGX_BASE_URL", default_value = "https://useorgx.com")]
    pub base_url: String,
    /// Where the peer keeps its outbox, rules cache and status socket (default: the XDG data dir).
    #[arg(long, env = "ORGX_PEER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// For managed runners: 1-160 chars of letters, digits, `._:-`.
    #[arg(long, env = "ORGX_RUNNER_INSTANCE_ID")]
    pub runner_instance_id: Option<String>,
    /// For managed runners being activated: the attempt id, sent with `ORGX_RUNNER_ROLE` in
    /// the presence heartbeat (both or neither; needs `ORGX_RUNNER_INSTANCE_ID`).
    #[arg(long, env = "ORGX_ACTIVATION_ATTEMPT_ID")]
    pub activation_attempt_id: Option<String>,
    /// `candidate` or `canonical`, with `ORGX_ACTIVATION_ATTEMPT_ID`.
    #[arg(long, env = "ORGX_RUNNER_ROLE")]
    pub runner_role: Option<String>,
    /// The peer's identity on the socket and in heartbeats.
    #[arg(long, env = "ORGX_PLUGIN_ID", default_value = "@useorgx/orgx-peer")]
    pub plugin_id: String,
    /// Runs at once; a dispatch over the limit fails with `recoverable: true`.
    #[arg(long, env = "ORGX_MAX_CONCURRENT_RUNS", default_value_t = 2)]
    pub max_concurrent_runs: usize,
    /// Longest stdout line kept (bytes); longer lines are skipped and counted.
    #[arg(long, env = "ORGX_MAX_LINE_BYTES", default_value_t = crate::run::DEFAULT_MAX_LINE_BYTES)]
    pub max_line_bytes: usize,
    /// Keepalive ping interval (ms).
    #[arg(long, env = "ORGX_PING_INTERVAL_MS", default_value_t = 10_000)]
    pub ping_interval_ms: u64,
    /// A socket silent for this long is dead (ms); catches half-open sockets after sleep.
    #[arg(long, env = "ORGX_DEAD_AFTER_MS", default_value_t = 25_000)]
    pub dead_after_ms: u64,
    /// First reconnect delay (ms); doubles up to the cap, ±20 % jitter.
    #[arg(long, env = "ORGX_RECONNECT_FIRST_MS", default_value_t = 500)]
    pub reconnect_first_ms: u64,
    /// Longest reconnect delay (ms).
    #[arg(long, env = "ORGX_RECONNECT_CAP_MS", default_value_t = 30_000)]
    pub reconnect_cap_ms: u64,
    /// A connection must stay up this long (ms) before the backoff resets.
    #[arg(long, env = "ORGX_RECONNECT_STABLE_MS", default_value_t = 30_000)]
    pub reconnect_stable_ms: u64,
    /// Presence heartbeat interval (ms).
    #[arg(long, env = "ORGX_PRESENCE_INTERVAL_MS", default_value_t = 20_000)]
    pub presence_interval_ms: u64,
    /// License heartbeat interval (s); 7 days by default.
    #[arg(long, env = "ORGX_LICENSE_INTERVAL_S", default_value_t = 7 * 24 * 3600)]
    pub license_interval_s: u64,
    /// How long the socket may be down before a finished run's receipt goes over HTTP (ms).
    #[arg(long, env = "ORGX_RECEIPT_GRACE_MS", default_value_t = 2_000)]
    pub receipt_grace_ms: u64,
    /// The drivers to run, comma-separated (`claude_code,codex,opencode`); default: every
    /// driver whose CLI detection finds at start. Each driver's own settings
    /// (`ORGX_CLAUDE_BIN`, `ORGX_CODEX_BIN`, `ORGX_<DRIVER>_EXTRA_ARGS`, …) are read from
    /// the environment (README, "Drivers").
    #[arg(long, env = "ORGX_DRIVERS")]
    pub drivers: Option<String>,
    /// A file of trusted component-signing public keys (`ed25519:...`, one per line).
    #[arg(long, env = "ORGX_TRUSTED_KEYS_FILE")]
    pub trusted_keys_file: Option<PathBuf>,
    /// Trusted component-signing public keys, inline (comma-separated `ed25519:...`).
    #[arg(long, env = "ORGX_TRUSTED_KEYS")]
    pub trusted_keys: Option<String>,
    /// The local components directory, watched for `.wasm` + `.wasm.sig` (default: `<data dir>/plugins`).
    #[arg(long, env = "ORGX_COMPONENTS_DIR")]
    pub components_dir: Option<PathBuf>,
    /// How often the local components directory is scanned (ms).
    #[arg(long, env = "ORGX_COMPONENTS_POLL_MS", default_value_t = 2_000)]
    pub components_poll_ms: u64,
    /// Authoring only: also admit UNSIGNED components from the local directory (loudly logged).
    /// Takes 1/0, true/false, yes/no, on/off.
    #[arg(long, env = "ORGX_DEV_UNSIGNED_LOCAL", num_args = 0..=1, default_missing_value = "true", default_value = "false",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub dev_unsigned_local: bool,
    /// Largest component accepted (bytes).
    #[arg(long, env = "ORGX_MAX_COMPONENT_BYTES", default_value_t = crate::components::registry::DEFAULT_MAX_COMPONENT_BYTES)]
    pub max_component_bytes: u64,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (an IP and port: `127.0.0.1:9464`).
    /// Off by default; a non-loopback address is refused unless ORGX_METRICS_ALLOW_REMOTE.
    #[arg(long, env = "ORGX_METRICS_ADDR", value_name = "IP:PORT")]
    pub metrics_addr: Option<String>,
    /// Allow ORGX_METRICS_ADDR to be a non-loopback address. The endpoint has no
    /// authentication: whoever reaches it sees the peer's drivers, components and run counts.
    #[arg(long, env = "ORGX_METRICS_ALLOW_REMOTE", num_args = 0..=1, default_missing_value = "true", default_value = "false",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub metrics_allow_remote: bool,
    /// The Gateway Protocol version offered, `1` or `3` (one per connection, no fallback).
    /// 3 adds resumable attention: a question a Claude Code run asks becomes an OrgX question
    /// and the run resumes with the answer.
    #[arg(long, env = "ORGX_PROTOCOL_VERSION", default_value_t = 3)]
    pub protocol_version: u64,
    /// The drivers' own settings from the config file's `[driver.<id>]` tables, by the name of
    /// the environment variable each stands for (`ORGX_CODEX_MODEL`); the environment wins.
    #[arg(skip)]
    pub driver_file: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl StartArgs {
    /// A driver setting (`ORGX_CODEX_MODEL`, …): the environment, else the config file. An
    /// empty variable counts as unset when the file has the setting, as for every other one.
    pub fn driver_setting(&self, name: &str) -> Option<String> {
        driver_setting(&self.driver_file, name)
    }

    pub fn into_config(self) -> Result<DaemonConfig, ConfigError> {
        let get = |name: &str| self.driver_setting(name);
        let drivers = crate::driver::ALL
            .iter()
            .map(|d| crate::driver::settings_from_env(d, &get).map(|s| (*d, s)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError(e.to_string()))?;
        let api_key = match (self.api_key.filter(|k| !k.trim().is_empty()), &self.api_key_file) {
            (Some(key), _) => key,
            (None, Some(path)) => read_key_file(path)?,
            (None, None) => {
                return Err(ConfigError(
                    "ORGX_API_KEY is not set: export your OrgX API key (oxk_...), or point ORGX_API_KEY_FILE (or `api_key_file` in the config file) at a file holding it".into(),
                ))
            }
        };
        let api_key = ApiKey::new(api_key).map_err(|e| ConfigError(format!("ORGX_API_KEY is unusable: {e}")))?;
        let workspace_id = self
            .workspace_id
            .filter(|w| !w.trim().is_empty())
            .ok_or_else(|| {
                ConfigError(
                    "ORGX_WORKSPACE_ID is not set: export the id of the OrgX workspace this peer serves (or set `workspace_id` in the config file)"
                        .into(),
                )
            })?;
        let base_url = BaseUrl::parse(&self.base_url).map_err(|e| ConfigError(e.to_string()))?;
        let runner_instance_id =
            self.runner_instance_id.as_deref().map(RunnerInstanceId::parse).transpose().map_err(|e| ConfigError(e.to_string()))?;
        let activation = activation(self.activation_attempt_id.as_deref(), self.runner_role.as_deref(), runner_instance_id.is_some())?;
        let data_dir = match self.data_dir {
            Some(d) => d,
            None => default_data_dir()
                .ok_or_else(|| ConfigError("cannot find a data dir: set ORGX_PEER_DATA_DIR (or HOME / XDG_DATA_HOME)".into()))?,
        };
        let trusted = TrustedKeys::from_settings(self.trusted_keys_file.as_deref(), self.trusted_keys.as_deref())
            .map_err(|e| ConfigError(e.to_string()))?;
        let components_dir = self.components_dir.clone().unwrap_or_else(|| data_dir.join("plugins"));
        if self.max_concurrent_runs == 0 {
            return Err(ConfigError("ORGX_MAX_CONCURRENT_RUNS must be at least 1".into()));
        }
        let enabled_drivers = self.drivers.as_deref().map(parse_drivers).transpose()?;
        let metrics_addr = self
            .metrics_addr
            .as_deref()
            .filter(|a| !a.trim().is_empty())
            .map(|a| MetricsAddr::parse(a, self.metrics_allow_remote))
            .transpose()
            .map_err(|e| ConfigError(e.to_string()))?;
        let protocol = ProtocolVersion::from_number(self.protocol_version).map_err(|e| ConfigError(e.to_string()))?;
        let ms = Duration::from_millis;
        Ok(DaemonConfig {
            protocol,
            api_key,
            workspace_id,
            base_url,
            drivers,
            enabled_drivers,
            data_dir,
            runner_instance_id,
            activation,
            plugin_id: self.plugin_id,
            max_concurrent_runs: self.max_concurrent_runs,
            max_line_bytes: self.max_line_bytes.max(1024),
            ping_interval: ms(self.ping_interval_ms.max(10)),
            dead_after: ms(self.dead_after_ms.max(20)),
            backoff: BackoffPolicy {
                first: ms(self.reconnect_first_ms.max(1)),
                cap: ms(self.reconnect_cap_ms.max(1)),
                jitter: 0.2,
                stable_after: ms(self.reconnect_stable_ms),
            },
            presence_interval: ms(self.presence_interval_ms.max(10)),
            license_interval: Duration::from_secs(self.license_interval_s.max(1)),
            receipt_grace: ms(self.receipt_grace_ms),
            trusted_keys: trusted,
            components_dir,
            components_poll: ms(self.components_poll_ms.max(10)),
            dev_unsigned_local: self.dev_unsigned_local,
            max_component_bytes: self.max_component_bytes.max(1),
            metrics_addr,
        })
    }
}

/// A driver setting: the environment variable `name`, else the config file's value for it
/// (`from_file`, by variable name).
pub fn driver_setting(from_file: &BTreeMap<String, String>, name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        Ok(v) => Some(from_file.get(name).cloned().unwrap_or(v)),
        Err(_) => from_file.get(name).cloned(),
    }
}

/// The key from `ORGX_API_KEY_FILE`: one line, a file others cannot read.
fn read_key_file(path: &std::path::Path) -> Result<String, ConfigError> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| ConfigError(format!("ORGX_API_KEY_FILE `{shown}` cannot be read: {e}")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o007 != 0 {
            return Err(ConfigError(format!("ORGX_API_KEY_FILE `{shown}` is readable by other users: `chmod 600 {shown}`")));
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError(format!("ORGX_API_KEY_FILE `{shown}` cannot be read: {e}")))?;
    let key = text.trim();
    if key.is_empty() || key.contains('\n') {
        return Err(ConfigError(format!("ORGX_API_KEY_FILE `{shown}` must hold the key alone, on one line")));
    }
    Ok(key.to_string())
}

/// `ORGX_ACTIVATION_ATTEMPT_ID` and `ORGX_RUNNER_ROLE`: both or neither, a known role, and
/// only for a runner that has an instance id (spec §5.2).
fn activation(attempt: Option<&str>, role: Option<&str>, has_instance_id: bool) -> Result<Option<Activation>, ConfigError> {
    let (attempt, role) = (attempt.map(str::trim).filter(|s| !s.is_empty()), role.map(str::trim).filter(|s| !s.is_empty()));
    let (attempt, role) = match (attempt, role) {
        (None, None) => return Ok(None),
        (Some(a), Some(r)) => (a, r),
        _ => return Err(ConfigError("ORGX_ACTIVATION_ATTEMPT_ID and ORGX_RUNNER_ROLE go together: set both or neither".into())),
    };
    let role = match role {
        "candidate" => "candidate",
        "canonical" => "canonical",
        other => return Err(ConfigError(format!("ORGX_RUNNER_ROLE `{other}` is not `candidate` or `canonical`"))),
    };
    if !has_instance_id {
        return Err(ConfigError("ORGX_ACTIVATION_ATTEMPT_ID needs ORGX_RUNNER_INSTANCE_ID (the runner being activated)".into()));
    }
    if attempt.len() > 200 || attempt.chars().any(char::is_control) {
        return Err(ConfigError("ORGX_ACTIVATION_ATTEMPT_ID must be one line of at most 200 characters".into()));
    }
    Ok(Some(Activation { attempt_id: attempt.to_string(), role }))
}

/// `ORGX_DRIVERS`: known driver ids, comma-separated.
fn parse_drivers(text: &str) -> Result<Vec<&'static str>, ConfigError> {
    let mut out = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let driver = crate::driver::by_id(name)
            .ok_or_else(|| ConfigError(format!("ORGX_DRIVERS: unknown driver `{name}` (drivers: {})", crate::driver::ids().join(", "))))?;
        if !out.contains(&driver.id) {
            out.push(driver.id);
        }
    }
    Ok(out)
}

/// `$XDG_DATA_HOME/orgx-peer`, else `~/.local/share/orgx-peer`.
pub fn default_data_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("orgx-peer"));
    }
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".local/share/orgx-peer"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        start: StartArgs,
    }

    #[test]
    fn booleans_take_every_usual_spelling() {
        let parse = |args: &[&str]| Cli::try_parse_from(["orgx-peer"].iter().chain(args)).map(|c| c.start.dev_unsigned_local);
        for (args, want) in [
            (&[][..], false),
            (&["--dev-unsigned-local"][..], true),
            (&["--dev-unsigned-local=1"][..], true),
            (&["--dev-unsigned-local=yes"][..], true),
            (&["--dev-unsigned-local=true"][..], true),
            (&["--dev-unsigned-local=on"][..], true),
            (&["--dev-unsigned-local=0"][..], false),
            (&["--dev-unsigned-local=no"][..], false),
            (&["--dev-unsigned-local=false"][..], false),
        ] {
            assert_eq!(parse(args).unwrap(), want, "{args:?}");
        }
        assert!(parse(&["--dev-unsigned-local=maybe"]).is_err());
    }

    #[test]
    fn the_key_file_must_be_private_and_hold_one_line() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str, mode: u32| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p
        };
        assert_eq!(read_key_file(&file("ok", "oxk_abc\n", 0o600)).unwrap(), "oxk_abc");
        assert_eq!(read_key_file(&file("k8s", "oxk_abc", 0o440)).unwrap(), "oxk_abc", "group-readable is fine");
        for (name, text, mode, words) in [
            ("world", "oxk_abc", 0o644, "readable by other users"),
            ("empty", "  \n", 0o600, "the key alone"),
            ("two", "oxk_a\noxk_b", 0o600, "the key alone"),
        ] {
            let err = read_key_file(&file(name, text, mode)).unwrap_err().0;
            assert!(err.contains(words) && !err.contains("oxk_"), "{name}: {err}");
        }
        assert!(read_key_file(&dir.path().join("missing")).unwrap_err().0.contains("cannot be read"));
    }

    #[test]
    fn activation_is_both_or_neither_with_a_known_role_and_an_instance_id() {
        let ok = |a, r| activation(a, r, true);
        assert_eq!(ok(None, None).unwrap(), None);
        assert_eq!(ok(Some(" "), Some("")).unwrap(), None, "blank is unset");
        assert_eq!(ok(Some("att-1"), Some("candidate")).unwrap(), Some(Activation { attempt_id: "att-1".into(), role: "candidate" }));
        assert_eq!(ok(Some("att-1"), Some("canonical")).unwrap().unwrap().role, "canonical");
        for (attempt, role, instance, words) in [
            (Some("att-1"), None, true, "go together"),
            (None, Some("candidate"), true, "go together"),
            (Some("att-1"), Some("leader"), true, "not `candidate` or `canonical`"),
            (Some("att-1"), Some("Candidate"), true, "not `candidate`"),
            (Some("att-1"), Some("candidate"), false, "needs ORGX_RUNNER_INSTANCE_ID"),
            (Some("a\nb"), Some("candidate"), true, "one line"),
        ] {
            let err = activation(attempt, role, instance).unwrap_err().0;
            assert!(err.contains(words), "{attempt:?} {role:?} {instance}: {err}");
        }
    }

    #[test]
    fn drivers_are_known_ids() {
        assert_eq!(parse_drivers("codex, opencode,codex").unwrap(), vec!["codex", "opencode"]);
        assert!(parse_drivers("claude_code,cursor").unwrap_err().0.contains("unknown driver `cursor`"));
        assert_eq!(parse_drivers("").unwrap(), Vec::<&str>::new());
    }
}
