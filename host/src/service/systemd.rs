//! The systemd user unit: `Spec` → text, and nothing else (no files, no `systemctl`), so that
//! every line can be tested and the output checked by `systemd-analyze verify`.
//!
//! Why each line is what it is:
//! - `KillMode=mixed`: SIGTERM to the peer alone. The peer stops its runs itself (SIGTERM,
//!   SIGKILL after 3 s, then reports each `task.failed`); systemd's default would SIGTERM every
//!   driver process at once, racing the peer for their exits. At the timeout every process
//!   left in the unit's cgroup gets SIGKILL, so nothing outlives the service either way.
//! - `TimeoutStopSec`: `STOP_TIMEOUT`, longer than the peer's whole clean stop.
//! - `Restart=on-failure` with `RestartPreventExitStatus=2 3`: exit 2 is a settings error,
//!   exit 3 a data dir or store that cannot be used as it is (read-only, damaged, from a newer
//!   peer); a restart fixes neither. A full disk exits 1 and is restarted: freeing space fixes it. The delay grows from 5 s to 5 min where systemd can (v254,
//!   `RestartSteps=`); on older ones the start limit (10 in 10 min) ends a crash loop instead.
//! - The key: with `LoadCredential=` (v252+) systemd copies the 0600 file into the service's
//!   private credentials directory and the peer reads it there (`%d`); older systemd gets the
//!   file's path itself. Either way the unit holds a path, never the key, and
//!   `UnsetEnvironment=ORGX_API_KEY` keeps a key in the user manager's environment (from
//!   `import-environment`) from overriding the file.
//! - No `After=network-online.target`: a user manager has no such unit, and the peer
//!   reconnects with backoff on its own.

use super::{Spec, SystemdFeatures, CREDENTIAL, STOP_TIMEOUT};

/// `%` is a specifier in every value systemd reads.
fn escape_specifiers(s: &str) -> String {
    s.replace('%', "%%")
}

/// A word of `ExecStart=`: quoted when it needs to be, with C escapes, `%%` and `$$` (the
/// command line expands both).
fn exec_word(w: &str) -> String {
    let plain = !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c));
    let escaped = escape_specifiers(&w.replace('\\', "\\\\").replace('"', "\\\"")).replace('$', "$$");
    if plain {
        escaped
    } else {
        format!("\"{escaped}\"")
    }
}

/// `Environment="NAME=value"`: the whole assignment quoted, so spaces and `=` survive; `$`
/// is not expanded there.
fn environment(name: &str, value: &str) -> String {
    let text = format!("{name}={value}");
    format!("Environment=\"{}\"", escape_specifiers(&text.replace('\\', "\\\\").replace('"', "\\\"")))
}

