//! Admitting a batch whole: every task of it, or none (see [`crate::tasks::batch`]).
//!
//! 1. Every row is checked against the catalog before anything is written (a bad row names
//!    its place and nothing is written).
//! 2. The batch's name is claimed on the list (state `admitting`) under a lease held while
//!    it is admitted.
//! 3. Each task is submitted as any other — its own place in the queue and its own hold
//!    under every cost rule, in one atomic step — but *gated*: the dispatcher does not send
//!    it. The holds add up, so the batch fits the caps exactly when its last task does.
//! 4. If any task is refused (a cost rule, the queue quota), the ones written are ended
//!    ("not admitted") with their holds and places given back in the same write, the batch
//!    is marked `refused` and the submitter gets that refusal: nothing reached KIE.
//! 5. Otherwise the batch is marked `admitted`, then each task's gate is lifted.
//!
//! A crash anywhere leaves gated tasks the dispatcher finds ([`Lifecycle::resolve_gate`]):
//! once nobody holds the batch's lease, a batch marked `admitted` has its gates lifted, and
//! one still `admitting` is marked `refused` and its tasks ended: never half a batch sent.

use std::time::Duration;

use serde_json::{Map, Value};

use super::Lifecycle;
use super::submit::{Submission, SubmitError, invalid};
use crate::money::credits::Credits;
use crate::store::{StoreResult, UpdateWith, now_ms};
use crate::tasks::batch::{self, Batch, BatchState, RowsFormat};
use crate::tasks::task::{Priority, Resolved, TaskRecord, TaskState};

/// How long an admission holds its batch's lease (a crash frees it after this).
const ADMIT_LEASE: Duration = Duration::from_secs(600);
/// How old a gated task must be before the dispatcher looks into its batch.
pub const GATE_GRACE: Duration = Duration::from_secs(30);
/// Most open (relay) batch names an instance remembers having listed.
const OPEN_REMEMBERED: usize = 1_000;

/// A batch to submit: the model's common fields, the rows and how many times each is taken.
#[derive(Debug, Clone, Default)]
pub struct BatchRequest {
    pub name: String,
    /// Who submits it.
    pub owner: String,
    pub project: String,
    pub model: String,
    /// Fields every task has (a row's own fields win).
    pub base: Map<String, Value>,
    pub format: RowsFormat,
    pub rows: String,
    pub variants: u32,
    pub priority: Option<Priority>,
    pub send_by_ms: Option<u64>,
}

/// The open (relay) batches this instance listed already.
#[derive(Default)]
pub(super) struct OpenBatches(std::sync::Mutex<std::collections::HashSet<String>>);

fn lease_name(name: &str) -> String {
    format!("batch:admit:{name}")
}

impl Lifecycle {
    /// Every task of `r`, each checked against the catalog, and their estimate all together
    /// (what a preview says; nothing is written). A bad row names its place.
    pub fn plan_batch(&self, r: &BatchRequest) -> Result<(Vec<Submission>, Credits), SubmitError> {
        batch::check_name(&r.name).map_err(invalid)?;
        let name = r.name.trim().to_string();
        let inputs = batch::inputs(&r.base, r.format, &r.rows, r.variants).map_err(invalid)?;
        let n = inputs.len();
        let submissions: Vec<Submission> = inputs
            .into_iter()
            .map(|input| Submission { owner: r.owner.clone(), project: r.project.clone(), model: r.model.clone(), input, priority: r.priority, send_by_ms: r.send_by_ms, batch: Some(name.clone()), gated: true, ..Default::default() })
            .collect();
        let mut estimate = Credits::ZERO;
        for (i, s) in submissions.iter().enumerate() {
            let (_, e) = self.validate(s).map_err(|e| match e {
                SubmitError::Invalid(m) => invalid(format!("Task {} of {n}: {m}", i + 1)),
                other => other,
            })?;
            estimate = Credits(estimate.0.saturating_add(e.unwrap_or(Credits::ZERO).0));
        }
        Ok((submissions, estimate))
    }

