//! Bulk actions: cancel, or retry, every task a filter selects (state, model, project, person,
//! failure class, a time range), with a preview first and a job that runs in pages after.
//!
//! - **Preview** ([`preview`]): how many tasks the action would take and what
//!   they are estimated at — the exact count, read from the filter's index (at most
//!   [`MAX_BULK`], and at most [`MAX_PREVIEW_PAGES`] bounded pages of the index read, from
//!   `since` on; beyond either it says so and the job stops there).
//! - **Job** ([`start`]): stored in the store's `bulk:jobs` document with the
//!   preview it was started from, who started it and where it stands (a cursor and counts).
//!   It takes only tasks created before it started, oldest first, so a quiet queue ends with
//!   exactly the previewed count done. Each task goes through the same path as one action —
//!   `Lifecycle::cancel` or `Lifecycle::retry`, with their roles, cost rules and audit; a
//!   task one of them refuses (sent meanwhile, someone else's) is counted as refused, with
//!   the first reason; a cost rule's refusal of a retry stops the job, saying why.
//! - **Runner** (`lifecycle::bulk`, every instance): a job is run by one instance at a time (a lease),
//!   a page at a time; the cursor and counts are written after each page, so after a restart
//!   the next instance goes on from the last page written. A page redone after a crash does
//!   not act twice: a cancelled task is no longer queued, and a retried failure carries
//!   `retried_as`, which the filter skips.

use serde::{Deserialize, Serialize};

use crate::money::credits::Credits;
use crate::store::{Store, StoreError, StoreResult, edit_doc, now_ms, read_doc};
use crate::tasks::task::{FailClass, TaskQuery, TaskRecord, TaskState};
use crate::team::accounts::{Actor, Role};

const JOBS_KEY: &str = "bulk:jobs";
/// Most tasks one bulk action takes.
pub const MAX_BULK: u32 = 5_000;
/// Most pages of its index one preview reads (each a bounded scan): a filter that reaches
/// wider says so ("more"), and the job stops where the preview did.
pub const MAX_PREVIEW_PAGES: usize = 400;
/// Jobs kept in the list (the oldest finished ones go first).
pub const MAX_JOBS: usize = 20;
/// Tasks one page of a job reads.
pub(crate) const PAGE: usize = 50;

/// What a bulk action does to each task it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkAction {
    /// Queued here, not yet sent: cancelled (see [`super::cancel`]).
    Cancel,
    /// Failed or expired, not yet retried: retried once (see [`Lifecycle::retry`]).
    Retry,
}

impl BulkAction {
    pub fn as_str(self) -> &'static str {
        match self {
            BulkAction::Cancel => "cancel",
            BulkAction::Retry => "retry",
        }
    }

    /// Whether it applies to `t` at all.
    pub(crate) fn applies(self, t: &TaskRecord) -> bool {
        match self {
            BulkAction::Cancel => t.state == TaskState::Queued && t.dispatch.sending_since_ms.is_none(),
            BulkAction::Retry => matches!(t.state, TaskState::Fail | TaskState::Expired) && t.retried_as.is_none() && t.chat.is_none(),
        }
    }
}

impl std::str::FromStr for BulkAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "cancel" => Ok(BulkAction::Cancel),
            "retry" => Ok(BulkAction::Retry),
            other => Err(format!("unknown bulk action {other:?}: use cancel or retry")),
        }
    }
}

/// Which tasks: every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkFilter {
    #[serde(default)]
    pub state: Option<TaskState>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub project: Option<String>,
    /// The owner: a person's email or `key:<id>`.
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub class: Option<FailClass>,
    /// A batch's name ([`crate::tasks::batch`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
    /// Created at or after (Unix ms).
    #[serde(default)]
    pub since_ms: Option<u64>,
    /// Created before (Unix ms).
    #[serde(default)]
    pub until_ms: Option<u64>,
}

