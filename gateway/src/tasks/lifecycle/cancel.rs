//! Cancel: a task still queued here (before it reached KIE) is ended `fail` ("cancelled"),
//! its holds released, and the change audited. KIE has no cancel for a task it took: once
//! the dispatcher marked it sending, cancelling is refused and says so.
//!
//! The dispatcher and a cancel race through the record's compare-and-set: the dispatcher
//! marks a task *sending* only while it is still queued, and a cancel ends it only while it is
//! queued and not sending, so exactly one of them wins. Holds are released after the record
//! says it ended; should the instance stop in between, the receipts' folder settles them when
//! it folds the task (every ended task is folded, and settling twice is harmless).

use super::Lifecycle;
use crate::money::credits::Credits;
use crate::store::now_ms;
use crate::tasks::task::{TaskRecord, TaskState};
use crate::team::accounts::{Actor, Role};

/// Why a task could not be cancelled.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("no task {0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    /// It reached KIE (or may have): KIE cannot cancel it.
    #[error("task {0} was already sent to KIE ({1}); KIE has no cancel for a task it took, so it will finish and be charged")]
    AlreadySent(String, String),
    #[error("task {0} has already ended ({1})")]
    Ended(String, String),
    #[error(transparent)]
    Store(#[from] crate::StoreError),
}

impl CancelError {
    /// The HTTP status that fits.
    pub fn code(&self) -> u16 {
        match self {
            CancelError::NotFound(_) => 404,
            CancelError::Forbidden(_) => 403,
            CancelError::AlreadySent(..) | CancelError::Ended(..) => 409,
            CancelError::Store(_) => 503,
        }
    }
}

/// Whether `t` can still be cancelled: queued here, not being sent, not in doubt.
fn cancellable(t: &TaskRecord) -> bool {
    t.state == TaskState::Queued && t.dispatch.sending_since_ms.is_none()
}

impl Lifecycle {
    /// Ends a task whose record no replica acknowledged (see [`crate::StoreError::Unreplicated`])
    /// before it can be sent, its holds released in the same write: its submitter was told it
    /// was not accepted. Best effort (the store is in trouble): a failure is logged, and a
    /// write that reached only the primary has still ended it there.
    pub(super) async fn withdraw_unstored(&self, id: &str) {
        let why = "not accepted: the store could not confirm a replica has it (submit again)";
        let owned = self.ended_settlements(id, Credits::ZERO);
        let settles: Vec<(&str, i64)> = owned.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let now = now_ms();
        let ended = self.modify_with(id, &crate::store::UpdateWith { settles: &settles, ..Default::default() }, |t| cancellable(t) && { t.end_unsent(why, now); true }).await;
        if let Err(e) = ended {
            tracing::warn!(task = %id, error = %e, "a task no replica has may not be ended on every node; the dispatcher sends nothing whose write-ahead is unconfirmed");
        }
    }

    /// Cancels task `id` if it has not reached KIE. A producer cancels their own tasks; an
    /// admin anyone's (a relay key's too).
    pub async fn cancel(&self, id: &str, by: &Actor) -> Result<TaskRecord, CancelError> {
        by.require(Role::Producer).map_err(|e| CancelError::Forbidden(e.to_string()))?;
        let t = self.0.store.task_get(id).await?.filter(|t| by.sees(&t.project)).ok_or_else(|| CancelError::NotFound(id.to_string()))?;
        if t.owner != by.who {
            by.require(Role::Admin).map_err(|_| CancelError::Forbidden(format!("task {id} is {}'s; only its owner or an admin can cancel it", t.owner)))?;
        }
        let refusal = |t: &TaskRecord| if t.state.is_terminal() { CancelError::Ended(t.id.clone(), t.state.to_string()) } else { CancelError::AlreadySent(t.id.clone(), t.state.to_string()) };
        if !cancellable(&t) {
            return Err(refusal(&t));
        }
        let why = format!("cancelled by {} before it reached KIE", by.who);
        let now = now_ms();
        let done = self
            .modify(id, |t| {
                if !cancellable(t) {
                    return false;
                }
                t.end_unsent(&why, now);
                true
            })
            .await?;
        let Some(done) = done else {
            // The dispatcher won the race (or it ended meanwhile).
            let now = self.0.store.task_get(id).await?.ok_or_else(|| CancelError::NotFound(id.to_string()))?;
            return Err(refusal(&now));
        };
        self.release_holds(id, Credits::ZERO).await?;
        crate::team::audit::record(self.0.store.as_ref(), by, "task cancelled", id, Some(TaskState::Queued.to_string()), Some(why)).await?;
        tracing::info!(task = %id, by = %by.log_id(), "task cancelled before it reached KIE");
        Ok(done)
    }
}
