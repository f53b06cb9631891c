//! Submitting a task: validate, then one atomic store step — its place in the owner's queue,
//! the hold of its estimate under the cost rules, the record (write-ahead, state `queued`),
//! its callback token's lookup, its arrival in the queue's log and its live event — and wake
//! the dispatcher. Nothing reaches KIE here, so the caller gets its task id at once; the
//! dispatcher sends it when the rate guard allows. Retry re-submits a failed task as a new
//! task linked to the old one.
//!
//! The step is taken only under the cost rules it was judged by (kept in memory, stated to the
//! store as a condition), and only if every hold fits: a refusal writes nothing. If the store
//! fails, the record is looked up: found, the task was admitted whole; absent, nothing was
//! recorded; if even that cannot be read, the caller is told the task may still run
//! ([`SubmitError::InDoubt`]). A record written *budget pending* by an older version (the
//! record, then the hold) is still resolved by the dispatcher after [`PENDING_GRACE`].

use serde_json::Value;

use super::{LOOKUP_TTL, Lifecycle, token_key};
use crate::money::budget::{self, BudgetError, CostHold};
use crate::money::catalog::{MAX_INPUT_BYTES, MAX_PROMPT_CHARS};
use crate::secret::random_hex;
use crate::store::{CreateWith, Created, LogLine, ReserveRequest, StoreError, now_ms};
use crate::tasks::task::{FailClass, RelayCallback, TaskRecord, TaskState};

/// How old a budget-pending record must be before the dispatcher takes it as abandoned.
pub const PENDING_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Times a submission is judged again when the cost rules changed under it.
const RULE_CHANGE_TRIES: u32 = 3;

/// Longest relay `callBackUrl` accepted.
pub const MAX_CALLBACK_URL: usize = 2048;

/// One request to run a model.
#[derive(Debug, Clone, Default)]
pub struct Submission {
    /// Who asks: a person, or `key:<id>` for a relay key.
    pub owner: String,
    pub project: String,
    pub model: String,
    /// The model's `input` object.
    pub input: Value,
    /// A relay client's `callBackUrl`, with the id of the key that signs it.
    pub relay_callback: Option<(String, String)>,
    pub retry_of: Option<String>,
    /// The ended task this one re-runs with edited inputs (checked: it must exist, have
    /// ended, and be in the same project).
    pub rerun_of: Option<String>,
    /// Its deadline (Unix ms; [`super::deadline`]): checked to be ahead, within a week.
    pub send_by_ms: Option<u64>,
    /// Its priority among its owner's queued tasks (`None`: its project's default, set with
    /// its fair share; normal when it has none).
    pub priority: Option<crate::tasks::task::Priority>,
    /// The named batch it joins ([`crate::tasks::batch`]).
    pub batch: Option<String>,
    /// Held back until its batch is admitted whole (see [`super::batch`]).
    pub gated: bool,
    /// The projects whose Library assets it may name as inputs (a person's membership;
    /// `None`: its own project's alone, as for a relay key). A signed link is always usable.
    pub sees: Option<crate::team::membership::Membership>,
    /// Its id, when the caller named it before submitting ([`new_task_id`]); else a new one.
    pub id: Option<String>,
}

/// A new task's id.
pub fn new_task_id() -> String {
    format!("cr_{}", random_hex(10))
}

