//! The link to the OrgX server: the gateway socket (`session`), its opening handshake
//! (`handshake`), its URLs (`endpoint`), reconnect timing (`backoff`), and the server's
//! frames (`frames`).

pub mod backoff;
pub mod endpoint;
pub mod frames;
pub mod handshake;
pub mod session;
