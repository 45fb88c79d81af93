//! `orgx-peer service install | uninstall | status | logs`: the peer as a systemd user
//! service (Linux) or a launchd agent (macOS), written from the peer's own settings.
//!
//! Shaped in two layers. What the unit says is a pure function of a `Spec` (`systemd::unit`,
//! `launchd::plist`: settings → text), tested line by line. What install does with it lives
//! here: files under `$XDG_CONFIG_HOME/systemd/user` or `~/Library/LaunchAgents`, then the
//! service manager's commands through `Runner`, which a caller may skip (`--no-start`) and
//! which is skipped, with the commands printed instead, when the manager is not reachable —
//! so the whole install runs in a temporary HOME without a real systemd.
//!
//! The key never enters a `Spec`: the unit names the 0600 file the key is in, so no unit,
//! plist, `systemctl show` or journal line can hold it.

pub mod launchd;
pub mod systemd;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config_file::{Effective, Source};
use crate::secret::ApiKey;

/// The service manager's stop timeout (systemd `TimeoutStopSec`, launchd `ExitTimeOut`):
/// past the daemon's whole clean stop (`daemon::SHUTDOWN_BUDGET`, 18 s: the runs' SIGTERM →
/// SIGKILL grace and their reports, the outbox drain, the socket's close), so that the
/// manager's SIGKILL only ever meets a peer that is stuck. The same 30 s as Kubernetes'.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// The systemd unit's name.
pub const UNIT_NAME: &str = "orgx-peer.service";
/// The launchd agent's label.
pub const LABEL: &str = "com.useorgx.orgx-peer";
/// Set by the launchd agent's plist, so the peer knows a failed exit would be restarted in a
/// loop (`main` exits 0 instead of 2 or 3 there).
pub const MANAGER_ENV: &str = "ORGX_SERVICE_MANAGER";
/// The key's credential name under systemd's `LoadCredential=`.
pub const CREDENTIAL: &str = "orgx-api-key";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Manager {
    Systemd,
    Launchd,
}

impl Manager {
    /// This platform's.
    pub fn native() -> Manager {
        if cfg!(target_os = "macos") {
            Manager::Launchd
        } else {
            Manager::Systemd
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot find your home directory: set HOME")]
    NoHome,
    #[error(
        "no API key to install: export ORGX_API_KEY (install copies it into a 0600 file the service reads) or point ORGX_API_KEY_FILE (or `api_key_file` in the config file) at a file holding it"
    )]
    NoKey,
    #[error("`{path}` exists and differs from the {what} this install would write: run `orgx-peer service install --force` to replace it")]
    Differs { path: PathBuf, what: &'static str },
    #[error("{what} `{value}` cannot go into a service file (it has a line break or a control character): change it")]
    Unwritable { what: String, value: String },
    #[error("cannot {action} `{path}`: {reason}")]
    Io { action: &'static str, path: PathBuf, reason: String },
    #[error("`{command}` failed: {reason} (run it yourself for the details)")]
    Command { command: String, reason: String },
    #[error("the service is not installed (no `{path}`): run `orgx-peer service install`")]
    NotInstalled { path: PathBuf },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ServiceError {
    let path = path.to_path_buf();
    move |e| ServiceError::Io { action, path, reason: e.to_string() }
}

/// What the service runs. It has no field for the key: only the file that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The absolute path of `orgx-peer`.
    pub exe: PathBuf,
    /// The config file the service reads at every start, if one is used.
    pub config_file: Option<PathBuf>,
    /// Environment assignments, in order: `PATH`, then the settings that came from flags or
    /// the environment (which beat the file there too).
    pub env: Vec<(String, String)>,
    /// The file holding the API key (`ORGX_API_KEY_FILE`, or systemd's credential source).
    pub key_file: PathBuf,
}

impl Spec {
    /// `start [--config FILE]`.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["start".to_string()];
        if let Some(c) = &self.config_file {
            args.extend(["--config".to_string(), c.display().to_string()]);
        }
        args
    }

    /// Refuse what no unit or plist can carry: a line break ends a systemd line, a control
    /// character is not XML.
    fn check(&self) -> Result<(), ServiceError> {
        let bad = |s: &str| s.chars().any(char::is_control);
        let mut texts = vec![("the program path".to_string(), self.exe.display().to_string())];
        texts.push(("the key file".into(), self.key_file.display().to_string()));
        texts.extend(self.config_file.iter().map(|c| ("the config file".to_string(), c.display().to_string())));
        texts.extend(self.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        match texts.into_iter().find(|(_, v)| bad(v)) {
            Some((what, value)) => Err(ServiceError::Unwritable { what, value }),
            None => Ok(()),
        }
    }
}

/// Where a manager's files go for this user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub manager: Manager,
    /// The unit or plist.
    pub unit: PathBuf,
    /// Where install writes the key when it was given inline (`ORGX_API_KEY`); removed by
    /// uninstall. A key file of the user's own is named by the unit and never touched.
    pub key_file: PathBuf,
    /// launchd: stdout and stderr (systemd: the journal).
    pub log_file: Option<PathBuf>,
}

impl Layout {
    /// `config_home` is `$XDG_CONFIG_HOME`, else `~/.config`.
    pub fn new(manager: Manager, home: &Path, config_home: &Path) -> Layout {
        let key_file = config_home.join("orgx-peer").join("service.key");
        match manager {
            Manager::Systemd => Layout { manager, unit: config_home.join("systemd/user").join(UNIT_NAME), key_file, log_file: None },
            Manager::Launchd => Layout {
                manager,
                unit: home.join("Library/LaunchAgents").join(format!("{LABEL}.plist")),
                key_file,
                log_file: Some(home.join("Library/Logs/orgx-peer/orgx-peer.log")),
            },
        }
    }