    /// Submits `r` whole or not at all (see the module doc). Returns the batch as listed.
    pub async fn submit_batch(&self, r: BatchRequest) -> Result<Batch, SubmitError> {
        if !self.configured() {
            return Err(SubmitError::NotConfigured);
        }
        let (submissions, estimate) = self.plan_batch(&r)?;
        let (name, n) = (r.name.trim().to_string(), submissions.len());
        let store = self.0.store.as_ref();
        let holder = format!("{}:{}", self.0.opts.instance, crate::secret::random_hex(6));
        if !store.lease_acquire(&lease_name(&name), &holder, ADMIT_LEASE).await? {
            return Err(invalid(format!("a batch named {name:?} is being submitted; name this one differently")));
        }
        let listed = Batch { name: name.clone(), project: r.project.trim().to_string(), owner: r.owner.trim().to_string(), model: r.model.clone(), created_ms: now_ms(), tasks: n as u32, estimate, state: BatchState::Admitting, why: None };
        let admitted = async {
            // A name an earlier batch's tasks still carry would count them in this one's progress.
            let earlier = store.index_counts(&[crate::tasks::task::index::batch(&name)]).await?[0] > 0;
            if earlier || !batch::add(store, listed.clone()).await? {
                return Err(invalid(format!("a batch named {name:?} exists; name this one differently")));
            }
            let mut written: Vec<TaskRecord> = Vec::with_capacity(n);
            for (i, s) in submissions.into_iter().enumerate() {
                match self.submit(s).await {
                    Ok(t) => written.push(t),
                    Err(e) => {
                        let why = format!("Batch {name:?} of {n} tasks was refused as a whole (task {} of {n}): {}", i + 1, e.public_message());
                        for t in &written {
                            self.end_gated(&t.id, &why).await?;
                        }
                        batch::change(store, &name, |b| b.state == BatchState::Admitting && { b.state = BatchState::Refused; b.why = Some(why.clone()); true }).await?;
                        return Err(match e {
                            SubmitError::OverBudget(_) => SubmitError::OverBudget(why),
                            SubmitError::QueueFull { waiting, max, retry_after } => SubmitError::QueueFull { waiting, max, retry_after },
                            SubmitError::Paused(_) => SubmitError::Invalid(why),
                            other => other,
                        });
                    }
                }
            }
            let estimate = Credits(written.iter().map(|t| t.estimated_cost.0).sum());
            if !batch::change(store, &name, |b| b.state == BatchState::Admitting && { b.state = BatchState::Admitted; b.estimate = estimate; true }).await? {
                // Taken as abandoned meanwhile (the lease ran out): its tasks were ended.
                return Err(SubmitError::Store(crate::StoreError::Unavailable(format!("batch {name:?} took too long to admit and was refused; nothing of it runs"))));
            }
            for t in &written {
                self.lift_gate(&t.id).await?;
            }
            Ok(Batch { state: BatchState::Admitted, estimate, ..listed.clone() })
        }
        .await;
        store.lease_release(&lease_name(&name), &holder).await?;
        let b = admitted?;
        tracing::info!(batch = %b.name, tasks = b.tasks, project = %b.project, "batch admitted");
        self.0.queue.wake();
        Ok(b)
    }

    /// A relay task's batch (`X-Control-Room-Batch`): listed as an open batch the first time
    /// it is named; a name a submitted batch has is refused.
    pub async fn join_open_batch(&self, name: &str, owner: &str, project: &str, model: &str) -> Result<(), SubmitError> {
        batch::check_name(name).map_err(invalid)?;
        if self.0.open_batches.0.lock().unwrap_or_else(|e| e.into_inner()).contains(name) {
            return Ok(());
        }
        let store = self.0.store.as_ref();
        let open = Batch { name: name.to_string(), project: project.to_string(), owner: owner.to_string(), model: model.to_string(), created_ms: now_ms(), tasks: 0, estimate: Credits::ZERO, state: BatchState::Open, why: None };
        if !batch::add(store, open).await? && batch::list(store).await?.get(name).is_some_and(|b| b.state != BatchState::Open) {
            return Err(invalid(format!("{name:?} names a batch submitted from the console; name the relay's batch differently")));
        }
        let mut known = self.0.open_batches.0.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= OPEN_REMEMBERED {
            known.clear();
        }
        known.insert(name.to_string());
        Ok(())
    }

    /// A gated task the dispatcher found: once its batch's admission is over (nobody holds its
    /// lease), its gate is lifted if the batch was admitted, or it is ended if not.
    pub(super) async fn resolve_gate(&self, t: &TaskRecord) -> StoreResult<()> {
        if now_ms().saturating_sub(t.created_ms) < GATE_GRACE.as_millis() as u64 {
            return Ok(());
        }
        let store = self.0.store.as_ref();
        let name = t.batch.clone().unwrap_or_default();
        let holder = format!("{}:resolve", self.0.opts.instance);
        if !store.lease_acquire(&lease_name(&name), &holder, Duration::from_secs(30)).await? {
            return Ok(());
        }
        let done = async {
            let why = format!("Batch {name:?} was not admitted whole (its admission stopped part-way); nothing of it was sent");
            batch::change(store, &name, |b| b.state == BatchState::Admitting && { b.state = BatchState::Refused; b.why = Some(why.clone()); true }).await?;
            match batch::list(store).await?.get(&name).map(|b| (b.state, b.why.clone())) {
                Some((BatchState::Admitted, _)) => self.lift_gate(&t.id).await,
                Some((_, Some(why))) => self.end_gated(&t.id, &why).await,
                _ => self.end_gated(&t.id, &why).await,
            }
        }
        .await;
        store.lease_release(&lease_name(&name), &holder).await?;
        done
    }

    async fn lift_gate(&self, id: &str) -> StoreResult<()> {
        self.modify(id, |t| {
            let lifted = std::mem::take(&mut t.gated) && t.state == TaskState::Queued;
            if lifted {
                t.note = Some("Waiting for the rate guard".into());
            }
            lifted
        })
        .await
        .map(|_| ())
    }

    /// Ends a gated task that will not run: holds and queue place given back in the same
    /// write, and off the Error Review (its batch's refusal says why).
    async fn end_gated(&self, id: &str, why: &str) -> StoreResult<()> {
        let owned = self.ended_settlements(id, Credits::ZERO);
        let settles: Vec<(&str, i64)> = owned.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let now = now_ms();
        self.modify_with(id, &UpdateWith { settles: &settles, ..Default::default() }, |t| {
            if !t.gated || t.state != TaskState::Queued {
                return false;
            }
            t.gated = false;
            t.end_unsent(why, now);
            t.resolved = Some(Resolved { by: "batch".into(), at_ms: now, how: "its batch was refused as a whole".into() });
            true
        })
        .await
        .map(|_| ())
    }
}