/// Why a submission was refused. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("The model {0:?} is not in the catalog; pick one from the Market panel.")]
    UnknownModel(String),
    #[error("{0}")]
    Invalid(String),
    #[error("Not configured: no KIE key is set (KIE_API_KEY or KIE_API_KEY_FILE), so nothing can be submitted.")]
    NotConfigured,
    #[error("No task {0}.")]
    NotFound(String),
    #[error("Only a failed or expired task can be retried; {0} is {1}.")]
    NotRetryable(String, String),
    /// A cost rule does not allow it; the message names the rule, the spend and the need.
    #[error("{0}")]
    OverBudget(String),
    /// The person's role does not allow it.
    #[error("{0}")]
    Forbidden(String),
    /// The owner has as many tasks waiting as the queue quota allows (`QUEUE_MAX_PER_OWNER`).
    #[error("Rate limited: {waiting} of your tasks are already waiting to be sent (the most one owner may queue is {max}); try again in {} s.", retry_after.as_secs().max(1))]
    QueueFull { waiting: i64, max: u32, retry_after: std::time::Duration },
    /// Intake is paused for its project and `QUEUE_PAUSED_INTAKE=refuse`; says who paused it.
    #[error("{0}. New tasks are refused until it is resumed; try again later.")]
    Paused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store failed after the record was written and the record could not be taken
    /// back: the task may still run (the dispatcher resolves it). Look it up before
    /// submitting again.
    #[error("The store failed while task {0} was being submitted, and the task may still run: look it up (recordInfo) before submitting it again.")]
    InDoubt(String),
}

impl From<BudgetError> for SubmitError {
    fn from(e: BudgetError) -> SubmitError {
        match e {
            BudgetError::Refused(msg, _) => SubmitError::OverBudget(msg),
            BudgetError::Invalid(msg) | BudgetError::Forbidden(msg) => SubmitError::Invalid(msg),
            BudgetError::Store(e) => SubmitError::Store(e),
        }
    }
}

impl SubmitError {
    /// KIE's code for this refusal (KIE's codes are HTTP statuses): what the relay answers and
    /// the status a browser's request gets.
    pub fn code(&self) -> u16 {
        match self {
            SubmitError::UnknownModel(_) | SubmitError::NotFound(_) => 404,
            SubmitError::Invalid(_) => 422,
            SubmitError::NotRetryable(..) => 409,
            SubmitError::OverBudget(_) => 402,
            SubmitError::Forbidden(_) => 403,
            SubmitError::QueueFull { .. } => 429,
            SubmitError::NotConfigured | SubmitError::Paused(_) | SubmitError::Store(_) | SubmitError::InDoubt(_) => 503,
        }
    }

    /// Its reason in the metrics.
    pub fn refusal(&self) -> crate::metrics::Refusal {
        use crate::metrics::Refusal;
        match self {
            SubmitError::UnknownModel(_) | SubmitError::Invalid(_) | SubmitError::NotFound(_) | SubmitError::NotRetryable(..) => Refusal::Validation,
            SubmitError::OverBudget(_) => Refusal::Budget,
            SubmitError::Forbidden(_) => Refusal::Forbidden,
            SubmitError::QueueFull { .. } => Refusal::QueueFull,
            SubmitError::Paused(_) => Refusal::Paused,
            SubmitError::NotConfigured => Refusal::NotConfigured,
            SubmitError::Store(_) | SubmitError::InDoubt(_) => Refusal::Store,
        }
    }

    /// How long to wait before trying again, when waiting helps (`Retry-After`).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            SubmitError::QueueFull { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// What the person or program that submitted is told: the error itself, except a store
    /// failure, which is logged here and not shown.
    pub fn public_message(&self) -> String {
        match self {
            SubmitError::Store(inner @ StoreError::Unreplicated(_)) => {
                tracing::error!(error = %inner, "submission not confirmed by a replica");
                "The task store could not confirm that a replica has the task, so it was not accepted and will not be sent. Try again shortly.".into()
            }
            SubmitError::Store(inner) => {
                tracing::error!(error = %inner, "submission failed in the store");
                "The task store is unavailable; nothing was recorded. Try again shortly.".into()
            }
            other => other.to_string(),
        }
    }
}

pub(super) fn invalid(msg: impl Into<String>) -> SubmitError {
    SubmitError::Invalid(msg.into())
}

