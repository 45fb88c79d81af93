//! orgx-peer: a sidecar that runs OrgX tasks on a developer's local Claude Code.
//!
//! Data flows one way: socket → dispatcher → run (`run`: process → lines → `sandbox` →
//! outbox) → socket. What driver output means, and which skill rules it breaks, is decided
//! by sandboxed WebAssembly components behind the WIT interface in `wit/`; the host moves
//! bytes, enforces order and limits, and never interprets a stream-json line.
//!
//! Modules: `sandbox` (loading, auditing and running components), `run` (line framing, the
//! per-run pipeline, offline replay), `components` (which components serve new runs),
//! `protocol` (wire messages), `rules` (plan-skills rules), `inspect` (the auditor's report).

pub mod components;
pub mod inspect;
pub mod protocol;
pub mod rules;
pub mod run;
pub mod sandbox;
