//! The config file, `$XDG_CONFIG_HOME/orgx-peer/config.toml` (or `--config FILE`, `ORGX_CONFIG`):
//! every setting `start` has, and where each effective setting came from.
//!
//! Keys are the flags of `start` with `_` for `-` (`max_concurrent_runs = 4`), plus one
//! `[driver.<id>]` table per driver for the settings a driver reads itself (`bin`, `model`, …).
//! The API key itself is refused: only `api_key_file`, so the file can sit in dotfiles and
//! `config show` can print all of it. Unknown keys are refused, naming the key and the file:
//! a misspelt key silently doing nothing is the classic config-file bug.
//!
//! Precedence is flags > environment > file > defaults. clap already resolves the first, second
//! and last, and says where each value came from (`ArgMatches::value_source`), so the file only
//! fills what clap took from a default: one parser for flags and environment (clap's), typed
//! keys for the file (serde), and the same `StartArgs::into_config` validation for both.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{ConfigError, StartArgs};
use crate::daemon::DaemonConfig;
use crate::driver::Driver;

/// Where an effective setting came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    File,
    Default,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Flag => "flag",
            Source::Env => "env",
            Source::File => "file",
            Source::Default => "default",
        }
    }

    /// Where clap found `id`: an empty environment variable counts as unset, as
    /// `into_config` treats blank values, so that the file can still fill it.
    pub fn of(matches: &clap::ArgMatches, id: &str) -> Source {
        use clap::parser::ValueSource;
        let empty = matches.try_get_raw(id).ok().flatten().is_none_or(|mut raw| raw.all(|v| v.is_empty()));
        match matches.value_source(id) {
            Some(ValueSource::CommandLine) => Source::Flag,
            Some(ValueSource::EnvVariable) if !empty => Source::Env,
            _ => Source::Default,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("config file `{path}` (from {given_by}) does not exist: create it, or point {given_by} at an existing file")]
    Missing { path: PathBuf, given_by: &'static str },
    #[error("config file `{path}` cannot be read: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("config file `{path}`: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file `{path}`: unknown key `{key}`: {hint}")]
    UnknownKey { path: PathBuf, key: String, hint: String },
    #[error(
        "config file `{path}`: `api_key` is not allowed in a config file: put the key alone in a file of its own (`chmod 600` it) and set `api_key_file = \"/path/to/that/file\"`"
    )]
    InlineKey { path: PathBuf },
}

/// A list setting: `drivers = ["codex", "opencode"]` or, as in the environment,
/// `drivers = "codex,opencode"`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum List {
    One(String),
    Many(Vec<String>),
}

impl From<List> for String {
    fn from(l: List) -> String {
        match l {
            List::One(s) => s,
            List::Many(v) => v.join(","),
        }
    }
}

/// How a setting's value is shown (`config show`) and written into a service's environment.
trait Text {
    fn text(&self) -> String;
}

impl Text for String {
    fn text(&self) -> String {
        self.clone()
    }
}

impl Text for PathBuf {
    fn text(&self) -> String {
        self.display().to_string()
    }
}

macro_rules! impl_text {
    ($($t:ty),*) => { $(impl Text for $t { fn text(&self) -> String { self.to_string() } })* };
}
impl_text!(usize, u64, bool);

