//! What an operator types besides `start`: `--version`, shell completions, the man page and
//! `doctor`, through the real binary (doctor against the OrgX stand-in on 127.0.0.1).

mod common;

use std::process::{Command, Output};

use common::peer::KEY;
use orgx_test_support::fake_claude_bin;
use orgx_test_support::fake_orgx::FakeOrgx;
use serde_json::json;

fn peer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orgx-peer")).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn version_names_the_commit_and_the_wit_versions_served() {
    for flag in ["--version", "-V"] {
        let out = peer(&[flag]);
        assert!(out.status.success());
        let text = stdout(&out);
        let want = format!("orgx-peer {} (commit ", env!("CARGO_PKG_VERSION"));
        assert!(text.starts_with(&want), "{text}");
        assert!(text.trim_end().ends_with("; WIT 0.1.0, 0.2.0, 0.3.0)"), "{text}");
    }
}

#[test]
fn completions_and_the_man_page_cover_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let bash = peer(&["completions", "bash"]);
    assert!(bash.status.success());
    let script = dir.path().join("orgx-peer.bash");
    std::fs::write(&script, &bash.stdout).unwrap();
    let syntax = Command::new("bash").arg("-n").arg(&script).output().unwrap();
    assert!(syntax.status.success(), "bash -n: {}", String::from_utf8_lossy(&syntax.stderr));
    let zsh = stdout(&peer(&["completions", "zsh"]));
    assert!(zsh.starts_with("#compdef orgx-peer"), "{}", &zsh[..zsh.len().min(80)]);
    let fish = stdout(&peer(&["completions", "fish"]));
    let man = peer(&["man"]);
    assert!(man.status.success());
    let man = stdout(&man);
    assert!(man.lines().any(|l| l.starts_with(".TH orgx-peer 1")), "a section-1 man page");
    for sub in ["start", "detect", "status", "replay", "component", "doctor", "completions", "config", "service"] {
        assert!(stdout(&bash).contains(sub) && zsh.contains(sub) && fish.contains(sub), "completions know `{sub}`");
        assert!(man.contains(sub), "the man page lists `{sub}`");
    }
}

