//! The one step that applies an upstream state to a task, fed by callbacks and the poller.
//!
//! Idempotent and order-proof: a state only moves forward (waiting → queuing → generating →
//! success | fail), terminal states are final, and a repeat changes nothing. Credits KIE
//! charged enter the ledger under the task's id, so counting them twice is impossible.
//!
//! One terminal state gives way: `expired` because this console gave up waiting (callback
//! lost). KIE may still finish such a task, and charges it if it does, so KIE's confirmed
//! end is taken: the task becomes `success` (its results archived) or `fail`, marked
//! *completed after give-up*, and counted at KIE's charge — in the ledger, the cost rules
//! (whose hold the give-up had released: the charge is counted again, over the cap if need
//! be, since it was spent), the receipts and their sync. The give-up writes the record before
//! it releases the hold, so whichever of the two steps comes first, a success is never
//! settled at 0.

use super::{Lifecycle, count_in_ledger};
use crate::money::credits::Credits;
use crate::kie::{UpstreamState, UpstreamStatus};
use crate::store::{StoreResult, now_ms};
use crate::tasks::story::Via;
use crate::tasks::task::{ChargeBasis, FailClass, TaskRecord, TaskState};

/// Position in the lifecycle; a task never moves to a lower one.
fn rank(s: TaskState) -> u8 {
    match s {
        TaskState::Queued => 0,
        TaskState::Submitted => 1,
        TaskState::Waiting => 2,
        TaskState::Queuing => 3,
        TaskState::Generating => 4,
        TaskState::Success | TaskState::Fail | TaskState::Expired => 5,
    }
}

fn task_state(s: UpstreamState) -> TaskState {
    match s {
        UpstreamState::Waiting => TaskState::Waiting,
        UpstreamState::Queuing => TaskState::Queuing,
        UpstreamState::Generating => TaskState::Generating,
        UpstreamState::Success => TaskState::Success,
        UpstreamState::Fail => TaskState::Fail,
    }
}

/// The Error Review's class for KIE's `failCode`.
pub fn class_of_fail_code(code: Option<&str>) -> FailClass {
    match code.map(str::trim) {
        Some("400" | "422" | "451") => FailClass::Policy,
        Some("402") => FailClass::InsufficientCredits,
        Some("429") => FailClass::RateLimited,
        Some("401" | "403") => FailClass::Auth,
        _ => FailClass::Upstream,
    }
}

impl Lifecycle {
    /// Applies a *confirmed* upstream status to task `id`, heard `via` a callback or a poll
    /// (its story says which). Returns the new record if anything changed; `None` for a
    /// repeat, a step backwards or a task already final.
    pub async fn apply_upstream_state(&self, id: &str, st: &UpstreamStatus, via: Via) -> StoreResult<Option<TaskRecord>> {
        let next = task_state(st.state);
        if next.is_terminal()
            && let Some(t) = self.0.store.task_get(id).await?
            && (!t.state.is_terminal() || t.given_up())
        {
            // Money first, keyed by the task, before the record says it ended: a crash between
            // the two and a second apply count it once (see the module doc).
            let spent = match next {
                TaskState::Success => self.charged(&t, st).0,
                _ => st.credits.unwrap_or(Credits::ZERO), // KIE does not charge failures
            };
            if next == TaskState::Success {
                // The hold only makes a repeat count once; a repeat after 30 days cannot come
                // (terminal states are final), so it need not stay forever.
                count_in_ledger(self.0.store.as_ref(), id, spent).await?;
            }
            let mut settled = self.release_holds(id, spent).await?;
            if !settled && spent > Credits::ZERO && (t.given_up() || self.0.store.task_get(id).await?.is_some_and(|now| now.given_up())) {
                // The give-up released the hold before KIE's charge was known.
                let store = self.0.store.as_ref();
                let rules = crate::money::budget::rules(store).await?;
                settled = crate::money::budget::charge_after(store, &rules, id, &t.owner, &t.project, spent).await?;
            }
            if settled && spent > Credits::ZERO {
                // KIE's charge may be above the estimate: the meters moved, check them again.
                self.raise_alerts(t.owner.clone(), t.project.clone(), Some((id.to_string(), spent, t.estimated_cost)));
            }
        }
        let now = now_ms();
        let mut late = false;
        let changed = self
            .modify(id, |t| {
                late = t.given_up() && next.is_terminal();
                if late {
                    t.completed_late = true;
                    t.state = TaskState::Generating; // moved on below, as any end is
                    t.fail_class = None;
                    t.fail_msg = None;
                    t.finished_ms = None;
                    // Counted again in the receipts (at KIE's charge) and synced again.
                    t.folded = false;
                    if t.receipt_sync.is_some() {
                        t.receipt_sync = Some(Default::default());
                    }
                } else if t.state.is_terminal() {
                    return false;
                }
                let mut changed = false;
                if t.kie_task_id.is_none() {
                    t.kie_task_id = Some(st.task_id.clone());
                    changed = true;
                }
                if t.dispatch.sending_since_ms.take().is_some() {
                    changed = true;
                }
                if t.submitted_ms.is_none() {
                    t.submitted_ms = Some(now);
                }
                t.upstream_seen_ms = Some(now);
                if rank(next) <= rank(t.state) {
                    return changed;
                }
                t.state = next;
                t.story.via = Some(via);
                t.note = t.completed_late.then(|| "Completed after give-up: KIE finished it after this console stopped waiting, and charged it".to_string());
                match next {
                    TaskState::Success => {
                        t.result_urls = st.result_urls.clone();
                        t.kie_result_ids = st.result_ids.clone();
                        t.result_names = st.result_names.clone();
                        let (cost, basis) = self.charged(t, st);
                        t.actual_cost = Some(cost);
                        t.charge_basis = Some(basis);
                        t.finished_ms = Some(now);
                        // Archived at once; the terms only set the deadline.
                        if let Some(terms) = &self.0.opts.archive
                            && !t.result_urls.is_empty()
                        {
                            t.archive = Some(crate::library::asset::Archive::plan(&t.result_urls, now, terms));
                        }
                    }
                    TaskState::Fail => {
                        t.fail_code = st.fail_code.clone();
                        t.fail_msg = Some(st.fail_msg.clone().unwrap_or_else(|| "KIE reported the generation failed".into()));
                        t.fail_class = Some(class_of_fail_code(st.fail_code.as_deref()));
                        // KIE does not charge failures.
                        t.actual_cost = Some(st.credits.unwrap_or(Credits::ZERO));
                        t.finished_ms = Some(now);
                    }
                    _ => {}
                }
                true
            })
            .await?;
        if let Some(t) = &changed {
            tracing::info!(task = %t.id, state = %t.state, late, "task state applied");
            if t.state == TaskState::Success && t.actual_cost.is_some_and(|c| c > t.estimated_cost) {
                // KIE's price moved above the catalog's: counted at the real charge (the caps
                // closed on it above), alerted, and said here once — by the write that ended it.
                tracing::warn!(task = %t.id, model = %t.model, held = %t.estimated_cost, charged = ?t.actual_cost, "KIE charged more than the task held; update the catalog's price");
                self.0.opts.metrics.charge_overrun(&t.model);
            }
            if t.state == TaskState::Success
                && let Some(took) = t.submitted_ms.map(|s| t.finished_ms.unwrap_or(t.updated_ms).saturating_sub(s))
                && let Err(e) = crate::tasks::typical::record(self.0.store.as_ref(), &t.model, took).await
            {
                tracing::warn!(task = %t.id, error = %e, "cannot count the model's typical time");
            }
            if late {
                // Its first end (expired) was counted by the give-up; this one is KIE's.
                self.0.opts.metrics.ended(&t.model, &t.project, t.state, t.actual_cost);
            }
            if t.state == TaskState::Success
                && t.retry_of.is_some()
                && let Err(e) = self.resolve_retried(t).await
            {
                // The state is applied; the failures it retried stay to review (a person can
                // resolve them).
                tracing::warn!(task = %t.id, error = %e, "cannot resolve the failures this retry retried");
            }
        }
        Ok(changed)
    }

