//! Task records: what the Control Room knows about one generation task.
//!
//! Plain data, no I/O. The store persists these records and indexes them by state, project,
//! owner, model and creation time; the task lifecycle (a later module) moves them through
//! their states.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::Bound;

use crate::library::asset::Archive;
use crate::money::credits::Credits;

/// Where a task stands. The first two are the Control Room's own (before KIE knows the task);
/// `Waiting`, `Queuing` and `Generating` mirror KIE's `state`; the last three are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Recorded here (write-ahead) and waiting for the rate guard / dispatcher.
    Queued,
    /// KIE accepted it and answered with a task id.
    Submitted,
    /// KIE: `waiting`.
    Waiting,
    /// KIE: `queuing`.
    Queuing,
    /// KIE: `generating`.
    Generating,
    /// KIE: `success`; result URLs are known.
    Success,
    /// KIE: `fail` / `failed`, or refused upstream (401/402/422).
    Fail,
    /// No result could be had in time (callback lost and polling gave up, or media expired).
    Expired,
}

impl TaskState {
    /// Every state, in lifecycle order (used for meters and index maintenance).
    pub const ALL: [TaskState; 8] = [
        TaskState::Queued,
        TaskState::Submitted,
        TaskState::Waiting,
        TaskState::Queuing,
        TaskState::Generating,
        TaskState::Success,
        TaskState::Fail,
        TaskState::Expired,
    ];

    /// The name used in the store's index keys and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Submitted => "submitted",
            TaskState::Waiting => "waiting",
            TaskState::Queuing => "queuing",
            TaskState::Generating => "generating",
            TaskState::Success => "success",
            TaskState::Fail => "fail",
            TaskState::Expired => "expired",
        }
    }

    /// Terminal states are final: nothing moves a task out of them.
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskState::Success | TaskState::Fail | TaskState::Expired)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The task a follow-up acts on ([`crate::money::catalog::FollowUp`]): the console's id of
/// it, and which of its results (counted from 0) when the follow-up acts on one. KIE is sent
/// that task's own id ([`crate::tasks::lifecycle`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Follows {
    pub task: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<usize>,
}

