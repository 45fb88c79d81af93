//! The signed statement about a component: which slot it is for, what it is, which version.
//!
//! The signature covers a *canonical text* of the manifest, not its JSON: one `field: value`
//! line per field in a fixed order, every value checked against a narrow alphabet first, so
//! no two different manifests can have the same canonical bytes and no JSON library's
//! ordering or escaping can change what was signed. The slot is inside the signed text, so a
//! component signed for one slot cannot be replayed into another.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The first line of every canonical manifest; bumped if the format ever changes.
pub const CANONICAL_HEADER: &str = "orgx-peer component manifest v1";

/// Where a component serves. New runs of a slot use its active component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Slot {
    /// The output mapper of one driver, by its protocol id: `mapper:<driver>`.
    Mapper(&'static str),
    /// The skill-rule matcher.
    Matcher,
}

impl Slot {
    /// One mapper slot per known driver, then the matcher.
    pub fn all() -> Vec<Slot> {
        crate::driver::ALL.iter().map(|d| Slot::Mapper(d.id)).chain([Slot::Matcher]).collect()
    }

    /// The wire name, as in `component.push` and the acknowledgements.
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Mapper(id) => crate::driver::by_id(id).map_or("mapper:unknown", |d| d.slot),
            Slot::Matcher => "matcher",
        }
    }

    pub fn parse(s: &str) -> Option<Slot> {
        Slot::all().into_iter().find(|slot| slot.as_str() == s)
    }

    /// The WIT world (without version) a component in this slot must implement.
    pub fn world(self) -> &'static str {
        match self {
            Slot::Mapper(_) => "orgx:peer/mapper-component",
            Slot::Matcher => "orgx:peer/matcher-component",
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Slot {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Slot {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Slot, D::Error> {
        let s = String::deserialize(d)?;
        Slot::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown slot `{}`", s.chars().take(40).collect::<String>())))
    }
}

/// The signed fields, exactly as they travel in `component.push` and `.sig` files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub slot: Slot,
    pub name: String,
    pub version: u64,
    pub sha256: String,
    pub size: u64,
    pub world: String,
    pub wit_version: String,
    pub key_id: String,
}

/// A manifest field that cannot be signed or trusted as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("manifest field `{field}` is invalid: {why}")]
pub struct ManifestError {
    pub field: &'static str,
    pub why: String,
}

fn check(field: &'static str, value: &str, max: usize, allowed: impl Fn(char) -> bool, what: &str) -> Result<(), ManifestError> {
    if value.is_empty() || value.len() > max || !value.chars().all(allowed) {
        let shown: String = value.chars().take(40).flat_map(char::escape_default).collect();
        return Err(ManifestError { field, why: format!("`{shown}` is not {what} (1-{max} chars)") });
    }
    Ok(())
}

impl Manifest {
    /// Every field within its alphabet; what `canonical` relies on.
    pub fn validate(&self) -> Result<(), ManifestError> {
        check("name", &self.name, 64, |c| c.is_ascii_alphanumeric() || "._-".contains(c), "letters, digits, `._-`")?;
        if self.version == 0 {
            return Err(ManifestError { field: "version", why: "versions start at 1".into() });
        }
        if self.sha256.len() != 64 {
            return Err(ManifestError { field: "sha256", why: "must be 64 lowercase hex digits".into() });
        }
        check("sha256", &self.sha256, 64, |c| c.is_ascii_digit() || ('a'..='f').contains(&c), "lowercase hex")?;
        check("world", &self.world, 128, |c| c.is_ascii_lowercase() || c.is_ascii_digit() || ":/-_.".contains(c), "a WIT world name")?;
        check("wit_version", &self.wit_version, 32, |c| c.is_ascii_alphanumeric() || ".-+".contains(c), "a semver")?;
        if self.key_id.len() != 16 {
            return Err(ManifestError { field: "key_id", why: "must be 16 lowercase hex digits".into() });
        }
        check("key_id", &self.key_id, 16, |c| c.is_ascii_digit() || ('a'..='f').contains(&c), "lowercase hex")?;
        Ok(())
    }

    /// The bytes the Ed25519 signature covers.
    pub fn canonical(&self) -> Result<Vec<u8>, ManifestError> {
        self.validate()?;
        Ok(format!(
            "{CANONICAL_HEADER}\nslot: {}\nname: {}\nversion: {}\nsha256: {}\nsize: {}\nworld: {}\nwit-version: {}\nkey-id: {}\n",
            self.slot, self.name, self.version, self.sha256, self.size, self.world, self.wit_version, self.key_id
        )
        .into_bytes())
    }

    /// `name v3 (sha256:0123abcd…)`: how logs and acks name a pushed component.
    pub fn label(&self) -> String {
        format!("{} v{} (sha256:{})", self.name, self.version, &self.sha256[..12.min(self.sha256.len())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Manifest {
        Manifest {
            slot: Slot::Matcher,
            name: "no-force-push".into(),
            version: 3,
            sha256: "a".repeat(64),
            size: 1234,
            world: "orgx:peer/matcher-component".into(),
            wit_version: "0.1.0".into(),
            key_id: "0123456789abcdef".into(),
        }
    }

    #[test]
    fn canonical_text_is_fixed() {
        let text = String::from_utf8(good().canonical().unwrap()).unwrap();
        assert_eq!(
            text,
            format!(
                "orgx-peer component manifest v1\nslot: matcher\nname: no-force-push\nversion: 3\nsha256: {}\nsize: 1234\n\
                 world: orgx:peer/matcher-component\nwit-version: 0.1.0\nkey-id: 0123456789abcdef\n",
                "a".repeat(64)
            )
        );
    }

    #[test]
    fn hostile_fields_are_refused_before_signing() {
        type Edit = fn(&mut Manifest);
        let table: &[(&str, Edit, &str)] = &[
            ("newline in name forges a field", |m| m.name = "x\nversion: 99".into(), "name"),
            ("empty name", |m| m.name.clear(), "name"),
            ("path in name", |m| m.name = "../../etc".into(), "name"),
            ("overlong name", |m| m.name = "n".repeat(65), "name"),
            ("non-ascii name", |m| m.name = "mätcher".into(), "name"),
            ("version zero", |m| m.version = 0, "version"),
            ("short digest", |m| m.sha256 = "ab".into(), "sha256"),
            ("uppercase digest", |m| m.sha256 = "A".repeat(64), "sha256"),
            ("non-hex digest", |m| m.sha256 = "g".repeat(64), "sha256"),
            ("world with space", |m| m.world = "orgx:peer/x y".into(), "world"),
            ("world with newline", |m| m.world = "w\nkey-id: 0".into(), "world"),
            ("wit version with newline", |m| m.wit_version = "0.1.0\n".into(), "wit_version"),
            ("short key id", |m| m.key_id = "abc".into(), "key_id"),
            ("key id not hex", |m| m.key_id = "zzzzzzzzzzzzzzzz".into(), "key_id"),
        ];
        for (what, edit, field) in table {
            let mut m = good();
            edit(&mut m);
            let err = m.canonical().expect_err(what);
            assert_eq!(err.field, *field, "{what}: {err}");
        }
    }

    #[test]
    fn every_field_changes_the_signed_bytes() {
        let base = good().canonical().unwrap();
        type Edit = fn(&mut Manifest);
        let edits: &[Edit] = &[
            |m| m.slot = Slot::Mapper("claude_code"),
            |m| m.name = "other".into(),
            |m| m.version = 4,
            |m| m.sha256 = "b".repeat(64),
            |m| m.size = 1235,
            |m| m.world = "orgx:peer/mapper-component".into(),
            |m| m.wit_version = "0.2.0".into(),
            |m| m.key_id = "fedcba9876543210".into(),
        ];
        for edit in edits {
            let mut m = good();
            edit(&mut m);
            assert_ne!(m.canonical().unwrap(), base);
        }
    }

    #[test]
    fn slots_round_trip_and_unknown_fields_are_refused() {
        for slot in Slot::all() {
            assert_eq!(Slot::parse(slot.as_str()), Some(slot));
        }
        let names: Vec<&str> = Slot::all().iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["mapper:claude_code", "mapper:codex", "mapper:opencode", "matcher"]);
        for unknown in ["mapper:cursor", "mapper:", "mapper", "Matcher", "mapper:codex ", " matcher", "mapper:claude-code"] {
            assert_eq!(Slot::parse(unknown), None, "{unknown:?}");
        }
        let mut v = serde_json::to_value(good()).unwrap();
        v["signed_by_admin"] = serde_json::json!(true);
        assert!(serde_json::from_value::<Manifest>(v).is_err());
    }
}