/// The settings of `start`, listed once: the file's keys, the merge and the listing all come
/// from this list, and a test checks it against `StartArgs`' flags so none is forgotten.
/// `path` settings are `Option<PathBuf>` (relative ones in the file are relative to the file),
/// `opt` other `Option`s, `val` the ones with a default.
macro_rules! settings {
    (path { $($p:ident),* } opt { $($o:ident: $ot:ty),* } val { $($v:ident: $vt:ty),* }) => {
        /// A parsed config file (only what it sets).
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct FileSettings {
            $(pub $p: Option<PathBuf>,)*
            $(pub $o: Option<$ot>,)*
            $(pub $v: Option<$vt>,)*
            /// `[driver.<id>]` tables, checked and turned into `driver_env` by `parse`.
            #[serde(default, rename = "driver")]
            driver_tables: BTreeMap<String, toml::Table>,
            /// The drivers' settings, by the environment variable each stands for.
            #[serde(skip)]
            pub driver_env: BTreeMap<String, String>,
        }

        /// Every top-level key of the file but `driver`.
        pub const FILE_KEYS: &[&str] = &[$(stringify!($p),)* $(stringify!($o),)* $(stringify!($v),)*];
        /// The keys holding paths (made absolute: a service runs elsewhere).
        const PATH_KEYS: &[&str] = &[$(stringify!($p),)*];

        impl FileSettings {
            fn relative_to(&mut self, dir: &Path) {
                $(if let Some(p) = self.$p.take() { self.$p = Some(absolute_in(dir, p)); })*
            }
        }

        /// Fill what clap took from a default with the file's value.
        fn merge(args: &mut StartArgs, file: &FileSettings, given: &dyn Fn(&str) -> Source, sources: &mut BTreeMap<&'static str, Source>) {
            $(merge_one(stringify!($p), given, sources, file.$p.clone(), |x| args.$p = Some(x));)*
            $(merge_one(stringify!($o), given, sources, file.$o.clone(), |x| args.$o = Some(x.into()));)*
            $(merge_one(stringify!($v), given, sources, file.$v.clone(), |x| args.$v = x.into());)*
        }

        /// Each setting's value as text, `None` when unset.
        fn values(args: &StartArgs) -> Vec<(&'static str, Option<String>)> {
            vec![
                $((stringify!($p), args.$p.as_ref().map(Text::text)),)*
                $((stringify!($o), args.$o.as_ref().map(Text::text)),)*
                $((stringify!($v), Some(args.$v.text())),)*
            ]
        }
    };
}

settings! {
    path { api_key_file, data_dir, trusted_keys_file, components_dir }
    opt {
        workspace_id: String, runner_instance_id: String, activation_attempt_id: String, runner_role: String,
        drivers: List, trusted_keys: List, metrics_addr: String
    }
    val {
        base_url: String, plugin_id: String, max_concurrent_runs: usize, max_line_bytes: usize, ping_interval_ms: u64,
        dead_after_ms: u64, reconnect_first_ms: u64, reconnect_cap_ms: u64, reconnect_stable_ms: u64,
        presence_interval_ms: u64, license_interval_s: u64, receipt_grace_ms: u64, components_poll_ms: u64,
        dev_unsigned_local: bool, max_component_bytes: u64, metrics_allow_remote: bool,
        protocol_version: u64
    }
}

fn merge_one<T>(
    key: &'static str,
    given: &dyn Fn(&str) -> Source,
    sources: &mut BTreeMap<&'static str, Source>,
    from_file: Option<T>,
    set: impl FnOnce(T),
) {
    let source = match (given(key), from_file) {
        (s @ (Source::Flag | Source::Env), _) => s,
        (_, Some(x)) => {
            set(x);
            Source::File
        }
        (s, None) => s,
    };
    sources.insert(key, source);
}

/// `~/x` and paths relative to `dir` made absolute; absolute ones unchanged.
fn absolute_in(dir: &Path, p: PathBuf) -> PathBuf {
    if let (Ok(rest), Some(home)) = (p.strip_prefix("~"), std::env::var_os("HOME").filter(|h| !h.is_empty())) {
        return PathBuf::from(home).join(rest);
    }
    if p.is_absolute() {
        p
    } else {
        dir.join(p)
    }
}

/// A driver's keys in its `[driver.<id>]` table and the environment variable each stands
/// for: `bin`, `extra_args`, `model`, `pricing`, and its own `ORGX_` options without the
/// prefix (`ORGX_CODEX_SANDBOX` → `sandbox`, `ORGX_PLUGIN_DIR` → `plugin_dir`).
pub fn driver_keys(d: &Driver) -> Vec<(String, String)> {
    let mut keys = vec![
        ("bin".to_string(), d.bin_env.to_string()),
        ("extra_args".to_string(), d.extra_args_env.first().copied().unwrap_or_default().to_string()),
        ("model".to_string(), crate::driver::setting_name(d, "MODEL")),
        ("pricing".to_string(), crate::driver::setting_name(d, "PRICING")),
    ];
    let own = format!("{}_", d.id.to_ascii_uppercase());
    for env in d.option_envs.iter().filter_map(|e| e.strip_prefix("ORGX_").map(|rest| (*e, rest))) {
        let (full, rest) = env;
        keys.push((rest.strip_prefix(&own).unwrap_or(rest).to_ascii_lowercase(), full.to_string()));
    }
    keys
}