/// One generation task as the Control Room records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The Control Room's own id, issued before anything reaches KIE.
    pub id: String,
    /// Optimistic-concurrency version: the store refuses an update based on a stale copy.
    pub version: u64,
    /// Where the task stands.
    pub state: TaskState,
    /// Who submitted it: a user's id or a relay key's id.
    pub owner: String,
    /// The production it belongs to (budgets and filters are per project).
    pub project: String,
    /// KIE's model id, e.g. `kling-2.6/text-to-video`.
    pub model: String,
    /// Unix milliseconds when the record was written; orders every listing.
    pub created_ms: u64,
    /// Unix milliseconds of the last change.
    pub updated_ms: u64,
    /// The model's `input` object as submitted (bounded in size by the submit path).
    #[serde(default)]
    pub input: serde_json::Value,
    /// Cost reserved against the budgets at submit time.
    #[serde(default)]
    pub estimated_cost: Credits,
    /// What KIE charged (`creditsConsumed`), once known.
    #[serde(default)]
    pub actual_cost: Option<Credits>,
    /// KIE's task id, once `createTask` answered.
    #[serde(default)]
    pub kie_task_id: Option<String>,
    /// Result media URLs from KIE's `resultJson`.
    #[serde(default)]
    pub result_urls: Vec<String>,
    /// KIE's own id of each result, where its family gives one (Suno's tracks), in the order
    /// of `result_urls`: a follow-up on one result is sent to KIE with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kie_result_ids: Vec<String>,
    /// What each result is, where its family names it (a separation's stems), in the order of
    /// `result_urls`: the relay writes each back under its name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub result_names: Vec<String>,
    /// KIE's `failCode`, when it failed.
    #[serde(default)]
    pub fail_code: Option<String>,
    /// KIE's `failMsg` or the Control Room's own reason.
    #[serde(default)]
    pub fail_msg: Option<String>,
    /// Why a failed or expired task failed, for the Error Review.
    #[serde(default)]
    pub fail_class: Option<FailClass>,
    /// Where the task stands in words ("KIE in maintenance (455); retrying in 8 s").
    #[serde(default)]
    pub note: Option<String>,
    /// The unguessable path segment of this task's KIE callback URL.
    #[serde(default)]
    pub callback_token: String,
    /// The dispatcher's bookkeeping for `createTask`.
    #[serde(default)]
    pub dispatch: Dispatch,
    /// When KIE accepted the task.
    #[serde(default)]
    pub submitted_ms: Option<u64>,
    /// Last news from KIE (callback or poll): the fallback poller waits this long since.
    #[serde(default)]
    pub upstream_seen_ms: Option<u64>,
    /// When the task reached a terminal state.
    #[serde(default)]
    pub finished_ms: Option<u64>,
    /// A relay client's own callback, delivered when the task ends.
    #[serde(default)]
    pub relay_callback: Option<RelayCallback>,
    /// The task this one retries (Error Review's Retry).
    #[serde(default)]
    pub retry_of: Option<String>,
    /// The ended task this one re-runs with edited inputs (the Monitor's "Re-run with edits").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerun_of: Option<String>,
    /// The URL fields of `input` that name Library assets (what this was made from); the
    /// input keeps their reference form and the dispatcher sends KIE a URL it can fetch
    /// ([`crate::library::inputs`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<crate::library::inputs::LibraryInput>,
    /// The task a follow-up acts on (its parent: an upscale's grid, an extension's video).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follows: Option<Follows>,
    /// Its deadline (Unix ms): not sent by then, it ends `expired` (see
    /// [`crate::tasks::lifecycle::deadline`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_by_ms: Option<u64>,
    /// Its priority among its owner's queued tasks (never ahead of other owners' turns).
    #[serde(default, skip_serializing_if = "Priority::is_normal")]
    pub priority: Priority,
    /// A language model's call (a chat completion, not a task): its tokens and timing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<ChatUsage>,
    /// The KIE API it is sent to (from the catalog when it was submitted).
    #[serde(default, skip_serializing_if = "crate::kie::Family::is_market")]
    pub family: crate::kie::Family,
    /// Written, but its cost rules not yet reserved: the dispatcher leaves it alone, and if
    /// the submitting instance died before finishing, resolves it (see `lifecycle::submit`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub budget_pending: bool,
    /// The results' Library copies (set when the task succeeds; see [`crate::library`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<Archive>,
    /// Counted in the receipts' totals (`money::receipts`), once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub folded: bool,
    /// Its receipt line's delivery to `RECEIPT_SYNC_URL` (set when it ends, if configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_sync: Option<ReceiptSync>,
    /// What its `actual_cost` rests on (set when it ends at a cost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge_basis: Option<ChargeBasis>,
    /// KIE completed it after this console had given up on it (it had ended `expired`,
    /// callback lost): KIE charged it, so it was taken as KIE ended it and counted then.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub completed_late: bool,
    /// The task that retries this one (the latest), once someone retried it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retried_as: Option<String>,
    /// A failure taken off the Error Review: its retry succeeded, or someone marked it resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<Resolved>,
    /// Its story: each step with its time and instance, bounded (see [`crate::tasks::story`]).
    #[serde(default, skip_serializing_if = "crate::tasks::story::Story::is_empty")]
    pub story: crate::tasks::story::Story,
    /// The named batch it belongs to ([`crate::tasks::batch`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
    /// Waiting for its batch to be admitted whole: the dispatcher does not send it (see
    /// `lifecycle::batch`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gated: bool,
}

/// How a failure left the Error Review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    /// Who: the person who marked it, or who retried it.
    pub by: String,
    pub at_ms: u64,
    /// In words: "retried as cr_…, which succeeded", "marked resolved".
    pub how: String,
}

/// What a task's counted cost rests on: the Ledger says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargeBasis {
    /// KIE said what it charged (`creditsConsumed`).
    Reported,
    /// Measured from what KIE reported — the seconds its results last, a language model's
    /// tokens — at the catalog's price.
    Measured,
    /// KIE said nothing it could be counted from: the estimate (or, for a price no source
    /// gives, the per-job cap it held).
    Estimate,
}

impl ChargeBasis {
    pub fn as_str(self) -> &'static str {
        match self {
            ChargeBasis::Reported => "reported",
            ChargeBasis::Measured => "measured",
            ChargeBasis::Estimate => "estimate",
        }
    }
}

/// One chat completion's tokens and timing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// The counts are this console's estimate (KIE's answer gave no `usage`).
    pub estimated: bool,
    pub streamed: bool,
    /// From the call to KIE's first byte, and to its last.
    pub first_byte_ms: Option<u64>,
    pub latency_ms: Option<u64>,
}

