//! The built-in components, compiled from `plugins/` by the build script and embedded, so
//! the binary works on its own with no plugin directory.

/// The default Claude Code stream-json mapper (`plugins/claude-code`).
pub const CLAUDE_CODE_MAPPER: &[u8] = include_bytes!(concat!(env!("ORGX_GUEST_WASM_DIR"), "/orgx_mapper_claude_code.wasm"));

/// The default skill-rule matcher (`plugins/skill-rules`).
pub const SKILL_RULES_MATCHER: &[u8] = include_bytes!(concat!(env!("ORGX_GUEST_WASM_DIR"), "/orgx_matcher_skill_rules.wasm"));

pub const CLAUDE_CODE_MAPPER_NAME: &str = "claude-code";
pub const SKILL_RULES_MATCHER_NAME: &str = "skill-rules";
