//! Resumable attention (Gateway Protocol v3, spec §8): a question a dispatched run asks
//! becomes an OrgX question, the run suspends, and the answer resumes the same CLI session.
//!
//! The parts, each in its own file because each runs in a different place:
//! - `plugin`: the Claude Code plugin directory a v3 run is handed (`--plugin-dir`), whose
//!   hook and permission host are this binary's own subcommands;
//! - `hook` (`orgx-peer hook pre-tool-use`) and `permission_host` (`orgx-peer mcp
//!   permission-host`): what runs *inside* the CLI's process tree — no network, no gateway
//!   key, only the run's plugin directory (the hook defers the first time and allows with
//!   the answers the daemon wrote there on resume);
//! - the rest runs in the daemon, which alone holds the key: `records` (the attention
//!   records filed from the deferred tool call), `checkpoint` (what survives a restart),
//!   `resolve` (an `attention.resolve`, step by step) and `receipts` (both channels, until a
//!   2xx).
//!
//! Records are filed by the daemon rather than by the hook, as the reference does, so that
//! the key never has to be in a child's environment (§6), where the model's tools could
//! read it.

pub mod checkpoint;
pub mod hook;
pub mod permission_host;
pub mod plugin;
pub mod receipts;
pub mod records;
pub mod resolve;

use std::path::PathBuf;
use std::time::SystemTime;

use crate::driver::Resumable;
use crate::http::Api;
use crate::outbox::Outbox;
use crate::protocol::{self as p, PeerMessage};
use crate::sandbox::types as t;
use crate::store::Store;
use checkpoint::{Checkpoint, Question, State};
use receipts::Receipts;

/// Why a parked question could not be filed (the run then ends `task.failed`).
#[derive(Debug, thiserror::Error)]
pub enum NotFiled {
    #[error("its driver cannot resume a session")]
    NotResumable,
    #[error("the run has no attention plugin dir")]
    NoPluginDir,
    #[error("the CLI reported no session to resume")]
    NoSession,
    #[error("the session handle `{0}` is not a session id (1-128 letters, digits, `-` and `_`)")]
    BadSession(String),
    #[error("the dispatch has no `task.initiative_id`, which an OrgX question needs (§5.4); the run cannot wait for an answer")]
    NoInitiative,
    #[error("the parked call's input is not JSON: {0}")]
    BadInput(serde_json::Error),
    #[error("the parked `{0}` call has no question")]
    NoQuestion(String),
    #[error("the parked call asks {0} questions; at most {max} are filed for one call", max = records::MAX_QUESTIONS)]
    TooManyQuestions(usize),
    #[error("cannot put the run's attention plugin dir on disk: {0}")]
    PluginDir(std::io::Error),
    #[error(transparent)]
    Server(#[from] crate::http::ApiError),
    #[error("cannot keep the checkpoint: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// A run's directory under `<data dir>/attention/` holds its plugin dir under this name.
pub const RUN_PLUGIN_DIR: &str = "plugin";

/// What the daemon's runs need for resumable attention (present on a v3 connection only).
#[derive(Clone)]
pub struct Attention {
    pub api: Api,
    pub receipts: Receipts,
    /// `<data dir>/attention`: one directory per run that may suspend.
    pub dir: PathBuf,
    /// This binary, which the plugin's hook and permission host run.
    pub exe: PathBuf,
}

/// A run that parked a question, as its pipeline left it.
pub struct Parked {
    /// The parked call, with the usage of every process of the run so far.
    pub suspension: t::Suspension,
    pub first_response_at: Option<String>,
    /// The run's `task.suspended`.
    pub message: PeerMessage,
}

/// The dispatch facts a checkpoint keeps.
#[derive(Clone)]
pub struct Origin {
    pub dispatch_key: String,
    pub initiative_id: Option<String>,
    pub workstream_id: Option<String>,
}

/// What a suspension is filed with.
pub struct SuspendContext<'a> {
    pub run_id: &'a str,
    pub driver: &'static str,
    pub resumable: Option<&'static Resumable>,
    pub cwd: Option<String>,
    pub plugin_dir: Option<PathBuf>,
    pub timeout_seconds: Option<u64>,
    pub started_at: SystemTime,
    pub origin: &'a Origin,
    pub outbox: &'a Outbox,
    pub store: &'a Store,
}

impl Attention {
    /// Write a fresh plugin dir for a run: `<dir>/<run key>/plugin`.
    pub fn prepare_plugin_dir(&self, run_id: &str) -> std::io::Result<PathBuf> {
        let dir = self.dir.join(run_dir_name(run_id)).join(RUN_PLUGIN_DIR);
        plugin::write(&dir, &self.exe)?;
        Ok(dir)
    }

    /// A run that ended: its checkpoint and plugin dir go (a suspended run keeps both until
    /// it ends).
    pub fn forget_run(&self, store: &Store, run_id: &str) {
        checkpoint::forget(store, run_id, Some(&self.dir.join(run_dir_name(run_id))));
    }