    /// What a task that succeeded cost, and what that rests on: KIE's charge when it says;
    /// else, for a per-second price, the seconds its results last; else its estimate.
    fn charged(&self, t: &TaskRecord, st: &UpstreamStatus) -> (Credits, ChargeBasis) {
        let by_seconds = || st.media_seconds.and_then(|s| self.0.catalog.get(&t.model)?.cost_of_seconds(s));
        match (st.credits, by_seconds()) {
            (Some(c), _) => (c, ChargeBasis::Reported),
            (None, Some(c)) => (c, ChargeBasis::Measured),
            (None, None) => (t.estimated_cost, ChargeBasis::Estimate),
        }
    }

    /// A task ended: its cost-rule hold becomes what it spent (nothing releases it all), and
    /// its concurrency slot is free. Both are idempotent.
    /// Returns whether a cost-rule hold was settled by this call (so alerts are checked once).
    pub(super) async fn release_holds(&self, id: &str, spent: Credits) -> StoreResult<bool> {
        let settled = crate::money::budget::settle(self.0.store.as_ref(), id, spent).await?;
        self.release_running(id).await?;
        self.free_queue_place(id).await?;
        Ok(settled)
    }

    /// An ended task's holds settled at what it cost, as settlements to write with the record
    /// ([`crate::store::UpdateWith::settles`]; idempotent: a no-op when they are): the cost
    /// rules' hold at what it cost, its concurrency slot and its queue place freed.
    pub(crate) fn ended_settlements(&self, id: &str, spent: Credits) -> Vec<(String, i64)> {
        let mut out = vec![(crate::money::budget::hold_id(id), spent.milli().max(0)), (super::quota::place_id(id), 0)];
        if self.0.opts.rate_rules.iter().any(|r| matches!(r, crate::tasks::rate_guard::LimitRule::Concurrent { .. })) {
            out.push((super::limits::running_hold(id), 0));
        }
        out
    }

    /// Ends a task that can no longer be followed (`expired`), unless it ended meanwhile. Its
    /// holds are released: KIE charges nothing it never finished for us (and if KIE finishes
    /// it later after all, that end is taken and charged: see the module doc).
    /// The record is written first and the holds released after, and only by the call that
    /// ended it: a completion applied in between settled the hold at KIE's charge, and this
    /// then finds nothing to release (a crash in between: the receipts' folder settles it).
    pub async fn expire(&self, id: &str, class: FailClass, why: String) -> StoreResult<Option<TaskRecord>> {
        let now = now_ms();
        let ended = self.modify(id, |t| {
            if t.state.is_terminal() {
                return false;
            }
            t.state = TaskState::Expired;
            t.fail_class = Some(class);
            t.fail_msg = Some(why.clone());
            t.dispatch.sending_since_ms = None;
            t.finished_ms = Some(now);
            t.note = None;
            true
        })
        .await?;
        if ended.is_some() {
            self.release_holds(id, Credits::ZERO).await?;
        }
        Ok(ended)
    }
}
