//! The Claude Code plugin directory a v3 run is handed (`--plugin-dir <dir>`). Its hook and
//! its permission host are this binary's own hidden subcommands, so nothing but the binary
//! and this directory runs inside the CLI's process tree:
//!
//! ```text
//! <dir>/                      0700
//!   .claude-plugin/plugin.json  {"name":"orgx-peer","version":…,"description":…}
//!   hooks/hooks.json            PreToolUse, matcher AskUserQuestion: `'<exe>' hook pre-tool-use`
//!   .mcp.json                   stdio server `orgx`: `<exe> mcp permission-host`
//!   answers/<tool_use_id>.json  {"answers":{…}}, 0600, written by the daemon when a person answered
//! ```
//!
//! The CLI names a plugin server's tool `mcp__plugin_<plugin>_<server>__<tool>` (observed with
//! 2.1.330: `tests/attention_plugin.rs`), which is what `--permission-prompt-tool` must name.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

/// The plugin's name in `plugin.json` (and so in `system/init.plugins` and the tool name).
pub const PLUGIN_NAME: &str = "orgx-peer";
/// The MCP server the plugin's `.mcp.json` declares.
pub const MCP_SERVER: &str = "orgx";
/// The one tool that server offers.
pub const PERMISSION_TOOL_NAME: &str = "permission_prompt";
/// Seconds the CLI gives the hook.
pub const HOOK_TIMEOUT_SECS: u64 = 30;
/// The longest tool_use id that becomes a file name.
pub const MAX_TOOL_USE_ID: usize = 128;

/// `--permission-prompt-tool` for a run with this plugin:
/// `mcp__plugin_orgx-peer_orgx__permission_prompt`.
pub fn permission_prompt_tool() -> String {
    format!("mcp__plugin_{PLUGIN_NAME}_{MCP_SERVER}__{PERMISSION_TOOL_NAME}")
}

/// `path` as one shell word: single quotes, each `'` as `'\''`.
pub fn shell_quote(path: &str) -> String {
    format!("'{}'", path.replace('\'', r"'\''"))
}

/// Write (or overwrite) the plugin directory `dir`, whose hook and MCP server run `exe`.
pub fn write(dir: &Path, exe: &Path) -> io::Result<()> {
    let exe_str = exe.to_str().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the orgx-peer path is not UTF-8"))?;
    private_dir(dir)?;
    private_dir(&dir.join(".claude-plugin"))?;
    private_dir(&dir.join("hooks"))?;
    let manifest = json!({
        "name": PLUGIN_NAME,
        "version": env!("CARGO_PKG_VERSION"),
        "description": "OrgX resumable attention: questions of a dispatched run go to OrgX, and the run resumes when a person answers",
    });
    let hooks = json!({
        "description": "Park AskUserQuestion until a person answers it in OrgX",
        "hooks": {
            "PreToolUse": [{
                "matcher": "AskUserQuestion",
                "hooks": [{
                    "type": "command",
                    "command": format!("{} hook pre-tool-use", shell_quote(exe_str)),
                    "timeout": HOOK_TIMEOUT_SECS,
                }],
            }],
        },
    });
    let mcp = json!({
        "mcpServers": {
            MCP_SERVER: {
                "type": "stdio",
                "command": exe_str,
                "args": ["mcp", "permission-host"],
            },
        },
    });
    // Not fsync'd here: the process that reads them starts now, from the page cache, and
    // this runs on every dispatch (three fsyncs took 1.7 ms of run start; a Mac's full
    // fsync takes several ms each). They must outlive a crash only once a run suspends and
    // may resume after one: `make_durable`, before the checkpoint is kept.
    for (path, bytes) in plugin_files(dir, &manifest, &hooks, &mcp) {
        write_private(&path, &bytes, Durability::Later)?;
    }
    Ok(())
}

fn plugin_files(dir: &Path, manifest: &Value, hooks: &Value, mcp: &Value) -> [(PathBuf, Vec<u8>); 3] {
    [
        (dir.join(".claude-plugin/plugin.json"), pretty(manifest)),
        (dir.join("hooks/hooks.json"), pretty(hooks)),
        (dir.join(".mcp.json"), pretty(mcp)),
    ]
}