/// A filter's fields as a form or the command line gives them (blank is absent).
#[derive(Debug, Clone, Default)]
pub struct FilterWords<'a> {
    /// A state's name (`queued`, `fail`, `expired`…).
    pub state: Option<&'a str>,
    pub model: Option<&'a str>,
    pub project: Option<&'a str>,
    pub owner: Option<&'a str>,
    /// A failure class: its name (`rate_limited`) or its label ("Rate limited").
    pub class: Option<&'a str>,
    pub batch: Option<&'a str>,
    /// `YYYY-MM-DD` (UTC, from that day's start), or `<n>h` / `<n>d` ago.
    pub since: Option<&'a str>,
    /// `YYYY-MM-DD` (UTC): before that day.
    pub until: Option<&'a str>,
}

impl BulkFilter {
    /// `Ok` when everything it can select is within `membership`: a person limited to some
    /// projects names one of them.
    pub fn within(&self, membership: &crate::team::membership::Membership) -> Result<(), BulkError> {
        if !membership.is_limited() {
            return Ok(());
        }
        let Some(p) = self.project.as_deref() else { return Err(BulkError::Forbidden(format!("Name one of your projects ({membership}) for a bulk action."))) };
        membership.admit(p).map_err(BulkError::Forbidden)
    }

    /// Reads `w`, each field checked, saying what to fix.
    pub fn from_words(w: &FilterWords<'_>, now_ms: u64) -> Result<BulkFilter, BulkError> {
        let some = |v: Option<&str>| v.map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
        let state = match some(w.state) {
            None => None,
            Some(s) => Some(TaskState::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| BulkError::Invalid(format!("unknown state {s:?}")))?),
        };
        let class = match some(w.class) {
            None => None,
            Some(c) => Some(
                FailClass::ALL
                    .into_iter()
                    .find(|k| k.label().eq_ignore_ascii_case(&c) || serde_json::to_value(k).ok().and_then(|v| v.as_str().map(|n| n == c)).unwrap_or(false))
                    .ok_or_else(|| BulkError::Invalid(format!("unknown failure class {c:?}")))?,
            ),
        };
        let day = |what: &str, v: &str| crate::money::receipts::parse_day(v).ok_or_else(|| BulkError::Invalid(format!("{what} must be a UTC day (YYYY-MM-DD){}", if what == "since" { " or a time ago (24h, 7d)" } else { "" })));
        let since_ms = match some(w.since) {
            None => None,
            Some(v) => {
                let ago = |unit: u64| v[..v.len() - 1].parse::<u64>().ok().filter(|n| *n <= 3_650).map(|n| now_ms.saturating_sub(n * unit));
                match v.chars().last() {
                    Some('h') => ago(3_600_000),
                    Some('d') => ago(86_400_000),
                    _ => None,
                }
                .map_or_else(|| day("since", &v), Ok)
                .map(Some)?
            }
        };
        let until_ms = some(w.until).map(|v| day("until", &v)).transpose()?;
        Ok(BulkFilter { state, model: some(w.model), project: some(w.project), owner: some(w.owner), class, batch: some(w.batch), since_ms, until_ms })
    }

    /// The scan, oldest first, of tasks created from `since` and before both `until` and
    /// `created_before` (the index's own range: it starts and ends there), after the cursor.
    pub(crate) fn query(&self, action: BulkAction, after: Option<String>, created_before: u64) -> TaskQuery {
        // The action's own state drives the scan when the filter names none.
        let state = self.state.or(match action {
            BulkAction::Cancel => Some(TaskState::Queued),
            BulkAction::Retry => None,
        });
        TaskQuery {
            state,
            model: self.model.clone(),
            project: self.project.clone(),
            owner: self.owner.clone(),
            batch: self.batch.clone(),
            created_from_ms: self.since_ms,
            created_before_ms: Some(self.until_ms.map_or(created_before, |u| u.min(created_before))),
            oldest_first: true,
            after,
            limit: PAGE,
            ..Default::default()
        }
    }

    pub(crate) fn matches(&self, t: &TaskRecord, created_before: u64) -> bool {
        t.created_ms < created_before
            && self.class.is_none_or(|c| t.fail_class == Some(c))
            && self.since_ms.is_none_or(|s| t.created_ms >= s)
            && self.until_ms.is_none_or(|u| t.created_ms < u)
    }

    /// The filter in words ("queued · project teaser · model veo3").
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(s) = self.state {
            parts.push(s.to_string());
        }
        if let Some(c) = self.class {
            parts.push(c.label().to_lowercase());
        }
        for (what, v) in [("batch", &self.batch), ("project", &self.project), ("model", &self.model), ("owner", &self.owner)] {
            if let Some(v) = v {
                parts.push(format!("{what} {v}"));
            }
        }
        if let Some(s) = self.since_ms {
            parts.push(format!("since {}", crate::team::audit::utc(s)));
        }
        if let Some(u) = self.until_ms {
            parts.push(format!("before {}", crate::team::audit::utc(u)));
        }
        if parts.is_empty() { "every task".into() } else { parts.join(" · ") }
    }

    /// Checks the filter's fields; a retry never takes a state that cannot be retried, nor a
    /// cancel one that cannot be cancelled.
    fn check(&self, action: BulkAction) -> Result<(), BulkError> {
        for v in [&self.model, &self.project, &self.owner, &self.batch].into_iter().flatten() {
            if v.trim().is_empty() || v.len() > 200 {
                return Err(BulkError::Invalid("a model, project, owner or batch is 1 to 200 characters".into()));
            }
        }
        if let (Some(s), Some(u)) = (self.since_ms, self.until_ms)
            && s >= u
        {
            return Err(BulkError::Invalid("the time range is empty: since must be before until".into()));
        }
        let fits = match (action, self.state) {
            (_, None) => true,
            (BulkAction::Cancel, Some(s)) => s == TaskState::Queued,
            (BulkAction::Retry, Some(s)) => matches!(s, TaskState::Fail | TaskState::Expired),
        };
        if !fits {
            return Err(BulkError::Invalid(format!("{} takes only {} tasks", action.as_str(), if action == BulkAction::Cancel { "queued" } else { "failed or expired" })));
        }
        Ok(())
    }
}

