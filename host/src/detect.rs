//! Is Claude Code installed, which version, is it logged in — asked once and cached.
//!
//! The reference plugin spawns `claude --version` and `claude auth status --json` on every
//! presence beat (every 20 s); the peer asks at start and on demand, since spawning a
//! Node.js program thrice a minute is exactly the kind of load a sidecar must not add.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use tokio::process::Command;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Detection {
    pub installed: bool,
    pub version: Option<String>,
    /// `None` when the CLI could not tell (old versions have no `auth status`).
    pub logged_in: Option<bool>,
    pub auth_method: Option<String>,
    pub subscription_type: Option<String>,
    /// What to do next, when something is missing.
    pub hint: Option<String>,
}

impl Detection {
    pub fn authenticated(&self) -> bool {
        self.installed && self.logged_in != Some(false)
    }
}

const TIMEOUT: Duration = Duration::from_secs(20);

async fn run(bin: &Path, args: &[&str]) -> Result<(bool, String), String> {
    let mut cmd = Command::new(bin);
    cmd.args(args).stdin(std::process::Stdio::null()).kill_on_drop(true).env_remove("ORGX_API_KEY");
    match tokio::time::timeout(TIMEOUT, cmd.output()).await {
        Err(_) => Err(format!("`{} {}` did not answer within {} s", bin.display(), args.join(" "), TIMEOUT.as_secs())),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(out)) => Ok((out.status.success(), String::from_utf8_lossy(&out.stdout).trim().to_string())),
    }
}

/// Ask the CLI at `bin` about itself.
pub async fn detect(bin: &Path) -> Detection {
    let mut d = Detection::default();
    match run(bin, &["--version"]).await {
        Ok((true, out)) => {
            d.installed = true;
            d.version = out.split_whitespace().next().map(str::to_string);
        }
        Ok((false, _)) | Err(_) => {
            d.hint = Some(format!(
                "Claude Code was not found at `{}`: install it (npm install -g @anthropic-ai/claude-code) or set ORGX_CLAUDE_BIN to its path",
                bin.display()
            ));
            return d;
        }
    }
    if let Ok((true, out)) = run(bin, &["auth", "status", "--json"]).await {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&out) {
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