/// How a receipt line's delivery to `RECEIPT_SYNC_URL` goes (at least once, until a 2xx).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptSync {
    pub delivered: bool,
    pub attempts: u32,
    pub next_attempt_ms: u64,
    /// The receiver's last answer: its status, or why there was none.
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
}

/// What the dispatcher knows of sending a task to KIE.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispatch {
    /// `createTask` calls made so far.
    pub attempts: u32,
    /// Not before this time (backoff after 429/455/5xx).
    pub next_attempt_ms: u64,
    /// Set just before `createTask` leaves and cleared when its answer is recorded. Found set
    /// with no KIE task id, the task is *in doubt*: KIE may have it. It is never resent; the
    /// callback (which carries the task's token) or the give-up time resolves it.
    pub sending_since_ms: Option<u64>,
    /// Why it is still queued after an attempt (the Error Review's "stuck" list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_back: Option<HeldBack>,
}

/// Why a task that was sent is queued again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeldBack {
    /// KIE answered 429: backed off.
    RateLimited,
    /// No answer that says whether KIE took it: waiting for its callback, never resent.
    InDoubt,
    /// Another refusal worth retrying (455, 5xx in KIE's envelope, connection refused).
    UpstreamError,
}

impl HeldBack {
    /// What the Error Review says of it.
    pub fn label(self) -> &'static str {
        match self {
            HeldBack::RateLimited => "Rate limited — backed off",
            HeldBack::InDoubt => "In doubt — waiting for KIE's callback",
            HeldBack::UpstreamError => "Upstream error — retrying",
        }
    }
}

/// A relay client's `callBackUrl` and how its delivery goes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayCallback {
    pub url: String,
    /// The relay key whose webhook secret signs the callback.
    pub key_id: String,
    pub delivered: bool,
    /// Delivery stopped after too many failures.
    pub gave_up: bool,
    pub attempts: u32,
    pub next_attempt_ms: u64,
    pub last_error: Option<String>,
}

impl RelayCallback {
    /// Waiting to be sent: the task ended and delivery neither succeeded nor gave up.
    pub fn pending(&self) -> bool {
        !self.delivered && !self.gave_up
    }
}

/// Why a task failed, in the Error Review's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailClass {
    RateLimited,
    InsufficientCredits,
    /// Content policy or input validation (KIE 400/422, or its failCode 4xx).
    Policy,
    /// KIE's side failed (5xx, 501 generation failed, 505).
    Upstream,
    /// The key was refused (401).
    Auth,
    /// No callback and no answer to polling before the give-up time.
    CallbackLost,
    /// The media passed KIE's retention period.
    ResultExpired,
    /// A cost rule refused it (only for a submission whose instance stopped half-way).
    Budget,
    /// Cancelled here before it reached KIE.
    Cancelled,
    /// Not sent by its deadline ("send by"); ended in the queue, nothing charged.
    DeadlinePassed,
}

impl FailClass {
    pub const ALL: [FailClass; 10] = [
        FailClass::RateLimited,
        FailClass::InsufficientCredits,
        FailClass::Policy,
        FailClass::Upstream,
        FailClass::Auth,
        FailClass::CallbackLost,
        FailClass::ResultExpired,
        FailClass::Budget,
        FailClass::Cancelled,
        FailClass::DeadlinePassed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            FailClass::RateLimited => "Rate limited",
            FailClass::InsufficientCredits => "Insufficient credits",
            FailClass::Policy => "Content policy / validation",
            FailClass::Upstream => "Upstream error",
            FailClass::Auth => "Key rejected",
            FailClass::CallbackLost => "Callback lost",
            FailClass::ResultExpired => "Result expired",
            FailClass::Budget => "Over budget",
            FailClass::Cancelled => "Cancelled",
            FailClass::DeadlinePassed => "Deadline passed",
        }
    }
}

