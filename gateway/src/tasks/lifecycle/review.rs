//! The Error Review's resolutions. A failure stays to review (the review's index and count,
//! [`TaskRecord::to_review`]) until it is resolved:
//! - a retry of it succeeded: it leaves the review, and so does every failure that retry's
//!   chain retried (`retry_of`, up to [`MAX_CHAIN`] links) — the work was done in the end;
//! - a producer or admin marked it resolved (audited): a failure nobody will retry.
//!
//! A retry is noted on the failure it retries (`retried_as`), so the review says so and a
//! bulk retry of a group takes only the latest of each chain: nothing is paid for twice.

use super::Lifecycle;
use super::submit::SubmitError;
use crate::store::{StoreError, StoreResult, now_ms};
use crate::tasks::task::{Resolved, TaskRecord};
use crate::team::accounts::{Actor, Role};

/// Most `retry_of` links a success resolves.
pub const MAX_CHAIN: usize = 16;
/// Most failures one bulk retry takes (the review shows at most this many).
pub const MAX_BULK: usize = 100;

/// Why a failure could not be marked resolved.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("No task {0}.")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} is not to review ({1}): only a failure not yet resolved is.")]
    NotToReview(String, String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ReviewError {
    /// The HTTP status that fits.
    pub fn code(&self) -> u16 {
        match self {
            ReviewError::NotFound(_) => 404,
            ReviewError::Forbidden(_) => 403,
            ReviewError::NotToReview(..) => 409,
            ReviewError::Store(_) => 503,
        }
    }
}

/// What a bulk retry did: the new tasks, in order, and why it stopped early (a cost rule, the
/// queue's quota…), if it did.
#[derive(Debug)]
pub struct BulkRetry {
    pub retried: Vec<(String, TaskRecord)>,
    pub stopped: Option<SubmitError>,
}

impl Lifecycle {
    /// Marks failure `id` resolved by `by` (a producer or admin): it leaves the Error Review.
    pub async fn resolve(&self, id: &str, by: &Actor) -> Result<TaskRecord, ReviewError> {
        by.require(Role::Producer).map_err(|e| ReviewError::Forbidden(e.to_string()))?;
        let how = "marked resolved".to_string();
        let resolved = Resolved { by: by.who.clone(), at_ms: now_ms(), how: how.clone() };
        let done = self.modify(id, |t| by.sees(&t.project) && t.to_review() && t.resolved.replace(resolved.clone()).is_none()).await?;
        let Some(done) = done else {
            return Err(match self.0.store.task_get(id).await?.filter(|t| by.sees(&t.project)) {
                None => ReviewError::NotFound(id.chars().take(64).collect()),
                Some(t) => ReviewError::NotToReview(t.id, t.resolved.map_or_else(|| t.state.to_string(), |r| r.how)),
            });
        };
        crate::team::audit::record(self.0.store.as_ref(), by, "failure resolved", id, Some(done.state.to_string()), Some(how)).await?;
        Ok(done)
    }

    /// Retries each failure of `ids` in turn as `by` (each through [`Lifecycle::retry`]: the
    /// role, the cost rules, the audit), stopping at the first refusal. Bounded by [`MAX_BULK`].
    pub async fn retry_many(&self, ids: &[String], by: &Actor) -> BulkRetry {
        let mut retried = Vec::new();
        for id in ids.iter().take(MAX_BULK) {
            match self.retry(id, by).await {
                Ok(new) => retried.push((id.clone(), new)),
                Err(e) => return BulkRetry { retried, stopped: Some(e) },
            }
        }
        BulkRetry { retried, stopped: None }
    }

    /// `t` (a retry) succeeded: the failures it retried leave the Error Review.
    pub(super) async fn resolve_retried(&self, t: &TaskRecord) -> StoreResult<()> {
        let mut next = t.retry_of.clone();
        for _ in 0..MAX_CHAIN {
            let Some(id) = next.take() else { break };
            let resolved = Resolved { by: t.owner.clone(), at_ms: now_ms(), how: format!("retried as {}, which succeeded", t.id) };
            let mut up = None;
            self.modify(&id, |o| {
                up = o.retry_of.clone();
                o.to_review() && o.resolved.replace(resolved.clone()).is_none()
            })
            .await?;
            next = up;
        }
        Ok(())
    }
}