/// Every environment variable a driver setting can come from (aliases included).
pub fn driver_env_names() -> Vec<String> {
    let mut names = Vec::new();
    for d in crate::driver::ALL {
        names.extend(driver_keys(d).into_iter().map(|(_, env)| env));
        names.extend(d.extra_args_env.iter().map(|e| e.to_string()));
    }
    names.sort();
    names.dedup();
    names
}

/// Read and check a config file.
pub fn load(path: &Path) -> Result<FileSettings, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigFileError::Read { path: path.to_path_buf(), reason: e.to_string() })?;
    parse(&text, path)
}

/// Check and parse the text of the config file at `path` (named in every error; relative
/// paths in it are relative to its directory).
pub fn parse(text: &str, path: &Path) -> Result<FileSettings, ConfigFileError> {
    let at = || path.to_path_buf();
    let table: toml::Table = toml::from_str(text).map_err(|e| ConfigFileError::Parse { path: at(), message: e.to_string() })?;
    // Before serde, so that the error says what to do instead and names the key exactly.
    if table.contains_key("api_key") {
        return Err(ConfigFileError::InlineKey { path: at() });
    }
    if let Some(key) = table.keys().find(|k| k.as_str() != "driver" && !FILE_KEYS.contains(&k.as_str())) {
        return Err(ConfigFileError::UnknownKey {
            path: at(),
            key: key.clone(),
            hint: "the keys are the flags of `orgx-peer start --help` with `_` for `-`, and `[driver.<id>]` tables".into(),
        });
    }
    let mut settings: FileSettings = toml::from_str(text).map_err(|e| ConfigFileError::Parse { path: at(), message: e.to_string() })?;
    settings.driver_env = driver_env(&settings.driver_tables, path)?;
    settings.relative_to(path.parent().unwrap_or(Path::new(".")));
    Ok(settings)
}

fn driver_env(tables: &BTreeMap<String, toml::Table>, path: &Path) -> Result<BTreeMap<String, String>, ConfigFileError> {
    let mut env = BTreeMap::new();
    for (id, table) in tables {
        let driver = crate::driver::by_id(id).ok_or_else(|| ConfigFileError::UnknownKey {
            path: path.to_path_buf(),
            key: format!("driver.{id}"),
            hint: format!("the drivers are {}", crate::driver::ids().join(", ")),
        })?;
        let keys = driver_keys(driver);
        for (key, value) in table {
            let name = format!("driver.{id}.{key}");
            let var = keys.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).ok_or_else(|| ConfigFileError::UnknownKey {
                path: path.to_path_buf(),
                key: name.clone(),
                hint: format!("`[driver.{id}]` takes {}", keys.iter().map(|(k, _)| format!("`{k}`")).collect::<Vec<_>>().join(", ")),
            })?;
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                // `extra_args = ["-c", "x=1"]`: the words of the environment variable.
                toml::Value::Array(words) if words.iter().all(|w| w.is_str()) => {
                    words.iter().filter_map(|w| w.as_str()).collect::<Vec<_>>().join(" ")
                }
                _ => {
                    return Err(ConfigFileError::Parse {
                        path: path.to_path_buf(),
                        message: format!("`{name}` must be a string, a number, a boolean or a list of strings"),
                    })
                }
            };
            let text = if key == "bin" && text.contains('/') {
                absolute_in(path.parent().unwrap_or(Path::new(".")), text.into()).text()
            } else {
                text
            };
            env.insert(var, text);
        }
    }
    Ok(env)
}

/// `$XDG_CONFIG_HOME/orgx-peer`, else `~/.config/orgx-peer`.
pub fn config_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("orgx-peer"));
    }
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".config/orgx-peer"))
}

/// The file to read: the one `--config` / `ORGX_CONFIG` names (which must exist), else the
/// default location when a file is there.
pub fn locate(given: Option<(&Path, Source)>, default: Option<PathBuf>) -> Result<Option<PathBuf>, ConfigFileError> {
    match given {
        Some((path, source)) if source != Source::Default => {
            let given_by = if source == Source::Flag { "--config" } else { "ORGX_CONFIG" };
            if !path.is_file() {
                return Err(ConfigFileError::Missing { path: path.to_path_buf(), given_by });
            }
            Ok(Some(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())))
        }
        _ => Ok(default.map(|d| d.join("config.toml")).filter(|p| p.is_file())),
    }
}