/// The unit for `spec`. `spec` has been checked for line breaks (`Spec::check`).
pub fn unit(spec: &Spec, features: SystemdFeatures) -> String {
    let exec: Vec<String> = std::iter::once(spec.exe.display().to_string()).chain(spec.args()).map(|w| exec_word(&w)).collect();
    let key_file = spec.key_file.display().to_string();
    let mut out = String::new();
    let mut line = |s: &str| {
        out.push_str(s);
        out.push('\n');
    };
    line("# orgx-peer as a systemd user service, written by `orgx-peer service install`.");
    match &spec.config_file {
        Some(c) => line(&format!("# Settings: {} (read at every start) and the variables below.", c.display())),
        None => line("# Settings: the variables below (and ~/.config/orgx-peer/config.toml when it exists)."),
    }
    line("# The API key is not in this file: the service reads it from the key file named below.");
    line("# After changing a setting given as a flag or variable: `orgx-peer service install --force`.");
    line("");
    line("[Unit]");
    line("Description=OrgX peer: runs OrgX tasks on your local coding agent");
    line("StartLimitIntervalSec=10min");
    line("StartLimitBurst=10");
    line("");
    line("[Service]");
    line("Type=simple");
    line(&format!("ExecStart={}", exec.join(" ")));
    for (name, value) in &spec.env {
        line(&environment(name, value));
    }
    line("UnsetEnvironment=ORGX_API_KEY");
    if features.load_credential {
        line(&format!("LoadCredential={CREDENTIAL}:{}", escape_specifiers(&key_file)));
        line(&format!("Environment=ORGX_API_KEY_FILE=%d/{CREDENTIAL}"));
    } else {
        line(&environment("ORGX_API_KEY_FILE", &key_file));
    }
    line("Restart=on-failure");
    line("RestartSec=5s");
    if features.restart_steps {
        line("RestartSteps=10");
        line("RestartMaxDelaySec=5min");
    }
    line("RestartPreventExitStatus=2 3");
    line("KillMode=mixed");
    line("KillSignal=SIGTERM");
    line(&format!("TimeoutStopSec={}s", STOP_TIMEOUT.as_secs()));
    line("");
    line("[Install]");
    line("WantedBy=default.target");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn spec() -> Spec {
        Spec {
            exe: "/usr/local/bin/orgx-peer".into(),
            config_file: Some("/home/u/.config/orgx-peer/config.toml".into()),
            env: vec![("PATH".into(), "/home/u/.local/bin:/usr/bin".into()), ("ORGX_MAX_CONCURRENT_RUNS".into(), "3".into())],
            key_file: "/home/u/.config/orgx-peer/service.key".into(),
        }
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn each_feature_level_writes_its_lines() {
        let old = SystemdFeatures::default();
        let v252 = SystemdFeatures { load_credential: true, restart_steps: false };
        let v254 = SystemdFeatures { load_credential: true, restart_steps: true };
        // (features, lines that must be there, lines that must not)
        for (features, present, absent) in [
            (
                old,
                &["Environment=\"ORGX_API_KEY_FILE=/home/u/.config/orgx-peer/service.key\""][..],
                &["LoadCredential=orgx-api-key:/home/u/.config/orgx-peer/service.key", "RestartSteps=10"][..],
            ),
            (
                v252,
                &["LoadCredential=orgx-api-key:/home/u/.config/orgx-peer/service.key", "Environment=ORGX_API_KEY_FILE=%d/orgx-api-key"][..],
                &["RestartSteps=10", "RestartMaxDelaySec=5min"][..],
            ),
            (
                v254,
                &["LoadCredential=orgx-api-key:/home/u/.config/orgx-peer/service.key", "RestartSteps=10", "RestartMaxDelaySec=5min"][..],
                &[][..],
            ),
        ] {
            let text = unit(&spec(), features);
            let have = lines(&text);
            for want in present.iter().chain(&[
                "ExecStart=/usr/local/bin/orgx-peer start --config /home/u/.config/orgx-peer/config.toml",
                "Environment=\"PATH=/home/u/.local/bin:/usr/bin\"",
                "Environment=\"ORGX_MAX_CONCURRENT_RUNS=3\"",
                "UnsetEnvironment=ORGX_API_KEY",
                "Restart=on-failure",
                "RestartSec=5s",
                "RestartPreventExitStatus=2 3",
                "KillMode=mixed",
                "KillSignal=SIGTERM",
                "TimeoutStopSec=30s",
                "WantedBy=default.target",
            ]) {
                assert!(have.contains(want), "{features:?}: no `{want}` in\n{text}");
            }
            for not in absent {
                assert!(!have.contains(not), "{features:?}: `{not}` in\n{text}");
            }
        }
    }

    #[test]
    fn values_are_quoted_and_escaped_for_systemd() {
        // (exe, config, env value) → the ExecStart line and the Environment line.
        for (exe, config, value, exec_line, env_line) in [
            (
                "/opt/orgx peer/orgx-peer",
                "/home/u/my config/c.toml",
                "a b",
                "ExecStart=\"/opt/orgx peer/orgx-peer\" start --config \"/home/u/my config/c.toml\"",
                "Environment=\"X=a b\"",
            ),
            (
                "/opt/100%/orgx-peer",
                "/c$HOME.toml",
                "50%",
                "ExecStart=\"/opt/100%%/orgx-peer\" start --config \"/c$$HOME.toml\"",
                "Environment=\"X=50%%\"",
            ),
            (
                "/bin/orgx-peer",
                "/c\\\"q.toml",
                "say \"hi\" \\o/ $HOME",
                "ExecStart=/bin/orgx-peer start --config \"/c\\\\\\\"q.toml\"",
                "Environment=\"X=say \\\"hi\\\" \\\\o/ $HOME\"",
            ),
        ] {
            let s = Spec {
                exe: PathBuf::from(exe),
                config_file: Some(config.into()),
                env: vec![("X".into(), value.into())],
                key_file: "/k".into(),
            };
            let text = unit(&s, SystemdFeatures::default());
            assert!(lines(&text).contains(&exec_line), "no `{exec_line}` in\n{text}");
            assert!(lines(&text).contains(&env_line), "no `{env_line}` in\n{text}");
        }
    }

    #[test]
    fn without_a_config_file_the_service_runs_plain_start() {
        let s = Spec { config_file: None, ..spec() };
        assert!(lines(&unit(&s, SystemdFeatures::default())).contains(&"ExecStart=/usr/local/bin/orgx-peer start"));
    }
}
