//! The queue quota: how many tasks one owner (a person, or a relay key `key:<id>`) may have
//! waiting here to be sent (`QUEUE_MAX_PER_OWNER`, default [`DEFAULT_QUEUE_MAX_PER_OWNER`];
//! a project's fair share may set its own, see [`crate::tasks::fair_share`]).
//!
//! A place in the queue is a reservation of 1 against the owner's scope, keyed by the task,
//! taken in the same atomic store step as the record, so the quota holds across every
//! instance: a create beyond it is refused (KIE's 429, with `Retry-After`) and nothing is
//! recorded. The place is given back when the task leaves the queue — marked sending to KIE,
//! cancelled or failed — and settling is idempotent, so a repeat is a no-op. The scope is a
//! window of [`PLACE_LIFE`]: a place that is never given back (its instance stopped as the
//! task left the queue) ages out instead of counting for ever.

use std::time::Duration;

use super::Lifecycle;
use super::submit::SubmitError;
use crate::store::{Refusal, ReserveRequest, Scope, StoreResult};

/// `QUEUE_MAX_PER_OWNER`'s default.
pub const DEFAULT_QUEUE_MAX_PER_OWNER: u32 = 1000;
/// How long a place is counted at most (far longer than a full queue takes to drain at
/// KIE's rate: 1,000 tasks leave in about 8 minutes at 20 per 10 s).
pub const PLACE_LIFE: Duration = Duration::from_secs(6 * 3600);

pub(super) fn place_id(task_id: &str) -> String {
    format!("queue-place:{task_id}")
}

/// The owner's scope: all their tasks, or — in a project whose share sets its own quota — their
/// tasks in that project (which then do not count against the first).
pub fn owner_scope(owner: &str, project: Option<&str>, limit: u32) -> Scope {
    let key = match project {
        None => format!("queue:owner:{owner}"),
        Some(p) => format!("queue:owner:{owner}|project:{p}"),
    };
    Scope { key, limit: i64::from(limit), window: Some(PLACE_LIFE) }
}

/// A task's place in its owner's queue: the hold written with its record.
pub(super) struct QueuePlace {
    pub request: ReserveRequest,
    /// The quota it counts against.
    max: u32,
}

impl Lifecycle {
    /// The place in the queue `task_id` takes; `None` with no quota (`0`).
    pub(super) async fn queue_place(&self, owner: &str, project: &str, task_id: &str) -> StoreResult<Option<QueuePlace>> {
        let own = crate::tasks::fair_share::own_quota(&self.0.queue.shares(self.0.store.as_ref()).await?, project);
        let (max, scope) = match own {
            Some(max) => (max, owner_scope(owner, Some(project), max)),
            None => (self.0.opts.queue_max_per_owner, owner_scope(owner, None, self.0.opts.queue_max_per_owner)),
        };
        Ok((max > 0).then(|| QueuePlace { request: ReserveRequest { id: place_id(task_id), amount: 1, scopes: vec![scope], hold_ttl: Some(PLACE_LIFE) }, max }))
    }

    /// The refusal of a place: how many wait, and how long until one frees.
    pub(super) fn queue_full(&self, place: &QueuePlace, refusal: &Refusal) -> SubmitError {
        SubmitError::QueueFull { waiting: refusal.used, max: place.max, retry_after: self.place_frees_in() }
    }

    /// Gives a task's place back (it left the queue); harmless when there is none.
    pub(crate) async fn free_queue_place(&self, task_id: &str) -> StoreResult<()> {
        self.0.store.settle(&place_id(task_id), 0).await.map(|_| ())
    }

    /// When a full owner may try again: a place frees when one of their tasks is sent, which
    /// the fair queue does at least once per window of the first request rule.
    fn place_frees_in(&self) -> Duration {
        let window = self.0.opts.rate_rules.iter().find_map(|r| match r {
            crate::tasks::rate_guard::LimitRule::Requests { window, .. } => Some(*window),
            _ => None,
        });
        window.unwrap_or(Duration::from_secs(10)) + self.0.opts.rate_margin
    }
}