/// The doctor's environment: the stand-in server, the scripted claude, no other driver.
fn doctor(server: &FakeOrgx, data: &std::path::Path, extra: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_orgx-peer"));
    cmd.arg("doctor")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", data)
        .env("ORGX_API_KEY", KEY)
        .env("ORGX_WORKSPACE_ID", "ws-test")
        .env("ORGX_BASE_URL", server.base_url())
        .env("ORGX_PEER_DATA_DIR", data)
        .env("ORGX_CLAUDE_BIN", fake_claude_bin())
        .env("ORGX_CODEX_BIN", "/nonexistent/codex")
        .env("ORGX_OPENCODE_BIN", "/nonexistent/opencode");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn line<'a>(report: &'a str, name: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.split_once(' ').is_some_and(|(_, rest)| rest.starts_with(&format!("{name} "))))
        .unwrap_or_else(|| panic!("no `{name}` line in\n{report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_each_thing_and_fails_on_what_a_dispatch_needs() {
    let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
    let data = tempfile::tempdir().unwrap();

    let ok = doctor(&server, data.path(), &[]);
    let report = stdout(&ok);
    assert_eq!(ok.status.code(), Some(0), "{report}");
    assert!(line(&report, "driver claude_code").starts_with("✓") && line(&report, "driver claude_code").contains("2.1.330"), "{report}");
    assert!(line(&report, "driver codex").starts_with("!"), "a missing optional driver is a note, not a failure: {report}");
    assert!(line(&report, "drivers").contains("can run: claude_code"), "{report}");
    for name in ["settings", "data dir", "server", "components"] {
        assert!(line(&report, name).starts_with("✓"), "{name}: {report}");
    }
    assert!(server.calls("/api/v1/licenses").is_empty(), "doctor records no activation");

    let wrong = "oxk_wrong_0000000000";
    let refused = doctor(&server, data.path(), &[("ORGX_API_KEY", wrong)]);
    let report = stdout(&refused);
    assert_eq!(refused.status.code(), Some(1), "{report}");
    assert!(line(&report, "server").starts_with("✗") && line(&report, "server").contains("refused the key"), "{report}");
    assert!(report.contains("fix: check ORGX_API_KEY"), "{report}");
    assert!(!report.contains(wrong) && !String::from_utf8_lossy(&refused.stderr).contains(wrong), "the key is never printed");

    let no_driver = doctor(&server, data.path(), &[("ORGX_CLAUDE_BIN", "/nonexistent/claude")]);
    let report = stdout(&no_driver);
    assert_eq!(no_driver.status.code(), Some(1), "{report}");
    assert!(line(&report, "drivers").starts_with("✗"), "{report}");

    let no_key = doctor(&server, data.path(), &[("ORGX_API_KEY", "")]);
    let report = stdout(&no_key);
    assert_eq!(no_key.status.code(), Some(1), "{report}");
    assert!(line(&report, "settings").contains("ORGX_API_KEY is not set"), "{report}");
}

// ---------------------------------------------------------------------------------------
// The config file and the service, each in a temporary HOME whose path has a space and a
// `%` in it (both need quoting in a systemd unit).

/// A temporary HOME and the environment every command of these tests runs with.
struct Home {
    _dir: tempfile::TempDir,
    home: std::path::PathBuf,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home dir 100%");
        std::fs::create_dir_all(home.join(".config/orgx-peer")).unwrap();
        Home { _dir: dir, home }
    }

    fn config_file(&self) -> std::path::PathBuf {
        self.home.join(".config/orgx-peer/config.toml")
    }

    fn unit(&self) -> std::path::PathBuf {
        self.home.join(".config/systemd/user/orgx-peer.service")
    }

    fn key_file(&self) -> std::path::PathBuf {
        self.home.join(".config/orgx-peer/service.key")
    }

    fn plist(&self) -> std::path::PathBuf {
        self.home.join("Library/LaunchAgents/com.useorgx.orgx-peer.plist")
    }

    /// `orgx-peer ARGS` with only HOME, `PATH=/usr/bin:/bin` and `env` set.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_orgx-peer"));
        cmd.args(args).env_clear().env("HOME", &self.home).env("PATH", "/usr/bin:/bin");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// Every file under HOME (directories left out), relative to it.
    fn files(&self) -> Vec<String> {
        fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, root, out);
                } else {
                    out.push(p.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.home, &self.home, &mut out);
        out.sort();
        out
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The `config show` line of `key`: (value, from).
fn shown(report: &str, key: &str) -> (String, String) {
    let line = report.lines().find(|l| l.split_whitespace().next() == Some(key)).unwrap_or_else(|| panic!("no `{key}` line in\n{report}"));
    let mut words = line.split_whitespace().skip(1);
    let value = words.next().unwrap_or_default().to_string();
    (value, words.collect::<Vec<_>>().join(" "))
}

#[test]
fn config_show_names_where_each_setting_came_from() {
    let h = Home::new();
    std::fs::write(
        h.config_file(),
        "workspace_id = \"ws-file\"\nbase_url = \"http://file.invalid:1\"\nmax_concurrent_runs = 4\nplugin_id = \"from-file\"\n\
         [driver.codex]\nmodel = \"gpt-5.5\"\nsandbox = \"read-only\"\n",
    )
    .unwrap();
    let env = [("ORGX_API_KEY", KEY), ("ORGX_BASE_URL", "http://127.0.0.1:9"), ("ORGX_CODEX_SANDBOX", "danger-full-access")];
    let out = h.run(&["config", "show", "--max-concurrent-runs", "5"], &env);
    let report = stdout(&out);
    assert!(out.status.success(), "{report}{}", stderr(&out));
    let first = report.lines().next().unwrap();
    assert_eq!(first, format!("config file  {} (the default location)", h.config_file().display()));
    for (key, value, from) in [
        ("api_key", "[redacted]", "env ORGX_API_KEY"),
        ("workspace_id", "ws-file", "file"),
        ("base_url", "http://127.0.0.1:9", "env ORGX_BASE_URL"),
        ("max_concurrent_runs", "5", "flag --max-concurrent-runs"),
        ("plugin_id", "from-file", "file"),
        ("ping_interval_ms", "10000", "default"),
        ("api_key_file", "-", "default"),
        ("driver.codex.model", "gpt-5.5", "file"),
        ("driver.codex.sandbox", "danger-full-access", "env ORGX_CODEX_SANDBOX"),
        ("driver.claude_code.bin", "claude", "default"),
    ] {
        assert_eq!(shown(&report, key), (value.to_string(), from.to_string()), "{key} in\n{report}");
    }
    assert!(!report.contains(KEY) && !stderr(&out).contains(KEY), "the key is never printed");

    // `--config` and `ORGX_CONFIG` name another file; the header says which named it.
    let other = h.home.join("other.toml");
    std::fs::write(&other, "workspace_id = \"ws-other\"\n").unwrap();
    let by_flag = stdout(&h.run(&["config", "show", "--config", other.to_str().unwrap()], &[]));
    assert!(by_flag.starts_with(&format!("config file  {} (--config)", other.display())), "{by_flag}");
    assert_eq!(shown(&by_flag, "workspace_id").0, "ws-other");
    let by_env = stdout(&h.run(&["config", "show"], &[("ORGX_CONFIG", other.to_str().unwrap())]));
    assert!(by_env.starts_with(&format!("config file  {} (ORGX_CONFIG)", other.display())), "{by_env}");
    assert_eq!(shown(&by_env, "api_key"), ("-".to_string(), "default".to_string()));

    // `detect` (and `doctor`) look for the CLIs where the file says.
    std::fs::write(h.config_file(), "[driver.claude_code]\nbin = \"/nonexistent/claude-from-file\"\n").unwrap();
    let detect = stdout(&h.run(&["detect", "--driver", "claude_code"], &[]));
    assert!(detect.contains("binary     /nonexistent/claude-from-file"), "{detect}");
}

#[test]
fn config_check_validates_without_starting_and_names_the_file_and_key() {
    use std::os::unix::fs::PermissionsExt;
    let h = Home::new();
    let key_file = h.home.join("my key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let data = h.home.join("data");
    std::fs::write(h.config_file(), format!("workspace_id = \"ws-1\"\napi_key_file = {:?}\n", key_file.to_str().unwrap())).unwrap();
    let env = [("ORGX_PEER_DATA_DIR", data.to_str().unwrap())];
    let ok = h.run(&["config", "check"], &env);
    assert_eq!(ok.status.code(), Some(0), "{}{}", stdout(&ok), stderr(&ok));
    assert!(stdout(&ok).starts_with(&format!("ok: the settings are valid (config file {})", h.config_file().display())), "{}", stdout(&ok));
    assert!(!data.exists(), "check starts nothing: the data dir is not even created");

    let path = h.config_file().display().to_string();
    // (file text, words the error must have)
    for (text, words) in [
        ("workspace_id = \"ws-1\"\nmax_concurent_runs = 3\n".to_string(), vec!["unknown key `max_concurent_runs`", path.as_str()]),
        (
            "workspace_id = \"ws-1\"\napi_key = \"oxk_inline_secret_1234\"\n".into(),
            vec!["`api_key` is not allowed", "api_key_file", path.as_str()],
        ),
        (
            format!("workspace_id = \"ws-1\"\napi_key_file = {:?}\nmax_concurrent_runs = 0\n", key_file.to_str().unwrap()),
            vec!["must be at least 1", "`max_concurrent_runs` in", path.as_str()],
        ),
        ("max_concurrent_runs = \"many\"\n".into(), vec!["max_concurrent_runs", path.as_str()]),
        ("[driver.cursor]\nbin = \"cursor\"\n".into(), vec!["unknown key `driver.cursor`", "claude_code, codex, opencode"]),
        ("workspace_id = \n".into(), vec![path.as_str()]),
    ] {
        std::fs::write(h.config_file(), &text).unwrap();
        let out = h.run(&["config", "check"], &env);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        for w in words {
            assert!(err.contains(w), "{text}: no `{w}` in {err}");
        }
        assert!(!err.contains("oxk_inline_secret_1234"), "an inline key is never repeated: {err}");
    }

    // The same validation as `start`: a key file others can read is refused.
    std::fs::write(h.config_file(), format!("workspace_id = \"ws-1\"\napi_key_file = {:?}\n", key_file.to_str().unwrap())).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = h.run(&["config", "check"], &env);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("readable by other users") && !stderr(&out).contains(KEY), "{}", stderr(&out));

    // A named file must exist.
    let missing = h.home.join("nope.toml");
    let out = h.run(&["config", "check", "--config", missing.to_str().unwrap()], &env);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(&format!("`{}` (from --config) does not exist", missing.display())), "{}", stderr(&out));
    let out = h.run(&["start"], &[("ORGX_CONFIG", missing.to_str().unwrap())]);
    assert_eq!(out.status.code(), Some(2), "start reads the same file: {}", stderr(&out));
    assert!(stderr(&out).contains("(from ORGX_CONFIG) does not exist"), "{}", stderr(&out));
    // Under the launchd agent the same refusal exits 0, so KeepAlive does not restart it in a
    // loop, and says so.
    let out = h.run(&["start"], &[("ORGX_CONFIG", missing.to_str().unwrap()), ("ORGX_SERVICE_MANAGER", "launchd")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("(from ORGX_CONFIG) does not exist"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not restarting: launchd restarts every failed exit, so this one exits 0 (status 2 otherwise)"),
        "{}",
        stderr(&out)
    );
}

/// `systemd-analyze --user verify UNIT` with a private runtime dir (it needs one, and no
/// running systemd); passing means exit 0 *and* no warning (unknown keys only warn).
fn verify_unit(h: &Home, unit: &std::path::Path) {
    let tool = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].into_iter().find(|p| std::path::Path::new(p).exists()).unwrap_or_else(|| {
        panic!("systemd-analyze is not installed, so the generated unit cannot be verified: `apt-get install systemd` (it needs no running systemd)")
    });
    let runtime = tempfile::tempdir().unwrap();
    let out = Command::new(tool)
        .args(["--user", "verify"])
        .arg(unit)
        .env("HOME", &h.home)
        .env("XDG_RUNTIME_DIR", runtime.path())
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
        "systemd-analyze --user verify {}: {}{}\n{}",
        unit.display(),
        stdout(&out),
        stderr(&out),
        std::fs::read_to_string(unit).unwrap()
    );
}

fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

const SERVICE_ENV: [(&str, &str); 2] = [("ORGX_API_KEY", KEY), ("ORGX_WORKSPACE_ID", "ws-svc")];

#[test]
fn service_install_writes_a_unit_that_systemd_analyze_verifies() {
    let h = Home::new();
    std::fs::write(h.config_file(), "base_url = \"http://127.0.0.1:9\"\n").unwrap();
    let out = h.run(&["service", "install", "--manager", "systemd", "--no-start"], &SERVICE_ENV);
    let report = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{report}{}", stderr(&out));
    assert!(report.contains(&format!("unit      {} (written)", h.unit().display())), "{report}");
    assert!(report.contains("not started (as asked); to start it, run:\n  systemctl --user daemon-reload\n"), "{report}");
    let unit = std::fs::read_to_string(h.unit()).unwrap();
    // systemctl 252 is on this PATH: the key travels as a credential.
    let escaped_home = h.home.display().to_string().replace('%', "%%");
    assert!(unit.contains(&format!("\nLoadCredential=orgx-api-key:{escaped_home}/.config/orgx-peer/service.key\n")), "{unit}");
    assert!(unit.contains("\nEnvironment=ORGX_API_KEY_FILE=%d/orgx-api-key\n"), "{unit}");
    assert!(
        unit.contains(&format!("start --config \"{escaped_home}/.config/orgx-peer/config.toml\"\n")),
        "the unit points at the file: {unit}"
    );
    assert!(unit.contains("\nEnvironment=\"ORGX_WORKSPACE_ID=ws-svc\"\n"), "a setting from the environment is carried: {unit}");
    assert!(!unit.contains("127.0.0.1:9"), "the file's settings stay in the file: {unit}");
    assert!(
        unit.contains("\nTimeoutStopSec=30s\n") && unit.contains("\nKillMode=mixed\n") && unit.contains("\nRestart=on-failure\n"),
        "{unit}"
    );
    assert_eq!(mode(&h.key_file()), 0o600);
    assert_eq!(std::fs::read_to_string(h.key_file()).unwrap(), format!("{KEY}\n"));
    assert!(!unit.contains(KEY) && !report.contains(KEY) && !stderr(&out).contains(KEY), "the key is only in the key file");
    verify_unit(&h, &h.unit());

    // Without systemctl (an older or absent systemd): the key file's path itself, and the
    // commands to run later. The unit differs, so it takes --force.
    let no_systemctl = h.home.join("empty-bin");
    std::fs::create_dir_all(&no_systemctl).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_orgx-peer"));
    cmd.args(["service", "install", "--manager", "systemd", "--force"]).env_clear().env("HOME", &h.home).env("PATH", &no_systemctl);
    let out = cmd.envs(SERVICE_ENV).output().unwrap();
    let report = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{report}{}", stderr(&out));
    assert!(
        report.contains("(replaced)") && report.contains("not started: the service manager is not reachable here (cannot run `systemctl`"),
        "{report}"
    );
    assert!(report.contains("  systemctl --user enable orgx-peer.service\n  systemctl --user restart orgx-peer.service\n"), "{report}");
    let unit = std::fs::read_to_string(h.unit()).unwrap();
    assert!(
        !unit.contains("LoadCredential")
            && unit.contains(&format!("\nEnvironment=\"ORGX_API_KEY_FILE={escaped_home}/.config/orgx-peer/service.key\"\n")),
        "{unit}"
    );
    assert!(!unit.contains(KEY));
    verify_unit(&h, &h.unit());
}