impl TaskRecord {
    /// A new record in state `Queued`, version 1.
    pub fn new(id: impl Into<String>, owner: impl Into<String>, project: impl Into<String>, model: impl Into<String>, now_ms: u64) -> Self {
        TaskRecord {
            id: id.into(),
            version: 1,
            state: TaskState::Queued,
            owner: owner.into(),
            project: project.into(),
            model: model.into(),
            created_ms: now_ms,
            updated_ms: now_ms,
            input: serde_json::Value::Null,
            estimated_cost: Credits::ZERO,
            actual_cost: None,
            kie_task_id: None,
            result_urls: Vec::new(),
            kie_result_ids: Vec::new(),
            result_names: Vec::new(),
            fail_code: None,
            fail_msg: None,
            fail_class: None,
            note: None,
            callback_token: String::new(),
            dispatch: Dispatch::default(),
            submitted_ms: None,
            upstream_seen_ms: None,
            finished_ms: None,
            relay_callback: None,
            retry_of: None,
            rerun_of: None,
            inputs: Vec::new(),
            follows: None,
            send_by_ms: None,
            priority: Priority::Normal,
            chat: None,
            family: Default::default(),
            budget_pending: false,
            archive: None,
            folded: false,
            receipt_sync: None,
            completed_late: false,
            charge_basis: None,
            retried_as: None,
            resolved: None,
            story: Default::default(),
            batch: None,
            gated: false,
        }
    }

    /// Ends it here, before it reached KIE: `fail`, class *Cancelled*, KIE's 499, `why`,
    /// nothing charged.
    pub fn end_unsent(&mut self, why: &str, now_ms: u64) {
        self.state = TaskState::Fail;
        self.fail_class = Some(FailClass::Cancelled);
        self.fail_code = Some("499".into());
        self.fail_msg = Some(why.to_string());
        self.actual_cost = Some(Credits::ZERO);
        self.finished_ms = Some(now_ms);
        self.note = None;
    }

    /// The index keys this record belongs to (shared by both store backends, so they agree).
    pub fn index_keys(&self) -> Vec<String> {
        let mut keys = vec![
            index::ALL.to_string(),
            index::state(self.state),
            index::project(&self.project),
            index::owner(&self.owner),
            index::model(&self.model),
        ];
        for (dimension, value) in index::FACETS.into_iter().zip([&self.project, &self.owner, &self.model]) {
            keys.push(index::facet(dimension, value, self.state));
        }
        if self.state == TaskState::Queued {
            keys.push(index::queued_by(&self.owner));
        }
        if Mark::QueuedHigh.matches(self) {
            keys.push(index::QUEUED_HIGH.to_string());
        }
        if self.delivery_pending() {
            keys.push(index::DELIVERY_PENDING.to_string());
        }
        if self.archive_pending() {
            keys.push(index::ARCHIVE_PENDING.to_string());
        }
        if self.archive.as_ref().is_some_and(Archive::holds_any) {
            keys.push(index::LIBRARY.to_string());
        }
        if self.result_lost() {
            keys.push(index::RESULT_LOST.to_string());
        }
        if self.fold_pending() {
            keys.push(index::RECEIPT_FOLD.to_string());
        }
        if self.sync_pending() {
            keys.push(index::RECEIPT_SYNC.to_string());
        }
        if let Some(day) = self.receipt_day() {
            keys.push(index::receipt_day(&self.project, &day));
        }
        if self.to_review() {
            keys.push(index::TO_REVIEW.to_string());
        }
        if let Some(b) = &self.batch {
            keys.push(index::batch(b));
            keys.push(index::batch_state(b, self.state));
        }
        for w in self.search_words() {
            let key = index::word(&w);
            if w.chars().count() >= index::WORD_PREFIX && !keys.contains(&key) {
                keys.push(key);
            }
        }
        keys
    }

    /// The words a search finds this task by, lowercased: its id's and KIE's, its model's,
    /// project's and owner's, then its prompt's (at most [`MAX_SEARCH_WORDS`] in all).
    pub fn search_words(&self) -> Vec<String> {
        let prompt = self.input.get("prompt").and_then(|p| p.as_str()).unwrap_or("");
        let fields = [self.id.as_str(), self.kie_task_id.as_deref().unwrap_or(""), &self.model, &self.project, &self.owner, prompt];
        let mut out: Vec<String> = Vec::new();
        for w in fields.into_iter().flat_map(search_words) {
            if out.len() == MAX_SEARCH_WORDS {
                break;
            }
            if !out.contains(&w) {
                out.push(w);
            }
        }
        out
    }

    /// For the Error Review: it failed or expired, or a result was gone before the Library
    /// had it, and neither a retry that succeeded nor a person has resolved it.
    pub fn to_review(&self) -> bool {
        (matches!(self.state, TaskState::Fail | TaskState::Expired) || self.result_lost()) && self.resolved.is_none()
    }

