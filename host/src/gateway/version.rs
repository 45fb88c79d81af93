//! The Gateway Protocol version this peer offers: one `orgx.vN` per connection, no
//! negotiation and no fallback (spec §1.1), chosen by `ORGX_PROTOCOL_VERSION`.
//!
//! A type rather than a number so that "2" cannot be offered (v2 is recognised per dispatch,
//! never per connection) and so that what a version *enables* is asked here, in one place.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProtocolVersion {
    /// `orgx.v1`: the SDK default and the newest OpenCode peer's offer.
    V1,
    /// `orgx.v3`: v1 plus resumable attention (§8); the newest Claude Code and Codex peers.
    #[default]
    V3,
}

/// `ORGX_PROTOCOL_VERSION` names a version this peer does not offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnofferedVersion {
    #[error("ORGX_PROTOCOL_VERSION must be 1 or 3: version 2 is recognised per dispatch, never offered for a connection")]
    PerDispatch,
    #[error("ORGX_PROTOCOL_VERSION must be 1 or 3, not {0}")]
    Unknown(u64),
}

impl ProtocolVersion {
    /// From the setting's number; 2 and everything else are refused with the reason.
    pub fn from_number(n: u64) -> Result<ProtocolVersion, UnofferedVersion> {
        match n {
            1 => Ok(ProtocolVersion::V1),
            3 => Ok(ProtocolVersion::V3),
            2 => Err(UnofferedVersion::PerDispatch),
            n => Err(UnofferedVersion::Unknown(n)),
        }
    }

    /// The number the presence heartbeat reports (`protocol_version`, §5.2).
    pub fn number(self) -> u64 {
        match self {
            ProtocolVersion::V1 => 1,
            ProtocolVersion::V3 => 3,
        }
    }

    /// The first subprotocol entry of the handshake.
    pub fn subprotocol(self) -> &'static str {
        match self {
            ProtocolVersion::V1 => "orgx.v1",
            ProtocolVersion::V3 => "orgx.v3",
        }
    }

    /// Does a run on this connection suspend on a question and resume on its answer (§8)?
    pub fn resumable_attention(self) -> bool {
        self == ProtocolVersion::V3
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.subprotocol())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_and_three_are_offered() {
        let table: &[(u64, Result<&str, &str>)] = &[
            (1, Ok("orgx.v1")),
            (3, Ok("orgx.v3")),
            (2, Err("never offered")),
            (0, Err("must be 1 or 3, not 0")),
            (4, Err("must be 1 or 3, not 4")),
            (u64::MAX, Err("must be 1 or 3")),
        ];
        for (n, want) in table {
            match (ProtocolVersion::from_number(*n), want) {
                (Ok(v), Ok(s)) => assert_eq!((v.subprotocol(), v.number()), (*s, *n)),
                (Err(e), Err(s)) => {
                    let e = e.to_string();
                    assert!(e.contains(s) && e.contains("ORGX_PROTOCOL_VERSION"), "{n}: {e}")
                }
                (got, _) => panic!("{n}: {got:?}"),
            }
        }
        assert_eq!(ProtocolVersion::default(), ProtocolVersion::V3);
        assert!(ProtocolVersion::V3.resumable_attention() && !ProtocolVersion::V1.resumable_attention());
    }
}
