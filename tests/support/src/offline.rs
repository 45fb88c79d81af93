//! Everything it takes to run the real Codex and opencode CLIs with nothing reachable but
//! 127.0.0.1: a scratch home per CLI with every offline setting the specs name
//! (`codex-exec-json.md`, `opencode-run-json.md`), pointed at a loopback stand-in, and a
//! private network namespace with only loopback up, as the second, independent fence.
//!
//! Network namespaces belong to a thread, and a thread's children and new threads inherit
//! its namespace. So [`run_isolated`] enters the namespace on a fresh thread and only then
//! builds the tokio runtime, so that the stand-ins and every CLI it spawns share one
//! loopback, while the test harness's own threads stay where they were.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How to start one CLI offline: `program args… <prompt>` with exactly `env` (plus `PATH`).
#[derive(Debug, Clone)]
pub struct OfflineCli {
    pub program: PathBuf,
    /// Everything before the prompt.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl OfflineCli {
    /// The command in `cwd`, with a cleared environment (so no stray credential or proxy
    /// setting of the developer's leaks in), stdin from /dev/null (both CLIs read a non-TTY
    /// stdin to EOF before starting) and stdout/stderr piped.
    pub fn command(&self, cwd: &Path, prompt: &str) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).arg(prompt).current_dir(cwd).env_clear();
        cmd.env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()));
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    }
}

fn node_bin(name: &str) -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../node/node_modules/.bin").join(name);
    assert!(bin.exists(), "{} missing: run `npm ci --prefix tests/node` (scripts/test does)", bin.display());
    bin
}

/// The pinned `claude` (npm `@anthropic-ai/claude-code`) of `tests/node`.
pub fn claude_bin() -> PathBuf {
    node_bin("claude")
}

/// The pinned `codex` (npm `@openai/codex`) of `tests/node`.
pub fn codex_bin() -> PathBuf {
    node_bin("codex")
}

/// The pinned `opencode` (npm `opencode-ai`) of `tests/node`.
pub fn opencode_bin() -> PathBuf {
    node_bin("opencode")
}

