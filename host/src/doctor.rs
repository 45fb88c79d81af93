//! `orgx-peer doctor`: every check a user needs before asking for help, each a line with what
//! was found and, when it fails, what to do.
//!
//! It reads the same settings `start` reads (the config file too) and touches nothing a
//! running peer owns: the data dir is opened only when no peer holds it, and the server is
//! asked a read-only question (`GET plan-skills`, which needs the key and the workspace, and
//! changes nothing — a license heartbeat would record an activation). `main` prints the lines and decides the exit code.

use std::time::Duration;

use crate::components::ActiveComponents;
use crate::config_file::{ConfigFileError, Effective};
use crate::http::Api;
use crate::sandbox::{Limits, Sandbox};
use crate::store::Store;

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// What to do, when it failed.
    pub fix: Option<String>,
    /// A failure here means dispatches cannot run (the exit code is 1).
    pub needed: bool,
}

impl Check {
    fn pass(name: &str, detail: impl Into<String>) -> Check {
        Check { name: name.into(), ok: true, detail: detail.into(), fix: None, needed: true }
    }

    fn fail(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { name: name.into(), ok: false, detail: detail.into(), fix: Some(fix.into()), needed: true }
    }

    fn optional(mut self) -> Check {
        self.needed = false;
        self
    }
}

/// Whether every check a dispatch needs passed.
pub fn healthy(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.ok || !c.needed)
}

/// `✓ name  detail` / `✗ name  detail` and an indented `fix:` line.
pub fn render(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.name.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for c in checks {
        let mark = if c.ok {
            "✓"
        } else if c.needed {
            "✗"
        } else {
            "!"
        };
        out.push_str(&format!("{mark} {:<width$}  {}\n", c.name, c.detail));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("  {:<width$}  fix: {fix}\n", ""));
        }
    }
    out
}

/// `settings`: `start`'s settings resolved with the config file (or why the file is unusable).
pub async fn run(settings: Result<Effective, ConfigFileError>) -> Vec<Check> {
    let mut checks = Vec::new();
    let effective = match settings {
        Ok(e) => e,
        Err(e) => {
            checks.extend(drivers(&Default::default()).await);
            checks.push(Check::fail(
                "config file",
                e.to_string(),
                "fix it (`orgx-peer config check` checks it), then run `orgx-peer doctor` again",
            ));
            checks.push(components());
            return checks;
        }
    };
    checks.extend(drivers(&effective.args.driver_file).await);
    checks.push(match &effective.file {
        Some(f) => Check::pass("config file", format!("`{}` parses", f.display())),
        None => Check::pass("config file", "none (flags and environment only)").optional(),
    });
    let cfg = match effective.into_config() {
        Ok(cfg) => {
            checks.push(Check::pass("settings", "every setting parses"));
            cfg
        }
        Err(e) => {
            checks.push(Check::fail("settings", e.to_string(), "set it, then run `orgx-peer doctor` again"));
            checks.push(components());
            return checks;
        }
    };
    checks.push(data_dir(&cfg.data_dir));
    checks.push(server(&cfg).await);
    let trusted = cfg.trusted_keys.ids();
    checks.push(if trusted.is_empty() {
        Check::pass("trusted keys", "none: pushed and local components will be refused (built-ins serve)").optional()
    } else {
        Check::pass("trusted keys", format!("{} key(s): {}", trusted.len(), trusted.join(", ")))
    });
    checks.push(components());
    checks
}

