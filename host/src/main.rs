//! The `orgx-peer` command line. Only this file decides exit codes: 0 success, 1 failure,
//! 2 bad usage or configuration, 3 a data dir or store a restart cannot fix (read-only,
//! damaged, or written by a newer peer: `store::Fault::restart_cannot_fix`). The systemd unit
//! never restarts after 2 or 3 (`RestartPreventExitStatus=2 3`). launchd has no such
//! setting — `KeepAlive` restarts every failed exit — so under the launchd agent (its plist
//! sets `ORGX_SERVICE_MANAGER=launchd`) those two exit 0 after saying why: a restart loop
//! every `ThrottleInterval` cannot fix a bad setting or a damaged store.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use orgx_peer::authoring;
use orgx_peer::components::ActiveComponents;
use orgx_peer::config::{ConfigError, StartArgs};
use orgx_peer::config_file::{self, ConfigFileError, Source};
use orgx_peer::daemon::DaemonExit;
use orgx_peer::rules::RuleSet;
use orgx_peer::run::replay::{replay, ReplayOptions};
use orgx_peer::run::DEFAULT_MAX_LINE_BYTES;
use orgx_peer::sandbox::{Limits, Sandbox};
use orgx_peer::service::{self, Manager, ServiceError};
use orgx_peer::store::StoreError;
use orgx_peer::trust::{Slot, TrustedKeys};