/// The cost rules this instance last read, with their condition: a submission is judged by
/// them and states them to the store, which refuses if they changed since.
#[derive(Default)]
pub(super) struct KnownRules(std::sync::Mutex<Option<std::sync::Arc<budget::RulesRead>>>);

/// A project name (see [`crate::tasks::task::valid_name`]).
pub fn check_project(p: &str) -> Result<(), SubmitError> {
    if crate::tasks::task::valid_name(p) { Ok(()) } else { Err(invalid(format!("project must be {}", crate::tasks::task::NAME_RULE))) }
}

impl Lifecycle {
    /// Checks a submission against the catalog and the size limits; returns its estimate.
    pub(super) fn validate(&self, s: &Submission) -> Result<(crate::kie::Family, Option<crate::Credits>), SubmitError> {
        check_project(&s.project)?;
        let model = self.0.catalog.get(&s.model).ok_or_else(|| SubmitError::UnknownModel(s.model.chars().take(100).collect()))?;
        if model.is_chat() {
            return Err(invalid(format!("{} is a language model: call it through /kie/{}/v1/chat/completions, or Draft with it in the composer", model.id, model.id)));
        }
        let Value::Object(input) = &s.input else { return Err(invalid("input must be a JSON object of the model's fields")) };
        let size = serde_json::to_vec(&s.input).map(|v| v.len()).unwrap_or(usize::MAX);
        if size > MAX_INPUT_BYTES {
            return Err(invalid(format!("input is {size} bytes; the limit is {MAX_INPUT_BYTES}")));
        }
        match input.get("prompt") {
            None | Some(Value::Null) => {}
            Some(Value::String(p)) if p.chars().count() > MAX_PROMPT_CHARS => {
                return Err(invalid(format!("prompt is {} characters; the limit is {MAX_PROMPT_CHARS}", p.chars().count())));
            }
            Some(Value::String(_)) => {}
            Some(_) => return Err(invalid("prompt must be a string")),
        }
        for field in &model.required {
            let present = match input.get(field) {
                None | Some(Value::Null) => false,
                Some(Value::String(v)) => !v.trim().is_empty(),
                Some(Value::Array(v)) => !v.is_empty(),
                Some(_) => true,
            };
            if !present {
                return Err(invalid(format!("{} needs input.{field}", model.id)));
            }
        }
        model.family.adapter().check_input(model.upstream_name(), input).map_err(|e| invalid(format!("{}: {e}", model.id)))?;
        self.check_written(model.family, &model.id)?;
        model.check_multipliers(input).map_err(invalid)?;
        if let Some(at) = s.send_by_ms {
            let ahead = at.saturating_sub(now_ms());
            if ahead == 0 || ahead > super::deadline::MAX_AHEAD.as_millis() as u64 {
                return Err(invalid(format!("the deadline must be {}", super::deadline::SEND_BY_RULE)));
            }
        }
        // An input the price depends on must be one of the catalog's choices. A model whose
        // price is unknown reserves its per-job cap instead (see `record_submission`).
        let estimate = if model.price_known() { Some(model.estimate(&s.input).map_err(SubmitError::Invalid)?) } else { None };
        if let Some((url, _)) = &s.relay_callback {
            let parsed = url::Url::parse(url).map_err(|_| invalid("callBackUrl must be an absolute http(s) URL"))?;
            if !matches!(parsed.scheme(), "http" | "https") || url.len() > MAX_CALLBACK_URL {
                return Err(invalid(format!("callBackUrl must be an http(s) URL of at most {MAX_CALLBACK_URL} characters")));
            }
        }
        Ok((model.family, estimate))
    }

    /// The cost rules, from memory unless `fresh` (or nothing was read yet). A submission
    /// states the ones it used to [`Store::task_create`](crate::store::Store::task_create),
    /// which refuses if they changed, so a rule set on any instance holds from the next
    /// submission on, everywhere.
    pub(crate) async fn cost_rules(&self, fresh: bool) -> Result<std::sync::Arc<budget::RulesRead>, StoreError> {
        if !fresh && let Some(r) = self.known_cost_rules() {
            return Ok(r);
        }
        let known = &self.0.cost_rules.0;
        let read = std::sync::Arc::new(budget::rules_read(self.0.store.as_ref()).await?);
        *known.lock().unwrap_or_else(|e| e.into_inner()) = Some(read.clone());
        Ok(read)
    }

