//! `orgx-peer status`: the running daemon answers on a Unix socket in its data directory
//! with one JSON snapshot per connection. A socket file (not a port) keeps the answer local
//! to the machine and to the user who owns the data directory.
//!
//! `snapshot` is what the daemon answers, `render` turns it into text, and `watch` asks again
//! every interval and redraws.

mod render;
mod snapshot;
pub mod watch;

pub use render::render;
pub use snapshot::{OwedView, Snapshot};

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("status.sock")
}

/// Serve snapshots from `snapshot` until the task is dropped.
pub async fn serve(
    data_dir: &Path,
    snapshot: impl Fn() -> Snapshot + Send + Sync + 'static,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let path = socket_path(data_dir);
    // A socket file left by a killed daemon would make bind fail.
    if UnixStream::connect(&path).await.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    let listener = UnixListener::bind(&path)?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else { continue };
            let mut text =
                serde_json::to_string(&snapshot()).unwrap_or_else(|e| format!("{{\"error\":\"cannot encode the status: {e}\"}}"));
            text.push('\n');
            let _ = conn.write_all(text.as_bytes()).await;
        }
    }))
}

/// Why `status` got no snapshot.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("no orgx-peer is running with data dir `{dir}` (cannot connect to {socket}: {source})")]
    NotRunning { dir: String, socket: String, source: std::io::Error },
    #[error("cannot read the status from {socket}: {source}")]
    Read { socket: String, source: std::io::Error },
    #[error("the daemon answered something that is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
}

/// Ask the daemon that owns `data_dir` for its snapshot.
pub async fn query(data_dir: &Path) -> Result<Value, StatusError> {
    let path = socket_path(data_dir);
    let socket = path.display().to_string();
    let mut conn = UnixStream::connect(&path).await.map_err(|source| StatusError::NotRunning {
        dir: data_dir.display().to_string(),
        socket: socket.clone(),
        source,
    })?;
    let mut text = String::new();
    conn.read_to_string(&mut text).await.map_err(|source| StatusError::Read { socket, source })?;
    Ok(serde_json::from_str(&text)?)
}