#[derive(Parser)]
#[command(name = "orgx-peer", version = orgx_peer::build_info::VERSION, about = "Runs OrgX tasks on your local coding agent (Claude Code, Codex, opencode), with the logic in sandboxed WebAssembly")]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "ORGX_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the peer in the foreground: connect to OrgX and run dispatched tasks.
    Start(Box<StartArgs>),
    /// Is each driver's CLI installed, which version, is it logged in (binaries from
    /// `ORGX_CLAUDE_BIN`, `ORGX_CODEX_BIN`, `ORGX_OPENCODE_BIN`, else `PATH`).
    Detect {
        /// Only this driver (`claude_code`, `codex`, `opencode`).
        #[arg(long, value_parser = parse_driver)]
        driver: Option<&'static str>,
        #[arg(long)]
        json: bool,
        /// The config file whose `[driver.<id>]` settings apply (default: the usual location).
        #[arg(long, env = "ORGX_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Ask the running peer for its state.
    Status {
        #[arg(long, env = "ORGX_PEER_DATA_DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// Keep asking and redraw in place (plain text, one block per interval, when stdout
        /// is not a terminal); Ctrl-C stops.
        #[arg(short, long)]
        watch: bool,
        /// Seconds between redraws with `--watch`.
        #[arg(long, default_value_t = 1.0, value_parser = parse_interval, requires = "watch")]
        interval: f64,
        /// The config file whose `data_dir` applies when no data dir is given (default: the
        /// usual location).
        #[arg(long, env = "ORGX_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Print the wire messages the live peer would send for a recorded stream-json transcript.
    Replay {
        /// A file of the driver's stdout (`claude --output-format stream-json`, `codex exec
        /// --json`, `opencode run --format json`).
        transcript: PathBuf,
        /// Whose output it is.
        #[arg(long, default_value = "claude_code", value_parser = parse_driver)]
        driver: &'static str,
        /// Skill rules, in the shape of the plan-skills response (`{"skills":[...]}`).
        #[arg(long)]
        rules: Option<PathBuf>,
        #[arg(long, default_value = "replay")]
        run_id: String,
        /// The run's working directory (default: the `cwd` the transcript reports).
        #[arg(long)]
        cwd: Option<String>,
        /// A mapper component to use instead of the built-in one.
        #[arg(long)]
        mapper: Option<PathBuf>,
        /// A matcher component to use instead of the built-in one.
        #[arg(long)]
        matcher: Option<PathBuf>,
    },
    /// Work with WebAssembly components: inspect, sign, verify, test (`plugin` is the old name).
    #[command(visible_alias = "plugin")]
    Component {
        #[command(subcommand)]
        command: ComponentCommand,
    },
    /// Check everything a dispatch needs (driver CLIs and logins, the data dir, the server and
    /// the key, trusted keys, components), each with its fix; exit 1 when a dispatch could not run.
    Doctor(Box<StartArgs>),
    /// The settings `start` uses: flags > environment > config file > defaults.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Run the peer as a service of your user: systemd on Linux, launchd on macOS.
    Service {
        #[command(subcommand)]
        command: ServiceCommand,
    },
    /// Print a shell completion script: `orgx-peer completions bash > ~/.local/share/bash-completion/completions/orgx-peer`.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff): `orgx-peer man > ~/.local/share/man/man1/orgx-peer.1`.
    Man,
    /// Run by Claude Code inside a dispatched run: the attention plugin's hooks.
    #[command(hide = true)]
    Hook {
        #[command(subcommand)]
        command: HookCommand,
    },
    /// Run by Claude Code inside a dispatched run: the attention plugin's MCP servers.
    #[command(hide = true)]
    Mcp {
        #[command(subcommand)]
        command: McpCommand,
    },
    /// Run by the peer itself: compile the component on stdin, its machine code to stdout
    /// (`sandbox::compiler`).
    #[command(hide = true, name = orgx_peer::sandbox::compiler::SUBCOMMAND)]
    CompileComponent,
}

#[derive(Subcommand)]
enum HookCommand {
    /// The `PreToolUse` hook on `AskUserQuestion`: hook input on stdin, the decision on stdout.
    PreToolUse,
}

#[derive(Subcommand)]
enum McpCommand {
    /// The permission prompt tool (`--permission-prompt-tool`): MCP over stdio.
    PermissionHost,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print every setting `start` would use and where it came from (flag, env, file,
    /// default); the API key is shown as [redacted].
    Show(Box<StartArgs>),
    /// Validate the settings exactly as `start` does, without starting; exit 2 with the error.
    Check(Box<StartArgs>),
}

#[derive(Subcommand)]
enum ServiceCommand {
    /// Write the service from the effective settings of `start` (the key into a 0600 file
    /// the service reads), then enable and start it. Refuses to replace a different unit
    /// without --force; an identical one is left as it is.
    Install {
        #[command(flatten)]
        start: Box<StartArgs>,
        /// Replace a different existing unit (or key file).
        #[arg(long)]
        force: bool,
        /// Write the files only, and print the commands that would load and start the service.
        #[arg(long)]
        no_start: bool,
        /// The service manager (default: this platform's: systemd on Linux, launchd on macOS).
        #[arg(long, value_enum)]
        manager: Option<Manager>,
    },
    /// Stop and disable the service, and remove its unit and the key file install wrote.
    Uninstall {
        /// Remove the files only, and print the commands that would stop the service.
        #[arg(long)]
        no_stop: bool,
        #[arg(long, value_enum)]
        manager: Option<Manager>,
    },
    /// The service manager's view of the service (`systemctl --user status`, `launchctl print`).
    Status {
        #[arg(long, value_enum)]
        manager: Option<Manager>,
    },
    /// The service's log (`journalctl --user -u orgx-peer.service`, or launchd's log file).
    Logs {
        /// Keep printing new lines.
        #[arg(short = 'f', long)]
        follow: bool,
        /// How many of the last lines.
        #[arg(short = 'n', long, default_value_t = 100)]
        lines: u32,
        #[arg(long, value_enum)]
        manager: Option<Manager>,
    },
}

#[derive(Subcommand)]
enum ComponentCommand {
    /// Show a component's world, imports, exports, digest, size, signer and limits; exit 1
    /// when it would be refused.
    Inspect {
        component: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Make an Ed25519 signing key pair: OUT (secret, 0600) and OUT.pub (for peers to trust).
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a component for a slot at a version; writes COMPONENT.sig next to it.
    Sign {
        component: PathBuf,
        /// The secret key file from `component keygen`.
        #[arg(long)]
        key: PathBuf,
        /// Must be higher than every version the peers accepted for the slot.
        #[arg(long)]
        version: u64,
        /// `mapper:claude_code` or `matcher` (default: from the world the component exports).
        #[arg(long, value_parser = parse_slot)]
        slot: Option<Slot>,
        /// The component's name in manifests and logs (default: the file name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Check a component and its .sig as a peer would; exit 1 when the peer would refuse it.
    Verify {
        component: PathBuf,
        #[arg(long, env = "ORGX_TRUSTED_KEYS_FILE")]
        trusted_keys_file: Option<PathBuf>,
        #[arg(long, env = "ORGX_TRUSTED_KEYS")]
        trusted_keys: Option<String>,
    },
    /// Run a component on transcripts with the production limits and print the wire messages
    /// (times shown as <time>); with --expect, exit 1 on the first difference.
    Test {
        component: PathBuf,
        /// The driver whose output the transcripts are (a mapper serves its slot).
        #[arg(long, default_value = "claude_code", value_parser = parse_driver)]
        driver: &'static str,
        /// Driver stdout transcripts, replayed in order.
        #[arg(long = "transcript", required = true)]
        transcripts: Vec<PathBuf>,
        /// Skill rules, in the plan-skills shape.
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Expected output: the lines this command prints.
        #[arg(long)]
        expect: Option<PathBuf>,
    },
}

fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(secs) if (0.1..=3600.0).contains(&secs) => Ok(secs),
        _ => Err(format!("`{s}` is not a number of seconds between 0.1 and 3600")),
    }
}

fn parse_driver(s: &str) -> Result<&'static str, String> {
    orgx_peer::driver::by_id(s)
        .map(|d| d.id)
        .ok_or_else(|| format!("unknown driver `{s}` (drivers: {})", orgx_peer::driver::ids().join(", ")))
}

fn parse_slot(s: &str) -> Result<Slot, String> {
    Slot::parse(s)
        .ok_or_else(|| format!("unknown slot `{s}` (slots: {})", Slot::all().iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")))
}

fn load_rules(path: Option<&std::path::Path>) -> anyhow::Result<Vec<orgx_peer::rules::Rule>> {
    let Some(path) = path else { return Ok(Vec::new()) };
    let body = std::fs::read(path).with_context(|| format!("cannot read rules file `{}`", path.display()))?;
    let set = RuleSet::from_plan_skills(&body).with_context(|| format!("rules file `{}`", path.display()))?;
    for skipped in &set.skipped {
        tracing::warn!("rules file `{}`: skipped {skipped}", path.display());
    }
    Ok(set.rules)
}

fn main() -> ExitCode {
    // Before anything else: this process may be the step that starts a driver CLI (`tied`).
    if let Some(failed) = orgx_peer::run::tied::main_if_invoked() {
        return failed;
    }
    // The matches as well as the parsed values: they say which settings came from flags or
    // the environment, which the config file must not override.
    let matches = match Cli::command().try_get_matches() {
        Ok(m) => m,
        // A hook that cannot even parse its arguments fails open: exit 2 would make the CLI
        // block the tool call.
        Err(e) if std::env::args_os().nth(1).is_some_and(|a| a == "hook") => {
            eprintln!("orgx-peer hook: {e}");
            return ExitCode::SUCCESS;
        }
        Err(e) => e.exit(),
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // What runs inside the CLI's process tree: stdout is its protocol, so no logging, no
    // runtime, no network.
    match &cli.command {
        Command::Hook { command: HookCommand::PreToolUse } => return orgx_peer::attention::hook::main(),
        Command::Mcp { command: McpCommand::PermissionHost } => return orgx_peer::attention::permission_host::main(),
        Command::CompileComponent => return compile_component(),
        _ => {}
    }
    let mut leaf = &matches;
    while let Some((_, sub)) = leaf.subcommand() {
        leaf = sub;
    }
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, leaf)) {
        Ok(code) => code,
        Err(e)
            if e.downcast_ref::<ConfigError>().is_some()
                || e.downcast_ref::<ConfigFileError>().is_some()
                || matches!(e.downcast_ref::<ServiceError>(), Some(ServiceError::NoKey)) =>
        {
            eprintln!("error: {e:#}");
            no_restart_loop(2)
        }
        Err(e) if e.downcast_ref::<StoreError>().is_some_and(|s| s.fault().restart_cannot_fix()) => {
            eprintln!("error: {e:#}");
            no_restart_loop(3)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Exit `code` (2 or 3: a restart cannot help) — or 0 under launchd, which would restart
/// any other exit in a loop.
fn no_restart_loop(code: u8) -> ExitCode {
    if std::env::var_os(service::MANAGER_ENV).is_some_and(|m| m == "launchd") {
        eprintln!(
            "not restarting: launchd restarts every failed exit, so this one exits 0 (status {code} otherwise); fix the above, then `launchctl kickstart -k gui/$(id -u)/{}`",
            service::LABEL
        );
        return ExitCode::SUCCESS;
    }
    ExitCode::from(code)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ORGX_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.compact().without_time().init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(command: Command, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
    match command {
        Command::Start(args) => {
            let cfg = config_file::resolve(*args, matches)?.into_config()?;
            match orgx_peer::daemon::run(cfg).await? {
                DaemonExit::Signal => Ok(ExitCode::SUCCESS),
                DaemonExit::Refused(why) => {
                    eprintln!("error: the OrgX server refused this peer: {why}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Detect { driver, json, config } => {
            let from_file = config_file::read(config.as_deref(), Source::of(matches, "config"))?.map(|s| s.driver_env).unwrap_or_default();
            let from_file = config_file::unshadowed(from_file, &|name| std::env::var(name).ok().filter(|v| !v.is_empty()));
            let get = |name: &str| orgx_peer::config::driver_setting(&from_file, name);
            let mut found = serde_json::Map::new();
            let mut ready = false;
            for d in orgx_peer::driver::ALL.iter().filter(|d| driver.is_none_or(|id| id == d.id)) {
                let settings = orgx_peer::driver::settings_from_env(d, &get).map_err(|e| ConfigError(e.to_string()))?;
                let det = (d.detect)(&settings.bin, &settings).await;
                ready |= det.authenticated();
                if !json {
                    println!("{}", d.id);
                    println!("  binary     {}", settings.bin.display());
                    println!("  installed  {}", if det.installed { "yes" } else { "no" });
                    println!("  version    {}", det.version.as_deref().unwrap_or("-"));
                    let logged = match det.logged_in {
                        Some(true) => "yes",
                        Some(false) => "no",
                        None => "unknown",
                    };
                    println!("  logged in  {logged}{}", det.auth_method.as_deref().map(|m| format!(" ({m})")).unwrap_or_default());
                    if let Some(hint) = &det.hint {
                        println!("  hint       {hint}");
                    }
                }
                found.insert(d.id.to_string(), serde_json::to_value(&det)?);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&found)?);
            }
            // Success when at least one driver can take a dispatch.
            Ok(if ready { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Status { data_dir, json, watch, interval, config } => {
            let dir = match data_dir {
                Some(d) => Some(d),
                None => config_file::read(config.as_deref(), Source::of(matches, "config"))?
                    .and_then(|s| s.data_dir)
                    .or_else(orgx_peer::config::default_data_dir),
            };
            let dir = dir.ok_or_else(|| ConfigError("set ORGX_PEER_DATA_DIR".into()))?;
            if watch {
                use std::io::IsTerminal;
                let terminal = std::io::stdout().is_terminal();
                orgx_peer::status::watch::run(&dir, Duration::from_secs_f64(interval), &mut std::io::stdout(), terminal).await?;
                return Ok(ExitCode::SUCCESS);
            }
            let snapshot = orgx_peer::status::query(&dir).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&snapshot)?);
            } else {
                print!("{}", orgx_peer::status::render(&snapshot));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay { transcript, driver, rules, run_id, cwd, mapper, matcher } => {
            let rules = load_rules(rules.as_deref())?;
            let limits = Limits::default();
            let sandbox = Sandbox::new(limits)?;
            let components = ActiveComponents::load(&sandbox, driver, mapper.as_deref(), matcher.as_deref())?;
            let opts =
                ReplayOptions { transcript, driver: driver.to_string(), run_id, cwd, max_line_bytes: DEFAULT_MAX_LINE_BYTES, limits };
            use std::io::Write;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let mut write_err = None;
            replay(&components, &rules, &opts, |m| {
                if write_err.is_none() {
                    write_err = writeln!(out, "{}", m.to_json()).err();
                }
            })
            .await?;
            if let Some(e) = write_err {
                return Err(e).context("cannot write to stdout");
            }
            out.flush().context("cannot write to stdout")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Component { command } => component(command).await,
        Command::Config { command } => config(command, matches),
        Command::Service { command } => service_command(command, matches),
        Command::Doctor(args) => {
            let checks = orgx_peer::doctor::run(config_file::resolve(*args, matches)).await;
            print!("{}", orgx_peer::doctor::render(&checks));
            Ok(if orgx_peer::doctor::healthy(&checks) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut completion_command(), "orgx-peer", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()).context("cannot write to stdout")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Hook { command: HookCommand::PreToolUse } => Ok(orgx_peer::attention::hook::main()),
        Command::Mcp { command: McpCommand::PermissionHost } => Ok(orgx_peer::attention::permission_host::main()),
        Command::CompileComponent => Ok(compile_component()),
    }
}

/// The compiler child (`sandbox::compiler`): its errors go to stderr, which the daemon quotes.
fn compile_component() -> ExitCode {
    use orgx_peer::sandbox::compiler::{child_main, CompileError, EXIT_INVALID};
    match child_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(CompileError::Invalid(m)) => {
            eprintln!("{m}");
            ExitCode::from(EXIT_INVALID)
        }
        Err(e @ CompileError::Child(_)) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The command line without its hidden subcommands (`hook`, `mcp`, `compile-component`: run by
/// Claude Code or the peer, not by people): clap_complete, unlike clap_mangen, lists hidden subcommands, and `Command` has no
/// way to remove one, so the root is rebuilt from `Cli`'s own arguments and visible subcommands.
fn completion_command() -> clap::Command {
    let full = Cli::command();
    let mut cmd = clap::Command::new("orgx-peer").version(orgx_peer::build_info::VERSION);
    if let Some(about) = full.get_about() {
        cmd = cmd.about(about.clone());
    }
    cmd.args(full.get_arguments().cloned()).subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
}

fn config(command: ConfigCommand, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Show(args) => {
            let effective = config_file::resolve(*args, matches)?;
            let rows = effective.rows(&|name| std::env::var(name).ok().filter(|v| !v.is_empty()));
            print!("{}", config_file::render(&effective, &rows));
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Check(args) => {
            let effective = config_file::resolve(*args, matches)?;
            let file = effective.file.clone();
            let cfg = effective.into_config()?;
            match file {
                Some(f) => println!("ok: the settings are valid (config file {})", f.display()),
                None => println!("ok: the settings are valid (no config file)"),
            }
            println!("workspace  {}\nserver     {}\ndata dir   {}", cfg.workspace_id, cfg.base_url.as_str(), cfg.data_dir.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn service_command(command: ServiceCommand, matches: &ArgMatches) -> anyhow::Result<ExitCode> {
    match command {
        ServiceCommand::Install { start, force, no_start, manager } => {
            let effective = config_file::resolve(*start, matches)?;
            // Exactly what `start` would refuse is refused before anything is written.
            let cfg = effective.clone().into_config()?;
            let layout = service::Layout::from_env(manager.unwrap_or_else(Manager::native))?;
            let key = service::Key::of(&effective, &cfg.api_key)?;
            let exe = std::env::current_exe().and_then(|p| p.canonicalize()).context("cannot find the path of orgx-peer itself")?;
            let req = service::InstallRequest { layout, key, force, start: !no_start };
            let spec = service::spec(&effective, exe, req.key_file(), &|name| std::env::var(name).ok().filter(|v| !v.is_empty()));
            let done = service::install(&req, &spec, &service::System)?;
            print!("{}", service::report_install(&done, &spec, req.layout.manager));
            Ok(ExitCode::SUCCESS)
        }
        ServiceCommand::Uninstall { no_stop, manager } => {
            let layout = service::Layout::from_env(manager.unwrap_or_else(Manager::native))?;
            let done = service::uninstall(&layout, !no_stop, &service::System)?;
            print!("{}", service::report_uninstall(&done, &layout));
            Ok(ExitCode::SUCCESS)
        }
        ServiceCommand::Status { manager } => {
            let layout = service::Layout::from_env(manager.unwrap_or_else(Manager::native))?;
            let argv = service::status_command(&layout)?;
            println!("unit  {}", layout.unit.display());
            Ok(if service::hand_over(&argv)? { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        ServiceCommand::Logs { follow, lines, manager } => {
            let layout = service::Layout::from_env(manager.unwrap_or_else(Manager::native))?;
            let argv = service::logs_command(&layout, lines, follow)?;
            Ok(if service::hand_over(&argv)? { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}

async fn component(command: ComponentCommand) -> anyhow::Result<ExitCode> {
    match command {
        ComponentCommand::Inspect { component, json } => {
            let bytes = std::fs::read(&component).with_context(|| format!("cannot read `{}`", component.display()))?;
            let limits = Limits::default();
            let sandbox = Sandbox::new(limits)?;
            let name = component.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let inspection = sandbox.inspect(&name, &bytes)?;
            let signature = orgx_peer::inspect::read_signature(&component);
            if json {
                println!("{}", serde_json::to_string_pretty(&orgx_peer::inspect::render_json(&inspection, &limits, &signature))?);
            } else {
                print!("{}", orgx_peer::inspect::render_text(&inspection, &limits, &signature));
            }
            Ok(if inspection.refusal.is_none() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        ComponentCommand::Keygen { out } => {
            let (id, pub_path) = authoring::keygen(&out)?;
            println!("secret key  {} (keep it secret; mode 0600)", out.display());
            println!("public key  {pub_path} (give it to peers: ORGX_TRUSTED_KEYS_FILE)");
            println!("key id      {id}");
            Ok(ExitCode::SUCCESS)
        }
        ComponentCommand::Sign { component, key, version, slot, name } => {
            let envelope = authoring::sign(&component, &key, version, slot, name)?;
            let m = &envelope.manifest;
            println!("signed      {} -> {}", component.display(), orgx_peer::trust::Envelope::sidecar_path(&component).display());
            println!(
                "slot        {}\nname        {}\nversion     {}\nsha256      {}\nkey id      {}",
                m.slot, m.name, m.version, m.sha256, m.key_id
            );
            Ok(ExitCode::SUCCESS)
        }
        ComponentCommand::Verify { component, trusted_keys_file, trusted_keys } => {
            let trusted = TrustedKeys::from_settings(trusted_keys_file.as_deref(), trusted_keys.as_deref())
                .map_err(|e| ConfigError(e.to_string()))?;
            if trusted.is_empty() {
                return Err(ConfigError("no trusted keys: pass --trusted-keys-file (or set ORGX_TRUSTED_KEYS_FILE)".into()).into());
            }
            match authoring::verify(&component, &trusted, orgx_peer::components::registry::DEFAULT_MAX_COMPONENT_BYTES) {
                Ok(e) => {
                    println!(
                        "ok          {} {} v{} signed by {} for slot {}",
                        component.display(),
                        e.manifest.name,
                        e.manifest.version,
                        e.manifest.key_id,
                        e.manifest.slot
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("REFUSED     {}: {e:#}", component.display());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        ComponentCommand::Test { component, driver, transcripts, rules, expect } => {
            let rules = load_rules(rules.as_deref())?;
            let outcome = authoring::test(&component, driver, &transcripts, &rules, expect.as_deref()).await?;
            for line in &outcome.lines {
                println!("{line}");
            }
            match outcome.mismatch {
                None => Ok(ExitCode::SUCCESS),
                Some((n, expected, actual)) => {
                    eprintln!("MISMATCH at message {n}:\n  expected {expected}\n  actual   {actual}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