/// `from_file`: the config file's driver settings (the environment's win).
async fn drivers(from_file: &std::collections::BTreeMap<String, String>) -> Vec<Check> {
    let get = |name: &str| crate::config::driver_setting(from_file, name);
    let mut out = Vec::new();
    let mut ready = Vec::new();
    for d in crate::driver::ALL {
        let name = format!("driver {}", d.id);
        let settings = match crate::driver::settings_from_env(d, &get) {
            Ok(s) => s,
            Err(e) => {
                out.push(Check::fail(&name, e.to_string(), "fix the setting named above").optional());
                continue;
            }
        };
        let det = (d.detect)(&settings.bin, &settings).await;
        let bin = settings.bin.display();
        let check = if !det.installed {
            Check::fail(&name, format!("not found at `{bin}`"), d.install_hint).optional()
        } else if det.logged_in == Some(false) {
            let hint = det.hint.clone().unwrap_or_else(|| format!("log in to {}", d.display));
            Check::fail(&name, format!("{} at `{bin}`, not logged in", det.version.as_deref().unwrap_or("?")), hint).optional()
        } else {
            ready.push(d.id);
            let login = match (det.logged_in, det.auth_method.as_deref()) {
                (Some(true), Some(m)) => format!("logged in ({m})"),
                (Some(true), None) => "logged in".into(),
                _ => "login unknown".into(),
            };
            Check::pass(&name, format!("{} at `{bin}`, {login}", det.version.as_deref().unwrap_or("?"))).optional()
        };
        out.push(check);
    }
    out.push(if ready.is_empty() {
        Check::fail("drivers", "no driver CLI can take a dispatch", "install and log in to Claude Code, Codex or opencode (see above)")
    } else {
        Check::pass("drivers", format!("can run: {}", ready.join(", ")))
    });
    out
}

fn data_dir(dir: &std::path::Path) -> Check {
    let shown = dir.display();
    if let Err(e) = std::fs::create_dir_all(dir) {
        return Check::fail("data dir", format!("`{shown}` cannot be created: {e}"), "set ORGX_PEER_DATA_DIR to a writable directory");
    }
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    if let Err(e) = std::fs::write(&probe, b"ok") {
        return Check::fail("data dir", format!("`{shown}` is not writable: {e}"), "fix its permissions or set ORGX_PEER_DATA_DIR");
    }
    let _ = std::fs::remove_file(&probe);
    match Store::open(&dir.join("peer.redb")) {
        Ok(_) => Check::pass("data dir", format!("`{shown}` writable, store readable")),
        Err(e) if e.to_string().contains("another orgx-peer") => {
            Check::pass("data dir", format!("`{shown}` is in use by a running peer (`orgx-peer status` asks it)"))
        }
        Err(e) => {
            Check::fail("data dir", e.to_string(), "move the store aside (owed messages in it would be lost) or set ORGX_PEER_DATA_DIR")
        }
    }
}

async fn server(cfg: &crate::daemon::DaemonConfig) -> Check {
    let base = cfg.base_url.as_str().trim_end_matches('/').to_string();
    let api = match Api::new(cfg.base_url.clone(), cfg.api_key.clone()) {
        Ok(a) => a,
        Err(e) => return Check::fail("server", e.to_string(), "check ORGX_BASE_URL"),
    };
    match tokio::time::timeout(Duration::from_secs(15), api.plan_skills(&cfg.workspace_id)).await {
        Err(_) => Check::fail("server", format!("{base} did not answer within 15 s"), "check ORGX_BASE_URL and the network"),
        Ok(Ok(_)) => Check::pass("server", format!("{base} reachable, the key is accepted for workspace {}", cfg.workspace_id)),
        Ok(Err(e)) => match e.status().map(|s| s.as_u16()) {
            Some(401) => Check::fail("server", format!("{base} refused the key (HTTP 401)"), "check ORGX_API_KEY"),
            Some(403) => Check::fail(
                "server",
                format!("{base}: the key may not read workspace {} (HTTP 403)", cfg.workspace_id),
                "check ORGX_WORKSPACE_ID and the key's scopes",
            ),
            Some(_) => Check::fail("server", e.to_string(), "the server answered with an error; try again, or ask its operators"),
            None => Check::fail("server", format!("{base}: {e}"), "check ORGX_BASE_URL and the network"),
        },
    }
}

fn components() -> Check {
    let sandbox = match Sandbox::new(Limits::default()) {
        Ok(s) => s,
        Err(e) => return Check::fail("components", format!("the sandbox cannot start: {e:#}"), "report this with `orgx-peer --version`"),
    };
    for d in crate::driver::ALL {
        if let Err(e) = ActiveComponents::load(&sandbox, d.id, None, None) {
            return Check::fail("components", format!("{e:#}"), "report this with `orgx-peer --version`");
        }
    }
    Check::pass("components", format!("the built-in mappers ({}) and the matcher load", crate::driver::ids().join(", ")))
}