#[test]
fn service_install_refuses_a_different_unit_or_key_without_force() {
    let h = Home::new();
    let install = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["service", "install", "--manager", "systemd", "--no-start"];
        args.extend(extra);
        h.run(&args, env)
    };
    assert_eq!(install(&[], &SERVICE_ENV).status.code(), Some(0));
    let first = std::fs::read(h.unit()).unwrap();
    let same = install(&[], &SERVICE_ENV);
    assert_eq!(same.status.code(), Some(0), "identical: a no-op success");
    assert!(stdout(&same).contains("(unchanged)") && stdout(&same).contains("(mode 0600, unchanged)"), "{}", stdout(&same));

    let other = install(&["--max-concurrent-runs", "3"], &SERVICE_ENV);
    assert_eq!(other.status.code(), Some(1), "{}", stdout(&other));
    let err = stderr(&other);
    assert!(err.contains(&format!("`{}` exists and differs", h.unit().display())) && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(h.unit()).unwrap(), first, "a refused install changes nothing");
    let forced = install(&["--max-concurrent-runs", "3", "--force"], &SERVICE_ENV);
    assert_eq!(forced.status.code(), Some(0), "{}", stderr(&forced));
    assert!(stdout(&forced).contains("(replaced)"));
    assert!(std::fs::read_to_string(h.unit()).unwrap().contains("\nEnvironment=\"ORGX_MAX_CONCURRENT_RUNS=3\"\n"));

    // A new key with the same settings: the unit is the same, the key file is not.
    let new_key = "oxk_rotated_0123456789";
    let env = [("ORGX_API_KEY", new_key), ("ORGX_WORKSPACE_ID", "ws-svc")];
    let rotated = install(&["--max-concurrent-runs", "3"], &env);
    assert_eq!(rotated.status.code(), Some(1));
    assert!(stderr(&rotated).contains(&format!("`{}` exists and differs", h.key_file().display())), "{}", stderr(&rotated));
    assert_eq!(std::fs::read_to_string(h.key_file()).unwrap(), format!("{KEY}\n"));
    let rotated = install(&["--max-concurrent-runs", "3", "--force"], &env);
    assert_eq!(rotated.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(h.key_file()).unwrap(), format!("{new_key}\n"));
    assert_eq!(mode(&h.key_file()), 0o600);
    for o in [&other, &rotated] {
        assert!(!stdout(o).contains(new_key) && !stderr(o).contains(new_key) && !stderr(o).contains(KEY));
    }

    // Bad settings are refused before anything is written, as `start` refuses them (exit 2).
    let bad = install(&["--force"], &[("ORGX_API_KEY", KEY)]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("ORGX_WORKSPACE_ID is not set"), "{}", stderr(&bad));
    assert!(std::fs::read_to_string(h.unit()).unwrap().contains("ORGX_MAX_CONCURRENT_RUNS=3"), "the installed unit is untouched");
}