    /// The cost rules as last read, if they were.
    pub(crate) fn known_cost_rules(&self) -> Option<std::sync::Arc<budget::RulesRead>> {
        self.0.cost_rules.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records a new task (state `queued`) and wakes the dispatcher. Returns the record.
    pub async fn submit(&self, s: Submission) -> Result<TaskRecord, SubmitError> {
        let done = self.record_submission(s).await;
        let metrics = &self.0.opts.metrics;
        match &done {
            Ok(t) => metrics.submitted(&t.model, &t.project, t.estimated_cost),
            Err(e) => metrics.refused(e.refusal()),
        }
        done
    }

    async fn record_submission(&self, s: Submission) -> Result<TaskRecord, SubmitError> {
        if !self.configured() {
            return Err(SubmitError::NotConfigured);
        }
        if self.halted() {
            return Err(SubmitError::Store(StoreError::Unavailable("the store lost its data (epoch gone); this instance accepts nothing until it is restored".into())));
        }
        let (family, estimate) = self.validate(&s)?;
        let mut s = s;
        let inputs = self.admit_inputs(&mut s.input, s.sees.as_ref(), s.project.trim()).await?;
        let follows = match self.0.catalog.get(&s.model) {
            Some(model) => self.admit_follow_up(model, &mut s.input, s.sees.as_ref(), s.project.trim()).await?,
            None => None,
        };
        if let Some(original) = &s.rerun_of {
            let found = self.0.store.task_get(original).await?;
            match found {
                Some(o) if o.project == s.project.trim() && o.state.is_terminal() => {}
                Some(o) if !o.state.is_terminal() => return Err(invalid(format!("{original} has not ended; re-run a task once it has"))),
                _ => return Err(SubmitError::NotFound(original.chars().take(64).collect())),
            }
        }
        if self.0.opts.paused_intake == crate::tasks::pause::PausedIntake::Refuse
            && let Some(why) = crate::tasks::pause::read(self.0.store.as_ref()).await?.why(s.project.trim())
        {
            return Err(SubmitError::Paused(why));
        }
        if let Some((url, _)) = &s.relay_callback {
            // Checked again at every send: what a name resolves to may change.
            self.0.outbound.check(url).await.map_err(|e| invalid(format!("callBackUrl refused: {e}")))?;
        }
        let now = now_ms();
        let mut t = TaskRecord::new(s.id.clone().unwrap_or_else(new_task_id), s.owner.trim(), s.project.trim(), &s.model, now);
        t.family = family;
        t.input = s.input;
        t.inputs = inputs;
        t.follows = follows;
        t.rerun_of = s.rerun_of;
        t.callback_token = random_hex(16);
        t.retry_of = s.retry_of;
        t.send_by_ms = s.send_by_ms;
        t.batch = s.batch;
        t.gated = s.gated;
        t.priority = match s.priority {
            Some(p) => p,
            None => crate::tasks::fair_share::default_priority(&self.0.queue.shares(self.0.store.as_ref()).await?, &t.project),
        };
        t.note = Some(if t.gated { "Held until its batch is admitted whole" } else { "Waiting for the rate guard" }.into());
        t.relay_callback = s.relay_callback.map(|(url, key_id)| RelayCallback { url, key_id, ..Default::default() });
        let governed = self.write_record(&mut t, estimate).await?;
        if governed {
            self.raise_alerts(t.owner.clone(), t.project.clone(), None);
        }
        tracing::info!(task = %t.id, model = %t.model, project = %t.project, owner = %crate::team::accounts::log_name(&t.owner), "task recorded");
        self.0.queue.wake();
        Ok(t)
    }

    /// Writes the record with everything that admits it (see the module doc): one atomic
    /// step, one round trip on Redis, taken only if the cost rules it was judged under (kept
    /// in memory) are still the stored ones. Returns whether a cost rule governs it.
    async fn write_record(&self, t: &mut TaskRecord, estimate: Option<crate::Credits>) -> Result<bool, SubmitError> {
        let token = crate::store::Lookup { key: token_key(&t.callback_token), value: t.id.as_bytes().to_vec(), ttl: Some(LOOKUP_TTL) };
        let place = self.queue_place(&t.owner, &t.project, &t.id).await?;
        let arrival = LogLine { log: super::queue::ARRIVALS, entry: t.owner.as_bytes(), keep: super::queue::ARRIVALS_KEPT };
        let mut judged = self.cost_rules(false).await?;
        // Whether `judged` was read for this submission: a refusal decided from the rules in
        // memory is confirmed against the stored ones first (a cap may have been lifted).
        let mut fresh = false;
        let mut tries = 0;
        loop {
            t.estimated_cost = match (estimate, budget::per_job_cap(&judged.rules, &t.owner, &t.project)) {
                (Some(e), _) | (None, Some(e)) => e,
                (None, None) if !fresh => {
                    (judged, fresh) = (self.cost_rules(true).await?, true);
                    continue;
                }
                (None, None) => {
                    return Err(invalid(format!("{} has no known price: set a per-job cap for this project or person (Budget panel) and that cap is what the task may cost", t.model)));
                }
            };
            let cost = match CostHold::plan(&judged.rules, &t.id, &t.owner, &t.project, t.estimated_cost) {
                Ok(cost) => cost,
                Err(_) if !fresh => {
                    (judged, fresh) = (self.cost_rules(true).await?, true);
                    continue;
                }
                Err(e) => return Err(self.over_budget(e)),
            };
            let holds: Vec<ReserveRequest> = place.iter().map(|p| p.request.clone()).chain(cost.request.clone()).collect();
            let begun = crate::tasks::story::submitted(t, budget::governs(&judged.rules, &t.owner, &t.project));
            t.story = Default::default();
            t.story.push(t.created_ms, &self.0.opts.instance, crate::tasks::story::BeatKind::Submitted, begun);
            let announce = crate::tasks::events::announcement(t)?;
            let with = CreateWith { lookups: std::slice::from_ref(&token), announce: Some(&announce), unchanged: Some(&judged.unchanged), holds: &holds, log: Some(arrival) };
            let created = match self.0.store.task_create(t, &with).await {
                Ok(c) => c,
                // On the primary but on no replica: a failover could lose it, so it is not
                // accepted, and it is ended so that it is never sent (the caller may submit again).
                Err(e @ StoreError::Unreplicated(_)) => {
                    self.withdraw_unstored(&t.id).await;
                    return Err(SubmitError::Store(e));
                }
                // The step may have been taken before the store failed: the record says.
                Err(e) => {
                    return match self.0.store.task_get(&t.id).await {
                        Ok(Some(_)) => Ok(budget::governs(&judged.rules, &t.owner, &t.project)),
                        Ok(None) => Err(SubmitError::Store(e)),
                        Err(_) => Err(SubmitError::InDoubt(t.id.clone())),
                    };
                }
            };
            match created {
                Created::Inserted(_) => return Ok(budget::governs(&judged.rules, &t.owner, &t.project)),
                Created::Exists => return Err(StoreError::Invalid(format!("task id {} already exists", t.id)).into()),
                Created::Refused(i, r) => {
                    return Err(match place.as_ref().filter(|_| i == 0) {
                        Some(place) => self.queue_full(place, &r),
                        None => self.over_budget(cost.refused(&r)),
                    });
                }
                Created::Changed if tries < RULE_CHANGE_TRIES => {
                    tries += 1;
                    (judged, fresh) = (self.cost_rules(true).await?, true);
                }
                Created::Changed => return Err(StoreError::Unavailable("the cost rules kept changing while this task was submitted; nothing was recorded".into()).into()),
            }
        }
    }

    /// A cost rule's refusal, counted.
    /// A cost rule's refusal, counted (by cap kind), as the caller's error (a task's or a
    /// chat call's).
    pub(crate) fn over_budget<E: From<BudgetError>>(&self, e: BudgetError) -> E {
        if let BudgetError::Refused(_, kind) = &e {
            self.0.opts.metrics.budget_refused(*kind);
        }
        E::from(e)
    }

    async fn clear_budget_pending(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        self.modify(id, |t| std::mem::take(&mut t.budget_pending)).await
    }

    /// A budget-pending record whose submitting instance stopped half-way: reserve again
    /// (a hold made before the stop is found, not doubled) and release it to the dispatcher,
    /// or fail it with the rule's refusal.
    pub(super) async fn resolve_budget_pending(&self, t: &TaskRecord) -> Result<(), StoreError> {
        if now_ms().saturating_sub(t.created_ms) < PENDING_GRACE.as_millis() as u64 {
            return Ok(());
        }
        let rules = budget::rules(self.0.store.as_ref()).await?;
        match budget::reserve(self.0.store.as_ref(), &rules, &t.id, &t.owner, &t.project, t.estimated_cost).await {
            Ok(()) => {
                self.clear_budget_pending(&t.id).await?;
            }
            Err(BudgetError::Store(e)) => return Err(e),
            Err(refused) => {
                let now = now_ms();
                self.modify(&t.id, |t| {
                    if !t.budget_pending || t.state != TaskState::Queued {
                        return false;
                    }
                    t.budget_pending = false;
                    t.state = TaskState::Fail;
                    t.fail_class = Some(FailClass::Budget);
                    t.fail_msg = Some(refused.to_string());
                    t.finished_ms = Some(now);
                    t.note = None;
                    true
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Re-submits a failed or expired task as a new task linked to it, owned by `by` (a
    /// producer or admin); recorded in the audit log.
    pub async fn retry(&self, id: &str, by: &crate::team::accounts::Actor) -> Result<TaskRecord, SubmitError> {
        by.require(crate::team::accounts::Role::Producer).map_err(|e| SubmitError::Forbidden(e.to_string()))?;
        let old = self.0.store.task_get(id).await?.filter(|t| by.sees(&t.project)).ok_or_else(|| SubmitError::NotFound(id.to_string()))?;
        if !matches!(old.state, crate::TaskState::Fail | crate::TaskState::Expired) {
            return Err(SubmitError::NotRetryable(old.id, old.state.to_string()));
        }
        let relay_callback = old.relay_callback.map(|c| (c.url, c.key_id));
        let old_id = old.id.clone();
        // An input given as a signed Library link was a capability: the retry carries it.
        let mut input = old.input;
        if let Some(signer) = &self.0.opts.library_links {
            for i in old.inputs.iter().filter(|i| i.signed) {
                crate::library::inputs::put(&mut input, &i.field, &signer.path(&i.task, i.n, now_ms() / 1000));
            }
        }
        let new = self.submit(Submission { owner: by.who.clone(), project: old.project, model: old.model, input, relay_callback, retry_of: Some(old.id), priority: Some(old.priority), sees: Some(by.membership.clone()), ..Default::default() }).await?;
        // Noted on the failure (the review shows it; a bulk retry skips it).
        self.modify(&old_id, |t| t.retried_as.replace(new.id.clone()).as_ref() != Some(&new.id)).await?;
        crate::team::audit::record(self.0.store.as_ref(), by, "task retried", &old_id, Some(old.state.to_string()), Some(format!("new task {}", new.id))).await?;
        Ok(new)
    }
}