    /// From `HOME` and `XDG_CONFIG_HOME`.
    pub fn from_env(manager: Manager) -> Result<Layout, ServiceError> {
        let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from).ok_or(ServiceError::NoHome)?;
        let config_home =
            std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()).map(PathBuf::from).unwrap_or_else(|| home.join(".config"));
        Ok(Layout::new(manager, &home, &config_home))
    }
}

/// Where the service's key comes from.
pub enum Key {
    /// Given inline (flag or `ORGX_API_KEY`): install writes it into `Layout::key_file`.
    Inline(ApiKey),
    /// A key file of the user's own, which the service reads where it is.
    File(PathBuf),
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Inline(_) => f.write_str("Key::Inline([redacted])"),
            Key::File(p) => write!(f, "Key::File({p:?})"),
        }
    }
}

impl Key {
    /// As `into_config` chooses: the inline key first, else the key file.
    pub fn of(effective: &Effective, validated: &ApiKey) -> Result<Key, ServiceError> {
        let args = &effective.args;
        if args.api_key.as_deref().is_some_and(|k| !k.trim().is_empty()) {
            return Ok(Key::Inline(validated.clone()));
        }
        match &args.api_key_file {
            Some(p) => Ok(Key::File(std::path::absolute(p).unwrap_or_else(|_| p.clone()))),
            None => Err(ServiceError::NoKey),
        }
    }
}

