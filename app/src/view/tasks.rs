//! Tasks as the Task Monitor, the composer and the Error Review show them.

use serde::{Deserialize, Serialize};

/// One row of the Task Monitor or the Error Review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRow {
    pub id: String,
    /// Record version: a live event older than the row on screen is ignored.
    pub version: u64,
    pub model: String,
    pub project: String,
    pub owner: String,
    pub state: String,
    pub terminal: bool,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub finished_ms: Option<u64>,
    pub estimated_credits: String,
    pub actual_credits: Option<String>,
    pub kie_task_id: Option<String>,
    pub fail_code: Option<String>,
    pub fail_msg: Option<String>,
    /// The Error Review's class label ("Rate limited", "Callback lost"…).
    pub fail_class: Option<String>,
    /// Where the task stands in words, while it waits.
    pub note: Option<String>,
    pub result_urls: Vec<String>,
    /// The first words of the prompt.
    pub prompt: Option<String>,
    pub retry_of: Option<String>,
    #[serde(default)]
    pub rerun_of: Option<String>,
    /// For a language model's call (kind "chat"): its tokens, "11 → 5 tokens" (estimated
    /// ones say so). `None` for a task.
    #[serde(default)]
    pub chat: Option<String>,
    /// While it waits for the rate guard: its place and expected wait ("#3 · ≈ 10 s").
    pub queue: Option<String>,
    /// The Library's copies of its results (`/library/<task>/<n>`, signed-in paths), in
    /// result order; empty until archived.
    #[serde(default)]
    pub library: Vec<String>,
    /// Where its Library copies stand: "In Library", "Archiving 1/2", "Result expired",
    /// "Not archived", "Deleted from Library"; `None` when nothing is to be copied.
    #[serde(default)]
    pub archive: Option<String>,
}

impl TaskRow {
    /// Steps done of the lifecycle (queued 1 … ended 6), for the progress bar.
    pub fn step(&self) -> u8 {
        match self.state.as_str() {
            "queued" => 1,
            "submitted" => 2,
            "waiting" => 3,
            "queuing" => 4,
            "generating" => 5,
            _ => 6,
        }
    }
}

#[cfg(feature = "ssr")]
impl From<gateway::TaskRecord> for TaskRow {
    fn from(t: gateway::TaskRecord) -> TaskRow {
        use gateway::library::asset::AssetState;
        let library = t.archive.iter().flat_map(|a| a.assets.iter().enumerate()).filter(|(_, x)| x.state == AssetState::Archived).map(|(n, _)| gateway::library::links::unsigned_path(&t.id, n)).collect();
        let archive = t.archive.as_ref().map(|a| {
            let count = |s: AssetState| a.assets.iter().filter(|x| x.state == s).count();
            if a.lost() {
                "Result expired".to_string()
            } else if a.pending() {
                format!("Archiving {}/{}", count(AssetState::Archived), a.assets.len())
            } else if a.complete() {
                "In Library".to_string()
            } else if count(AssetState::Deleted) > 0 {
                "Deleted from Library".to_string()
            } else {
                "Not archived".to_string()
            }
        });
        let prompt = t.input.get("prompt").and_then(|p| p.as_str()).map(|p| {
            let short: String = p.chars().take(80).collect();
            if short.len() < p.len() { format!("{short}…") } else { short }
        });
        TaskRow {
            terminal: t.state.is_terminal(),
            state: t.state.as_str().into(),
            estimated_credits: t.estimated_cost.to_string(),
            actual_credits: t.actual_cost.map(|c| c.to_string()),
            fail_class: t.fail_class.map(|c| c.label().to_string()),
            version: t.version,
            id: t.id,
            model: t.model,
            project: t.project,
            owner: t.owner,
            created_ms: t.created_ms,
            updated_ms: t.updated_ms,
            finished_ms: t.finished_ms,
            kie_task_id: t.kie_task_id,
            fail_code: t.fail_code,
            fail_msg: t.fail_msg,
            note: t.note,
            result_urls: t.result_urls,
            prompt,
            retry_of: t.retry_of,
            rerun_of: t.rerun_of,
            chat: t.chat.map(|u| {
                let est = if u.estimated { " (estimated)" } else { "" };
                format!("chat · {} → {} tokens{est}", u.prompt_tokens, u.completion_tokens)
            }),
            queue: None,
            library,
            archive,
        }
    }
}

/// A draft by a language model, started: where to read it (`/draft/<token>`, once) and what
/// it is estimated at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DraftStart {
    pub token: String,
    pub estimate: String,
}

/// An ended task's inputs, to open in the composer ("Re-run with edits").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Draft {
    /// The task it re-runs.
    pub of: String,
    pub model: String,
    pub project: String,
    pub prompt: String,
    pub choice: Option<String>,
    pub mode: Option<String>,
    pub image_url: Option<String>,
    /// The model's other fields, as the composer writes them.
    pub fields: Vec<(String, String)>,
}

/// What a submission from the console answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submitted {
    pub id: String,
    pub estimated_credits: String,
}

/// One page of task rows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskList {
    pub rows: Vec<TaskRow>,
    pub next: Option<String>,
}
