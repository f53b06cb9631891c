//! Tasks as the Task Monitor, the composer and the Error Review show them.

use serde::{Deserialize, Serialize};

/// The states as a person reads them, one vocabulary for the Monitor's rows, its filter, its
/// counts and its legend: (the state's name on the wire, its words). KIE's own states read
/// "at KIE: …"; ours say where the task is here.
pub const STATE_WORDS: [(&str, &str); 8] = [
    ("queued", "in our queue"),
    ("submitted", "at KIE: accepted"),
    ("waiting", "at KIE: waiting"),
    ("queuing", "at KIE: in its queue"),
    ("generating", "at KIE: generating"),
    ("success", "done"),
    ("fail", "failed"),
    ("expired", "expired"),
];

/// What each state means, in [`STATE_WORDS`]' order (the Monitor's legend). Kept apart from the
/// words: the Monitor's island reads only those, so the bundle does not carry these.
pub const STATE_MEANINGS: [&str; 8] = [
    "Recorded here and waiting for the rate guard's turn: nothing is sent to KIE yet, and it can still be cancelled.",
    "KIE took it and gave it a task id.",
    "KIE has it and has not started it.",
    "Waiting in KIE's own queue.",
    "KIE is making it.",
    "Finished: its results are copied into the Library.",
    "Ended without a result (KIE refused or failed it, or it was cancelled); the Failures panel says why.",
    "No result in time: its deadline passed before it was sent, or its callback never came and polling gave up.",
];

/// A state's words (see [`STATE_WORDS`]); an unknown name as it is.
pub fn state_said(state: &str) -> &str {
    STATE_WORDS.iter().find(|(name, _)| *name == state).map_or(state, |(_, said)| said)
}

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
    /// The task that retries this failure, once someone retried it.
    #[serde(default)]
    pub retried_as: Option<String>,
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
    /// Where its Library copies stand: "In Library", "Archiving 1/2", "Arriving 12.0 MB of
    /// 48.2 MB (24 %)" (a file from the desk on its way in), "Result expired",
    /// "Not archived", "Deleted from Library"; `None` when nothing is to be copied.
    #[serde(default)]
    pub archive: Option<String>,
    /// When it entered its state (its story's last move), Unix ms.
    #[serde(default)]
    pub state_since_ms: u64,
    /// Its cost in dollars ("$0.02"): what KIE charged once it has, else the estimate.
    #[serde(default)]
    pub usd: String,
}

impl TaskRow {
    /// A failure the Error Review offers to retry: failed or expired, not retried yet.
    pub fn retryable(&self) -> bool {
        matches!(self.state.as_str(), "fail" | "expired") && self.retried_as.is_none()
    }

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
            } else if let Some(arrival) = a.arriving() {
                super::arriving(&arrival, gateway::store::now_ms())
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
        use gateway::tasks::story::BeatKind;
        let state_since_ms = t.story.beats.iter().rev().find(|b| matches!(b.kind, BeatKind::State | BeatKind::Submitted)).map_or(t.created_ms, |b| b.at_ms);
        let usd = format!("${:.2}", t.actual_cost.unwrap_or(t.estimated_cost).usd());
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
            // A file from the desk, or one written from KIE's data (Suno's MIDI), has no URL
            // a browser could load until its copy is in the Library (`library` then names it).
            result_urls: t.result_urls.into_iter().filter(|u| gateway::library::is_url(u)).collect(),
            prompt,
            retry_of: t.retry_of,
            retried_as: t.retried_as,
            rerun_of: t.rerun_of,
            chat: t.chat.map(|u| {
                let est = if u.estimated { " (estimated)" } else { "" };
                format!("chat · {} → {} tokens{est}", u.prompt_tokens, u.completion_tokens)
            }),
            queue: None,
            library,
            archive,
            state_since_ms,
            usd,
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

/// The Error Review as panel 11 shows it: failures to review grouped by class and model, and
/// the tasks that wait (stuck in the queue, charged over a cap).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReviewBoard {
    /// Every failure still to review (the strip's count), shown or not.
    pub to_review: u64,
    /// The newest of them (at most 100), grouped; the largest group first.
    pub groups: Vec<ReviewGroup>,
    /// Queued tasks that are stuck, and tasks charged over a per-job cap.
    pub waiting: Vec<TaskRow>,
}

