//! The guest SDK of orgx-peer: everything a component author needs besides their logic.
//!
//! A component is a plain Rust type implementing [`Mapper`] or [`Matcher`] over the native
//! mirrors in [`types`]; one line, [`export_mapper!`] or [`export_matcher!`], turns it into a
//! WebAssembly component of the current WIT version (`wit/v0.3.0`). The logic compiles
//! natively too, so its tests and benchmarks need no WebAssembly runtime.
//!
//! Why the SDK owns the WIT glue: the conversions between generated and native types exist
//! once, here, instead of once per component; and a WIT version bump is one change in this
//! crate, not in every guest.

pub mod text;
pub mod types;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod glue;

pub use types::*;

/// The WIT version this SDK builds components for.
pub const WIT_VERSION: &str = "0.3.0";

/// A driver-output mapper: one value per run, fed the run's stdout line by line.
pub trait Mapper: 'static {
    /// Called once, before any line.
    fn begin(ctx: RunContext) -> Self
    where
        Self: Sized;

    /// One stdout line, without its newline; a bad line maps to nothing.
    fn map_line(&mut self, line: &[u8]) -> Vec<Event>;

    /// The output ended without a terminal event.
    fn end(&mut self, reason: EndReason, stderr_tail: Option<String>) -> Terminal;
}

/// A skill-rule matcher: one value per rules version, copied for each run.
///
/// `prepare` compiles the rules once; the host snapshots the component instance after it and
/// starts every run of that rules version from the snapshot, calling `begin` with the run's
/// id. So whatever `prepare` builds is paid for once, and `begin` should only reset what is
/// per run (the run id, what has fired).
pub trait Matcher: 'static {
    /// Compile one rules version; one warning per disabled rule.
    fn prepare(rules: Vec<Rule>) -> (Self, Vec<RuleWarning>)
    where
        Self: Sized;

    /// Start a run from the prepared state: called once, before its first `check`.
    fn begin(&mut self, run_id: &str);

    /// Test one step's subject.
    fn check(&mut self, subject: &MatchSubject, evidence_ref: &str) -> Vec<Deviation>;
}

/// Export a [`Mapper`] as the component's `orgx:peer/mapper` (wasm32 only; a no-op natively).
#[macro_export]
macro_rules! export_mapper {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct Export;
            impl $crate::glue::mapper::exports::orgx::peer::mapper::Guest for Export {
                fn begin(ctx: $crate::glue::mapper::orgx::peer::types::RunContext) {
                    $crate::glue::mapper_begin::<$ty>(ctx)
                }
                fn map_line(line: Vec<u8>) -> Vec<$crate::glue::mapper::orgx::peer::types::Event> {
                    $crate::glue::mapper_map_line(&line)
                }
                fn end(
                    reason: $crate::glue::mapper::orgx::peer::types::EndReason,
                    stderr_tail: Option<String>,
                ) -> $crate::glue::mapper::orgx::peer::types::Terminal {
                    $crate::glue::mapper_end::<$ty>(reason, stderr_tail)
                }
            }
    $crate::glue::mapper::export!(Export with_types_in $crate::glue::mapper);
        };
    };
}

/// Export a [`Matcher`] as the component's `orgx:peer/matcher` (wasm32 only; a no-op natively).
#[macro_export]
macro_rules! export_matcher {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct Export;
            impl $crate::glue::matcher::exports::orgx::peer::matcher::Guest for Export {
                fn prepare(
                    rules: Vec<$crate::glue::matcher::exports::orgx::peer::matcher::Rule>,
                ) -> Vec<$crate::glue::matcher::exports::orgx::peer::matcher::RuleWarning> {
                    $crate::glue::matcher_prepare::<$ty>(rules)
                }
                fn begin(run_id: String) {
                    $crate::glue::matcher_begin::<$ty>(run_id)
                }
                fn check(
                    subject: $crate::glue::matcher::orgx::peer::types::MatchSubject,
                    evidence_ref: String,
                ) -> Vec<$crate::glue::matcher::exports::orgx::peer::matcher::Deviation> {
                    $crate::glue::matcher_check(subject, evidence_ref)
                }
            }
    $crate::glue::matcher::export!(Export with_types_in $crate::glue::matcher);
        };
    };
}
