//! The bulk actions' runner (see [`crate::tasks::bulk`]): every instance takes the running
//! jobs it can hold (a lease per job) a page at a time, through the same cancel and retry as
//! one action, and writes where each stands after each page.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

use super::{Lifecycle, SubmitError};
use crate::store::{StoreResult, now_ms};
use crate::tasks::bulk::{self, BulkAction, BulkJob, BulkState};

/// How long one instance holds a job between pages.
const LEASE: Duration = Duration::from_secs(30);

/// Runs the jobs that are running, a page at a time, on whichever instance holds each.
/// Woken by a job started here; the others are found within a tick.
pub(super) async fn run(lc: Lifecycle, wake: Arc<Notify>) {
    loop {
        match lc.bulk_round().await {
            // More to do: the next page at once.
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "bulk actions: store error; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(lc.0.opts.tick) => {}
            () = wake.notified() => {}
        }
    }
}

impl Lifecycle {
    /// One page of each running job this instance can hold; `true` if one of them goes on.
    pub async fn bulk_round(&self) -> StoreResult<bool> {
        if self.halted() {
            return Ok(false);
        }
        let mut more = false;
        let ids: Vec<String> = bulk::running(self.0.store.as_ref()).await?.into_iter().map(|j| j.id).collect();
        for id in ids {
            let lease = format!("bulk:{id}");
            if !self.0.store.lease_acquire(&lease, &self.0.opts.instance, LEASE).await? {
                continue;
            }
            // Read again under the lease: another instance may have run a page meanwhile.
            let job = bulk::running(self.0.store.as_ref()).await.map(|all| all.into_iter().find(|j| j.id == id));
            let stepped = match job {
                Ok(Some(job)) => self.bulk_page(job).await,
                Ok(None) => Ok(false),
                Err(e) => Err(e),
            };
            self.0.store.lease_release(&lease, &self.0.opts.instance).await?;
            more |= stepped?;
        }
        Ok(more)
    }

    /// Acts on one page of `job` and writes where it stands; `true` if it goes on.
    async fn bulk_page(&self, mut job: BulkJob) -> StoreResult<bool> {
        let page = self.0.store.task_list(&job.filter.query(job.action, job.cursor.clone(), job.created_ms)).await?;
        let by = job.actor();
        let mut stop = None;
        for t in page.tasks.iter().filter(|t| job.filter.matches(t, job.created_ms) && job.action.applies(t)) {
            if job.done + job.refused >= job.preview.count {
                break;
            }
            let refused = match job.action {
                BulkAction::Cancel => match self.cancel(&t.id, &by).await {
                    Ok(_) => None,
                    Err(super::cancel::CancelError::Store(e)) => return Err(e),
                    Err(e) => Some(e.to_string()),
                },
                BulkAction::Retry => match self.retry(&t.id, &by).await {
                    Ok(_) => None,
                    Err(SubmitError::Store(e)) => return Err(e),
                    Err(e @ (SubmitError::OverBudget(_) | SubmitError::QueueFull { .. } | SubmitError::Paused(_) | SubmitError::NotConfigured)) => {
                        stop = Some(e.public_message());
                        break;
                    }
                    Err(e) => Some(e.public_message()),
                },
            };
            match refused {
                None => job.done += 1,
                Some(why) => {
                    job.refused += 1;
                    job.reason.get_or_insert(why);
                }
            }
        }
        // Done once it took what it previewed, or its scan reached the end of its range.
        let reached = job.done + job.refused >= job.preview.count;
        job.cursor = page.next.clone();
        if let Some(why) = stop {
            job.state = BulkState::Stopped;
            job.reason = Some(why);
        } else if page.next.is_none() || reached {
            job.state = BulkState::Done;
        }
        if job.state != BulkState::Running {
            job.finished_ms = Some(now_ms());
            tracing::info!(job = %job.id, action = job.action.as_str(), done = job.done, refused = job.refused, "bulk action ended");
        }
        let going = job.state == BulkState::Running;
        bulk::save(self.0.store.as_ref(), job).await?;
        Ok(going)
    }
}
