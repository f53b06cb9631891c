//! The fallback poller: asks KIE about tasks whose callback has not come, on KIE's documented
//! schedule (every 2–3 s for the first 30 s, 5–10 s until 2 minutes, then 15–30 s), and ends
//! tasks that passed the give-up time as `expired`.
//!
//! With `TASK_RETENTION_DAYS` set, its sweep also deletes ended tasks past their retention.
//!
//! One instance polls at a time (the `poller` lease), so no task is polled twice; its calls
//! and the callbacks' confirmations share one `recordInfo` window in the store, so all
//! instances together stay under KIE's 10 per second. It polls on the schedule whether or not
//! callbacks are on: KIE calls back only when a task ends, and the Task Monitor shows the
//! states between.

use std::collections::HashMap;
use std::time::Duration;

use super::Lifecycle;
use crate::store::{StoreResult, now_ms, watched};
use crate::tasks::task::{FailClass, TaskQuery, TaskRecord, TaskState};

const LEASE: &str = "poller";
/// How often queued tasks are checked for a submission in doubt past the give-up time (a
/// large backlog is not read every tick).
const SWEEP_EVERY: Duration = Duration::from_secs(15);
/// In-flight tasks looked at per state and round.
const MAX_PER_STATE: usize = 2000;

/// The wait before the next poll of a task `age_ms` after it was submitted (a random point in
/// KIE's interval, so that many tasks do not poll in step).
pub fn poll_interval(age_ms: u64) -> Duration {
    let (lo, hi) = match age_ms {
        0..30_000 => (2_000, 3_000),
        30_000..120_000 => (5_000, 10_000),
        _ => (15_000, 30_000),
    };
    Duration::from_millis(fastrand::u64(lo..=hi))
}

/// What the poller remembers between rounds (only while it holds the lease).
#[derive(Debug, Default)]
pub struct PollState {
    /// Next poll per task (Unix ms); a task without an entry is due.
    next: HashMap<String, u64>,
    /// Where each state's scan goes on, so a backlog larger than one round is reached in turn.
    cursors: HashMap<TaskState, String>,
    /// Where the retention sweep goes on.
    purge_cursor: Option<String>,
}

pub(super) async fn run(lc: Lifecycle) {
    let mut state = PollState::default();
    let mut last_sweep = tokio::time::Instant::now() - SWEEP_EVERY;
    loop {
        match lc.0.store.lease_acquire(LEASE, &lc.0.opts.instance, lc.poller_lease_ttl()).await {
            Ok(true) => {
                let sweep = last_sweep.elapsed() >= SWEEP_EVERY;
                if sweep {
                    last_sweep = tokio::time::Instant::now();
                }
                if let Err(e) = lc.poll_round(&mut state, sweep).await {
                    tracing::warn!(error = %e, "poller: store error; retrying");
                }
            }
            Ok(false) => state = PollState::default(),
            Err(e) => tracing::warn!(error = %e, "poller: cannot take its lease"),
        }
        tokio::time::sleep(lc.0.opts.tick).await;
    }
}

impl Lifecycle {
    /// The poller's lease lasts a few ticks, so a stopped instance hands over quickly.
    fn poller_lease_ttl(&self) -> Duration {
        (self.0.opts.tick * 6).max(Duration::from_secs(5))
    }

