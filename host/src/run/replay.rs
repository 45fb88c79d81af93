//! Offline replay: a recorded stdout transcript through the exact pipeline a live run uses.
//!
//! Rule authors and auditors use it to see, line for line, the wire messages the peer would
//! send. It frames the file with the live run's line reader and feeds the live run's
//! pipeline; a transcript that ends without a terminal message ends like a process that
//! exited 0 without a `result` line.

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Context;

use super::lines::{Line, LineReader};
use super::pipeline::{RunPipeline, RunSpec};
use crate::components::ActiveComponents;
use crate::protocol::PeerMessage;
use crate::rules::Rule;
use crate::sandbox::{types as t, Limits};

pub struct ReplayOptions {
    pub transcript: PathBuf,
    /// Whose output the transcript is (a driver id). Replay runs no detection: the mapper
    /// attributes the run as it would with nothing detected.
    pub driver: String,
    pub run_id: String,
    pub cwd: Option<String>,
    pub max_line_bytes: usize,
    pub limits: Limits,
}

/// What a replay saw besides the messages.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayStats {
    pub lines: u64,
    pub oversize_lines: u64,
    pub messages: u64,
}

/// Replay `opts.transcript`, handing each wire message to `sink` as it is produced.
pub async fn replay(
    components: &ActiveComponents,
    rules: &[Rule],
    opts: &ReplayOptions,
    mut sink: impl FnMut(&PeerMessage),
) -> anyhow::Result<ReplayStats> {
    let file =
        tokio::fs::File::open(&opts.transcript).await.with_context(|| format!("cannot open transcript `{}`", opts.transcript.display()))?;
    let mut reader = LineReader::new(file, opts.max_line_bytes);
    let (mut run, first) = RunPipeline::start(RunSpec {
        context: crate::sandbox::convert::run_context(opts.run_id.clone(), opts.cwd.clone(), &opts.driver),
        mapper: &components.mapper(&opts.driver).component,
        matcher: &components.matcher.component,
        rules,
        prepared: None,
        started_at: SystemTime::now(),
        // A file has no clock: it maps as fast as it reads, so only the live rate is capped.
        limits: Limits { max_run_rate: None, ..opts.limits },
    });
    // A transcript that parks a question shows the `task.suspended` a v3 run sends.
    run.allow_suspension();
    let mut stats = ReplayStats::default();
    let mut emit = |msgs: Vec<PeerMessage>, stats: &mut ReplayStats| {
        for m in &msgs {
            stats.messages += 1;
            sink(m);
        }
    };
    emit(first, &mut stats);
    while !run.is_done() {
        let line = reader.next().await.with_context(|| format!("cannot read transcript `{}`", opts.transcript.display()))?;
        match line {
            Some(Line::Full(bytes)) => {
                stats.lines += 1;
                emit(run.on_line(&bytes), &mut stats);
            }
            Some(Line::Oversize { len }) => {
                stats.lines += 1;
                stats.oversize_lines += 1;
                tracing::warn!(run_id = %opts.run_id, len, limit = opts.max_line_bytes, "skipped an oversize output line");
            }
            None => {
                emit(run.on_end(&t::EndReason::Exited(t::ProcessExit::Code(0)), None), &mut stats);
            }
        }
    }
    emit(run.suspended_message().into_iter().collect(), &mut stats);
    Ok(stats)
}
