//! The dispatcher: sends queued tasks to KIE in fair order (round-robin between owners,
//! oldest first within each), as fast as the rate guard allows.
//!
//! Runs in every instance. A task is claimed with its owner's lease (one instance at a time
//! sends an owner's tasks, so they leave in the order they came), marked *sending*
//! (compare-and-set) before `createTask` leaves, and its answer recorded after. So after a crash:
//! - a task marked queued but not sending was never sent: it is sent now;
//! - a task marked sending with no KIE id is *in doubt*: it is never resent (a resend could run
//!   and charge twice); KIE's callback, which carries the task's token, resolves it, or the
//!   give-up time ends it as `expired`.
//!
//! `createTask` errors: 429, 455, 5xx in KIE's envelope and refused connections mean KIE did
//! not take the task, so it waits and is retried with backoff (each resend claims a new rate
//! slot), its note saying why, up to [`MAX_SEND_ATTEMPTS`] or the give-up time; 401/402/404/422
//! and other refusals fail it with the reason; a timeout, a broken connection or a 5xx without
//! KIE's envelope (a gateway in front of KIE failed after the request may have passed) leaves
//! it in doubt.

use std::time::Duration;

use super::{LOOKUP_TTL, Lifecycle, backoff, kie_id_key};
use crate::kie::KieError;
use crate::store::{StoreError, StoreResult, now_ms};
use crate::tasks::task::{FailClass, HeldBack, TaskRecord, TaskState};

/// Most queued tasks looked at in one round.
const MAX_ROUND: usize = 1000;
/// Attempts at `createTask` before a task KIE keeps refusing (429, 455, 5xx, refused
/// connections) fails; it also fails once it has waited the give-up time.
pub const MAX_SEND_ATTEMPTS: u32 = 10;
/// How often recording KIE's answer is tried while the store does not answer (about 2 min).
const RECORD_TRIES: u32 = 30;
/// Longest wait between retries of one task.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A claimed task is this instance's for this long (longer than a `createTask` can take).
const CLAIM_TTL: Duration = Duration::from_secs(90);
/// How long one round works from one reading of the queue before reading it again, so that
/// fairness holds when sends are slow (KIE slow to answer) as well as when the guard is full.
const REREAD_AFTER: Duration = Duration::from_secs(1);
/// How long every instance holds off after KIE answers 429.
const COOLDOWN_AFTER_429: Duration = Duration::from_secs(2);
/// Longest the dispatcher holds a claimed task waiting for the rate guard's next slot.
const MAX_HOLD: Duration = Duration::from_secs(2);

pub(super) async fn run(lc: Lifecycle, queue: std::sync::Arc<super::queue::Queue>) {
    while !lc.stopping() {
        match lc.dispatch_round().await {
            // The rate guard is full: new submissions cannot go sooner, so only time wakes it.
            Ok(Round { wait, rate_guard_full: true }) => tokio::time::sleep(wait).await,
            Ok(Round { wait, .. }) => {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    () = queue.woken() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "dispatcher: store error; retrying");
                tokio::time::sleep(lc.0.opts.tick * 2).await;
            }
        }
    }
}

/// How a round ended.
pub struct Round {
    /// Sleep this long before the next round (unless woken).
    pub wait: Duration,
    /// The round stopped because the rate window is full.
    pub rate_guard_full: bool,
}

/// What happened to one task.
enum Sent {
    /// Dealt with (or not ours to deal with); go on.
    Done,
    /// Sent after waiting for the rate guard: the queue may have changed meanwhile (a new
    /// owner's task may now come first), so the round ends and the next one re-reads it.
    DoneAfterWait,
    /// The rate guard is full for this long: stop the round.
    RateGuardFull(Duration),
}