/// Put the plugin files `write` wrote (and their directories) on disk: a suspended run's
/// resumed process may start after a crash or a reboot, and must find them whole.
pub fn make_durable(dir: &Path) -> io::Result<()> {
    for sub in [".claude-plugin/plugin.json", "hooks/hooks.json", ".mcp.json"] {
        std::fs::File::open(dir.join(sub))?.sync_all()?;
    }
    for sub in [".claude-plugin", "hooks", ""] {
        std::fs::File::open(dir.join(sub))?.sync_all()?;
    }
    Ok(())
}

/// `<plugin_dir>/answers/<tool_use_id>.json`; `None` for an id that is empty, longer than
/// [`MAX_TOOL_USE_ID`] or not all `[A-Za-z0-9_-]` (it becomes a file name).
pub fn answers_path(plugin_dir: &Path, tool_use_id: &str) -> Option<PathBuf> {
    let ok = !tool_use_id.is_empty()
        && tool_use_id.len() <= MAX_TOOL_USE_ID
        && tool_use_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    ok.then(|| plugin_dir.join("answers").join(format!("{tool_use_id}.json")))
}

/// Record the answers to the `AskUserQuestion` call `tool_use_id` (question text → chosen
/// label) for the hook of the resumed process: `{"answers":{…}}`, mode 0600, atomically.
pub fn write_answers(plugin_dir: &Path, tool_use_id: &str, answers: &Map<String, Value>) -> io::Result<()> {
    let path = answers_path(plugin_dir, tool_use_id).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("`{}` is not a usable tool_use id", tool_use_id.escape_debug()))
    })?;
    private_dir(&plugin_dir.join("answers"))?;
    write_private(&path, &json!({"answers": answers}).to_string().into_bytes(), Durability::Now)
}

fn pretty(v: &Value) -> Vec<u8> {
    let mut s = serde_json::to_vec_pretty(v).expect("a JSON value serializes");
    s.push(b'\n');
    s
}

/// `dir` (and its parents) exists, and `dir` itself is 0700.
fn private_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Whether `write_private` puts the file on disk before it returns.
#[derive(Clone, Copy, PartialEq)]
enum Durability {
    Now,
    /// The caller syncs later if it must (`make_durable`).
    Later,
}

