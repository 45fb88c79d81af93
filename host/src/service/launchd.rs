//! The launchd agent: `Spec` → a property list (XML), and nothing else, so that the text can
//! be tested and parsed as a plist on any platform.
//!
//! launchd's closest equivalents of the systemd unit: `KeepAlive` with `SuccessfulExit=false`
//! restarts the peer when it fails (not when it stopped cleanly), `ThrottleInterval` spaces
//! the restarts (launchd has no growing backoff), and `ExitTimeOut` is how long launchd waits
//! after SIGTERM before SIGKILL — `STOP_TIMEOUT`, past the peer's whole clean stop. The key is
//! named by `ORGX_API_KEY_FILE`; it is never in the plist. Logs go to one file (the peer logs
//! to stderr only), which `service logs` reads.

use std::path::Path;

use super::{Spec, LABEL, STOP_TIMEOUT};

/// Seconds between restarts.
pub const THROTTLE_INTERVAL_S: u64 = 10;

/// XML text (the spec has been checked for control characters, which XML cannot carry).
fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

fn string(s: &str) -> String {
    format!("<string>{}</string>", xml(s))
}

/// The agent's plist for `spec`, logging to `log_file`.
pub fn plist(spec: &Spec, log_file: &Path) -> String {
    let mut out = String::from(concat!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
        "<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n",
        "<!-- orgx-peer as a launchd agent, written by `orgx-peer service install`. The API key is not\n",
        "     in this file: the service reads it from ORGX_API_KEY_FILE. -->\n",
        "<plist version=\"1.0\">\n",
        "<dict>\n",
    ));
    let mut key = |k: &str, v: String| out.push_str(&format!("\t<key>{k}</key>\n\t{v}\n"));
    key("Label", string(LABEL));
    let args: Vec<String> = std::iter::once(spec.exe.display().to_string()).chain(spec.args()).collect();
    key("ProgramArguments", format!("<array>\n{}\t</array>", args.iter().map(|a| format!("\t\t{}\n", string(a))).collect::<String>()));
    let key_file = spec.key_file.display().to_string();
    let env: Vec<(&str, &str)> = spec
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain([("ORGX_API_KEY_FILE", key_file.as_str()), (super::MANAGER_ENV, "launchd")])
        .collect();
    key(
        "EnvironmentVariables",
        format!(
            "<dict>\n{}\t</dict>",
            env.iter().map(|(k, v)| format!("\t\t<key>{}</key>\n\t\t{}\n", xml(k), string(v))).collect::<String>()
        ),
    );
    key("RunAtLoad", "<true/>".into());
    key("KeepAlive", "<dict>\n\t\t<key>SuccessfulExit</key>\n\t\t<false/>\n\t</dict>".into());
    key("ThrottleInterval", format!("<integer>{THROTTLE_INTERVAL_S}</integer>"));
    key("ExitTimeOut", format!("<integer>{}</integer>", STOP_TIMEOUT.as_secs()));
    let log = log_file.display().to_string();
    key("StandardOutPath", string(&log));
    key("StandardErrorPath", string(&log));
    out.push_str("</dict>\n</plist>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(env: Vec<(String, String)>) -> Spec {
        Spec {
            exe: "/usr/local/bin/orgx-peer".into(),
            config_file: Some("/Users/u/.config/orgx-peer/config.toml".into()),
            env,
            key_file: "/Users/u/.config/orgx-peer/service.key".into(),
        }
    }

    #[test]
    fn the_plist_has_each_key_launchd_needs() {
        let text = plist(
            &spec(vec![("PATH".into(), "/opt/homebrew/bin:/usr/bin".into())]),
            Path::new("/Users/u/Library/Logs/orgx-peer/orgx-peer.log"),
        );
        for want in [
            "\t<key>Label</key>\n\t<string>com.useorgx.orgx-peer</string>",
            "\t\t<string>/usr/local/bin/orgx-peer</string>\n\t\t<string>start</string>\n\t\t<string>--config</string>\n\t\t<string>/Users/u/.config/orgx-peer/config.toml</string>\n",
            "\t\t<key>PATH</key>\n\t\t<string>/opt/homebrew/bin:/usr/bin</string>",
            "\t\t<key>ORGX_API_KEY_FILE</key>\n\t\t<string>/Users/u/.config/orgx-peer/service.key</string>",
            "\t\t<key>ORGX_SERVICE_MANAGER</key>\n\t\t<string>launchd</string>",
            "<key>RunAtLoad</key>\n\t<true/>",
            "<key>SuccessfulExit</key>\n\t\t<false/>",
            "<key>ThrottleInterval</key>\n\t<integer>10</integer>",
            "<key>ExitTimeOut</key>\n\t<integer>30</integer>",
            "<key>StandardErrorPath</key>\n\t<string>/Users/u/Library/Logs/orgx-peer/orgx-peer.log</string>",
        ] {
            assert!(text.contains(want), "no {want:?} in\n{text}");
        }
    }

    #[test]
    fn text_is_escaped_for_xml() {
        for (value, want) in [
            ("a & b", "<string>a &amp; b</string>"),
            ("<x>", "<string>&lt;x&gt;</string>"),
            ("\"q\" 'a'", "<string>&quot;q&quot; &apos;a&apos;</string>"),
            ("50% $HOME", "<string>50% $HOME</string>"),
        ] {
            let text = plist(&spec(vec![("X".into(), value.into())]), Path::new("/l"));
            assert!(text.contains(want), "{value:?}: no {want:?} in\n{text}");
        }
    }
}