    /// The UTC day (`YYYY-MM-DD`) whose receipt lists this task: the day it ended, once it is
    /// folded into the receipts.
    pub fn receipt_day(&self) -> Option<String> {
        (self.folded && self.state.is_terminal()).then(|| crate::money::receipts::day(self.finished_ms.unwrap_or(self.updated_ms)))
    }

    /// Ended, with a relay client's callback still to deliver.
    /// A written result's callback waits for its file (it carries what is read back from it).
    pub fn delivery_pending(&self) -> bool {
        self.state.is_terminal() && self.relay_callback.as_ref().is_some_and(RelayCallback::pending) && !(self.family.adapter().writes_result() && self.archive_pending())
    }

    /// Succeeded, with a result still to copy into the Library.
    pub fn archive_pending(&self) -> bool {
        self.state == TaskState::Success && self.archive.as_ref().is_some_and(Archive::pending)
    }

    /// Ended `expired` because this console gave up waiting (callback lost): KIE may still
    /// complete it, and if it does, that completion is taken (see `lifecycle::apply`).
    pub fn given_up(&self) -> bool {
        self.state == TaskState::Expired && self.fail_class == Some(FailClass::CallbackLost) && self.chat.is_none()
    }

    /// Ended, not yet counted in the receipts' totals (see `money::receipts`).
    pub fn fold_pending(&self) -> bool {
        self.state.is_terminal() && !self.folded
    }

    /// Folded, with its receipt line still to deliver to `RECEIPT_SYNC_URL`. A line waits
    /// for its results' copies to settle, so that its exports (and so its body) are final.
    pub fn sync_pending(&self) -> bool {
        self.state.is_terminal() && self.folded && !self.archive_pending() && self.receipt_sync.as_ref().is_some_and(|s| !s.delivered)
    }

    /// Succeeded, but a result was gone before the Library had it (Result expired).
    pub fn result_lost(&self) -> bool {
        self.state == TaskState::Success && self.archive.as_ref().is_some_and(Archive::lost)
    }

    /// Ended with nothing left to deliver or archive: its state no longer changes. What still
    /// may — a step of its story, a retry or resolution noted, its Library copies deleted, its
    /// deletion past retention — is announced to every instance (see `Lifecycle::find`).
    pub fn settled(&self) -> bool {
        self.state.is_terminal() && !self.delivery_pending() && !self.archive_pending() && !self.fold_pending() && !self.sync_pending()
    }

    /// Sent to KIE with no answer recorded (see [`Dispatch::sending_since_ms`]).
    pub fn in_doubt(&self) -> bool {
        self.state == TaskState::Queued && self.dispatch.sending_since_ms.is_some()
    }

    /// The member under which the record sits in every index: creation time then id, so that
    /// byte order is time order and a member doubles as a pagination cursor.
    pub fn index_member(&self) -> String {
        index::member(self.created_ms, &self.id)
    }
}

/// Whether `v` is a usable name for a project or a label: 1–64 letters, digits, spaces, `-`,
/// `_` or `.` (it appears in index keys, filters and the CLI).
pub fn valid_name(v: &str) -> bool {
    !v.trim().is_empty() && v.len() <= 64 && v.chars().all(|c| c.is_alphanumeric() || " -_.".contains(c))
}

/// What [`valid_name`] allows, for error messages.
pub const NAME_RULE: &str = "1–64 letters, digits, spaces, '-', '_' or '.'";

/// Names of the task indexes, shared by both store backends.
pub mod index {
    use super::TaskState;

    /// Every task.
    pub const ALL: &str = "all";
    /// Ended tasks whose relay callback is still to deliver.
    pub const DELIVERY_PENDING: &str = "delivery:pending";
    /// Succeeded tasks with a result still to copy into the Library.
    pub const ARCHIVE_PENDING: &str = "archive:pending";
    /// Tasks with at least one result in the Library.
    pub const LIBRARY: &str = "library";
    /// Succeeded tasks with a result that was gone before it was copied.
    pub const RESULT_LOST: &str = "result:lost";
    /// Ended tasks not yet folded into the receipts.
    pub const RECEIPT_FOLD: &str = "receipt:fold";
    /// Folded tasks whose receipt line is still to sync (`RECEIPT_SYNC_URL`).
    pub const RECEIPT_SYNC: &str = "receipt:sync";
    /// Queued tasks of high priority, however deep in their owner's lane.
    pub const QUEUED_HIGH: &str = "queued:high";
    /// Failures still to review ([`super::TaskRecord::to_review`]).
    pub const TO_REVIEW: &str = "review";
    /// What [`TO_REVIEW`] was first built from, in a store written before it was kept: every
    /// failure then was still to review (see each backend's open).
    pub const TO_REVIEW_SEEDS: [&str; 3] = ["state:fail", "state:expired", RESULT_LOST];

