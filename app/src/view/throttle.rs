//! Panel 06, Throttle: the rate guard's rules, the queue and its fair shares.

use serde::{Deserialize, Serialize};

/// One rate guard rule and how full it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardRuleView {
    pub rule: String,
    pub used: i64,
    pub limit: i64,
}

/// The Throttle panel: the rate guard's rules, its queue and KIE's 429s.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThrottleView {
    pub rules: Vec<GuardRuleView>,
    pub margin_ms: u64,
    /// Tasks waiting for the guard.
    pub depth: usize,
    /// Expected wait of the last task in the queue, ms.
    pub drain_ms: u64,
    /// The next few tasks to leave: (task id, owner, expected wait ms).
    pub next: Vec<(String, String, u64)>,
    /// The queue by owner, most waiting first.
    pub by_owner: Vec<OwnerQueueView>,
    pub backed_off: usize,
    pub in_doubt: usize,
    pub cooldown_ms: Option<u64>,
    pub rate_limited_total: i64,
    /// Projects with a fair share of their own: (project, "weight 3 · at most 200 waiting
    /// per owner").
    pub shares: Vec<(String, String)>,
    /// Queued tasks held by a pause.
    pub paused: usize,
    /// The pauses in force: (project, or `None` for the team's intake; "Paused: … held by …").
    pub pauses: Vec<(Option<String>, String)>,
    /// Bulk actions kept, newest first.
    #[serde(default)]
    pub bulk: Vec<BulkJobView>,
    /// The newest batches and where each stands.
    #[serde(default)]
    pub batches: Vec<BatchView>,
}

/// A bulk action's preview (what it would take) and, once started, its job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BulkView {
    /// "cancel" or "retry".
    pub action: String,
    /// The filter in words.
    pub what: String,
    pub count: u32,
    /// Their estimates added up, in credits.
    pub estimate: String,
    /// More match than one action takes (it takes the oldest).
    pub more: bool,
    pub job: Option<BulkJobView>,
}

/// A bulk action's job: where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BulkJobView {
    pub id: String,
    pub action: String,
    pub what: String,
    pub by: String,
    /// "running", "done" or "stopped".
    pub state: String,
    pub done: u32,
    pub refused: u32,
    /// The previewed count.
    pub of: u32,
    pub percent: u32,
    /// Why some were refused, or why it stopped.
    pub reason: Option<String>,
    /// UTC, RFC 3339.
    pub started: String,
}

#[cfg(feature = "ssr")]
impl From<gateway::tasks::bulk::BulkJob> for BulkJobView {
    fn from(j: gateway::tasks::bulk::BulkJob) -> BulkJobView {
        use gateway::tasks::bulk::BulkState;
        let state = match j.state {
            BulkState::Running => "running",
            BulkState::Done => "done",
            BulkState::Stopped => "stopped",
        };
        BulkJobView {
            percent: j.percent(),
            what: j.filter.describe(),
            action: j.action.as_str().into(),
            by: j.by_name.clone(),
            state: state.into(),
            done: j.done,
            refused: j.refused,
            of: j.preview.count,
            reason: j.reason,
            started: gateway::team::audit::utc(j.created_ms),
            id: j.id,
        }
    }
}

/// One owner's share of the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnerQueueView {
    pub owner: String,
    pub waiting: usize,
    pub oldest_age_ms: u64,
    /// Of the next window's sends, how many are theirs.
    pub next_window: usize,
}

/// A batch and where it stands (panel 06).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchView {
    pub name: String,
    pub project: String,
    pub model: String,
    pub owner: String,
    /// admitting, admitted, refused or open (a relay client's).
    pub state: String,
    pub why: Option<String>,
    /// "312/500 done · 4 failed · 184 to go".
    pub line: String,
    /// Ended tasks, in percent of its tasks.
    pub percent: u32,
    pub failed: u64,
    pub queued: u64,
    /// Its estimate when submitted, in credits and dollars ("" for an open batch).
    pub estimate: String,
    pub created: String,
}

/// A batch's preview (what it would submit) or, once run, its admission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchSubmitted {
    pub name: String,
    pub tasks: usize,
    /// Credits and dollars: "80 credits ($0.40)".
    pub estimate: String,
    pub admitted: bool,
}