/// Failures of one class and one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewGroup {
    /// The class's label ("Rate limited", "Callback lost"…).
    pub class: String,
    pub model: String,
    /// Newest first.
    pub rows: Vec<TaskRow>,
    /// How many a bulk retry would take (not retried yet), and what they are estimated at.
    pub retryable: usize,
    pub retry_credits: String,
    /// When they failed over the last 24 hours, one bar per hour (oldest first): ▁…█.
    pub spark: String,
}

#[cfg(feature = "ssr")]
impl ReviewBoard {
    /// Groups `rows` (failures to review, newest first) as of `now_ms`.
    pub fn group(to_review: u64, rows: Vec<TaskRow>, waiting: Vec<TaskRow>, now_ms: u64) -> ReviewBoard {
        let mut groups: Vec<ReviewGroup> = Vec::new();
        for r in rows {
            let class = r.fail_class.clone().or_else(|| r.archive.clone()).unwrap_or_else(|| r.state.clone());
            match groups.iter_mut().find(|g| g.class == class && g.model == r.model) {
                Some(g) => g.rows.push(r),
                None => groups.push(ReviewGroup { class, model: r.model.clone(), rows: vec![r], retryable: 0, retry_credits: String::new(), spark: String::new() }),
            }
        }
        for g in &mut groups {
            let retryable: Vec<&TaskRow> = g.rows.iter().filter(|r| r.retryable()).collect();
            g.retryable = retryable.len();
            let milli: i64 = retryable.iter().filter_map(|r| gateway::Credits::from_decimal(r.estimated_credits.parse().ok()?)).map(|c| c.milli()).sum();
            g.retry_credits = gateway::Credits(milli).to_string();
            g.spark = sparkline(g.rows.iter().map(|r| r.finished_ms.unwrap_or(r.updated_ms)), now_ms);
        }
        groups.sort_by_key(|g| std::cmp::Reverse(g.rows.len()));
        ReviewBoard { to_review, groups, waiting }
    }
}

/// One bar per hour of the 24 before `now_ms`, oldest first, as high as that hour's count
/// against the busiest hour's.
#[cfg(feature = "ssr")]
fn sparkline(times: impl Iterator<Item = u64>, now_ms: u64) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let mut hours = [0u32; 24];
    for at in times {
        let ago = now_ms.saturating_sub(at) / 3_600_000;
        if ago < 24 {
            hours[23 - ago as usize] += 1;
        }
    }
    let top = hours.iter().copied().max().unwrap_or(0).max(1);
    hours.iter().map(|&n| if n == 0 { ' ' } else { BARS[(n * 7 / top) as usize] }).collect()
}

/// What a bulk retry of one Error Review group did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetriedGroup {
    /// The new tasks.
    pub retried: Vec<String>,
    /// How many the group held to retry.
    pub of: usize,
    /// Why it stopped before the end (a cost rule, the queue's quota…).
    pub stopped: Option<String>,
}

/// One page of task rows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskList {
    pub rows: Vec<TaskRow>,
    pub next: Option<String>,
    /// How long each model on the page typically takes at KIE, ms (see
    /// `gateway::tasks::typical`): a task at KIE is set against it.
    #[serde(default)]
    pub typical: Vec<(String, u64)>,
    /// The page's cost: "100 credits ($0.50)", charged where KIE said, else estimated.
    #[serde(default)]
    pub total: String,
    /// How many tasks the filter matches in all, where the store counts it (see
    /// `gateway::tasks::facets`); `None` for a search or a range.
    #[serde(default)]
    pub matches: Option<u64>,
    /// The filter's tasks by state (its own state aside), where the store counts them: "By
    /// state: success 412 · fail 20".
    #[serde(default)]
    pub states: Option<String>,
}

