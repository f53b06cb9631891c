//! The folder: every instance counts ended tasks into the receipts' running totals, one store
//! step per task (the totals, its holds settled, the record marked folded), and runs the
//! one-time scans of what ended before receipts (or their day indexes) existed.

use std::time::Duration;

use super::{Total, Slice, at_estimate, charged, day, note_names, scope};
use crate::Lifecycle;
use crate::store::{ReserveRequest, Store, StoreResult};
use crate::tasks::task::{Mark, TaskQuery, TaskRecord, TaskState};

/// How long a fold's idempotency holds are kept: far past the moment the record says folded.
const HOLD: Duration = Duration::from_secs(90 * 24 * 3600);
/// Ended tasks folded per round.
const ROUND: usize = 1000;
/// The store key that says the one-time scan of tasks ended before receipts is done.
const BACKFILLED: &str = "receipts:backfilled";

/// Counts an ended task into every running total it belongs to. Idempotent (keyed by task).
pub async fn fold(store: &dyn Store, t: &TaskRecord) -> StoreResult<()> {
    for req in fold_charges(t) {
        store.reserve(&req).await?;
    }
    Ok(())
}

/// The reservations [`fold`] takes for `t`, keyed by the task.
fn fold_charges(t: &TaskRecord) -> Vec<ReserveRequest> {
    let d = day(t.finished_ms.unwrap_or(t.updated_ms));
    let p = Some(t.project.as_str());
    let cuts = [
        Slice::default(),
        Slice { project: p, ..Default::default() },
        Slice { day: Some(&d), ..Default::default() },
        Slice { model: Some(&t.model), ..Default::default() },
        Slice { owner: Some(&t.owner), ..Default::default() },
        Slice { project: p, day: Some(&d), ..Default::default() },
        Slice { project: p, model: Some(&t.model), ..Default::default() },
        Slice { project: p, owner: Some(&t.owner), ..Default::default() },
    ];
    // A task completed after the give-up may have been folded once already as expired (at
    // 0): its charge is counted under a key of its own, and its first fold's at 0 — so it
    // counts once whether or not that first fold happened.
    let (first, late) = if t.completed_late { (0, charged(t).milli()) } else { (charged(t).milli(), 0) };
    [
        (Total::Charged, "receipt", first),
        (Total::Charged, "receipt-late", late),
        (Total::Estimated, "receipt-e", t.estimated_cost.milli()),
        (Total::Tasks, "receipt-n", 1),
        (Total::AtEstimate, "receipt-x", at_estimate(t).milli()),
    ]
    .into_iter()
    .filter(|(what, hold, amount)| !((*hold == "receipt-late" && !t.completed_late) || (*what == Total::AtEstimate && *amount == 0)))
    .map(|(what, hold, amount)| ReserveRequest { id: format!("{hold}:{}", t.id), amount: amount.max(0), scopes: cuts.iter().map(|s| scope(what, s)).collect(), hold_ttl: Some(HOLD) })
    .collect()
}

/// What the folder did in one round.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Folded {
    pub tasks: usize,
}

/// Folds ended tasks not yet folded: the `receipt:fold` index, then (once per deployment)
/// the tasks that ended before receipts existed. Returns how many were folded.
pub async fn fold_round(lc: &Lifecycle, backfill: &mut Option<Backfill>) -> StoreResult<Folded> {
    let store = lc.store().as_ref();
    let mut done = Folded::default();
    let mut q = TaskQuery { mark: Some(Mark::ReceiptFold), oldest_first: true, limit: crate::tasks::task::MAX_PAGE, ..Default::default() };
    loop {
        let page = store.task_list(&q).await?;
        done.tasks += fold_all(lc, &page.tasks).await?;
        match page.next {
            Some(next) if done.tasks < ROUND => q.after = Some(next),
            _ => break,
        }
    }
    // The one-time scans, one after the other: each page a round, each marked done in the
    // store when it has reached the last record.
    let b = match backfill {
        Some(b) => b,
        None => backfill.insert(Backfill::first(store, crate::store::now_ms()).await?),
    };
    if let Some(job) = b.job {
        done.tasks += b.step(lc, job).await?;
        if b.job != Some(job) {
            store.kv_set(job.marker(), b"1", None).await?;
            *b = Backfill::first(store, b.until_ms).await?;
        }
    }
    Ok(done)
}

/// Tasks folded at once (each is a few store round trips).
const IN_FLIGHT: usize = 16;

/// Folds `tasks`, [`IN_FLIGHT`] at a time; how many this call folded.
async fn fold_all(lc: &Lifecycle, tasks: &[TaskRecord]) -> StoreResult<usize> {
    use futures::StreamExt;
    let folds = tasks.iter().cloned().map(|t| {
        let lc = lc.clone();
        async move { fold_one(&lc, &t).await }
    });
    let results: Vec<StoreResult<bool>> = futures::stream::iter(folds).buffer_unordered(IN_FLIGHT).collect().await;
    let mut n = 0;
    for r in results {
        n += usize::from(r?);
    }
    Ok(n)
}

