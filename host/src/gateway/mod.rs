//! The link to the OrgX server: the gateway socket (`session`), its URLs (`endpoint`),
//! reconnect timing (`backoff`), and the server's frames (`frames`).

pub mod backoff;
pub mod endpoint;
pub mod frames;
pub mod session;

/// Resolves once `flag` is true (or its sender is gone). Returns `()` so no borrow guard of
/// the channel is held across an await by the caller.
pub async fn raised(flag: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = flag.wait_for(|s| *s).await;
}
