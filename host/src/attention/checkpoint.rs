//! What a suspended run needs to be resumed, kept in the store so it survives restarts
//! (spec §8.1 step 2: decision ids, session, tool call, working directory, lineage, the
//! questions and the answers so far). The reference keeps a 0600 file per decision; this
//! peer keeps one record per run in its store, which sits in the 0700 data dir.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub run_id: String,
    /// The dispatch's `idempotency_key`: blocked until the run ends (§8.3).
    pub dispatch_key: String,
    pub driver: String,
    pub session: String,
    pub tool_use_id: String,
    pub tool_name: String,
    pub tool_input: Value,
    /// The working directory of the first process (the session is found under it).
    pub cwd: Option<String>,
    pub plugin_dir: PathBuf,
    pub timeout_seconds: Option<u64>,
    pub initiative_id: Option<String>,
    pub workstream_id: Option<String>,
    /// The run's original `started_at` (ms since the epoch) and `first_response_at`.
    pub started_at_ms: u64,
    pub first_response_at: Option<String>,
    /// Usage of the processes so far, added to the final `task.completed`.
    pub tokens_used: u64,
    pub cost_estimate_cents: u64,
    pub saved_estimate_cents: Option<u64>,
    pub questions: Vec<Question>,
    pub state: State,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    pub decision_id: String,
    pub text: String,
    /// The resolution's key that answered it.
    pub answered_by: Option<String>,
    pub answer: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting for every question's answer; nothing runs.
    Suspended,
    /// A resumed process was started: a peer that stops now cannot prove where it was.
    Resuming,
}

impl Checkpoint {
    pub fn load(store: &Store, run_id: &str) -> Result<Option<Checkpoint>, StoreError> {
        Ok(store.checkpoint(run_id)?.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    pub fn save(&self, store: &Store) -> Result<(), StoreError> {
        store.set_checkpoint(&self.run_id, &serde_json::to_vec(self).expect("a checkpoint serializes"))
    }

    /// Forget the run: its record and its plugin directory (answers included).
    pub fn discard(&self, store: &Store) {
        // `<data dir>/attention/<run>/plugin`: the run's directory goes with it.
        let run_dir = self.plugin_dir.parent().filter(|_| self.plugin_dir.ends_with(super::RUN_PLUGIN_DIR));
        forget(store, &self.run_id, run_dir);
    }

    pub fn started_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.started_at_ms)
    }

    /// The question a decision belongs to, with its 0-based index.
    pub fn question_mut(&mut self, decision_id: &str) -> Option<&mut Question> {
        self.questions.iter_mut().find(|q| q.decision_id == decision_id)
    }

    pub fn answered(&self) -> usize {
        self.questions.iter().filter(|q| q.answer.is_some()).count()
    }

    /// The hook's `answers`: each question's text → its answer.
    pub fn answers(&self) -> serde_json::Map<String, Value> {
        self.questions.iter().filter_map(|q| Some((q.text.clone(), Value::String(q.answer.clone()?)))).collect()
    }
}

pub fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The one way a run's attention state goes: its checkpoint record, then its directory
/// (`<data dir>/attention/<run>`, plugin and answers). Both the end of a run and a
/// checkpoint that can no longer be used come here, so neither can leave half behind.
pub fn forget(store: &Store, run_id: &str, run_dir: Option<&std::path::Path>) {
    if let Err(e) = store.clear_checkpoint(run_id) {
        tracing::warn!(run_id = %run_id, "cannot forget the run's attention checkpoint: {e}");
    }
    if let Some(dir) = run_dir.filter(|d| d.exists()) {
        let _ = std::fs::remove_dir_all(dir);
    }
}