/// The service's `Spec` for these settings: the config file they were read from, `PATH`, and
/// every setting a flag or the environment gave (defaults and the file's are left to the
/// file and the binary, so that editing the file and restarting is enough). The data dir is
/// written out even as a default: a service's environment may lack the `XDG_DATA_HOME` that
/// decided it here, and `orgx-peer status` must find the same status socket.
pub fn spec(effective: &Effective, exe: PathBuf, key_file: PathBuf, env: &dyn Fn(&str) -> Option<String>) -> Spec {
    let mut vars: Vec<(String, String)> = Vec::new();
    // The CLIs (and the node they run on) are found on the installing shell's PATH; a service
    // manager's own PATH is minimal.
    if let Some(path) = env("PATH") {
        vars.push(("PATH".into(), path));
    }
    let mut settings = effective.explicit_env();
    if effective.source("data_dir") == Source::Default {
        if let Some(dir) = crate::config::default_data_dir() {
            settings.push(("ORGX_PEER_DATA_DIR".into(), dir.display().to_string()));
        }
    }
    for name in crate::config_file::driver_env_names().into_iter().chain(["ORGX_LOG".to_string(), "ORGX_LOG_FORMAT".to_string()]) {
        if let Some(v) = env(&name) {
            settings.push((name, v));
        }
    }
    settings.sort();
    settings.dedup_by(|a, b| a.0 == b.0);
    vars.extend(settings);
    Spec { exe, config_file: effective.file.clone(), env: vars, key_file }
}

/// What systemd can do, from its version (`None`: unknown, assume the oldest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SystemdFeatures {
    /// `LoadCredential=` in user units (v252 is the first where it is known to work there).
    pub load_credential: bool,
    /// `RestartSteps=` / `RestartMaxDelaySec=`, growing restart delays (v254).
    pub restart_steps: bool,
}

impl SystemdFeatures {
    pub fn of_version(version: Option<u32>) -> SystemdFeatures {
        let v = version.unwrap_or(0);
        SystemdFeatures { load_credential: v >= 252, restart_steps: v >= 254 }
    }
}

/// `systemd 252 (252.38-1~deb12u1)` → 252.
pub fn parse_systemd_version(text: &str) -> Option<u32> {
    text.lines().next()?.strip_prefix("systemd ")?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// One command of the service manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub argv: Vec<String>,
    /// A failure is expected and harmless (stopping an agent that is not loaded).
    pub may_fail: bool,
}

impl Step {
    fn new(argv: &[&str]) -> Step {
        Step { argv: argv.iter().map(|s| s.to_string()).collect(), may_fail: false }
    }

    fn may_fail(self) -> Step {
        self.may_fail_if(true)
    }

    fn may_fail_if(mut self, yes: bool) -> Step {
        self.may_fail = yes;
        self
    }

    pub fn shell(&self) -> String {
        self.argv
            .iter()
            .map(|a| if a.contains([' ', '\'', '"', '$']) { format!("'{}'", a.replace('\'', "'\\''")) } else { a.clone() })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// The last line of its error output, and how it exited (when it is known).
    #[error("{message}{}", status.map(|s| format!(" ({s})")).unwrap_or_default())]
    Failed { message: String, status: Option<std::process::ExitStatus> },
}

/// The one seam to the outside: runs a command to completion, output captured.
pub trait Runner {
    /// stdout on success; on failure, what went wrong (stderr, or why it could not start).
    fn run(&self, argv: &[String]) -> Result<String, CommandError>;
}

/// The real commands.
pub struct System;

impl Runner for System {
    fn run(&self, argv: &[String]) -> Result<String, CommandError> {
        let out = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|source| CommandError::Spawn { program: argv[0].clone(), source })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            let message = err.lines().rev().find(|l| !l.trim().is_empty()).map(str::trim).unwrap_or("no error output").to_string();
            Err(CommandError::Failed { message, status: Some(out.status) })
        }
    }
}

fn gui_domain() -> String {
    // SAFETY: getuid has no preconditions and cannot fail.
    format!("gui/{}", unsafe { libc::getuid() })
}

/// Whether the manager answers; `Err` says why not.
pub fn reachable(manager: Manager, runner: &dyn Runner) -> Result<(), CommandError> {
    let argv: Vec<String> = match manager {
        Manager::Systemd => ["systemctl", "--user", "show", "--property=Version"].map(String::from).to_vec(),
        Manager::Launchd => vec!["launchctl".into(), "print".into(), gui_domain()],
    };
    runner.run(&argv).map(|_| ())
}