/// One task's whole story: the Monitor's Story drawer and `GET /tasks/<id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStory {
    pub row: TaskRow,
    /// The input as it was sent to KIE, pretty JSON (cut past [`STORY_INPUT_CHARS`]).
    pub input: String,
    /// What its cost rests on: "reported", "measured" or "estimate".
    pub charge_basis: Option<String>,
    pub beats: Vec<BeatRow>,
    /// Beats dropped to keep the story bounded (the oldest after the first).
    pub dropped: u32,
    /// The task this follow-up acts on, and which of its results (from 0).
    pub follows: Option<(String, Option<usize>)>,
    /// The follow-ups the person may start on its results (none unless it succeeded).
    pub follow_ups: Vec<FollowOffer>,
    /// A Suno song's tracks whose timestamped lyrics were read, each `(track from 0, its
    /// lines as (start "m:ss.s", text))`.
    #[serde(default)]
    pub lyrics: Vec<(usize, Vec<(String, String)>)>,
    /// The tracks whose lyrics can be read from KIE now (a button each).
    #[serde(default)]
    pub lyrics_offered: Vec<usize>,
}

/// A follow-up a task's story offers on its results (Midjourney's Upscale on each image of a
/// grid), from the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowOffer {
    /// Its catalog model.
    pub model: String,
    /// The button's word: "Upscale".
    pub action: String,
    /// The results it may act on (from 0); empty: it acts on the whole task.
    pub results: Vec<usize>,
    /// It needs a prompt (how an extension goes on).
    pub needs_prompt: bool,
}

/// Most characters of a task's input a story shows.
pub const STORY_INPUT_CHARS: usize = 8_000;

/// One step of a task's story.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BeatRow {
    /// UTC, RFC 3339.
    pub at: String,
    pub instance: String,
    pub kind: String,
    pub text: String,
    /// Times it happened in a row (1 for most).
    pub times: u32,
}

#[cfg(feature = "ssr")]
impl From<gateway::TaskRecord> for TaskStory {
    fn from(mut t: gateway::TaskRecord) -> TaskStory {
        let story = std::mem::take(&mut t.story);
        let beats = story
            .beats
            .into_iter()
            .map(|b| BeatRow { at: gateway::team::audit::utc(b.at_ms), instance: b.instance, kind: b.kind.as_str().to_string(), text: b.text, times: b.times })
            .collect();
        let pretty = serde_json::to_string_pretty(&t.input).unwrap_or_default();
        let input = if pretty.chars().count() > STORY_INPUT_CHARS { pretty.chars().take(STORY_INPUT_CHARS).chain(['…']).collect() } else { pretty };
        let charge_basis = t.charge_basis.map(|b| b.as_str().to_string());
        let follows = t.follows.take().map(|f| (f.task, f.n));
        TaskStory { row: TaskRow::from(t), input, charge_basis, beats, dropped: story.dropped, follows, follow_ups: Vec::new(), lyrics: Vec::new(), lyrics_offered: Vec::new() }
    }
}

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_words_and_a_meaning_in_lifecycle_order() {
        let names: Vec<&str> = gateway::TaskState::ALL.iter().map(|s| s.as_str()).collect();
        let worded: Vec<&str> = STATE_WORDS.iter().map(|(name, _)| *name).collect();
        assert_eq!(worded, names, "one line of words per state, in the lifecycle's order (the legend zips them with STATE_MEANINGS)");
        assert_eq!(state_said("queued"), "in our queue");
        assert_eq!(state_said("waiting"), "at KIE: waiting");
        assert_eq!(state_said("no-such-state"), "no-such-state", "an unknown name is shown as it is");
        let said: std::collections::HashSet<&str> = STATE_WORDS.iter().map(|(_, s)| *s).collect();
        assert_eq!(said.len(), STATE_WORDS.len(), "no two states read the same");
        assert!(STATE_MEANINGS.iter().all(|m| m.len() > 10 && m.ends_with('.')));
    }
}
