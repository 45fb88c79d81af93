//! The built-in matcher, compiled from `plugins/skill-rules` by the build script and
//! embedded, so the binary works on its own with no components directory. Each driver's
//! built-in mapper is embedded by its file in `driver/`.

/// The default skill-rule matcher (`plugins/skill-rules`).
pub const SKILL_RULES_MATCHER: &[u8] = include_bytes!(concat!(env!("ORGX_GUEST_WASM_DIR"), "/orgx_matcher_skill_rules.wasm"));

pub const SKILL_RULES_MATCHER_NAME: &str = "skill-rules";
