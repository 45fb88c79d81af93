//! Which imports a component may have: the sandbox's capability allowlist.
//!
//! This is the audit surface of the sandbox, so it is a small type with an exhaustive table
//! of adversarial tests. An import is allowed only when its full name parses as
//! `namespace:package/interface@version` and the triple is on the list below with a version
//! the host serves. Everything else — sockets, HTTP, unknown packages, bare function
//! imports, odd spellings — is refused at load, before any instantiation, with the name.
//!
//! The WASI interfaces allowed here are the ones Rust's `wasm32-wasip2` standard library
//! links; the host satisfies them with an empty context (no files, no environment, no
//! arguments, no network, stdin empty, stdout/stderr into the log), so allowing them grants
//! no access to anything outside the sandbox. See `docs/sandbox.md`.

use std::fmt;

/// The interfaces a component may import, and the version range the host serves for each.
pub const ALLOWED_IMPORTS: &[(&str, &str, VersionRule)] = &[
    ("orgx:peer", "types", VersionRule::Wit),
    ("wasi:cli", "environment", VersionRule::Wasi02),
    ("wasi:cli", "exit", VersionRule::Wasi02),
    ("wasi:cli", "stdin", VersionRule::Wasi02),
    ("wasi:cli", "stdout", VersionRule::Wasi02),
    ("wasi:cli", "stderr", VersionRule::Wasi02),
    ("wasi:cli", "terminal-input", VersionRule::Wasi02),
    ("wasi:cli", "terminal-output", VersionRule::Wasi02),
    ("wasi:cli", "terminal-stdin", VersionRule::Wasi02),
    ("wasi:cli", "terminal-stdout", VersionRule::Wasi02),
    ("wasi:cli", "terminal-stderr", VersionRule::Wasi02),
    ("wasi:io", "error", VersionRule::Wasi02),
    ("wasi:io", "poll", VersionRule::Wasi02),
    ("wasi:io", "streams", VersionRule::Wasi02),
    ("wasi:clocks", "monotonic-clock", VersionRule::Wasi02),
    ("wasi:clocks", "wall-clock", VersionRule::Wasi02),
    ("wasi:random", "random", VersionRule::Wasi02),
    ("wasi:random", "insecure", VersionRule::Wasi02),
    ("wasi:random", "insecure-seed", VersionRule::Wasi02),
    // Linked by std's file APIs; with no preopened directory there is nothing to open.
    ("wasi:filesystem", "types", VersionRule::Wasi02),
    ("wasi:filesystem", "preopens", VersionRule::Wasi02),
];

/// Which versions of an interface the host serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionRule {
    /// A WIT version of `orgx:peer` the host serves (`wit::WitVersion::SERVED`), exactly.
    Wit,
    /// WASI 0.2.x, any patch release: the linker serves them all through semver matching.
    Wasi02,
}

/// Why an import was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub import: String,
    pub why: &'static str,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "import `{}` is not allowed: {}", self.import.escape_debug(), self.why)
    }
}

impl std::error::Error for Refusal {}

/// Check one import name of a component against the allowlist.
pub fn check_import(name: &str) -> Result<(), Refusal> {
    let refuse = |why| Err(Refusal { import: name.to_string(), why });
    let Some((path, version)) = name.split_once('@') else {
        return refuse("imports must be versioned interfaces (`ns:pkg/iface@x.y.z`)");
    };
    let Some((package, interface)) = path.split_once('/') else {
        return refuse("bare imports (functions, unnamed instances) are not allowed");
    };
    let Some(rule) = ALLOWED_IMPORTS.iter().find(|(p, i, _)| *p == package && *i == interface).map(|(_, _, rule)| *rule) else {
        return refuse("the interface is not on the sandbox allowlist (see docs/sandbox.md)");
    };
    let served = match rule {
        VersionRule::Wit => super::wit::WitVersion::parse(version).is_some(),
        VersionRule::Wasi02 => parse_wasi_02_patch(version).is_some(),
    };
    if served {
        Ok(())
    } else {
        refuse("the host does not serve this version of the interface")
    }
}

