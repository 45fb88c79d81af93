//! Running a CLI's own status commands (`--version`, `login status`) for detection: bounded
//! in time, stdin closed, and without the gateway key in its environment.

use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

/// How one probe ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The program could not be started at all (not found, not executable).
    NotStarted(String),
    /// It did not answer within the timeout.
    TimedOut,
    /// It exited; stdout and stderr are trimmed, lossy UTF-8.
    Exited { success: bool, stdout: String, stderr: String },
}

/// The environment variables no child of the peer may see (spec §6): the key, and where a
/// service's key file is (a model's shell tool could otherwise `cat` it: `ORGX_API_KEY_FILE`,
/// systemd's `CREDENTIALS_DIRECTORY`).
pub const GATEWAY_KEYS: &[&str] = &["ORGX_API_KEY", "ORGX_GATEWAY_KEY", "ORGX_API_KEY_FILE", "CREDENTIALS_DIRECTORY"];

pub async fn run(bin: &Path, args: &[&str], timeout: Duration) -> Probe {
    let mut cmd = Command::new(bin);
    cmd.args(args).stdin(std::process::Stdio::null()).kill_on_drop(true);
    for k in GATEWAY_KEYS {
        cmd.env_remove(k);
    }
    match tokio::time::timeout(timeout, cmd.output()).await {
        Err(_) => Probe::TimedOut,
        Ok(Err(e)) => Probe::NotStarted(e.to_string()),
        Ok(Ok(out)) => Probe::Exited {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        },
    }
}
