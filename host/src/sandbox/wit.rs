//! The WIT versions this host serves, and every name derived from them.
//!
//! Components built against any served version keep working when a newer one arrives: the
//! host links each by the version it exports and converts its values to the newest types at
//! the boundary (`bindings`). Every export and world name is built here from one package
//! name and the version, so no other module spells `orgx:peer/…@x.y.z`.

use std::fmt;

/// The WIT package every component implements a world of.
pub const PACKAGE: &str = "orgx:peer";

/// A served version of `wit/vX.Y.Z/orgx-peer.wit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WitVersion {
    V0_1_0,
    V0_2_0,
    V0_3_0,
}

impl WitVersion {
    /// Oldest first; the host serves each of them side by side.
    pub const SERVED: [WitVersion; 3] = [WitVersion::V0_1_0, WitVersion::V0_2_0, WitVersion::V0_3_0];
    /// What the built-in components and the guest SDK are built against.
    pub const LATEST: WitVersion = WitVersion::V0_3_0;

    pub fn as_str(self) -> &'static str {
        match self {
            WitVersion::V0_1_0 => "0.1.0",
            WitVersion::V0_2_0 => "0.2.0",
            WitVersion::V0_3_0 => "0.3.0",
        }
    }

    pub fn parse(text: &str) -> Option<WitVersion> {
        WitVersion::SERVED.into_iter().find(|v| v.as_str() == text)
    }

    /// `orgx:peer/<item>@<version>`: an interface or world name of this version.
    pub fn qualified(self, item: &str) -> String {
        format!("{PACKAGE}/{item}@{}", self.as_str())
    }

    /// Whether a matcher of this version compiles its rules once per rules version
    /// (`prepare`), so that runs can start from a snapshot taken after it.
    pub fn matcher_prepares(self) -> bool {
        self >= WitVersion::V0_3_0
    }

    /// The served versions, for messages: `0.1.0, 0.2.0, 0.3.0`.
    pub fn served_list() -> String {
        WitVersion::SERVED.map(WitVersion::as_str).join(", ")
    }
}

impl fmt::Display for WitVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which of the two worlds a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum World {
    Mapper,
    Matcher,
}

impl World {
    /// The interface the world exports (`mapper` / `matcher`).
    pub fn interface(self) -> &'static str {
        match self {
            World::Mapper => "mapper",
            World::Matcher => "matcher",
        }
    }

    /// The exported interface that makes a component implement this world at `version`.
    pub fn export_name(self, version: WitVersion) -> String {
        version.qualified(self.interface())
    }

    /// The world's full name at `version`, e.g. `orgx:peer/mapper-component@0.2.0`.
    pub fn wit_name(self, version: WitVersion) -> String {
        version.qualified(&format!("{}-component", self.interface()))
    }

    /// The world and version a component's export list implements, if any.
    pub fn of_exports<'a>(exports: impl IntoIterator<Item = &'a str> + Clone) -> Option<(World, WitVersion)> {
        // Newest first: a component exporting two versions is linked by the newest.
        for version in WitVersion::SERVED.into_iter().rev() {
            for world in [World::Mapper, World::Matcher] {
                let name = world.export_name(version);
                if exports.clone().into_iter().any(|e| e == name) {
                    return Some((world, version));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_built_from_the_package_and_version() {
        assert_eq!(World::Mapper.export_name(WitVersion::V0_1_0), "orgx:peer/mapper@0.1.0");
        assert_eq!(World::Matcher.wit_name(WitVersion::V0_2_0), "orgx:peer/matcher-component@0.2.0");
        assert_eq!(WitVersion::parse("0.2.0"), Some(WitVersion::V0_2_0));
        assert_eq!(WitVersion::served_list(), "0.1.0, 0.2.0, 0.3.0");
        assert!(!WitVersion::V0_2_0.matcher_prepares() && WitVersion::V0_3_0.matcher_prepares());
    }

    #[test]
    fn world_of_exports_table() {
        type Case<'a> = (&'a [&'a str], Option<(World, WitVersion)>);
        let table: &[Case<'_>] = &[
            (&["orgx:peer/mapper@0.1.0"], Some((World::Mapper, WitVersion::V0_1_0))),
            (&["orgx:peer/mapper@0.2.0"], Some((World::Mapper, WitVersion::V0_2_0))),
            (&["orgx:peer/matcher@0.2.0"], Some((World::Matcher, WitVersion::V0_2_0))),
            (&["orgx:peer/mapper@0.1.0", "orgx:peer/mapper@0.2.0"], Some((World::Mapper, WitVersion::V0_2_0))),
            (&["orgx:peer/matcher@0.3.0"], Some((World::Matcher, WitVersion::V0_3_0))),
            (&["orgx:peer/mapper@0.2.0", "orgx:peer/mapper@0.3.0"], Some((World::Mapper, WitVersion::V0_3_0))),
            (&["orgx:peer/mapper@0.4.0"], None),
            (&["orgx:peer/mapper@0.2.0-rc1"], None),
            (&["orgx:peer/mapper"], None),
            (&["orgx:peerx/mapper@0.2.0"], None),
            (&["wasi:cli/run@0.2.0"], None),
            (&[], None),
        ];
        for (exports, want) in table {
            assert_eq!(World::of_exports(exports.iter().copied()), *want, "{exports:?}");
        }
    }
}