/// The unit or plist text for `spec`.
pub fn render(manager: Manager, layout: &Layout, spec: &Spec, runner: &dyn Runner) -> Result<String, ServiceError> {
    spec.check()?;
    Ok(match manager {
        Manager::Systemd => {
            let version = runner.run(&["systemctl".to_string(), "--version".to_string()]).ok().and_then(|v| parse_systemd_version(&v));
            systemd::unit(spec, SystemdFeatures::of_version(version))
        }
        Manager::Launchd => launchd::plist(spec, layout.log_file.as_deref().unwrap_or(Path::new("/dev/null"))),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    New,
    Replaced,
    Unchanged,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::New => "written",
            Change::Replaced => "replaced",
            Change::Unchanged => "unchanged",
        }
    }
}

/// Whether the manager was told to run the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    Yes,
    /// `--no-start`: these would have run.
    Skipped(Vec<Step>),
    /// The manager is not reachable (why); run these when it is.
    Unreachable(String, Vec<Step>),
}

#[derive(Debug)]
pub struct Installed {
    pub unit: PathBuf,
    pub unit_change: Change,
    /// The file the service reads the key from, and whether install wrote it (`None`: the
    /// user's own file).
    pub key_file: PathBuf,
    pub key_change: Option<Change>,
    pub config_file: Option<PathBuf>,
    pub log_file: Option<PathBuf>,
    pub started: Started,
}

pub struct InstallRequest {
    pub layout: Layout,
    pub key: Key,
    pub force: bool,
    /// Run the manager's commands (`--no-start` clears it).
    pub start: bool,
}

impl InstallRequest {
    /// The file the service reads the key from.
    pub fn key_file(&self) -> PathBuf {
        match &self.key {
            Key::Inline(_) => self.layout.key_file.clone(),
            Key::File(p) => p.clone(),
        }
    }
}

fn compare(path: &Path, want: &str) -> Result<Change, ServiceError> {
    match std::fs::read_to_string(path) {
        Ok(have) if have == want => Ok(Change::Unchanged),
        Ok(_) => Ok(Change::Replaced),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Change::New),
        Err(e) => Err(io("read", path)(e)),
    }
}

/// Write the unit (and the key file), then have the manager load, enable and (re)start it.
/// A different existing unit or key file is replaced only with `force`; an identical one is
/// left as it is.
pub fn install(req: &InstallRequest, spec: &Spec, runner: &dyn Runner) -> Result<Installed, ServiceError> {
    let layout = &req.layout;
    let text = render(layout.manager, layout, spec, runner)?;
    let unit_change = compare(&layout.unit, &text)?;
    let key_text = match &req.key {
        Key::Inline(k) => Some(k.for_key_file()),
        Key::File(_) => None,
    };
    let key_change = key_text.as_deref().map(|k| compare(&layout.key_file, k)).transpose()?;
    if !req.force {
        if unit_change == Change::Replaced {
            return Err(ServiceError::Differs { path: layout.unit.clone(), what: "unit" });
        }
        if key_change == Some(Change::Replaced) {
            return Err(ServiceError::Differs { path: layout.key_file.clone(), what: "key file (a different key)" });
        }
    }
    if let (Some(k), Some(change)) = (&key_text, key_change) {
        write_private(&layout.key_file, k, change)?;
    }
    if unit_change != Change::Unchanged {
        crate::fsutil::write_atomic(&layout.unit, text.as_bytes()).map_err(io("write", &layout.unit))?;
    }
    if let Some(log) = &layout.log_file {
        // launchd opens the log file but does not make its directory.
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        }
    }
    let changed = unit_change != Change::Unchanged || key_change.is_some_and(|c| c != Change::Unchanged);
    let steps = start_steps(layout, changed);
    let started = if !req.start {
        Started::Skipped(steps)
    } else if let Err(why) = reachable(layout.manager, runner) {
        Started::Unreachable(why.to_string(), steps)
    } else {
        run_steps(&steps, runner)?;
        Started::Yes
    };
    Ok(Installed {
        unit: layout.unit.clone(),
        unit_change,
        key_file: req.key_file(),
        key_change,
        config_file: spec.config_file.clone(),
        log_file: layout.log_file.clone(),
        started,
    })
}

