//! `ORGX_METRICS_ADDR`: where the metrics are served, checked before anything starts.
//!
//! Loopback only unless `ORGX_METRICS_ALLOW_REMOTE` says otherwise: the metrics name the
//! drivers, components and counts of runs a machine serves, and the endpoint has no
//! authentication, so exposing it is a decision the operator makes on purpose (behind a
//! firewall, or for a scraper in the same pod), never a typo's side effect. Only an IP
//! address and a port are taken: a host name would be resolved at bind time to addresses
//! this check never saw (`localhost` can resolve to anything `/etc/hosts` says).

use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsAddrError {
    #[error(
        "ORGX_METRICS_ADDR `{given}` is not an IP address and port: give one such as 127.0.0.1:9464 or [::1]:9464 (host names are not resolved)"
    )]
    Syntax { given: String },
    #[error(
        "ORGX_METRICS_ADDR `{given}` is not a loopback address: the metrics have no authentication; use 127.0.0.1:PORT, or set ORGX_METRICS_ALLOW_REMOTE=true to serve them on {ip} on purpose"
    )]
    NotLoopback { given: String, ip: IpAddr },
}

/// An address the metrics may be served on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsAddr(SocketAddr);

impl MetricsAddr {
    /// Check `given`; `allow_remote` lifts the loopback rule (not the syntax).
    pub fn parse(given: &str, allow_remote: bool) -> Result<MetricsAddr, MetricsAddrError> {
        let addr: SocketAddr = given.trim().parse().map_err(|_| MetricsAddrError::Syntax { given: given.to_string() })?;
        if !allow_remote && !is_loopback(addr.ip()) {
            return Err(MetricsAddrError::NotLoopback { given: given.to_string(), ip: addr.ip() });
        }
        Ok(MetricsAddr(addr))
    }

    pub fn socket_addr(self) -> SocketAddr {
        self.0
    }
}

/// 127.0.0.0/8, ::1, and ::ffff:127.x.y.z (an IPv4 loopback address written as IPv6).
fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_are_taken_unless_remote_is_allowed() {
        enum Want {
            Ok,
            Syntax,
            NotLoopback,
        }
        use Want::*;
        // (given, verdict without ORGX_METRICS_ALLOW_REMOTE, verdict with it)
        let table: &[(&str, Want, Want)] = &[
            ("127.0.0.1:9464", Ok, Ok),
            ("127.0.0.1:0", Ok, Ok),
            ("127.42.0.7:9464", Ok, Ok),
            ("[::1]:9464", Ok, Ok),
            ("[::ffff:127.0.0.1]:9464", Ok, Ok),
            (" 127.0.0.1:9464 ", Ok, Ok),
            ("0.0.0.0:9464", NotLoopback, Ok),
            ("[::]:9464", NotLoopback, Ok),
            ("192.168.1.20:9464", NotLoopback, Ok),
            ("10.0.0.1:9464", NotLoopback, Ok),
            ("[fe80::1]:9464", NotLoopback, Ok),
            ("[::ffff:192.168.1.20]:9464", NotLoopback, Ok),
            ("localhost:9464", Syntax, Syntax),
            ("metrics.example.com:9464", Syntax, Syntax),
            ("127.0.0.1", Syntax, Syntax),
            ("::1:9464", Syntax, Syntax),
            (":9464", Syntax, Syntax),
            ("127.0.0.1:99999", Syntax, Syntax),
            ("127.0.0.1:-1", Syntax, Syntax),
            ("127.0.0.1:9464/metrics", Syntax, Syntax),
            ("http://127.0.0.1:9464", Syntax, Syntax),
            ("", Syntax, Syntax),
        ];
        for (given, strict, relaxed) in table {
            for (allow_remote, want) in [(false, strict), (true, relaxed)] {
                let got = MetricsAddr::parse(given, allow_remote);
                let row = format!("{given:?} allow_remote={allow_remote}: {got:?}");
                match (want, &got) {
                    (Ok, Result::Ok(a)) => assert_eq!(a.socket_addr(), given.trim().parse::<SocketAddr>().unwrap(), "{row}"),
                    (Syntax, Err(e @ MetricsAddrError::Syntax { .. })) => {
                        assert!(e.to_string().contains("127.0.0.1:9464"), "the error shows a usable address: {row}")
                    }
                    (NotLoopback, Err(e @ MetricsAddrError::NotLoopback { .. })) => {
                        let msg = e.to_string();
                        assert!(msg.contains("ORGX_METRICS_ALLOW_REMOTE=true") && msg.contains(given), "{row}: {msg}");
                    }
                    _ => panic!("unexpected verdict: {row}"),
                }
            }
        }
    }
}