/// The config file's settings for a command that reads only some of them (`status`, `detect`):
/// the file `config` names (`source`: who named it), else the default one; `None`: no file.
pub fn read(config: Option<&Path>, source: Source) -> Result<Option<FileSettings>, ConfigFileError> {
    locate(config.map(|p| (p, source)), config_dir())?.as_deref().map(load).transpose()
}

/// The settings `start` runs with, and where each came from.
#[derive(Debug, Clone)]
pub struct Effective {
    pub args: StartArgs,
    /// The config file read, if any, and who named it.
    pub file: Option<PathBuf>,
    pub file_source: Source,
    sources: BTreeMap<&'static str, Source>,
}

/// Resolve `args` (as clap parsed them, `matches` telling from where) with the config file.
pub fn resolve(args: StartArgs, matches: &clap::ArgMatches) -> Result<Effective, ConfigFileError> {
    let given = |id: &str| Source::of(matches, id);
    let file_source = given("config");
    let file = locate(args.config.as_deref().map(|p| (p, file_source)), config_dir())?;
    let settings = file.as_deref().map(load).transpose()?;
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    Ok(apply(args, &given, file, file_source, settings, &env))
}

/// The merge itself, free of clap and the process environment (`given` says where clap found
/// each value, `env` reads driver variables) so that tests can tabulate it.
pub fn apply(
    mut args: StartArgs,
    given: &dyn Fn(&str) -> Source,
    file: Option<PathBuf>,
    file_source: Source,
    settings: Option<FileSettings>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Effective {
    let settings = settings.unwrap_or_default();
    let mut sources = BTreeMap::new();
    merge(&mut args, &settings, given, &mut sources);
    sources.insert("api_key", given("api_key"));
    args.driver_file = unshadowed(settings.driver_env, env);
    Effective { args, file, file_source, sources }
}

/// The file's driver values less those the environment sets under another name: a file value
/// stands in for its variable only while none of that setting's variables is set (Claude
/// Code's extra arguments have two names; the environment's wins).
pub fn unshadowed(mut driver_env: BTreeMap<String, String>, env: &dyn Fn(&str) -> Option<String>) -> BTreeMap<String, String> {
    for d in crate::driver::ALL {
        if d.extra_args_env.iter().any(|name| env(name).is_some()) {
            for name in d.extra_args_env {
                driver_env.remove(*name);
            }
        }
    }
    driver_env
}

/// One line of `config show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub key: String,
    /// `None` when unset; the API key is always `[redacted]`.
    pub value: Option<String>,
    pub source: Source,
    /// The flag or variable it came from.
    pub origin: Option<String>,
}

impl Effective {
    pub fn source(&self, key: &str) -> Source {
        self.sources.get(key).copied().unwrap_or(Source::Default)
    }

    /// Validate exactly as `start` does. A failing setting that came from the file is named
    /// by its key there, since the message names its environment variable.
    pub fn into_config(self) -> Result<DaemonConfig, ConfigError> {
        let file = self.file.clone();
        let mut from_file: Vec<(&str, String)> = env_names()
            .into_iter()
            .filter(|(key, _)| self.source(key) == Source::File)
            .map(|(key, env)| (key, env.unwrap_or_default()))
            .collect();
        // The longest name first: `ORGX_TRUSTED_KEYS_FILE` is not `ORGX_TRUSTED_KEYS`.
        from_file.sort_by_key(|(_, env)| std::cmp::Reverse(env.len()));
        self.args.into_config().map_err(|ConfigError(msg)| {
            match (&file, from_file.iter().find(|(_, env)| !env.is_empty() && msg.contains(env.as_str()))) {
                (Some(path), Some((key, _))) => ConfigError(format!("{msg} (set as `{key}` in `{}`)", path.display())),
                _ => ConfigError(msg),
            }
        })
    }