/// What a bulk action would take, read before it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkPreview {
    pub count: u32,
    /// Their estimates added up (what a retry would hold; what a cancel gives back).
    pub estimate: Credits,
    /// More than [`MAX_BULK`] match: the action takes the oldest [`MAX_BULK`].
    pub more: bool,
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkState {
    Running,
    Done,
    /// Stopped before the end (a cost rule refused a retry).
    Stopped,
}

/// One bulk action, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BulkJob {
    pub id: String,
    pub action: BulkAction,
    pub filter: BulkFilter,
    /// Who started it (its actions are theirs), their name and role then.
    pub by: String,
    pub by_name: String,
    pub role: Role,
    pub from: String,
    /// The projects they reached then (a limited person's job acts only within them).
    #[serde(default)]
    pub membership: crate::team::membership::Membership,
    pub created_ms: u64,
    pub preview: BulkPreview,
    pub state: BulkState,
    /// Where the next page starts (the filter's index, oldest first).
    pub cursor: Option<String>,
    pub done: u32,
    /// Tasks the action refused (sent meanwhile, someone else's), with the first reason.
    pub refused: u32,
    pub reason: Option<String>,
    pub finished_ms: Option<u64>,
}

impl BulkJob {
    pub(crate) fn actor(&self) -> Actor {
        Actor { who: self.by.clone(), name: self.by_name.clone(), role: self.role, from: self.from.clone(), membership: self.membership.clone() }
    }

    /// Done and refused, against the preview (for a progress bar).
    pub fn percent(&self) -> u32 {
        let of = self.preview.count.max(1);
        ((self.done + self.refused).min(of) * 100 / of).min(100)
    }
}

/// Every job kept, newest last.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Jobs {
    #[serde(default)]
    jobs: Vec<BulkJob>,
}