fn mkdir(p: &Path) -> String {
    std::fs::create_dir_all(p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
    p.display().to_string()
}

/// The offline switches of Codex as `-c` overrides, for runs whose `CODEX_HOME` is not ours
/// (the peer's). They repeat what [`codex`] writes into `config.toml`.
pub const CODEX_OFFLINE_OVERRIDES: [&str; 5] = [
    "features.plugins=false",
    "features.remote_plugin=false",
    "features.apps=false",
    "check_for_update_on_startup=false",
    "analytics.enabled=false",
];

/// The key the stand-ins expect; never a real one.
pub const TEST_KEY: &str = "sk-test";

/// Codex in `scratch`: `HOME=scratch/home`, `CODEX_HOME=scratch/home/.codex` with a
/// `config.toml` whose provider `fake` is the Responses stand-in at `base_url`, and
/// `TMPDIR=scratch/tmp` (outside `CODEX_HOME`, else the CLI refuses its helper binaries).
pub fn codex(scratch: &Path, base_url: &str) -> OfflineCli {
    let home = scratch.join("home");
    let codex_home = home.join(".codex");
    mkdir(&codex_home);
    // Without `plugins`/`remote_plugin`/`apps` off, every start runs
    // `git ls-remote https://github.com/openai/plugins.git`; `gpt-5.5` is a slug whose
    // metadata the CLI bundles, so it offers the full tool set (`apply_patch` included).
    let config = format!(
        r#"model = "gpt-5.5"
model_provider = "fake"
check_for_update_on_startup = false

[model_providers.fake]
name = "fake"
base_url = "{base_url}"
env_key = "OPENAI_API_KEY"
wire_api = "responses"

[features]
plugins = false
remote_plugin = false
apps = false

[analytics]
enabled = false
"#
    );
    std::fs::write(codex_home.join("config.toml"), config).unwrap();
    let mut args: Vec<String> = CODEX_OFFLINE_OVERRIDES.iter().flat_map(|o| ["-c".to_string(), o.to_string()]).collect();
    args.extend(["exec", "--json", "--skip-git-repo-check", "-s", "workspace-write"].map(String::from));
    let env = [
        ("HOME", mkdir(&home)),
        ("TMPDIR", mkdir(&scratch.join("tmp"))),
        ("CODEX_HOME", mkdir(&codex_home)),
        ("OPENAI_API_KEY", TEST_KEY.into()),
        ("TERM", "dumb".into()),
        ("LANG", "C.UTF-8".into()),
    ];
    OfflineCli { program: codex_bin(), args, env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect() }
}

/// The variables that keep opencode off the network (update check, models.dev catalogue,
/// default plugins, LSP downloads, sharing, Claude Code's files).
pub const OPENCODE_DISABLE: [&str; 6] = [
    "OPENCODE_DISABLE_AUTOUPDATE",
    "OPENCODE_DISABLE_MODELS_FETCH",
    "OPENCODE_DISABLE_DEFAULT_PLUGINS",
    "OPENCODE_DISABLE_LSP_DOWNLOAD",
    "OPENCODE_DISABLE_SHARE",
    "OPENCODE_DISABLE_CLAUDE_CODE",
];

/// opencode's model id at the stand-in, as `-m` takes it.
pub const OPENCODE_MODEL: &str = "fake/fake-coder";

/// Stops opencode's background `npm install @opencode-ai/plugin` in a config directory: it
/// runs whenever `node_modules/` is missing or the lock lacks a dependency of package.json.
pub fn stub_opencode_packages(dir: &Path) {
    mkdir(&dir.join("node_modules"));
    std::fs::write(dir.join("package.json"), r#"{"dependencies":{"@opencode-ai/plugin":"1.18.33"}}"#).unwrap();
    std::fs::write(
        dir.join("package-lock.json"),
        r#"{"lockfileVersion":3,"packages":{"":{"dependencies":{"@opencode-ai/plugin":"1.18.33"}}}}"#,
    )
    .unwrap();
}

/// opencode in `scratch`: the four XDG directories under `scratch/home`, an `opencode.json`
/// whose provider `fake` (model and `small_model`, which writes the session title) is the
/// Chat Completions stand-in at `base_url`, the package stubs, and the six
/// `OPENCODE_DISABLE_*`. A project `.opencode/` in the working directory needs
/// [`stub_opencode_packages`] too.
pub fn opencode(scratch: &Path, base_url: &str) -> OfflineCli {
    let home = scratch.join("home");
    let config_dir = home.join(".config/opencode");
    mkdir(&config_dir);
    // `cost` makes `step_finish.cost` non-zero; the model id must not start with `gpt-`, or
    // opencode offers `apply_patch` instead of `write` and `edit`.
    let config = serde_json::json!({
        "$schema": "https://opencode.ai/config.json",
        "model": OPENCODE_MODEL,
        "small_model": OPENCODE_MODEL,
        "autoupdate": false,
        "share": "disabled",
        "provider": {"fake": {
            "npm": "@ai-sdk/openai-compatible",
            "name": "Fake OpenAI-compatible",
            "options": {"baseURL": base_url, "apiKey": TEST_KEY},
            "models": {"fake-coder": {
                "name": "Fake Coder", "tool_call": true, "reasoning": false,
                "limit": {"context": 128000, "output": 8192},
                "cost": {"input": 1.25, "output": 10, "cache_read": 0.125}
            }}
        }}
    });
    std::fs::write(config_dir.join("opencode.json"), serde_json::to_string_pretty(&config).unwrap()).unwrap();
    stub_opencode_packages(&config_dir);
    let mut env = vec![
        ("HOME", mkdir(&home)),
        ("TMPDIR", mkdir(&scratch.join("tmp"))),
        ("XDG_CONFIG_HOME", mkdir(&home.join(".config"))),
        ("XDG_DATA_HOME", mkdir(&home.join(".local/share"))),
        ("XDG_CACHE_HOME", mkdir(&home.join(".cache"))),
        ("XDG_STATE_HOME", mkdir(&home.join(".local/state"))),
        ("TERM", "dumb".into()),
        ("LANG", "C.UTF-8".into()),
    ];
    env.extend(OPENCODE_DISABLE.iter().map(|k| (*k, "1".to_string())));
    let args = ["run", "--format", "json", "-m", OPENCODE_MODEL].map(String::from).to_vec();
    OfflineCli { program: opencode_bin(), args, env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect() }
}

/// Moves the **calling thread** into a new network namespace and brings its loopback up.
/// Returns false, leaving the thread where it was, when that is not permitted (no root, no
/// `CAP_SYS_ADMIN`); callers still apply every offline setting either way.
pub fn enter_loopback_netns() -> bool {
    // SAFETY: plain syscalls on descriptors this function owns; `ifreq` is plain data.
    unsafe {
        let original = libc::open(c"/proc/thread-self/ns/net".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if libc::unshare(libc::CLONE_NEWNET) != 0 {
            if original >= 0 {
                libc::close(original);
            }
            return false;
        }
        let up = loopback_up();
        if !up && original >= 0 {
            // A namespace without loopback is worse than none: the stand-ins could not bind.
            libc::setns(original, libc::CLONE_NEWNET);
        }
        if original >= 0 {
            libc::close(original);
        }
        up
    }
}

/// `ip link set lo up`, as one `SIOCSIFFLAGS` ioctl.
unsafe fn loopback_up() -> bool {
    let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
    if fd < 0 {
        return false;
    }
    let mut req: libc::ifreq = std::mem::zeroed();
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    let mut ok = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) == 0;
    if ok {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        ok = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) == 0;
    }
    libc::close(fd);
    ok
}

/// Runs `body` on a new thread that first enters a loopback-only network namespace (its
/// argument says whether that worked), inside a current-thread tokio runtime built after the
/// switch. Panics in `body` propagate to the caller.
pub fn run_isolated<T, F, Fut>(body: F) -> T
where
    T: Send + 'static,
    F: FnOnce(bool) -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    let thread = std::thread::Builder::new().name("loopback-netns".into()).spawn(move || {
        let isolated = enter_loopback_netns();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        rt.block_on(body(isolated))
    });
    thread.expect("spawn thread").join().unwrap_or_else(|e| std::panic::resume_unwind(e))
}