    pub fn state(s: TaskState) -> String {
        format!("state:{}", s.as_str())
    }
    pub fn project(p: &str) -> String {
        format!("project:{p}")
    }
    pub fn owner(o: &str) -> String {
        format!("owner:{o}")
    }
    pub fn model(m: &str) -> String {
        format!("model:{m}")
    }
    /// One project's receipt lines of one day (see [`super::TaskRecord::receipt_day`]).
    pub fn receipt_day(project: &str, day: &str) -> String {
        format!("receipt-day:{project}|{day}")
    }
    /// Tasks with a search word starting with `word`'s first [`WORD_PREFIX`] letters.
    pub fn word(word: &str) -> String {
        let prefix: String = word.chars().take(WORD_PREFIX).collect();
        format!("word:{prefix}")
    }
    /// Letters of a word's prefix its index is named by.
    pub const WORD_PREFIX: usize = 3;
    /// One batch's tasks.
    pub fn batch(name: &str) -> String {
        format!("batch:{name}")
    }
    /// One batch's tasks in one state (its progress, counted without reading them).
    pub fn batch_state(name: &str, s: TaskState) -> String {
        facet("batch", name, s)
    }
    /// The tasks of one project, person, model or batch (`dimension`) in one state: the
    /// Monitor's counts per state for that filter, read without reading the tasks.
    pub fn facet(dimension: &str, value: &str, s: TaskState) -> String {
        format!("{dimension}-state:{value}|{}", s.as_str())
    }
    /// The dimensions kept by state ([`facet`]) beside a batch's.
    pub const FACETS: [&str; 3] = ["project", "owner", "model"];
    /// One owner's queued tasks: their lane in the fair queue.
    pub fn queued_by(o: &str) -> String {
        format!("queued-by:{o}")
    }
    /// Zero-padded so that lexical order is numeric order for any date before the year 2286.
    pub fn member(created_ms: u64, id: &str) -> String {
        format!("{created_ms:013}|{id}")
    }

    /// The task id of an index member ([`member`]'s second part).
    pub fn id_of(member: &str) -> &str {
        member.split_once('|').map_or(member, |(_, id)| id)
    }
}

/// Most words of one task a search knows it by.
pub const MAX_SEARCH_WORDS: usize = 48;
/// Longest word a search indexes (a longer one is cut).
const MAX_WORD_CHARS: usize = 40;

/// The words of `text` a search reads: runs of letters and digits, lowercased.
pub fn search_words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(|w| w.chars().take(MAX_WORD_CHARS).flat_map(char::to_lowercase).collect())
}

/// Largest page a listing returns; larger requests are clamped.
pub const MAX_PAGE: usize = 200;

/// A listing request: newest first (or oldest first), optional filters (all must match), cursor pagination.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskQuery {
    pub state: Option<TaskState>,
    pub project: Option<String>,
    pub owner: Option<String>,
    pub model: Option<String>,
    /// Only tasks with a relay callback still to deliver.
    #[serde(default)]
    pub delivery_pending: bool,
    /// Only tasks in one of the workers' indexes (Library, receipts).
    #[serde(default)]
    pub mark: Option<Mark>,
    /// Only the receipt lines of this UTC day (`YYYY-MM-DD`; with `project`, read from that
    /// day's index).
    #[serde(default)]
    pub receipt_day: Option<String>,
    /// Words every match has a word starting with (its ids, model, project, owner, prompt:
    /// [`TaskRecord::search_words`]); read from the index of the longest one's first letters.
    #[serde(default)]
    pub text: Option<String>,
    /// Only the tasks of this batch.
    #[serde(default)]
    pub batch: Option<String>,
    /// Only tasks created at or after this time (ms): the scan starts or stops there.
    #[serde(default)]
    pub created_from_ms: Option<u64>,
    /// Only tasks created before this time (ms).
    #[serde(default)]
    pub created_before_ms: Option<u64>,
    /// Only tasks whose cost (KIE's charge once known, else the estimate) is at least this.
    #[serde(default)]
    pub cost_min: Option<Credits>,
    /// … and at most this.
    #[serde(default)]
    pub cost_max: Option<Credits>,
    /// Oldest first instead (the workers' scans, which must reach every record).
    #[serde(default)]
    pub oldest_first: bool,
    /// Read from `project`'s index whatever else narrows the query (the other filters checked
    /// per record): set when that index is the smaller one ([`crate::tasks::visible`]).
    #[serde(default)]
    pub by_project: bool,
    /// Continue after this cursor (the `next` of a previous page).
    pub after: Option<String>,
    /// Page size, 1..=MAX_PAGE (0 means the default of 50).
    pub limit: usize,
}

