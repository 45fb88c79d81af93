//! `orgx-peer status`: the running daemon answers on a Unix socket in its data directory
//! with one JSON snapshot per connection. A socket file (not a port) keeps the answer local
//! to the machine and to the user who owns the data directory.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("status.sock")
}

/// Serve snapshots from `snapshot` until the task is dropped.
pub async fn serve(data_dir: &Path, snapshot: impl Fn() -> Value + Send + Sync + 'static) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let path = socket_path(data_dir);
    // A socket file left by a killed daemon would make bind fail.
    if UnixStream::connect(&path).await.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    let listener = UnixListener::bind(&path)?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else { continue };
            let mut text = snapshot().to_string();
            text.push('\n');
            let _ = conn.write_all(text.as_bytes()).await;
        }
    }))
}

/// Ask the daemon that owns `data_dir` for its snapshot.
pub async fn query(data_dir: &Path) -> Result<Value, String> {
    let path = socket_path(data_dir);
    let mut conn = UnixStream::connect(&path).await.map_err(|e| {
        format!("no orgx-peer is running with data dir `{}` (cannot connect to {}: {e})", data_dir.display(), path.display())
    })?;
    let mut text = String::new();
    conn.read_to_string(&mut text).await.map_err(|e| format!("cannot read the status from {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("the daemon answered something that is not JSON: {e}"))
}

/// A short human rendering of a snapshot.
pub fn render(v: &Value) -> String {
    let s = |p: &str| {
        v.pointer(p)
            .map(|x| match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_else(|| "-".into())
    };
    let mut out = String::new();
    out.push_str(&format!("orgx-peer {}  workspace {}\n", s("/version"), s("/workspace_id")));
    out.push_str(&format!("connection   {}\n", s("/link")));
    out.push_str(&format!("runs         {} in flight {}\n", s("/runs_in_flight_count"), s("/runs_in_flight")));
    out.push_str(&format!("outbox       {} message(s) waiting\n", s("/queue_depth")));
    out.push_str(&format!("rules        {}\n", s("/rules")));
    if let Some(Value::Array(cs)) = v.get("components") {
        for c in cs {
            let key = c["key_id"].as_str().map(|k| format!(" signed by {k}")).unwrap_or_default();
            out.push_str(&format!(
                "component    {} {} v{} ({}{key}) sha256:{}\n",
                c["slot"].as_str().unwrap_or("?"),
                c["name"].as_str().unwrap_or("?"),
                c["version"].as_u64().unwrap_or(0),
                c["origin"].as_str().unwrap_or("?"),
                c["sha256"].as_str().unwrap_or("?")
            ));
        }
    }
    out.push_str(&format!(
        "components dir {}{}\n",
        s("/components_dir"),
        if v["dev_unsigned_local"] == Value::Bool(true) { "  (DEV MODE: unsigned accepted)" } else { "" }
    ));
    out.push_str(&format!("trusted keys {}  quarantined {}\n", s("/trusted_keys"), s("/quarantined")));
    out.push_str(&format!("license      last ok {}  degraded {}\n", s("/heartbeats/last_license_ok"), s("/heartbeats/degraded")));
    out.push_str(&format!("presence     last ok {}\n", s("/heartbeats/last_presence_ok")));
    if let Some(Value::Object(drivers)) = v.get("drivers") {
        let enabled: Vec<&str> = v["drivers_enabled"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        for (id, d) in drivers {
            out.push_str(&format!(
                "driver       {id} {} installed {} version {} logged in {}\n",
                if enabled.contains(&id.as_str()) { "enabled" } else { "off" },
                d["installed"],
                d["version"].as_str().unwrap_or("-"),
                d["logged_in"]
            ));
        }
    }
    out
}