/// `0.2.N` with N a plain decimal number (no sign, no leading zeros, no pre-release tag).
fn parse_wasi_02_patch(version: &str) -> Option<u32> {
    let patch = version.strip_prefix("0.2.")?;
    let plain =
        !patch.is_empty() && patch.bytes().all(|b| b.is_ascii_digit()) && (patch == "0" || !patch.starts_with('0')) && patch.len() <= 4;
    plain.then(|| patch.parse().ok()).flatten()
}

/// Check every import; return all refusals (an auditor wants the whole list, not the first).
pub fn check_imports<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<Refusal> {
    names.into_iter().filter_map(|n| check_import(n).err()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adversarial_import_names() {
        let table: &[(&str, bool)] = &[
            // What Rust's wasm32-wasip2 std and our WIT produce.
            ("wasi:cli/environment@0.2.0", true),
            ("wasi:cli/stderr@0.2.3", true),
            ("wasi:io/streams@0.2.6", true),
            ("wasi:random/insecure-seed@0.2.4", true),
            ("wasi:filesystem/preopens@0.2.0", true),
            ("orgx:peer/types@0.1.0", true),
            ("orgx:peer/types@0.2.0", true),
            ("orgx:peer/types@0.3.0", true),
            // Capabilities that reach outside the sandbox.
            ("wasi:sockets/tcp@0.2.0", false),
            ("wasi:sockets/ip-name-lookup@0.2.0", false),
            ("wasi:sockets/instance-network@0.2.0", false),
            ("wasi:http/outgoing-handler@0.2.0", false),
            ("wasi:cli/run@0.2.0", false),
            ("wasi:keyvalue/store@0.2.0-draft", false),
            // Unknown packages, including look-alikes.
            ("orgx:peer/host@0.1.0", false),
            ("orgx:peer/types@0.4.0", false),
            ("orgx:peer/types@0.2", false),
            ("orgx:peer/types@0.2.0-rc1", false),
            ("orgx:peer/types@0.1.0-rc1", false),
            ("orgx:peerx/types@0.1.0", false),
            ("evil:wasi/cli@0.2.0", false),
            ("wasi:cli2/environment@0.2.0", false),
            ("wasi:cli/environmentx@0.2.0", false),
            ("wasi:cli/environment/x@0.2.0", false),
            ("WASI:cli/environment@0.2.0", false),
            ("wasi:cli/Environment@0.2.0", false),
            (" wasi:cli/environment@0.2.0", false),
            ("wasi:cli/environment@0.2.0 ", false),
            ("wasi:cli/environment@0.2.0\0", false),
            ("wasi:cli/environment@0.2.0@0.2.0", false),
            // Versions the host does not serve, or odd spellings of served ones.
            ("wasi:cli/environment", false),
            ("wasi:cli/environment@", false),
            ("wasi:cli/environment@0.3.0", false),
            ("wasi:cli/environment@0.2.99", true),
            ("wasi:cli/environment@0.2.10000", false),
            ("wasi:cli/environment@0.2.01", false),
            ("wasi:cli/environment@0.2.+1", false),
            ("wasi:cli/environment@0.2.0-rc-2023-11-10", false),
            ("wasi:cli/environment@1.2.0", false),
            ("wasi:cli/environment@0.2.99999999999999999999", false),
            // Bare imports.
            ("log", false),
            ("", false),
            ("/", false),
            ("@", false),
        ];
        for (name, allowed) in table {
            assert_eq!(check_import(name).is_ok(), *allowed, "{name:?}");
        }
    }

    #[test]
    fn refusal_names_the_import_and_all_are_listed() {
        let refused = check_imports(["wasi:io/streams@0.2.0", "wasi:sockets/tcp@0.2.0", "x"]);
        assert_eq!(refused.len(), 2);
        let text = refused[0].to_string();
        assert!(text.contains("wasi:sockets/tcp@0.2.0"), "{text}");
        assert!(text.contains("allowlist"), "{text}");
    }
}