impl TaskQuery {
    /// The page size actually used.
    pub fn page_size(&self) -> usize {
        match self.limit {
            0 => 50,
            n => n.min(MAX_PAGE),
        }
    }

    /// The most selective index for this query; the other filters are checked per record.
    pub fn driving_index(&self) -> String {
        if let (Some(d), Some(p)) = (&self.receipt_day, &self.project) {
            index::receipt_day(p, d)
        } else if let (true, Some(p)) = (self.by_project, &self.project) {
            index::project(p)
        } else if self.delivery_pending {
            index::DELIVERY_PENDING.to_string()
        } else if let Some(m) = self.mark {
            m.index().to_string()
        } else if let Some(b) = &self.batch {
            self.state.map_or_else(|| index::batch(b), |s| index::batch_state(b, s))
        } else if let Some(w) = self.text.as_deref().and_then(|t| search_words(t).filter(|w| w.chars().count() >= index::WORD_PREFIX).max_by_key(|w| w.chars().count())) {
            index::word(&w)
        } else if let (Some(TaskState::Queued), Some(o)) = (self.state, &self.owner) {
            index::queued_by(o)
        } else if let (Some(s), Some((dimension, value))) = (self.state, self.dimension()) {
            index::facet(dimension, value, s)
        } else if let Some(s) = self.state {
            index::state(s)
        } else if let Some(o) = &self.owner {
            index::owner(o)
        } else if let Some(p) = &self.project {
            index::project(p)
        } else if let Some(m) = &self.model {
            index::model(m)
        } else {
            index::ALL.to_string()
        }
    }

    /// The one project, person or model this query is narrowed to, when it is narrowed by
    /// exactly one of them (and by nothing else [`index::facet`] does not count by state).
    pub fn dimension(&self) -> Option<(&'static str, &str)> {
        let mut set = index::FACETS.into_iter().zip([&self.project, &self.owner, &self.model]).filter_map(|(d, v)| Some((d, v.as_deref()?)));
        let one = set.next();
        if set.next().is_some() {
            return None;
        }
        one
    }

    /// The index members a scan stays within, `(low, high)`: the created-time range and, past
    /// the cursor, the side the scan has not read. `None` when no member can be in it.
    pub fn member_range(&self) -> Option<(Bound<String>, Bound<String>)> {
        let mut low = self.created_from_ms.map_or(Bound::Unbounded, |ms| Bound::Included(format!("{ms:013}")));
        let mut high = self.created_before_ms.map_or(Bound::Unbounded, |ms| Bound::Excluded(format!("{ms:013}")));
        if let Some(c) = &self.after {
            let past = Bound::Excluded(c.clone());
            if self.oldest_first {
                low = tighter(low, past, true);
            } else {
                high = tighter(high, past, false);
            }
        }
        match (&low, &high) {
            (Bound::Included(l) | Bound::Excluded(l), Bound::Included(h) | Bound::Excluded(h)) if l >= h => None,
            _ => Some((low, high)),
        }
    }

    /// Whether a record passes every filter.
    pub fn matches(&self, t: &TaskRecord) -> bool {
        let cost = t.actual_cost.unwrap_or(t.estimated_cost);
        self.created_from_ms.is_none_or(|ms| t.created_ms >= ms)
            && self.created_before_ms.is_none_or(|ms| t.created_ms < ms)
            && self.cost_min.is_none_or(|c| cost >= c)
            && self.cost_max.is_none_or(|c| cost <= c)
            && self.state.is_none_or(|s| s == t.state)
            && (!self.delivery_pending || t.delivery_pending())
            && self.mark.is_none_or(|m| m.matches(t))
            && self.project.as_deref().is_none_or(|p| p == t.project)
            && self.owner.as_deref().is_none_or(|o| o == t.owner)
            && self.model.as_deref().is_none_or(|m| m == t.model)
            && self.batch.as_ref().is_none_or(|b| t.batch.as_ref() == Some(b))
            && self.receipt_day.as_ref().is_none_or(|d| t.receipt_day().as_ref() == Some(d))
            && self.text.as_deref().is_none_or(|q| {
                let mine = t.search_words();
                search_words(q).all(|w| mine.iter().any(|m| m.starts_with(&w)))
            })
    }
}