    /// One round: poll the due tasks, give up on overdue ones; with `sweep`, also on queued
    /// tasks in doubt. Each state is read oldest first from where the last round stopped.
    pub async fn poll_round(&self, ps: &mut PollState, sweep: bool) -> StoreResult<()> {
        if self.halted() {
            return Ok(());
        }
        let give_up = self.0.opts.give_up_after.as_millis() as u64;
        let lease_ttl = self.poller_lease_ttl();
        let states: &[TaskState] = if sweep {
            &[TaskState::Queued, TaskState::Submitted, TaskState::Waiting, TaskState::Queuing, TaskState::Generating]
        } else {
            &[TaskState::Submitted, TaskState::Waiting, TaskState::Queuing, TaskState::Generating]
        };
        for &state in states {
            let (tasks, cursor) = self.scan_state(state, ps.cursors.remove(&state), MAX_PER_STATE).await?;
            if let Some(c) = cursor {
                ps.cursors.insert(state, c);
            }
            for t in tasks {
                let now = now_ms();
                if state == TaskState::Queued {
                    // A deadline passed deep in a lane the dispatcher has not reached.
                    if self.end_past_deadline(&t).await? {
                        continue;
                    }
                    // Otherwise only tasks in doubt are the poller's: give up on them in time, counted
                    // from when createTask left (the queue's wait does not count).
                    let sent = t.dispatch.sending_since_ms.unwrap_or(t.created_ms);
                    if t.in_doubt() && now.saturating_sub(sent) > give_up {
                        let why = "Lost: createTask had no answer and KIE never called back".to_string();
                        self.expire(&t.id, FailClass::CallbackLost, why).await?;
                    }
                    continue;
                }
                if t.chat.is_some() {
                    // A chat call is its instance's, not KIE's to poll; one whose instance
                    // stopped mid-call is ended here once it is long overdue.
                    self.chat_abandoned(&t).await?;
                    continue;
                }
                let Some(kie_id) = t.kie_task_id.clone() else { continue };
                let submitted = t.submitted_ms.unwrap_or(t.created_ms);
                let age = now.saturating_sub(submitted);
                let overdue = age > give_up;
                let quiet_since = t.upstream_seen_ms.unwrap_or(submitted);
                let due = overdue || ps.next.get(&t.id).is_none_or(|at| now >= *at);
                if !due || now.saturating_sub(quiet_since) < 1_000 && !overdue {
                    continue;
                }
                // Keep the lease while a long round runs.
                if !self.0.store.lease_acquire(LEASE, &self.0.opts.instance, lease_ttl).await? {
                    return Ok(());
                }
                self.poll_one(&t, &kie_id).await?;
                ps.next.insert(t.id.clone(), now_ms() + poll_interval(age).as_millis() as u64);
                if overdue && let Some(t) = self.0.store.task_get(&t.id).await?
                    && !t.state.is_terminal()
                {
                    let mins = self.0.opts.give_up_after.as_secs() / 60;
                    self.expire(&t.id, FailClass::CallbackLost, format!("Lost: no result from KIE within {mins} min (callback lost, polling gave up)")).await?;
                }
            }
        }
        // Entries long past due belong to tasks that ended (or are due anyway): forget them.
        let now = now_ms();
        ps.next.retain(|_, at| at.saturating_add(120_000) > now);
        if sweep {
            self.purge_ended(ps).await?;
        }
        Ok(())
    }

    /// Deletes ended tasks past `TASK_RETENTION_DAYS`, oldest first, a page per sweep (its
    /// cursor carries on from sweep to sweep, so every record is reached in turn).
    async fn purge_ended(&self, ps: &mut PollState) -> StoreResult<()> {
        let Some(keep) = self.0.opts.task_retention else { return Ok(()) };
        let cutoff = now_ms().saturating_sub(keep.as_millis() as u64);
        let q = TaskQuery { oldest_first: true, after: ps.purge_cursor.take(), limit: crate::tasks::task::MAX_PAGE, ..Default::default() };
        let page = self.0.store.task_list(&q).await?;
        let mut deleted = 0;
        for t in &page.tasks {
            if t.created_ms >= cutoff {
                // Everything after this one is younger still: start again from the oldest.
                break;
            }
            // A task whose results are in the Library stays: its record is their index (an
            // admin deletes a project's copies first to let it go).
            let in_library = t.archive.as_ref().is_some_and(crate::library::asset::Archive::holds_any);
            let ended_long_ago = t.settled() && !in_library && t.finished_ms.unwrap_or(t.updated_ms) < cutoff;
            if ended_long_ago && self.0.store.task_delete(&t.id, t.version).await? {
                tracing::debug!(task = %t.id, "ended task past its retention deleted");
                deleted += 1;
            }
        }
        if deleted > 0 {
            // Settled records are kept in memory by every instance (under our id and KIE's).
            watched::announce(self.0.store.as_ref(), super::SETTLED_CHANNEL, watched::ALL).await?;
        }
        if page.tasks.last().is_some_and(|t| t.created_ms < cutoff) {
            ps.purge_cursor = page.next;
        }
        Ok(())
    }

    /// One `recordInfo` for a task, applied.
    async fn poll_one(&self, t: &TaskRecord, kie_id: &str) -> StoreResult<()> {
        let Some(kie) = &self.0.kie else { return Ok(()) };
        if !self.claim_record_info(Duration::from_secs(5)).await? {
            return Ok(());
        }
        let answer = kie.status_of(t.family.adapter(), kie_id, &t.input).await;
        self.0.opts.metrics.poller_call(answer.is_ok());
        match answer {
            Ok(st) => {
                self.apply_upstream_state(&t.id, &st, crate::tasks::story::Via::Poll).await?;
            }
            Err(e) => tracing::info!(task = %t.id, error = %e, "poll: recordInfo failed; will ask again"),
        }
        Ok(())
    }
}