    /// Every setting with its value and source, the drivers' settings after them.
    pub fn rows(&self, env: &dyn Fn(&str) -> Option<String>) -> Vec<Row> {
        let names = env_names();
        let flags = flag_names();
        let origin = |key: &str, source: Source| match source {
            Source::Flag => flags.get(key).map(|f| format!("--{f}")),
            Source::Env => names.iter().find(|(k, _)| *k == key).and_then(|(_, e)| e.clone()),
            Source::File | Source::Default => None,
        };
        let key_source = self.source("api_key");
        let mut rows = vec![Row {
            key: "api_key".into(),
            value: self.args.api_key.as_deref().filter(|k| !k.trim().is_empty()).map(|_| "[redacted]".into()),
            source: key_source,
            origin: origin("api_key", key_source),
        }];
        // In `start --help`'s order, with the defaults `into_config` would compute.
        let order: Vec<String> = start_args().into_iter().map(|(id, _, _)| id).collect();
        let mut values = values(&self.args);
        values.sort_by_key(|(key, _)| order.iter().position(|id| id == key));
        let data_dir = self.args.data_dir.clone().or_else(crate::config::default_data_dir);
        for (key, value) in values {
            let value = value.or_else(|| match key {
                "data_dir" => data_dir.as_ref().map(Text::text),
                "components_dir" => data_dir.as_ref().map(|d| d.join("plugins").text()),
                _ => None,
            });
            let source = self.source(key);
            rows.push(Row { key: key.into(), value, source, origin: origin(key, source) });
        }
        for d in crate::driver::ALL {
            for (key, var) in driver_keys(d) {
                let aliases: Vec<&str> = if key == "extra_args" { d.extra_args_env.to_vec() } else { vec![var.as_str()] };
                let (value, source, origin) = match aliases.iter().find_map(|a| env(a).map(|v| (v, a))) {
                    Some((v, a)) => (Some(v), Source::Env, Some(a.to_string())),
                    None => match self.args.driver_file.get(&var) {
                        Some(v) => (Some(v.clone()), Source::File, None),
                        None if key == "bin" => (Some(d.default_bin.to_string()), Source::Default, None),
                        None => (None, Source::Default, None),
                    },
                };
                rows.push(Row { key: format!("driver.{}.{key}", d.id), value, source, origin });
            }
        }
        rows
    }

    /// The settings given by flags or the environment, as environment assignments (paths
    /// made absolute): what a service must carry so that it runs as this command would.
    /// The API key, the key file and the config file are the caller's business.
    pub fn explicit_env(&self) -> Vec<(String, String)> {
        let names = env_names();
        values(&self.args)
            .into_iter()
            .filter(|(key, _)| matches!(self.source(key), Source::Flag | Source::Env) && *key != "api_key_file")
            .filter_map(|(key, value)| {
                let env = names.iter().find(|(k, _)| *k == key).and_then(|(_, e)| e.clone())?;
                let value = value?;
                let value = if PATH_KEYS.contains(&key) { std::path::absolute(&value).map(|p| p.text()).unwrap_or(value) } else { value };
                Some((env, value))
            })
            .collect()
    }
}

/// `config show`'s text: the file, then one line per setting.
pub fn render(effective: &Effective, rows: &[Row]) -> String {
    let mut out = match &effective.file {
        Some(path) => format!(
            "config file  {} ({})\n\n",
            path.display(),
            match effective.file_source {
                Source::Flag => "--config",
                Source::Env => "ORGX_CONFIG",
                _ => "the default location",
            }
        ),
        None => format!(
            "config file  none{}\n\n",
            config_dir().map(|d| format!(" (no {})", d.join("config.toml").display())).unwrap_or_default()
        ),
    };
    let value = |r: &Row| r.value.clone().unwrap_or_else(|| "-".into());
    let kw = rows.iter().map(|r| r.key.len()).max().unwrap_or(0).max(7);
    let vw = rows.iter().map(|r| value(r).chars().count()).max().unwrap_or(0).clamp(5, 60);
    out.push_str(&format!("{:<kw$}  {:<vw$}  from\n", "setting", "value"));
    for r in rows {
        let from = match &r.origin {
            Some(o) => format!("{} {o}", r.source.as_str()),
            None => r.source.as_str().to_string(),
        };
        out.push_str(&format!("{:<kw$}  {:<vw$}  {from}\n", r.key, value(r)));
    }
    out
}

