//! The peer's stop signal: one `watch` flag that every task listens to. A leaf module, so any
//! part of the peer can wait for shutdown without depending on the part that raises it.

/// Resolves once `flag` is true (or its sender is gone). Returns `()` so no borrow guard of
/// the channel is held across an await by the caller.
pub async fn raised(flag: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = flag.wait_for(|s| *s).await;
}