impl Lifecycle {
    /// One pass over the queue in fair order (see [`super::queue`]) until the rate guard is
    /// full for longer than [`MAX_HOLD`].
    pub async fn dispatch_round(&self) -> StoreResult<Round> {
        let tick = self.0.opts.tick;
        if self.0.kie.is_none() || self.halted() {
            return Ok(Round { wait: tick * 4, rate_guard_full: false });
        }
        let mut wait = tick;
        let listed = tokio::time::Instant::now();
        // Owners another instance is sending for: the rest of their lane waits for it, so an
        // owner's tasks never overtake each other.
        let mut busy = std::collections::HashSet::new();
        let pauses = crate::tasks::pause::read(self.0.store.as_ref()).await?;
        for t in self.fair_queue(MAX_ROUND).await? {
            if self.stopping() {
                break;
            }
            // A task past its deadline ends even while paused: the queue could not send it.
            if self.end_past_deadline(&t).await? || busy.contains(&t.owner) || pauses.holding(&t.project).is_some() {
                continue;
            }
            if t.budget_pending {
                self.resolve_budget_pending(&t).await?;
                continue;
            }
            if t.gated {
                self.resolve_gate(&t).await?;
                continue;
            }
            if t.in_doubt() {
                continue;
            }
            let now = now_ms();
            if t.dispatch.next_attempt_ms > now {
                wait = wait.min(Duration::from_millis(t.dispatch.next_attempt_ms - now));
                continue;
            }
            // One instance at a time sends an owner's tasks, so they reach KIE in order.
            let lease = format!("dispatch:owner:{}", t.owner);
            if !self.0.store.lease_acquire(&lease, &self.0.opts.instance, CLAIM_TTL).await? {
                busy.insert(t.owner.clone());
                continue;
            }
            let sent = self.send(&t).await;
            self.0.store.lease_release(&lease, &self.0.opts.instance).await?;
            match sent? {
                // A list older than this may miss a newcomer who should go next: read it again.
                Sent::Done if listed.elapsed() >= REREAD_AFTER => return Ok(Round { wait: Duration::ZERO, rate_guard_full: false }),
                Sent::Done => {}
                Sent::DoneAfterWait => return Ok(Round { wait: Duration::ZERO, rate_guard_full: false }),
                Sent::RateGuardFull(w) => return Ok(Round { wait: w.min(tick * 4), rate_guard_full: true }),
            }
        }
        Ok(Round { wait, rate_guard_full: false })
    }