/// `start`'s arguments: id → (long flag, environment variable).
fn start_args() -> Vec<(String, Option<String>, Option<String>)> {
    use clap::Args;
    StartArgs::augment_args(clap::Command::new("start"))
        .get_arguments()
        .map(|a| (a.get_id().to_string(), a.get_long().map(str::to_string), a.get_env().map(|e| e.to_string_lossy().into_owned())))
        .collect()
}

fn env_names() -> Vec<(&'static str, Option<String>)> {
    let args = start_args();
    FILE_KEYS
        .iter()
        .chain(["api_key"].iter())
        .map(|key| (*key, args.iter().find(|(id, _, _)| id == key).and_then(|(_, _, env)| env.clone())))
        .collect()
}

fn flag_names() -> BTreeMap<String, String> {
    start_args().into_iter().filter_map(|(id, long, _)| long.map(|l| (id, l))).collect()
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

    fn file(text: &str) -> Result<FileSettings, ConfigFileError> {
        parse(text, Path::new("/etc/orgx/config.toml"))
    }

    #[test]
    fn every_start_setting_is_a_file_key() {
        let ids: Vec<String> = start_args().into_iter().map(|(id, _, _)| id).filter(|id| id != "api_key" && id != "config").collect();
        let keys: Vec<String> = FILE_KEYS.iter().map(|k| k.to_string()).collect();
        let (mut a, mut b) = (ids, keys);
        a.sort();
        b.sort();
        assert_eq!(a, b, "the file's keys are exactly start's settings");
        assert!(env_names().iter().all(|(_, env)| env.as_deref().is_some_and(|e| e.starts_with("ORGX_"))), "each has its variable");
    }

    /// Precedence, setting by setting: flags > environment > file > defaults. `given` plays
    /// clap's part (which values came from the command line or the environment); the value
    /// clap parsed is put in `args` as clap would have.
    #[test]
    fn flags_beat_the_environment_beat_the_file_beat_the_defaults() {
        const FILE: &str = "base_url = \"http://file:1\"\nmax_concurrent_runs = 4\nworkspace_id = \"ws-file\"\n";
        // (flag, env, in the file) → (value, source) for `base_url`.
        for (flag, env, in_file, want, source) in [
            (None, None, false, "https://useorgx.com", Source::Default),
            (None, None, true, "http://file:1", Source::File),
            (None, Some("http://env:1"), true, "http://env:1", Source::Env),
            (None, Some("http://env:1"), false, "http://env:1", Source::Env),
            (Some("http://flag:1"), Some("http://env:1"), true, "http://flag:1", Source::Flag),
            (Some("http://flag:1"), None, true, "http://flag:1", Source::Flag),
            (Some("http://flag:1"), None, false, "http://flag:1", Source::Flag),
        ] {
            let mut argv = vec!["orgx-peer".to_string()];
            if let Some(f) = flag {
                argv.extend(["--base-url".into(), f.to_string()]);
            }
            let mut args = Cli::try_parse_from(&argv).unwrap().start;
            if let (None, Some(e)) = (flag, env) {
                args.base_url = e.to_string();
            }
            let given = |id: &str| match id {
                "base_url" if flag.is_some() => Source::Flag,
                "base_url" if env.is_some() => Source::Env,
                _ => Source::Default,
            };
            let settings = in_file.then(|| file(FILE).unwrap());
            let eff = apply(args, &given, in_file.then(|| "/etc/orgx/config.toml".into()), Source::Default, settings, &|_| None);
            let row = format!("flag {flag:?} env {env:?} file {in_file}");
            assert_eq!(eff.args.base_url, want, "{row}");
            assert_eq!(eff.source("base_url"), source, "{row}");
            // Settings the row does not touch: the file's, else the defaults.
            assert_eq!(eff.args.max_concurrent_runs, if in_file { 4 } else { 2 }, "{row}");
            assert_eq!(eff.source("workspace_id"), if in_file { Source::File } else { Source::Default }, "{row}");
        }
    }

    #[test]
    fn the_files_values_are_typed_and_its_paths_made_absolute() {
        let s = file(
            "api_key_file = \"key\"\ndata_dir = \"/var/lib/orgx\"\ndrivers = [\"codex\", \"opencode\"]\ntrusted_keys = \"ed25519:a,ed25519:b\"\n\
             dev_unsigned_local = true\nmax_component_bytes = 1024\n",
        )
        .unwrap();
        assert_eq!(s.api_key_file.as_deref(), Some(Path::new("/etc/orgx/key")), "relative to the file");
        assert_eq!(s.data_dir.as_deref(), Some(Path::new("/var/lib/orgx")));
        assert_eq!(s.drivers.map(String::from).as_deref(), Some("codex,opencode"));
        assert_eq!(s.trusted_keys.map(String::from).as_deref(), Some("ed25519:a,ed25519:b"));
        assert_eq!((s.dev_unsigned_local, s.max_component_bytes), (Some(true), Some(1024)));
        for (text, words) in [
            ("max_concurrent_runs = \"four\"", "max_concurrent_runs"),
            ("max_concurrent_runs = -1", "max_concurrent_runs"),
            ("dev_unsigned_local = \"maybe\"", "dev_unsigned_local"),
            ("base_url = ", "/etc/orgx/config.toml"),
        ] {
            let err = file(text).unwrap_err().to_string();
            assert!(err.contains(words) && err.contains("/etc/orgx/config.toml"), "{text}: {err}");
        }
    }

    #[test]
    fn unknown_keys_are_refused_naming_the_key_and_the_file() {
        for (text, key) in [
            ("max_concurent_runs = 3", "max_concurent_runs"),
            ("config = \"/x\"", "config"),
            ("[drivers]\nx = 1", "drivers"),
            ("[driver.cursor]\nbin = \"cursor\"", "driver.cursor"),
            ("[driver.codex]\nsandboxx = \"read-only\"", "driver.codex.sandboxx"),
            ("[driver.claude_code]\nsandbox = \"read-only\"", "driver.claude_code.sandbox"),
        ] {
            match file(text) {
                Err(e @ ConfigFileError::UnknownKey { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains(&format!("unknown key `{key}`")) && msg.contains("/etc/orgx/config.toml"), "{text}: {msg}");
                }
                // `[drivers]` is a known key of the wrong type: serde's message names it.
                Err(e) if key == "drivers" => assert!(e.to_string().contains("drivers"), "{e}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_key_itself_is_refused_with_the_way_to_give_it() {
        let err = file("workspace_id = \"ws\"\napi_key = \"oxk_secret_in_a_file\"\n").unwrap_err();
        assert!(matches!(err, ConfigFileError::InlineKey { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("api_key_file") && msg.contains("/etc/orgx/config.toml"), "{msg}");
        assert!(!msg.contains("oxk_secret_in_a_file"), "the key is never repeated: {msg}");
    }

    #[test]
    fn driver_tables_stand_for_the_drivers_variables() {
        let s = file(
            "[driver.codex]\nbin = \"bin/codex\"\nmodel = \"gpt-5.5\"\nsandbox = \"read-only\"\nextra_args = [\"-c\", \"x=1\"]\n\
             [driver.opencode]\nauto = true\n[driver.claude_code]\nplugin_dir = \"/plugins\"\nbin = \"claude\"\n",
        )
        .unwrap();
        let want: BTreeMap<String, String> = [
            ("ORGX_CODEX_BIN", "/etc/orgx/bin/codex"),
            ("ORGX_CODEX_MODEL", "gpt-5.5"),
            ("ORGX_CODEX_SANDBOX", "read-only"),
            ("ORGX_CODEX_EXTRA_ARGS", "-c x=1"),
            ("ORGX_OPENCODE_AUTO", "true"),
            ("ORGX_PLUGIN_DIR", "/plugins"),
            ("ORGX_CLAUDE_BIN", "claude"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(s.driver_env, want);
        // The environment's value of a setting with two names wins over the file's.
        let s = file("[driver.claude_code]\nextra_args = \"--from-file\"\n").unwrap();
        let args = Cli::try_parse_from(["orgx-peer"]).unwrap().start;
        let env = |n: &str| (n == "ORGX_CLAUDE_EXTRA_ARGS").then(|| "--from-env".to_string());
        let eff = apply(args.clone(), &|_| Source::Default, None, Source::Default, Some(s.clone()), &env);
        assert!(eff.args.driver_file.is_empty(), "{:?}", eff.args.driver_file);
        let eff = apply(args, &|_| Source::Default, None, Source::Default, Some(s), &|_| None);
        assert_eq!(eff.args.driver_file.get("ORGX_CLAUDE_CODE_EXTRA_ARGS").map(String::as_str), Some("--from-file"));
    }

    #[test]
    fn show_redacts_the_key_and_names_each_origin() {
        let args = Cli::try_parse_from(["orgx-peer", "--api-key", "oxk_never_shown", "--max-concurrent-runs", "3"]).unwrap().start;
        let given = |id: &str| match id {
            "api_key" | "max_concurrent_runs" => Source::Flag,
            _ => Source::Default,
        };
        let settings = file("workspace_id = \"ws-file\"\n[driver.codex]\nmodel = \"gpt-5.5\"\n").unwrap();
        let eff = apply(args, &given, Some("/etc/orgx/config.toml".into()), Source::Flag, Some(settings), &|_| None);
        let rows = eff.rows(&|n| (n == "ORGX_OPENCODE_MODEL").then(|| "openai/gpt-5".to_string()));
        let row = |k: &str| rows.iter().find(|r| r.key == k).unwrap_or_else(|| panic!("no {k}")).clone();
        assert_eq!(row("api_key").value.as_deref(), Some("[redacted]"));
        assert_eq!((row("api_key").source, row("api_key").origin.as_deref()), (Source::Flag, Some("--api-key")));
        assert_eq!((row("max_concurrent_runs").value.as_deref(), row("max_concurrent_runs").source), (Some("3"), Source::Flag));
        assert_eq!((row("workspace_id").value.as_deref(), row("workspace_id").source), (Some("ws-file"), Source::File));
        assert_eq!((row("base_url").value.as_deref(), row("base_url").source), (Some("https://useorgx.com"), Source::Default));
        assert_eq!((row("driver.codex.model").value.as_deref(), row("driver.codex.model").source), (Some("gpt-5.5"), Source::File));
        assert_eq!(row("driver.opencode.model").origin.as_deref(), Some("ORGX_OPENCODE_MODEL"));
        assert_eq!(
            (row("driver.claude_code.bin").value.as_deref(), row("driver.claude_code.bin").source),
            (Some("claude"), Source::Default)
        );
        let text = render(&eff, &rows);
        assert!(text.starts_with("config file  /etc/orgx/config.toml (--config)"), "{text}");
        assert!(!text.contains("oxk_never_shown"), "{text}");
        assert_eq!(eff.explicit_env(), vec![("ORGX_MAX_CONCURRENT_RUNS".to_string(), "3".to_string())], "the key is not a setting to copy");
    }

    #[test]
    fn a_failing_file_setting_is_named_by_its_key() {
        let args = Cli::try_parse_from(["orgx-peer", "--api-key", "oxk_abc"]).unwrap().start;
        let settings = file("workspace_id = \"ws\"\nmax_concurrent_runs = 0\n").unwrap();
        let eff = apply(args, &|_| Source::Default, Some("/etc/orgx/config.toml".into()), Source::Default, Some(settings), &|_| None);
        let err = eff.into_config().err().expect("0 runs is refused").0;
        assert!(err.contains("ORGX_MAX_CONCURRENT_RUNS") && err.contains("`max_concurrent_runs` in `/etc/orgx/config.toml`"), "{err}");
    }

    #[test]
    fn an_explicit_file_must_exist_and_the_default_one_may_not() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let err = locate(Some((&missing, Source::Flag)), None).unwrap_err().to_string();
        assert!(err.contains("nope.toml") && err.contains("--config"), "{err}");
        let err = locate(Some((&missing, Source::Env)), None).unwrap_err().to_string();
        assert!(err.contains("ORGX_CONFIG"), "{err}");
        assert_eq!(locate(None, Some(dir.path().to_path_buf())).unwrap(), None, "no default file: no file");
        std::fs::write(dir.path().join("config.toml"), "").unwrap();
        assert_eq!(locate(None, Some(dir.path().to_path_buf())).unwrap(), Some(dir.path().join("config.toml")));
    }
}