/// The key, 0600 from its first byte (never world-readable, not even between create and
/// chmod), in a 0700 directory.
fn write_private(path: &Path, text: &str, change: Change) -> Result<(), ServiceError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io("restrict", dir))?;
    }
    if change != Change::Unchanged {
        let tmp = dir.join(format!(".service.key.{}.tmp", std::process::id()));
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(io("write", &tmp))?;
        f.write_all(text.as_bytes()).and_then(|_| f.sync_all()).map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, path).map_err(io("write", path))?;
    }
    // An unchanged file keeps its text; its mode is still made right.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io("restrict", path))
}

fn start_steps(layout: &Layout, changed: bool) -> Vec<Step> {
    match layout.manager {
        Manager::Systemd => vec![
            Step::new(&["systemctl", "--user", "daemon-reload"]),
            Step::new(&["systemctl", "--user", "enable", UNIT_NAME]),
            // A running service keeps its old unit until restarted; an unchanged one is only
            // started if it is not running.
            Step::new(&["systemctl", "--user", if changed { "restart" } else { "start" }, UNIT_NAME]),
        ],
        Manager::Launchd => {
            let target = format!("{}/{LABEL}", gui_domain());
            let plist = layout.unit.display().to_string();
            let mut steps = Vec::new();
            if changed {
                steps.push(Step::new(&["launchctl", "bootout", &target]).may_fail());
            }
            // Loading an agent that is already loaded fails harmlessly; that is the unchanged case.
            steps.push(Step::new(&["launchctl", "bootstrap", &gui_domain(), &plist]).may_fail_if(!changed));
            steps
        }
    }
}

fn run_steps(steps: &[Step], runner: &dyn Runner) -> Result<(), ServiceError> {
    for step in steps {
        if let Err(reason) = runner.run(&step.argv) {
            if !step.may_fail {
                return Err(ServiceError::Command { command: step.shell(), reason: reason.to_string() });
            }
        }
    }
    Ok(())
}

#[derive(Debug)]
pub struct Uninstalled {
    /// The files removed (none: nothing was installed).
    pub removed: Vec<PathBuf>,
    pub stopped: Started,
}

/// Stop and disable the service, remove the unit and the key file install wrote, and have
/// the manager forget it. Nothing installed is not an error.
pub fn uninstall(layout: &Layout, stop: bool, runner: &dyn Runner) -> Result<Uninstalled, ServiceError> {
    let present: Vec<PathBuf> = [&layout.unit, &layout.key_file].into_iter().filter(|p| p.exists()).cloned().collect();
    if present.is_empty() {
        return Ok(Uninstalled { removed: vec![], stopped: Started::Yes });
    }
    let (before, after) = match layout.manager {
        Manager::Systemd => (
            vec![Step::new(&["systemctl", "--user", "disable", "--now", UNIT_NAME]).may_fail_if(!layout.unit.exists())],
            vec![Step::new(&["systemctl", "--user", "daemon-reload"])],
        ),
        Manager::Launchd => (vec![Step::new(&["launchctl", "bootout", &format!("{}/{LABEL}", gui_domain())]).may_fail()], vec![]),
    };
    let reach = if stop { reachable(layout.manager, runner) } else { Ok(()) };
    if stop && reach.is_ok() {
        run_steps(&before, runner)?;
    }
    for p in &present {
        std::fs::remove_file(p).map_err(io("remove", p))?;
    }
    let stopped = if !stop {
        Started::Skipped(before.into_iter().chain(after).collect())
    } else if let Err(why) = reach {
        Started::Unreachable(why.to_string(), before.into_iter().chain(after).collect())
    } else {
        run_steps(&after, runner)?;
        Started::Yes
    };
    Ok(Uninstalled { removed: present, stopped })
}

