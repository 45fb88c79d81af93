//! orgx-peer: a sidecar that runs OrgX tasks on a developer's local Claude Code.
//!
//! Data flows one way: socket (`gateway`) → `dispatcher` → run (`run`: process → lines →
//! `sandbox` → `outbox`) → socket. What driver output means, and which skill rules it
//! breaks, is decided by sandboxed WebAssembly components behind the WIT interface in
//! `wit/`; the host moves bytes, enforces order and limits, and never interprets a
//! stream-json line. `daemon` wires the parts; `main` owns exit codes.

pub mod attention;
pub mod authoring;
pub mod build_info;
pub mod components;
pub mod config;
pub mod config_file;
pub mod daemon;
pub mod dispatcher;
pub mod doctor;
pub mod driver;
pub mod envelope;
pub mod fsutil;
pub mod gateway;
pub mod heartbeat;
pub mod http;
pub mod inspect;
pub mod log_throttle;
pub mod memory;
pub mod metrics;
pub mod outbox;
pub mod own_children;
pub mod protocol;
pub mod receipts;
pub mod redact;
pub mod rules;
pub mod run;
pub mod sandbox;
pub mod secret;
pub mod service;
pub mod shutdown;
pub mod status;
pub mod store;
pub mod time;
pub mod trust;