/// Why a bulk action could not start; nothing was done.
#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("Nothing to {0}: no task matches {1}.")]
    Nothing(&'static str, String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BulkError {
    pub fn code(&self) -> u16 {
        match self {
            BulkError::Invalid(_) => 422,
            BulkError::Forbidden(_) => 403,
            BulkError::Nothing(..) => 409,
            BulkError::Store(_) => 503,
        }
    }
}

/// How many tasks `action` would take under `filter`, and their estimates.
pub async fn preview(store: &dyn Store, action: BulkAction, filter: &BulkFilter) -> Result<BulkPreview, BulkError> {
    filter.check(action)?;
    let before = now_ms() + 1;
    let mut preview = BulkPreview::default();
    let mut after = None;
    for _ in 0..MAX_PREVIEW_PAGES {
        let page = store.task_list(&filter.query(action, after, before)).await?;
        for t in &page.tasks {
            if !(filter.matches(t, before) && action.applies(t)) {
                continue;
            }
            if preview.count == MAX_BULK {
                preview.more = true;
                return Ok(preview);
            }
            preview.count += 1;
            preview.estimate = Credits(preview.estimate.milli() + t.estimated_cost.milli());
        }
        match page.next {
            Some(n) => after = Some(n),
            None => return Ok(preview),
        }
    }
    preview.more = true;
    Ok(preview)
}

/// Starts `action` on what `filter` selects now, as `by` (a producer or admin): the job is
/// stored with its preview and audited, and the runners take it (see the module doc).
pub async fn start(store: &dyn Store, action: BulkAction, filter: BulkFilter, by: &Actor) -> Result<BulkJob, BulkError> {
    by.require(Role::Producer).map_err(|e| BulkError::Forbidden(e.to_string()))?;
    filter.within(&by.membership)?;
    let preview = preview(store, action, &filter).await?;
    if preview.count == 0 {
        return Err(BulkError::Nothing(action.as_str(), filter.describe()));
    }
    let job = BulkJob {
        id: format!("bulk_{}", crate::secret::random_hex(6)),
        action,
        filter,
        by: by.who.clone(),
        by_name: by.name.clone(),
        role: by.role,
        from: by.from.clone(),
        membership: by.membership.clone(),
        created_ms: now_ms(),
        preview,
        state: BulkState::Running,
        cursor: None,
        done: 0,
        refused: 0,
        reason: None,
        finished_ms: None,
    };
    let kept = job.clone();
    edit_doc(store, JOBS_KEY, |all: &mut Jobs| {
        while all.jobs.len() >= MAX_JOBS {
            // The oldest finished one goes; with every kept job still running, the oldest.
            let i = all.jobs.iter().position(|j| j.state != BulkState::Running).unwrap_or(0);
            all.jobs.remove(i);
        }
        all.jobs.push(kept);
        Ok::<_, StoreError>(())
    })
    .await?;
    let what = format!("{} {} tasks ({}), estimated {} credits", job.action.as_str(), job.preview.count, job.filter.describe(), job.preview.estimate);
    crate::team::audit::record(store, by, "bulk action started", &job.id, None, Some(what)).await?;
    Ok(job)
}

/// The jobs kept, newest first.
pub async fn jobs(store: &dyn Store) -> StoreResult<Vec<BulkJob>> {
    let mut all: Jobs = read_doc(store, JOBS_KEY).await?;
    all.jobs.reverse();
    Ok(all.jobs)
}

/// Writes `job` over its stored copy (a runner's progress).
pub(crate) async fn save(store: &dyn Store, job: BulkJob) -> StoreResult<()> {
    edit_doc(store, JOBS_KEY, |all: &mut Jobs| {
        if let Some(slot) = all.jobs.iter_mut().find(|j| j.id == job.id) {
            *slot = job;
        }
        Ok::<_, StoreError>(())
    })
    .await
}

/// The jobs still running, oldest first.
pub(crate) async fn running(store: &dyn Store) -> StoreResult<Vec<BulkJob>> {
    Ok(read_doc::<Jobs>(store, JOBS_KEY).await?.jobs.into_iter().filter(|j| j.state == BulkState::Running).collect())
}