/// What `service install` prints.
pub fn report_install(done: &Installed, spec: &Spec, manager: Manager) -> String {
    let mut out = format!("unit      {} ({})\n", done.unit.display(), done.unit_change.as_str());
    out.push_str(&match done.key_change {
        Some(c) => format!("key file  {} (mode 0600, {})\n", done.key_file.display(), c.as_str()),
        None => format!("key file  {} (yours; the service reads it there)\n", done.key_file.display()),
    });
    out.push_str(&match &done.config_file {
        Some(c) => format!("config    {} (read at every start: edit it, then restart the service)\n", c.display()),
        None => "config    none: the settings are in the unit\n".to_string(),
    });
    out.push_str(&match &done.log_file {
        Some(l) => format!("logs      {} (`orgx-peer service logs`)\n", l.display()),
        None => "logs      the user journal (`orgx-peer service logs`)\n".to_string(),
    });
    out.push_str(&started(&done.started, "started   the service is enabled and running (`orgx-peer service status`)", "started", "start"));
    let exe = spec.exe.display().to_string();
    if exe.contains("/target/release/") || exe.contains("/target/debug/") {
        out.push_str(&format!(
            "note: the service runs `{exe}`, a build output that the next `cargo` build replaces; install the binary (`cargo install --locked --path host`) and run `orgx-peer service install --force` from it\n"
        ));
    }
    if manager == Manager::Systemd {
        out.push_str("note: a user service runs while you are logged in; to keep it running after you log out: loginctl enable-linger\n");
    }
    out
}

/// What `service uninstall` prints.
pub fn report_uninstall(done: &Uninstalled, layout: &Layout) -> String {
    if done.removed.is_empty() {
        return format!("nothing to remove: the service is not installed (no {})\n", layout.unit.display());
    }
    let mut out: String = done.removed.iter().map(|p| format!("removed   {}\n", p.display())).collect();
    out.push_str(&started(&done.stopped, "stopped   the service is stopped and disabled", "stopped", "stop"));
    out
}

/// `done` is the past participle of `verb` ("started", "start").
fn started(how: &Started, yes: &str, done: &str, verb: &str) -> String {
    let commands = |steps: &[Step]| steps.iter().map(|s| format!("  {}\n", s.shell())).collect::<String>();
    match how {
        Started::Yes => format!("{yes}\n"),
        Started::Skipped(steps) => format!("not {done} (as asked); to {verb} it, run:\n{}", commands(steps)),
        Started::Unreachable(why, steps) => {
            format!("not {done}: the service manager is not reachable here ({why}); when it is, run:\n{}", commands(steps))
        }
    }
}

/// The command `service status` hands the terminal to.
pub fn status_command(layout: &Layout) -> Result<Vec<String>, ServiceError> {
    if !layout.unit.exists() {
        return Err(ServiceError::NotInstalled { path: layout.unit.clone() });
    }
    Ok(match layout.manager {
        Manager::Systemd => ["systemctl", "--user", "status", "--no-pager", UNIT_NAME].map(String::from).to_vec(),
        Manager::Launchd => vec!["launchctl".into(), "print".into(), format!("{}/{LABEL}", gui_domain())],
    })
}

/// The command `service logs` hands the terminal to: the journal, or the plist's log file.
pub fn logs_command(layout: &Layout, lines: u32, follow: bool) -> Result<Vec<String>, ServiceError> {
    if !layout.unit.exists() {
        return Err(ServiceError::NotInstalled { path: layout.unit.clone() });
    }
    let mut argv: Vec<String> = match (&layout.manager, &layout.log_file) {
        (Manager::Launchd, Some(log)) => vec!["tail".into(), "-n".into(), lines.to_string(), log.display().to_string()],
        _ => {
            ["journalctl", "--user", "--no-pager", "-u", UNIT_NAME, "-n"].map(String::from).into_iter().chain([lines.to_string()]).collect()
        }
    };
    if follow {
        argv.insert(1, if layout.manager == Manager::Launchd { "-F".into() } else { "-f".into() });
    }
    Ok(argv)
}

