//! What this binary is: its version, the commit it was built from and the WIT versions it
//! serves, as `--version` and the startup banner print them. A leaf module.

/// `0.1.0 (commit 0123456789ab; WIT 0.1.0, 0.2.0, 0.3.0)`.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("ORGX_GIT_COMMIT"), "; WIT ", env!("ORGX_WIT_DIRS"), ")");

/// The git commit (12 hex digits), or `unknown` when built outside a git checkout.
pub const COMMIT: &str = env!("ORGX_GIT_COMMIT");

#[cfg(test)]
mod tests {
    use crate::sandbox::wit::WitVersion;

    #[test]
    fn the_wit_directories_are_the_versions_served() {
        assert_eq!(env!("ORGX_WIT_DIRS"), WitVersion::served_list(), "a wit/vX.Y.Z directory the host does not serve, or the reverse");
        assert!(super::VERSION.starts_with(env!("CARGO_PKG_VERSION")));
        assert!(super::COMMIT == "unknown" || (super::COMMIT.len() == 12 && super::COMMIT.bytes().all(|b| b.is_ascii_hexdigit())));
    }
}