/// Of two bounds on the same side, the one that lets fewer members through (`low`: the
/// greater; else the smaller); an open bound lets every member through.
fn tighter(a: Bound<String>, b: Bound<String>, low: bool) -> Bound<String> {
    let value = |x: &Bound<String>| match x {
        Bound::Included(v) | Bound::Excluded(v) => Some(v.clone()),
        Bound::Unbounded => None,
    };
    match (value(&a), value(&b)) {
        (None, _) => b,
        (_, None) => a,
        (Some(x), Some(y)) => if (x < y) == low { b } else { a },
    }
}

/// The indexes the workers and their panels read (beside state, project, owner, model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    /// A result still to copy ([`TaskRecord::archive_pending`]).
    ArchivePending,
    /// Some result in the Library.
    InLibrary,
    /// A result gone before it was copied ([`TaskRecord::result_lost`]).
    ResultLost,
    /// Ended, not yet folded into the receipts ([`TaskRecord::fold_pending`]).
    ReceiptFold,
    /// Folded, its receipt line still to sync ([`TaskRecord::sync_pending`]).
    ReceiptSync,
    /// Queued, of high priority.
    QueuedHigh,
    /// A failure still to review ([`TaskRecord::to_review`]).
    ToReview,
}

impl Mark {
    pub fn index(self) -> &'static str {
        match self {
            Mark::ArchivePending => index::ARCHIVE_PENDING,
            Mark::InLibrary => index::LIBRARY,
            Mark::ResultLost => index::RESULT_LOST,
            Mark::ReceiptFold => index::RECEIPT_FOLD,
            Mark::ReceiptSync => index::RECEIPT_SYNC,
            Mark::QueuedHigh => index::QUEUED_HIGH,
            Mark::ToReview => index::TO_REVIEW,
        }
    }

    pub fn matches(self, t: &TaskRecord) -> bool {
        match self {
            Mark::ArchivePending => t.archive_pending(),
            Mark::InLibrary => t.archive.as_ref().is_some_and(Archive::holds_any),
            Mark::ResultLost => t.result_lost(),
            Mark::ReceiptFold => t.fold_pending(),
            Mark::ReceiptSync => t.sync_pending(),
            Mark::QueuedHigh => t.state == TaskState::Queued && t.priority == Priority::High,
            Mark::ToReview => t.to_review(),
        }
    }
}

/// A task's priority among its owner's queued tasks: high ones leave first, low ones last, each
/// oldest first; the rotation between owners is not changed by it (no owner's high priority
/// takes another owner's turn).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    #[default]
    Normal,
    Low,
}

impl Priority {
    pub fn is_normal(&self) -> bool {
        *self == Priority::Normal
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

impl std::str::FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "high" => Ok(Priority::High),
            "normal" | "" => Ok(Priority::Normal),
            "low" => Ok(Priority::Low),
            other => Err(format!("priority {other:?} is not one of high, normal, low")),
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskPage {
    pub tasks: Vec<TaskRecord>,
    /// Cursor for the next page; `None` when this is the last one.
    pub next: Option<String>,
}

/// How many tasks are on record, by state (for the ledger meters).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCounts {
    pub total: u64,
    pub by_state: Vec<(TaskState, u64)>,
    /// Failures still to review ([`index::TO_REVIEW`]).
    #[serde(default)]
    pub to_review: u64,
}

impl TaskCounts {
    /// Tasks not yet in a terminal state.
    pub fn in_flight(&self) -> u64 {
        self.by_state.iter().filter(|(s, _)| !s.is_terminal()).map(|(_, n)| n).sum()
    }
    pub fn get(&self, state: TaskState) -> u64 {
        self.by_state.iter().find(|(s, _)| *s == state).map_or(0, |(_, n)| *n)
    }
}