    /// File one attention record per question, keep the checkpoint, then send
    /// `task.suspended` (§8.1 steps 1–2). `false` when the run could not be suspended; it
    /// then has its `task.failed` (a question nobody can answer must not hold the run).
    pub async fn suspend(&self, ctx: SuspendContext<'_>, parked: Parked) -> bool {
        match self.file(&ctx, &parked).await {
            Ok(checkpoint) => {
                let queued = ctx.outbox.push_control(std::slice::from_ref(&parked.message));
                match queued {
                    Ok(ticket) => {
                        if let Err(e) = ticket.committed().await {
                            tracing::error!(run_id = %ctx.run_id, "cannot persist task.suspended: {e}");
                        }
                    }
                    Err(e) => tracing::error!(run_id = %ctx.run_id, "cannot queue task.suspended: {e}"),
                }
                tracing::info!(run_id = %ctx.run_id, questions = checkpoint.questions.len(), session = %checkpoint.session, "question filed in OrgX");
                true
            }
            Err(why) => {
                tracing::warn!(run_id = %ctx.run_id, "the run asked a question that cannot be filed in OrgX: {why}");
                let failed = PeerMessage::Failed(p::Failed {
                    run_id: ctx.run_id.to_string(),
                    reason: crate::redact::reason(&format!("the run asked a question that cannot be filed in OrgX: {why}")),
                    recoverable: false,
                });
                if let Ok(ticket) = ctx.outbox.push_control(&[failed]) {
                    let _ = ticket.committed().await;
                }
                if let Some(dir) = ctx.plugin_dir.as_ref().and_then(|d| d.parent()) {
                    let _ = std::fs::remove_dir_all(dir);
                }
                false
            }
        }
    }

    async fn file(&self, ctx: &SuspendContext<'_>, parked: &Parked) -> Result<Checkpoint, NotFiled> {
        let s = &parked.suspension;
        let resumable = ctx.resumable.ok_or(NotFiled::NotResumable)?;
        let plugin_dir = ctx.plugin_dir.clone().ok_or(NotFiled::NoPluginDir)?;
        let session = s.session_handle.clone().filter(|s| !s.is_empty()).ok_or(NotFiled::NoSession)?;
        if !is_session_id(&session) {
            return Err(NotFiled::BadSession(session.chars().take(64).collect()));
        }
        let initiative_id = ctx.origin.initiative_id.as_deref().filter(|i| !i.is_empty()).ok_or(NotFiled::NoInitiative)?;
        let tool_input: serde_json::Value = serde_json::from_str(&s.tool_input).map_err(NotFiled::BadInput)?;
        let asked = records::questions(&tool_input);
        if asked.is_empty() {
            return Err(NotFiled::NoQuestion(s.tool_name.clone()));
        }
        if asked.len() > records::MAX_QUESTIONS {
            return Err(NotFiled::TooManyQuestions(asked.len()));
        }
        let shared = records::Suspension {
            resumable,
            run_id: ctx.run_id,
            initiative_id,
            workstream_id: ctx.origin.workstream_id.as_deref(),
            session: &session,
            tool_use_id: &s.tool_use_id,
            tool_name: &s.tool_name,
        };
        let mut questions = Vec::with_capacity(asked.len());
        for (i, q) in asked.iter().enumerate() {
            let body = records::record(&shared, &asked, i);
            let decision_id = self.api.create_attention(&body).await?;
            questions.push(Question { decision_id, text: q.text.clone(), answered_by: None, answer: None });
        }
        let checkpoint = Checkpoint {
            run_id: ctx.run_id.to_string(),
            dispatch_key: ctx.origin.dispatch_key.clone(),
            driver: ctx.driver.to_string(),
            session,
            tool_use_id: s.tool_use_id.clone(),
            tool_name: s.tool_name.clone(),
            tool_input,
            cwd: ctx.cwd.clone(),
            plugin_dir,
            timeout_seconds: ctx.timeout_seconds,
            initiative_id: ctx.origin.initiative_id.clone(),
            workstream_id: ctx.origin.workstream_id.clone(),
            started_at_ms: checkpoint::epoch_ms(ctx.started_at),
            first_response_at: parked.first_response_at.clone(),
            tokens_used: s.tokens_used,
            cost_estimate_cents: s.cost_estimate_cents,
            saved_estimate_cents: s.saved_estimate_cents,
            questions,
            state: State::Suspended,
        };
        // The resumed process may start after a crash: its plugin dir must be on disk first.
        plugin::make_durable(&checkpoint.plugin_dir).map_err(NotFiled::PluginDir)?;
        checkpoint.save(ctx.store)?;
        Ok(checkpoint)
    }
}

/// The session handle becomes an argument of the resumed command line (`--resume <id>`) and
/// comes from the mapper, which a server can push: it must be an id, never something the CLI
/// could read as a flag or a path. Claude Code's are UUIDs.
pub fn is_session_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && s.as_bytes()[0].is_ascii_alphanumeric()
}

/// A run id as a directory name: its SHA-256, so any id the server sends is safe here.
fn run_dir_name(run_id: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(run_id.as_bytes())[..16])
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_plain_ids_become_a_resume_argument() {
        let long = "a".repeat(129);
        let table: &[(&str, bool)] = &[
            ("e001cdf9-10b2-4a00-b006-13711e656180", true),
            ("sess_1", true),
            ("a", true),
            ("", false),
            ("--dangerously-skip-permissions", false),
            ("-p", false),
            ("_x", false),
            ("../../etc/passwd", false),
            ("a b", false),
            ("a\nb", false),
            ("a\0b", false),
            ("é", false),
            ("a=b", false),
            (&long, false),
        ];
        for (s, ok) in table {
            assert_eq!(super::is_session_id(s), *ok, "{s:?}");
        }
        assert!(super::is_session_id(&"a".repeat(128)));
    }
}