/// `bytes` into `path`, mode 0600: a fresh temporary file in the same directory, renamed
/// over, so a reader (the hook) sees the old file, or none, or the whole new one; with
/// `Durability::Now`, fsync'd (the file, then its directory) as well.
fn write_private(path: &Path, bytes: &[u8], sync: Durability) -> io::Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.{}.tmp", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        if sync == Durability::Now {
            f.sync_all()?;
        }
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    if sync == Durability::Now {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The files `write` leaves (not yet fsync'd) are whole and private, `make_durable` syncs
    /// exactly them, and says so when one is missing.
    #[test]
    fn the_plugin_files_are_written_whole_then_made_durable() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("plugin");
        write(&dir, Path::new("/opt/orgx peer/orgx-peer")).unwrap();
        for sub in [".claude-plugin/plugin.json", "hooks/hooks.json", ".mcp.json"] {
            let text = std::fs::read_to_string(dir.join(sub)).unwrap();
            assert!(serde_json::from_str::<Value>(&text).is_ok(), "{sub}: {text}");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                assert_eq!(std::fs::metadata(dir.join(sub)).unwrap().permissions().mode() & 0o777, 0o600, "{sub}");
            }
        }
        assert!(std::fs::read_to_string(dir.join("hooks/hooks.json")).unwrap().contains("'/opt/orgx peer/orgx-peer' hook pre-tool-use"));
        make_durable(&dir).unwrap();
        std::fs::remove_file(dir.join(".mcp.json")).unwrap();
        assert_eq!(make_durable(&dir).unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn the_tool_name_follows_the_plugin_server_scheme() {
        assert_eq!(permission_prompt_tool(), "mcp__plugin_orgx-peer_orgx__permission_prompt");
    }

    #[test]
    fn answers_path_accepts_only_plain_ids() {
        let root = Path::new("/p");
        let long_ok = "a".repeat(MAX_TOOL_USE_ID);
        let too_long = "a".repeat(MAX_TOOL_USE_ID + 1);
        // (id, accepted)
        let cases: &[(&str, bool)] = &[
            ("toolu_attn_ask_0001", true),
            ("toolu_01A-b_9", true),
            ("-", true),
            (&long_ok, true),
            ("", false),
            ("../x", false),
            ("a/b", false),
            ("/etc/passwd", false),
            ("a\\b", false),
            (".", false),
            ("..", false),
            ("a.json", false),
            ("a\0b", false),
            ("\0", false),
            ("a b", false),
            ("a\nb", false),
            ("tööl", false),
            ("ｔｏｏｌ", false),
            ("a\u{202e}b", false),
            ("~", false),
            ("$HOME", false),
            ("*", false),
            (&too_long, false),
        ];
        for (id, accepted) in cases {
            let want = accepted.then(|| root.join("answers").join(format!("{id}.json")));
            assert_eq!(answers_path(root, id), want, "id {:?}", id);
        }
    }

    #[test]
    fn shell_quote_survives_quotes_and_spaces() {
        let cases = [
            ("/usr/bin/orgx-peer", "'/usr/bin/orgx-peer'"),
            ("/a b/orgx-peer", "'/a b/orgx-peer'"),
            ("/it's/orgx-peer", r"'/it'\''s/orgx-peer'"),
            ("/$(rm -rf ~)/`x`", "'/$(rm -rf ~)/`x`'"),
        ];
        for (path, want) in cases {
            assert_eq!(shell_quote(path), want);
            // And the shell really reads it back as that one word.
            let out = std::process::Command::new("sh").arg("-c").arg(format!("printf %s {}", shell_quote(path))).output().unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), path);
        }
    }

    #[test]
    fn write_lays_out_the_plugin_and_can_be_rerun() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("plugin");
        let exe = Path::new("/opt/it's here/orgx-peer");
        write(&dir, exe).unwrap();
        write(&dir, exe).unwrap();
        let read = |p: &str| -> Value { serde_json::from_slice(&std::fs::read(dir.join(p)).unwrap()).unwrap() };
        let manifest = read(".claude-plugin/plugin.json");
        assert_eq!(manifest["name"], PLUGIN_NAME);
        assert_eq!(manifest["version"], env!("CARGO_PKG_VERSION"));
        let hooks = read("hooks/hooks.json");
        let pre = &hooks["hooks"]["PreToolUse"][0];
        assert_eq!(pre["matcher"], "AskUserQuestion");
        assert_eq!(pre["hooks"][0]["type"], "command");
        assert_eq!(pre["hooks"][0]["command"], r"'/opt/it'\''s here/orgx-peer' hook pre-tool-use");
        assert_eq!(pre["hooks"][0]["timeout"], 30);
        let mcp = read(".mcp.json");
        assert_eq!(mcp["mcpServers"][MCP_SERVER]["command"], "/opt/it's here/orgx-peer");
        assert_eq!(mcp["mcpServers"][MCP_SERVER]["args"], json!(["mcp", "permission-host"]));
        // Nothing but the three files (no temporaries left behind).
        let mut names: Vec<String> = walk(&dir).into_iter().map(|p| p.strip_prefix(&dir).unwrap().display().to_string()).collect();
        names.sort();
        assert_eq!(names, [".claude-plugin/plugin.json", ".mcp.json", "hooks/hooks.json"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
            assert_eq!(std::fs::metadata(dir.join(".mcp.json")).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn write_answers_is_private_and_refuses_bad_ids() {
        let tmp = tempfile::tempdir().unwrap();
        let mut answers = Map::new();
        answers.insert("Which greeting style should greeting.txt use?".into(), json!("Formal"));
        write_answers(tmp.path(), "toolu_1", &answers).unwrap();
        answers.insert("Which greeting style should greeting.txt use?".into(), json!("Casual"));
        write_answers(tmp.path(), "toolu_1", &answers).unwrap();
        let path = answers_path(tmp.path(), "toolu_1").unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v, json!({"answers": {"Which greeting style should greeting.txt use?": "Casual"}}));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(std::fs::read_dir(tmp.path().join("answers")).unwrap().count(), 1, "no temporaries left behind");
        for bad in ["", "../x", "a/b", "..", "a\0"] {
            assert_eq!(write_answers(tmp.path(), bad, &answers).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        }
        assert!(!tmp.path().join("x.json").exists());
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