/// Run a command on the terminal (its output is the user's to read); whether it succeeded.
pub fn hand_over(argv: &[String]) -> Result<bool, ServiceError> {
    std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .status()
        .map(|s| s.success())
        .map_err(|e| ServiceError::Command { command: argv.join(" "), reason: format!("cannot run it: {e}") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Records every command; fails the ones whose words start with a listed prefix.
    struct Recorder {
        ran: RefCell<Vec<String>>,
        failing: Vec<&'static str>,
    }

    impl Recorder {
        fn new(failing: &[&'static str]) -> Recorder {
            Recorder { ran: RefCell::new(vec![]), failing: failing.to_vec() }
        }
    }

    impl Runner for Recorder {
        fn run(&self, argv: &[String]) -> Result<String, CommandError> {
            let line = argv.join(" ");
            self.ran.borrow_mut().push(line.clone());
            if self.failing.iter().any(|f| line.starts_with(f)) {
                return Err(CommandError::Failed { message: "Failed to connect to bus".into(), status: None });
            }
            Ok(if line == "systemctl --version" { "systemd 255 (255.4-1)\n+PAM".into() } else { String::new() })
        }
    }

    fn setup(dir: &Path, manager: Manager) -> (InstallRequest, Spec) {
        let layout = Layout::new(manager, dir, &dir.join(".config"));
        let spec = Spec {
            exe: "/usr/local/bin/orgx-peer".into(),
            config_file: Some(dir.join(".config/orgx-peer/config.toml")),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            key_file: layout.key_file.clone(),
        };
        let key = Key::Inline(ApiKey::new("oxk_recorded_key".into()).unwrap());
        (InstallRequest { layout, key, force: false, start: true }, spec)
    }

    #[test]
    fn systemd_versions_parse() {
        for (text, want) in [
            ("systemd 252 (252.38-1~deb12u1)\n+PAM", Some(252)),
            ("systemd 245 (245.4-4ubuntu3.24)", Some(245)),
            ("systemd 257\n", Some(257)),
            ("not systemd", None),
            ("", None),
        ] {
            assert_eq!(parse_systemd_version(text), want, "{text:?}");
        }
        assert_eq!(SystemdFeatures::of_version(None), SystemdFeatures { load_credential: false, restart_steps: false });
        assert_eq!(SystemdFeatures::of_version(Some(252)), SystemdFeatures { load_credential: true, restart_steps: false });
        assert_eq!(SystemdFeatures::of_version(Some(254)), SystemdFeatures { load_credential: true, restart_steps: true });
    }

    #[test]
    fn what_a_unit_cannot_carry_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        for manager in [Manager::Systemd, Manager::Launchd] {
            let (req, mut spec) = setup(dir.path(), manager);
            spec.env.push(("ORGX_PLUGIN_ID".into(), "two\nlines".into()));
            let err = install(&req, &spec, &Recorder::new(&[])).unwrap_err().to_string();
            assert!(err.contains("ORGX_PLUGIN_ID") && err.contains("line break"), "{err}");
            assert!(!req.layout.unit.exists(), "nothing written");
        }
    }

    #[test]
    fn the_stop_timeout_outlasts_a_clean_stop() {
        assert!(STOP_TIMEOUT >= crate::daemon::SHUTDOWN_BUDGET + Duration::from_secs(10), "{STOP_TIMEOUT:?}");
    }

    #[test]
    fn install_runs_the_managers_commands_and_then_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let (req, spec) = setup(dir.path(), Manager::Systemd);
        let rec = Recorder::new(&[]);
        let done = install(&req, &spec, &rec).unwrap();
        assert_eq!((done.unit_change, done.key_change, &done.started), (Change::New, Some(Change::New), &Started::Yes));
        assert_eq!(
            rec.ran.take(),
            [
                "systemctl --version",
                "systemctl --user show --property=Version",
                "systemctl --user daemon-reload",
                "systemctl --user enable orgx-peer.service",
                "systemctl --user restart orgx-peer.service",
            ]
        );
        let again = install(&req, &spec, &rec).unwrap();
        assert_eq!((again.unit_change, again.key_change), (Change::Unchanged, Some(Change::Unchanged)));
        assert_eq!(rec.ran.take().last().map(String::as_str), Some("systemctl --user start orgx-peer.service"), "unchanged: only started");
    }

    #[test]
    fn an_unreachable_manager_leaves_the_commands_to_run() {
        let dir = tempfile::tempdir().unwrap();
        let (req, spec) = setup(dir.path(), Manager::Systemd);
        let rec = Recorder::new(&["systemctl --user"]);
        let done = install(&req, &spec, &rec).unwrap();
        match done.started {
            Started::Unreachable(why, steps) => {
                assert!(why.contains("bus"), "{why}");
                assert_eq!(steps.len(), 3);
            }
            other => panic!("{other:?}"),
        }
        assert!(req.layout.unit.exists());
        // A failing command that matters stops install and is named.
        let rec = Recorder::new(&["systemctl --user enable"]);
        let err = install(&InstallRequest { force: true, ..req }, &spec, &rec).unwrap_err().to_string();
        assert!(err.contains("`systemctl --user enable orgx-peer.service` failed"), "{err}");
    }

    #[test]
    fn launchd_install_and_uninstall_use_the_gui_domain() {
        let dir = tempfile::tempdir().unwrap();
        let (req, spec) = setup(dir.path(), Manager::Launchd);
        let rec = Recorder::new(&[]);
        install(&req, &spec, &rec).unwrap();
        let ran = rec.ran.take();
        assert!(ran[0].starts_with("launchctl print gui/"), "{ran:?}");
        assert!(ran[1].starts_with("launchctl bootout gui/") && ran[1].ends_with("/com.useorgx.orgx-peer"), "{ran:?}");
        assert!(ran[2].starts_with("launchctl bootstrap gui/") && ran[2].ends_with("com.useorgx.orgx-peer.plist"), "{ran:?}");
        assert!(req.layout.log_file.as_ref().unwrap().parent().unwrap().is_dir(), "the log directory exists");
        let gone = uninstall(&req.layout, true, &rec).unwrap();
        assert_eq!(gone.removed, vec![req.layout.unit.clone(), req.layout.key_file.clone()]);
        assert!(rec.ran.take().iter().any(|l| l.starts_with("launchctl bootout")));
        assert!(uninstall(&req.layout, true, &rec).unwrap().removed.is_empty(), "twice is fine");
    }

    #[test]
    fn logs_and_status_name_the_managers_commands() {
        let dir = tempfile::tempdir().unwrap();
        let sd = Layout::new(Manager::Systemd, dir.path(), &dir.path().join(".config"));
        assert!(matches!(status_command(&sd), Err(ServiceError::NotInstalled { .. })));
        std::fs::create_dir_all(sd.unit.parent().unwrap()).unwrap();
        std::fs::write(&sd.unit, "").unwrap();
        assert_eq!(status_command(&sd).unwrap().join(" "), "systemctl --user status --no-pager orgx-peer.service");
        assert_eq!(logs_command(&sd, 50, true).unwrap().join(" "), "journalctl -f --user --no-pager -u orgx-peer.service -n 50");
        let ld = Layout::new(Manager::Launchd, dir.path(), &dir.path().join(".config"));
        std::fs::create_dir_all(ld.unit.parent().unwrap()).unwrap();
        std::fs::write(&ld.unit, "").unwrap();
        let log = ld.log_file.clone().unwrap();
        assert_eq!(logs_command(&ld, 20, false).unwrap(), vec!["tail".to_string(), "-n".into(), "20".into(), log.display().to_string()]);
        assert_eq!(logs_command(&ld, 20, true).unwrap()[1], "-F");
    }
}
