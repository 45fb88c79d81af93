//! The link to the OrgX server: the gateway socket (`session`), its opening handshake
//! (`handshake`), its URLs (`endpoint`), reconnect timing (`backoff`), the server's frames
//! (`frames`) and the protocol version offered (`version`).

pub mod backoff;
pub mod endpoint;
pub mod frames;
pub mod handshake;
pub mod session;
pub mod version;