    /// Sends one claimed task once the rate guard admits it, waiting for a slot that frees
    /// within [`MAX_HOLD`] (so a draining queue loses no time between slots).
    async fn send(&self, t: &TaskRecord) -> StoreResult<Sent> {
        let Some(kie) = self.0.kie.clone() else { return Ok(Sent::Done) };
        // The round's list may be stale: another instance may have sent this task since.
        match self.0.store.task_get(&t.id).await? {
            Some(now) if now.version == t.version => {}
            _ => return Ok(Sent::Done),
        }
        // Inputs from the Library become URLs KIE can fetch before a rate slot is taken (an
        // upload may take a while); a follow-up's parent becomes KIE's id of it.
        let (input, told) = if t.inputs.is_empty() && t.follows.is_none() {
            (None, Vec::new())
        } else {
            match self.input_for_kie(t).await {
                Ok((input, told)) => (Some(input), told),
                Err(trouble) => {
                    self.hold_for_inputs(&t.id, trouble).await?;
                    return Ok(Sent::Done);
                }
            }
        };
        let mut waited = false;
        let holds = loop {
            match self.claim_dispatch(t).await? {
                Ok(holds) => break holds,
                Err(wait) if wait <= MAX_HOLD => {
                    waited = true;
                    tokio::time::sleep(wait).await;
                }
                Err(wait) => return Ok(Sent::RateGuardFull(wait)),
            }
        };
        // A pause written since the round began holds it: nothing starts to KIE while paused.
        if crate::tasks::pause::read(self.0.store.as_ref()).await?.holding(&t.project).is_some() {
            self.give_back(&holds).await?;
            return Ok(Sent::Done);
        }
        let id = t.id.as_str();
        let mark = now_ms();
        let marked = self.modify(id, |t| {
            if t.state != TaskState::Queued || t.in_doubt() || t.budget_pending || t.gated || t.dispatch.next_attempt_ms > now_ms() || super::deadline::past_deadline(t, now_ms()) {
                return false;
            }
            t.dispatch.attempts += 1;
            t.dispatch.sending_since_ms = Some(mark);
            t.note = Some("Sending to KIE".into());
            for text in &told {
                t.story.push(mark, &self.0.opts.instance, crate::tasks::story::BeatKind::Library, text.clone());
            }
            true
        });
        let marked = match marked.await {
            Ok(m) => m,
            // The write-ahead is on no replica: a failover could lose it and another instance
            // send the task again. Nothing is sent on it; the mark is taken back.
            Err(e @ StoreError::Unreplicated(_)) => {
                self.unmark_sending(id, mark).await;
                self.give_back(&holds).await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let Some(task) = marked else {
            self.give_back(&holds).await?;
            // Its deadline may have passed while the rate guard held it.
            self.end_past_deadline(t).await?;
            return Ok(Sent::Done);
        };
        // It has left the queue: its owner's place is free for the next task.
        self.free_queue_place(id).await?;
        let callback = self.0.opts.public_base.as_ref().map(|b| format!("{}/callbacks/kie/{}", b.trim_end_matches('/'), task.callback_token));
        // The family's own name for the model (Suno's `V4_5`), from the catalog; a model gone
        // from the catalog since is sent by its id.
        let upstream = self.0.catalog.get(&task.model).map_or(task.model.as_str(), |m| m.upstream_name());
        let answer = kie.create_task(task.family.adapter(), upstream, input.as_ref().unwrap_or(&task.input), callback.as_deref()).await;
        // KIE's answer is known only here: keep trying to record it while the store is out
        // (a Redis restart), rather than leave a task KIE took in doubt.
        let mut tries = 0u32;
        loop {
            let recorded = match &answer {
                Ok(kie_id) => self.record_accepted(id, kie_id, task.family).await,
                Err(e) => self.record_refused(id, e).await,
            };
            match recorded {
                Ok(()) => break,
                Err(e) if tries < RECORD_TRIES => {
                    tries += 1;
                    tracing::warn!(task = %id, error = %e, "cannot record KIE's answer yet; trying again");
                    tokio::time::sleep(backoff(Duration::from_millis(200), tries, Duration::from_secs(5))).await;
                }
                Err(e) => return Err(e),
            }
        }
        self.note_served(&task.owner).await?;
        Ok(if waited { Sent::DoneAfterWait } else { Sent::Done })
    }

    /// Takes back a *sending* mark no replica acknowledged (nothing was sent on it), so the
    /// task is sent once the store can confirm its write-ahead. Best effort: a mark left
    /// behind makes the task in doubt, which is never sent twice.
    /// Kept trying while the store is out (a failover): a mark left behind would hold the
    /// task in doubt, unsent, until the give-up time.
    async fn unmark_sending(&self, id: &str, mark: u64) {
        let mut tries = 0u32;
        loop {
            let undone = self
                .modify(id, |t| {
                    if t.state != TaskState::Queued || t.dispatch.sending_since_ms != Some(mark) {
                        return false;
                    }
                    t.dispatch.sending_since_ms = None;
                    t.dispatch.attempts = t.dispatch.attempts.saturating_sub(1);
                    t.note = Some("Waiting: the store could not confirm a replica has it".into());
                    true
                })
                .await;
            match undone {
                Ok(_) => return,
                Err(e) if tries < RECORD_TRIES => {
                    tries += 1;
                    tracing::warn!(task = %id, error = %e, "cannot take back an unconfirmed sending mark yet; trying again");
                    tokio::time::sleep(backoff(Duration::from_millis(200), tries, Duration::from_secs(5))).await;
                }
                Err(e) => {
                    tracing::error!(task = %id, error = %e, "an unconfirmed sending mark could not be taken back: the task waits in doubt");
                    return;
                }
            }
        }
    }

    /// KIE took the task: remember its id both ways (an upgrade's is its parent's, which keeps
    /// it) and mark it `submitted`.
    pub(super) async fn record_accepted(&self, id: &str, kie_id: &str, family: crate::kie::family::Family) -> StoreResult<()> {
        if family.adapter().upgrade().is_none() {
            self.0.store.kv_set(&kie_id_key(kie_id), id.as_bytes(), Some(LOOKUP_TTL)).await?;
        }
        let now = now_ms();
        self.modify(id, |t| {
            let first = t.kie_task_id.is_none();
            t.kie_task_id.get_or_insert_with(|| kie_id.to_string());
            let sending = t.dispatch.sending_since_ms.take().is_some();
            if t.state == TaskState::Queued {
                t.state = TaskState::Submitted;
                t.note = None;
            }
            if t.submitted_ms.is_none() {
                t.submitted_ms = Some(now);
                t.upstream_seen_ms = Some(now);
            }
            first || sending
        })
        .await?;
        tracing::info!(task = %id, kie_task = %kie_id, "KIE accepted the task");
        Ok(())
    }

    async fn record_refused(&self, id: &str, e: &KieError) -> StoreResult<()> {
        let now = now_ms();
        let in_doubt = matches!(e, KieError::Timeout(_) | KieError::Transport(_) | KieError::Decode { .. } | KieError::TooLarge(_) | KieError::Gateway { .. });
        let Some(current) = self.0.store.task_get(id).await? else { return Ok(()) };
        // Refusals KIE may not repeat are retried, but not forever.
        let waited = now.saturating_sub(current.created_ms);
        let persistent = current.dispatch.attempts >= MAX_SEND_ATTEMPTS || waited > self.0.opts.give_up_after.as_millis() as u64;
        let retryable = (e.create_never_reached() || matches!(e, KieError::RateLimited(_) | KieError::Maintenance(_) | KieError::Upstream { .. })) && !persistent;
        tracing::warn!(task = %id, error = %e, retryable, in_doubt, "createTask did not succeed");
        if in_doubt {
            self.0.opts.metrics.dispatch_in_doubt();
        } else if retryable {
            self.0.opts.metrics.dispatch_backoff();
        }
        if matches!(e, KieError::RateLimited(_)) {
            self.0.opts.metrics.kie_rate_limited();
            // Someone else spends the same account's limit: every instance holds off.
            self.cool_down(COOLDOWN_AFTER_429).await?;
        }
        if !in_doubt {
            // Not running upstream: its concurrency slot is free, and a failure spends nothing.
            self.release_running(id).await?;
            if !retryable {
                crate::money::budget::settle(self.0.store.as_ref(), id, crate::Credits::ZERO).await?;
            }
        }
        self.modify(id, |t| {
            if t.state != TaskState::Queued {
                return false;
            }
            if in_doubt {
                t.note = Some(format!("No answer to createTask ({e}). In doubt: waiting for KIE's callback; never resent, so it cannot run twice"));
                t.dispatch.held_back = Some(HeldBack::InDoubt);
                return true;
            }
            t.dispatch.sending_since_ms = None;
            if retryable {
                let wait = backoff(Duration::from_secs(2), t.dispatch.attempts, MAX_BACKOFF);
                t.dispatch.next_attempt_ms = now + wait.as_millis() as u64;
                let (held, why) = match e {
                    KieError::RateLimited(_) => (HeldBack::RateLimited, HeldBack::RateLimited.label().to_string()),
                    other => (HeldBack::UpstreamError, other.to_string()),
                };
                t.dispatch.held_back = Some(held);
                t.note = Some(format!("{why}; retry {} in {:.0} s", t.dispatch.attempts + 1, wait.as_secs_f64().ceil()));
            } else {
                t.state = TaskState::Fail;
                t.fail_code = e.code().map(|c| c.to_string());
                t.fail_msg = Some(if persistent && e.is_transient() {
                    format!("{e} — gave up after {} attempts over {} min", t.dispatch.attempts, waited / 60_000)
                } else {
                    e.to_string()
                });
                t.fail_class = Some(class_of_error(e));
                t.finished_ms = Some(now);
                t.note = None;
            }
            true
        })
        .await?;
        Ok(())
    }
}

/// The Error Review's class for a refused `createTask`.
fn class_of_error(e: &KieError) -> FailClass {
    match e {
        KieError::Auth(_) => FailClass::Auth,
        KieError::InsufficientCredits(_) => FailClass::InsufficientCredits,
        KieError::Validation(_) | KieError::BadRequest(_) | KieError::NotFound(_) => FailClass::Policy,
        KieError::RateLimited(_) => FailClass::RateLimited,
        _ => FailClass::Upstream,
    }
}