async fn fold_one(lc: &Lifecycle, t: &TaskRecord) -> StoreResult<bool> {
    if !t.fold_pending() {
        return Ok(false);
    }
    // One write: the running totals counted (keyed by the task), its holds settled — every
    // ended task's are by now, except where an instance stopped between a task's end and its
    // settlement (a cancel), and settling again is harmless — and the record marked folded.
    let settles = lc.ended_settlements(&t.id, charged(t));
    let settles: Vec<(&str, i64)> = settles.iter().map(|(id, a)| (id.as_str(), *a)).collect();
    let charges = fold_in(lc, t).await?;
    Ok(lc.modify_from(t, &crate::store::UpdateWith { settles: &settles, charges: &charges, ..Default::default() }, mark_folded).await?.is_some())
}

/// What folding an ended task adds to the write that marks it folded ([`mark_folded`]): its
/// names noted for the receipts' filters, and the running totals it counts (charges keyed by
/// the task, for [`crate::store::UpdateWith::charges`]). The write that ends a chat call folds
/// it this way; the folder folds every other task.
pub(crate) async fn fold_in(lc: &Lifecycle, t: &TaskRecord) -> StoreResult<Vec<ReserveRequest>> {
    note_names(lc.store().as_ref(), &lc.folder().directory, t).await?;
    Ok(fold_charges(t))
}

/// Marks an ended task folded (`false`: not ended, or folded already).
pub(crate) fn mark_folded(t: &mut TaskRecord) -> bool {
    if !t.fold_pending() {
        return false;
    }
    t.folded = true;
    true
}

/// A one-time scan of every ended task, oldest first, with a cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    /// Tasks that ended before receipts existed are in no fold index: fold them.
    Fold,
    /// Tasks folded before receipts had day indexes: write them once more, so they enter
    /// their day's index ([`TaskRecord::receipt_day`]).
    DayIndex,
}

impl Job {
    const ALL: [Job; 2] = [Job::Fold, Job::DayIndex];

    /// The store key that says the scan is done.
    fn marker(self) -> &'static str {
        match self {
            Job::Fold => BACKFILLED,
            Job::DayIndex => DAY_INDEXED,
        }
    }
}

/// The store key that says every folded task is in its day's index.
pub(super) const DAY_INDEXED: &str = "receipts:day-indexed";

/// Where the one-time scans stand.
#[derive(Debug, Default)]
pub struct Backfill {
    /// The scan under way (`None`: all done).
    job: Option<Job>,
    state: usize,
    cursor: Option<String>,
    /// Only tasks created before the scans began need them (later ones were written by code
    /// that folds and indexes them), so a scan ends even while tasks keep ending.
    until_ms: u64,
}

impl Backfill {
    const STATES: [TaskState; 3] = [TaskState::Success, TaskState::Fail, TaskState::Expired];

    /// The first scan not yet marked done, over the tasks created until `until_ms` (when the
    /// first scan of this process began).
    async fn first(store: &dyn Store, until_ms: u64) -> StoreResult<Backfill> {
        for job in Job::ALL {
            if store.kv_get(job.marker()).await?.is_none() {
                return Ok(Backfill { job: Some(job), until_ms, ..Default::default() });
            }
        }
        Ok(Backfill::default())
    }

    async fn step(&mut self, lc: &Lifecycle, job: Job) -> StoreResult<usize> {
        let Some(&state) = Self::STATES.get(self.state) else {
            self.job = None;
            return Ok(0);
        };
        let q = TaskQuery { state: Some(state), oldest_first: true, after: self.cursor.take(), limit: crate::tasks::task::MAX_PAGE, ..Default::default() };
        let page = lc.store().task_list(&q).await?;
        // Oldest first: the first task created after the scan began ends this state's scan.
        let past = page.tasks.iter().position(|t| t.created_ms > self.until_ms);
        let tasks = &page.tasks[..past.unwrap_or(page.tasks.len())];
        let n = match job {
            Job::Fold => fold_all(lc, tasks).await?,
            Job::DayIndex => {
                for t in tasks.iter().filter(|t| t.receipt_day().is_some()) {
                    // The same record, written again: its index entries are written with it (a
                    // record changed meanwhile was written by that change, and is left alone).
                    lc.store().task_update(t).await?;
                }
                0
            }
        };
        match page.next.filter(|_| past.is_none()) {
            Some(next) => self.cursor = Some(next),
            None => self.state += 1,
        }
        Ok(n)
    }
}

/// The folder's own state: what wakes it (a task ended), and the receipts' directory as this
/// instance last saw it (a name already in it is not written again).
#[derive(Default)]
pub(crate) struct Folder {
    wake: tokio::sync::Notify,
    directory: std::sync::Mutex<super::Directory>,
}

impl Folder {
    /// Wakes the folder: a task ended.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }
}

pub(crate) async fn run(lc: Lifecycle, folder: std::sync::Arc<Folder>) {
    let mut backfill = None;
    loop {
        if !lc.halted() {
            match fold_round(&lc, &mut backfill).await {
                Ok(f) if f.tasks > 0 => tracing::debug!(folded = f.tasks, "receipts: tasks folded"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "receipts: cannot fold; retrying"),
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = folder.wake.notified() => {}
        }
    }
}