#[test]
fn service_install_and_uninstall_round_trip_in_a_temporary_home() {
    let h = Home::new();
    std::fs::write(h.config_file(), "workspace_id = \"ws-file\"\n").unwrap();
    let before = h.files();
    let out = h.run(&["service", "install", "--manager", "systemd", "--no-start"], &[("ORGX_API_KEY", KEY)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(h.unit().is_file() && h.key_file().is_file());

    let out = h.run(&["service", "uninstall", "--manager", "systemd", "--no-stop"], &[]);
    let report = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{report}{}", stderr(&out));
    assert!(
        report.contains(&format!("removed   {}", h.unit().display())) && report.contains(&format!("removed   {}", h.key_file().display())),
        "{report}"
    );
    assert!(report.contains("  systemctl --user disable --now orgx-peer.service\n  systemctl --user daemon-reload\n"), "{report}");
    assert_eq!(h.files(), before, "uninstall leaves HOME as install found it");
    let again = h.run(&["service", "uninstall", "--manager", "systemd", "--no-stop"], &[]);
    assert_eq!(again.status.code(), Some(0));
    assert!(stdout(&again).starts_with("nothing to remove"), "{}", stdout(&again));
    let status = h.run(&["service", "status", "--manager", "systemd"], &[]);
    assert_eq!(status.status.code(), Some(1));
    assert!(stderr(&status).contains("not installed") && stderr(&status).contains("orgx-peer service install"), "{}", stderr(&status));

    // A key file of the user's own is named by the unit, not copied, and survives uninstall.
    use std::os::unix::fs::PermissionsExt;
    let own = h.home.join(".config/orgx-peer/my.key");
    std::fs::write(&own, format!("{KEY}\n")).unwrap();
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(h.config_file(), "workspace_id = \"ws-file\"\napi_key_file = \"my.key\"\n").unwrap();
    let out = h.run(&["service", "install", "--manager", "systemd", "--no-start"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("key file  {} (yours; the service reads it there)", own.display())), "{}", stdout(&out));
    assert!(!h.key_file().exists());
    let unit = std::fs::read_to_string(h.unit()).unwrap();
    assert!(unit.contains(&format!("LoadCredential=orgx-api-key:{}", own.display().to_string().replace('%', "%%"))), "{unit}");
    verify_unit(&h, &h.unit());
    assert_eq!(h.run(&["service", "uninstall", "--manager", "systemd", "--no-stop"], &[]).status.code(), Some(0));
    assert!(own.is_file() && !h.unit().exists());
}

#[test]
fn the_launchd_agent_parses_as_a_property_list_and_round_trips() {
    let h = Home::new();
    let before = h.files();
    let out = h.run(&["service", "install", "--manager", "launchd", "--no-start"], &SERVICE_ENV);
    let report = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{report}{}", stderr(&out));
    assert!(report.contains("  launchctl bootstrap gui/"), "{report}");
    let text = std::fs::read_to_string(h.plist()).unwrap();
    assert!(!text.contains(KEY) && !report.contains(KEY), "the key is only in the key file");
    assert_eq!(mode(&h.key_file()), 0o600);

    let python = Command::new("python3")
        .args(["-c", "import json, plistlib, sys; print(json.dumps(plistlib.load(open(sys.argv[1], 'rb'))))"])
        .arg(h.plist())
        .output()
        .unwrap_or_else(|e| panic!("python3 (for plistlib) cannot run: {e}; install python3 to check the plist"));
    assert!(python.status.success(), "plistlib refused the plist: {}\n{text}", stderr(&python));
    let plist: serde_json::Value = serde_json::from_slice(&python.stdout).unwrap();
    assert_eq!(plist["Label"], "com.useorgx.orgx-peer");
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_orgx-peer")).unwrap();
    assert_eq!(plist["ProgramArguments"], json!([exe.to_str().unwrap(), "start"]), "no config file: plain start");
    let env = &plist["EnvironmentVariables"];
    assert_eq!(env["ORGX_API_KEY_FILE"], h.key_file().to_str().unwrap());
    assert_eq!(env["ORGX_WORKSPACE_ID"], "ws-svc");
    assert_eq!(env["PATH"], "/usr/bin:/bin");
    assert!(env.get("ORGX_API_KEY").is_none());
    assert_eq!(plist["KeepAlive"], json!({"SuccessfulExit": false}));
    assert_eq!((plist["RunAtLoad"].clone(), plist["ExitTimeOut"].clone()), (json!(true), json!(30)));
    let log = h.home.join("Library/Logs/orgx-peer/orgx-peer.log");
    assert_eq!(plist["StandardErrorPath"], log.to_str().unwrap());
    assert!(log.parent().unwrap().is_dir(), "launchd does not make the log directory; install does");

    let out = h.run(&["service", "uninstall", "--manager", "launchd", "--no-stop"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("  launchctl bootout gui/"), "{}", stdout(&out));
    assert_eq!(h.files(), before);
}

/// A run kept in flight: the replayed transcript's lines come 2 s apart, so its first step
/// is mapped and the run is still going while `status` looks at it.
async fn peer_with_a_run_in_flight(server: &FakeOrgx, repo: &std::path::Path) -> common::peer::Peer {
    use common::peer::{connected, dispatch, transcript, Peer, WAIT};
    let t = transcript("success-tools.ndjson");
    let peer =
        Peer::start(server, &[("FAKE_CLAUDE_MODE", "replay"), ("FAKE_CLAUDE_TRANSCRIPT", t.as_str()), ("FAKE_CLAUDE_DELAY_MS", "2000")]);
    connected(server).await;
    assert!(server.send_json(dispatch("run-watched", "k-watched", repo, None)));
    server.wait_until("the run's first step", WAIT, |s| s.frames_for("run-watched").iter().any(|f| f["kind"] == "task.step")).await;
    peer
}

/// Read `fd` (a pty master or a pipe) until `done` holds for what was read, or 30 s.
fn read_until(fd: std::os::fd::OwnedFd, done: impl Fn(&str) -> bool + Send + 'static) -> (String, std::os::fd::OwnedFd) {
    use std::io::Read;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut file = std::fs::File::from(fd);
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let t0 = std::time::Instant::now();
        while !done(&String::from_utf8_lossy(&seen)) && t0.elapsed() < std::time::Duration::from_secs(30) {
            match file.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        let _ = tx.send((String::from_utf8_lossy(&seen).into_owned(), std::os::fd::OwnedFd::from(file)));
    });
    rx.recv().unwrap()
}

fn interrupt_and_wait(child: &mut std::process::Child) -> std::process::ExitStatus {
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let t0 = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(t0.elapsed() < std::time::Duration::from_secs(15), "`status --watch` ignored Ctrl-C");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_redraws_in_place_under_a_terminal() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
    let repo = tempfile::tempdir().unwrap();
    let peer = peer_with_a_run_in_flight(&server, repo.path()).await;

    // A pseudo-terminal 60 columns wide: the watch must see a terminal and fit its width.
    let (mut master, mut slave) = (0, 0);
    let size = libc::winsize { ws_row: 40, ws_col: 60, ws_xpixel: 0, ws_ypixel: 0 };
    assert_eq!(unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &size) }, 0);
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut child = Command::new(env!("CARGO_BIN_EXE_orgx-peer"))
        .args(["status", "--watch", "--interval", "0.2", "--data-dir"])
        .arg(peer.data.path())
        .stdout(slave.try_clone().unwrap())
        .stdin(slave)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Three frames, each homing the cursor and clearing below itself.
    let (screen, master) = read_until(master, |s| s.matches("\x1b[J").count() >= 3);
    assert!(screen.starts_with("\x1b[?25l\x1b[2J\x1b[H"), "hides the cursor and clears once: {screen:?}");
    assert!(screen.matches("\x1b[H").count() >= 3, "every frame redraws from the top: {screen:?}");
    assert_eq!(screen.matches("\x1b[2J").count(), 1, "no full clear per frame (it flashes): {screen:?}");
    // The terminal turns each `\n` into `\r\n` (ONLCR) on top of the frame's own `\r\n`.
    let last = screen.rsplit("\x1b[H").next().unwrap();
    let lines: Vec<&str> = last
        .split('\n')
        .map(|l| l.trim_end_matches('\r').trim_end_matches('\r').trim_end_matches("\x1b[K").trim_end_matches("\x1b[J"))
        .collect();
    assert!(lines.iter().all(|l| l.chars().count() <= 60), "lines fit 60 columns: {lines:#?}");
    assert!(lines.iter().any(|l| l.starts_with("connection   connected  protocol orgx.v3")), "{lines:#?}");
    assert!(lines.contains(&"runs         1 in flight"), "{lines:#?}");
    let run = lines.iter().find(|l| l.starts_with("  run-watched  claude_code  ")).unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(run.contains(" line(s)  last step: ") && !run.ends_with("last step: -"), "{run}");
    assert!(lines.iter().any(|l| l.starts_with("outbox       ")), "{lines:#?}");
    assert!(lines.iter().any(|l| l.starts_with("component    mapper:claude_code claude-code")), "{lines:#?}");
    assert!(lines.iter().any(|l| l.starts_with("license      last ok")), "{lines:#?}");

    // Ctrl-C: exit 0, the cursor shown again.
    let status = interrupt_and_wait(&mut child);
    let (rest, _) = read_until(master, |s| s.contains("\x1b[?25h"));
    assert!(status.success(), "{status:?}");
    assert!(rest.contains("\x1b[?25h"), "the cursor is shown again: {rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_writes_plain_text_to_a_pipe_and_outlives_the_daemon() {
    use std::os::fd::OwnedFd;
    let server = FakeOrgx::start(KEY, json!({"skills": []})).await;
    let repo = tempfile::tempdir().unwrap();
    let mut peer = peer_with_a_run_in_flight(&server, repo.path()).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_orgx-peer"))
        .args(["status", "--watch", "--interval", "0.2", "--data-dir"])
        .arg(peer.data.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = OwnedFd::from(child.stdout.take().unwrap());
    let (text, out) = read_until(out, |s| s.matches("--- orgx-peer status --watch").count() >= 2);
    assert!(!text.contains('\x1b'), "no escape sequences in a pipe: {text:?}");
    assert!(text.contains("\nconnection   connected"), "{text}");
    assert!(text.contains("\n  run-watched  claude_code  "), "{text}");

    // The daemon stops; the watch says so and keeps asking.
    peer.signal(libc::SIGTERM);
    assert!(peer.wait_exit(common::peer::WAIT).is_some());
    let (after, _) = read_until(out, |s| s.contains("no orgx-peer is running"));
    assert!(after.contains("no orgx-peer is running") && after.contains("(asking again every 200 ms)"), "{after}");
    assert!(interrupt_and_wait(&mut child).success());
}
