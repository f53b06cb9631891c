//! The task lifecycle: every generation task is recorded before it leaves, followed until it
//! ends, and announced to every browser.
//!
//! ```text
//! submit ──► queued ──dispatcher──► submitted ─► waiting/queuing/generating ─► success | fail
//!   (write-ahead)   (rate guard, createTask)      ▲ callbacks (confirmed)         ▲    expired
//!                                                 └ fallback poller ──────────────┘
//! ```
//!
//! One job per file:
//! - [`submit`] — validate, write the record, reserve under the cost rules, wake the
//!   dispatcher; Retry.
//! - [`dispatch`] — the worker that sends queued tasks to KIE and records the answer.
//! - [`inputs`] — inputs from the Library: checked at submit, made fetchable by KIE at send.
//! - [`follow_up`] — a follow-up's parent (an upscale's grid): checked at submit, sent to KIE
//!   as KIE's id of it.
//! - [`apply`] — the one idempotent step that applies an upstream state to a task.
//! - [`cancel`] — ending a task still queued here, before it reaches KIE.
//! - [`deadline`] — ending a task the queue could not send by its deadline.
//! - [`callback`] — KIE's callbacks: token, signature, confirmation with `recordInfo`.
//! - [`poller`] — the fallback poller and the give-up sweep.
//! - [`delivery`] — the relay's own callbacks to its clients.
//! - [`limits`] — the rate guard's claims (request windows, concurrency, tokens) and the
//!   `recordInfo` window, held across every instance; the cool-down after a 429.
//! - [`queue`] — the fair order tasks leave in, and the queue the Throttle panel shows.
//! - [`quota`] — how many tasks one owner may have waiting (`QUEUE_MAX_PER_OWNER`).
//! - [`quote`] — a submission priced without submitting it, and the cap that would refuse it.
//! - [`upgrade`] — an upgrade of a video (Veo's 1080p, 4K) asked for again until it is made:
//!   one follow-up task per parent and video, started once across instances.
//! - [`alerts`] — budget alerts after a spend, checked at most once a second per spender.
//! - [`written`] — results KIE answers as data (Suno's MIDI): refused without a Library, read
//!   back from their kept file for the relay.
//!
//! Every change goes through [`Lifecycle::modify`] (compare-and-set on the record's version)
//! and is published as a live event; work shared between instances is claimed with leases.

pub(crate) mod alerts;
pub(crate) mod apply;
pub mod batch;
pub(crate) mod bulk;
pub(crate) mod callback;
pub mod cancel;
pub mod deadline;
pub(crate) mod delivery;
pub(crate) mod dispatch;
pub mod follow_up;
pub(crate) mod inputs;
pub(crate) mod limits;
pub mod poller;
pub mod queue;
pub mod quota;
pub mod quote;
pub mod review;
pub(crate) mod submit;
pub mod upgrade;
pub(crate) mod written;

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

use crate::Secret;
use crate::money::catalog::Catalog;
use crate::tasks::events;
use crate::kie::KieClient;
use crate::store::watched::Watched;
use crate::store::{Scope, Store, StoreError, StoreResult, now_ms};
use crate::tasks::story::Before;
use crate::tasks::task::TaskRecord;

pub use callback::{CallbackError, CallbackOutcome};
pub use quote::Quote;
pub use submit::{SubmitError, Submission};

/// The ledger's running total of credits KIE charged for finished tasks (milli-credits).
pub fn credits_consumed_scope() -> Scope {
    Scope { key: "ledger:credits_consumed".into(), limit: i64::MAX, window: None }
}

/// Counts what a task or chat call cost in the ledger's running total, once: the hold is
/// keyed by it, so a repeat (a second apply, a crash between two steps) finds it held.
pub(crate) async fn count_in_ledger(store: &dyn Store, id: &str, spent: crate::Credits) -> StoreResult<()> {
    store.reserve(&ledger_charge(id, spent)).await.map(|_| ())
}

/// The ledger's count of what task `id` spent, keyed by the task (counted once).
pub(crate) fn ledger_charge(id: &str, spent: crate::Credits) -> crate::store::ReserveRequest {
    crate::store::ReserveRequest { id: format!("ledger:{id}"), amount: spent.milli(), scopes: vec![credits_consumed_scope()], hold_ttl: Some(crate::money::budget::HOLD_TTL) }
}

/// The rate guard's default safety margin (see [`LifecycleOptions::rate_margin`]).
pub const DEFAULT_RATE_MARGIN: Duration = Duration::from_millis(50);

/// Tunables of the lifecycle; the defaults follow KIE's documentation.
#[derive(Debug, Clone)]
pub struct LifecycleOptions {
    /// `PUBLIC_URL`: callbacks go to `<public_base>/callbacks/kie/<token>`. `None`: KIE sends
    /// no callbacks and the poller alone follows tasks.
    pub public_base: Option<String>,
    /// `KIE_WEBHOOK_HMAC_KEY`: when set, every KIE callback must carry a valid signature.
    pub webhook_hmac: Option<Secret>,
    /// A task with no result this long after it was submitted ends `expired` (callback lost).
    pub give_up_after: Duration,
    /// The rate guard's rules, held across all instances (KIE: 20 new tasks per 10 s).
    pub rate_rules: Vec<crate::tasks::rate_guard::LimitRule>,
    /// `RATE_GUARD_CHAT`: the language models' limits (requests, concurrent calls, tokens per
    /// window), held across all instances.
    pub chat_rules: Vec<crate::tasks::rate_guard::LimitRule>,
    /// `RATE_GUARD_CHAT_MODELS`: rules of one model each, besides the shared ones.
    pub chat_model_rules: Vec<(String, Vec<crate::tasks::rate_guard::LimitRule>)>,
    /// Added to every rate window, so jitter between the guard and KIE cannot overfill KIE's.
    pub rate_margin: Duration,
    /// `ALERT_WEBHOOK_URL`: budget alerts are POSTed here as JSON.
    pub alert_webhook: Option<String>,
    /// `OUTBOUND_ALLOW`: the private destinations relay callbacks and webhooks may reach.
    pub outbound: crate::outbound::OutboundPolicy,
    /// `recordInfo` calls per second across all instances (KIE: 10).
    pub record_info_per_sec: i64,
    /// How often the workers look for work they were not woken for.
    pub tick: Duration,
    /// This instance's name in leases.
    pub instance: String,
    /// `TASK_RETENTION_DAYS`: ended tasks are deleted this long after they ended (`None`:
    /// kept for good). A task whose relay callback is still to deliver is kept.
    pub task_retention: Option<Duration>,
    /// The store's epoch this instance started with ([`crate::store::epoch`]): if it
    /// vanishes while running, every worker stops and submissions are refused.
    pub epoch: Option<String>,
    /// Where this instance counts what it does (`/metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// KIE's retention and the buffer before it: a task that succeeds gets an archive plan
    /// (its results are copied into the Library). `None`: no Library, nothing is copied.
    pub archive: Option<crate::library::asset::Terms>,
    /// Signs Library links (the relay's `resultUrls` once archived, and its callbacks).
    pub library_links: Option<crate::library::links::LinkSigner>,
    /// `RECEIPT_SYNC_URL` and `RECEIPT_SYNC_SECRET`: every receipt line is delivered there.
    pub receipt_sync: Option<crate::money::receipt_sync::SyncTarget>,
    /// `QUEUE_MAX_PER_OWNER`: most tasks one owner may have waiting to be sent (0: no limit).
    pub queue_max_per_owner: u32,
    /// `QUEUE_PAUSED_INTAKE`: whether a task submitted while its intake is paused is queued
    /// (the default) or refused ([`crate::tasks::pause`]).
    pub paused_intake: crate::tasks::pause::PausedIntake,
}

impl Default for LifecycleOptions {
    fn default() -> Self {
        LifecycleOptions {
            public_base: None,
            webhook_hmac: None,
            give_up_after: Duration::from_secs(60 * 60),
            rate_rules: vec![crate::tasks::rate_guard::KIE_DEFAULT],
            chat_rules: crate::tasks::rate_guard::parse_chat_rules(crate::tasks::rate_guard::CHAT_DEFAULT).unwrap_or_default(),
            chat_model_rules: Vec::new(),
            rate_margin: DEFAULT_RATE_MARGIN,
            alert_webhook: None,
            outbound: crate::outbound::OutboundPolicy::strict(),
            record_info_per_sec: 10,
            tick: Duration::from_millis(500),
            instance: format!("instance-{}", crate::secret::random_hex(4)),
            epoch: None,
            task_retention: None,
            metrics: Default::default(),
            archive: None,
            library_links: None,
            receipt_sync: None,
            queue_max_per_owner: quota::DEFAULT_QUEUE_MAX_PER_OWNER,
            paused_intake: Default::default(),
        }
    }
}

/// What every job shares (the store, KIE, the catalog, the options, the vetted outbound
/// client, the settled records, whether this instance is halted or stopping), and each job's
/// own state, declared in the job's file and handed to its worker when it starts.
struct Inner {
    store: Arc<dyn Store>,
    kie: Option<KieClient>,
    catalog: Arc<Catalog>,
    opts: LifecycleOptions,
    /// Every request a user or a setting can aim: relay callbacks, the alert webhook.
    outbound: crate::outbound::Outbound,
    /// Set when the store lost its epoch (wiped): nothing is dispatched, polled or delivered.
    halted: std::sync::atomic::AtomicBool,
    /// Set when the workers are asked to stop: the dispatcher finishes the send under way
    /// (and records KIE's answer) instead of being cut off in the middle of it.
    stopping: std::sync::atomic::AtomicBool,
    /// Records nothing changes any more (see [`TaskRecord::settled`]), for `recordInfo`.
    settled: Arc<Watched<TaskRecord>>,
    /// The dispatcher's: its wake-up, the owners' lanes and the fair shares.
    queue: Arc<queue::Queue>,
    /// Submissions': the cost rules last read, with their condition.
    cost_rules: submit::KnownRules,
    /// The relay callbacks': their wake-up and the deliveries under way.
    deliveries: Arc<delivery::Deliveries>,
    /// The receipts' folder: its wake-up and the receipts' directory as last seen.
    folder: Arc<crate::money::receipts::Folder>,
    /// The receipt sync's wake-up.
    sync: Arc<Notify>,
    /// Wakes the bulk actions' runner (a job started here).
    bulk: Arc<Notify>,
    /// The Library archiver's wake-up.
    archive: Arc<Notify>,
    /// Chat calls being ended in the background (a stop waits for them).
    chat_ends: Arc<crate::chat::EndsInFlight>,
    /// Budget alert checks running ([`alerts`]).
    alert_checks: alerts::AlertChecks,
    /// The relay's open batches this instance listed.
    open_batches: batch::OpenBatches,
    /// The Library's copies, read when one is a task's input ([`inputs`]); set once the
    /// Library is opened (none: only KIE's own live URLs can be inputs).
    library_objects: std::sync::OnceLock<Arc<dyn object_store::ObjectStore>>,
}

/// Where a change to a settled record (a write, its deletion) is announced to every instance.
const SETTLED_CHANNEL: &str = "tasks:settled-changed";
/// How long a settled record is answered from memory, at most.
const SETTLED_KEEP: Duration = Duration::from_secs(60);
/// Most settled records an instance keeps in memory.
const SETTLED_MAX: usize = 4096;

/// The lifecycle of every task; cheap to clone.
#[derive(Clone)]
pub struct Lifecycle(Arc<Inner>);

impl Lifecycle {
    /// `kie` is `None` when no key is configured: tasks are refused with "Not configured".
    pub fn new(store: Arc<dyn Store>, kie: Option<KieClient>, catalog: Arc<Catalog>, opts: LifecycleOptions) -> Lifecycle {
        let outbound = crate::outbound::Outbound::new(opts.outbound.clone(), Default::default());
        let store_for_cache = store.clone();
        Lifecycle(Arc::new(Inner {
            store,
            kie,
            catalog,
            opts,
            outbound,
            halted: Default::default(),
            stopping: Default::default(),
            settled: Watched::new(store_for_cache, SETTLED_KEEP, SETTLED_MAX),
            queue: Default::default(),
            cost_rules: Default::default(),
            deliveries: Default::default(),
            folder: Default::default(),
            sync: Default::default(),
            bulk: Default::default(),
            archive: Default::default(),
            chat_ends: Default::default(),
            alert_checks: Default::default(),
            open_batches: Default::default(),
            library_objects: Default::default(),
        }))
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.0.store
    }

    pub fn catalog(&self) -> &Catalog {
        &self.0.catalog
    }

    pub fn options(&self) -> &LifecycleOptions {
        &self.0.opts
    }

    /// Whether the store was found wiped while this instance ran (it then acts on nothing).
    pub fn halted(&self) -> bool {
        self.0.halted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Checks the store's epoch; on loss, halts this instance's workers (until a restart).
    pub async fn check_epoch(&self) -> StoreResult<bool> {
        let Some(epoch) = &self.0.opts.epoch else { return Ok(true) };
        if self.halted() {
            return Ok(false);
        }
        let holds = crate::store::epoch::holds(self.0.store.as_ref(), epoch).await?;
        if !holds {
            self.0.halted.store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(
                backend = self.0.store.backend(),
                "THE STORE LOST ITS DATA: its epoch is gone (wiped, or a Redis without persistence restarted). \
                 This instance stops dispatching, polling and delivering and reports not ready; budgets and tasks \
                 cannot be trusted. Restore the store (Redis with appendonly yes) and restart."
            );
        }
        Ok(holds)
    }

    /// Whether tasks can reach an upstream at all.
    pub fn configured(&self) -> bool {
        self.0.kie.is_some()
    }

    /// Reads a task by the Control Room's id or by KIE's task id.
    /// A settled task (ended, nothing left to deliver) is answered from memory while its
    /// instance hears changes to settled records; a deletion is announced to every instance.
    pub async fn find(&self, id: &str) -> StoreResult<Option<TaskRecord>> {
        self.0.settled.get(id, || self.find_in_store(id), TaskRecord::settled).await
    }

    async fn find_in_store(&self, id: &str) -> StoreResult<Option<TaskRecord>> {
        if let Some(t) = self.0.store.task_get(id).await? {
            return Ok(Some(t));
        }
        match self.0.store.kv_get(&kie_id_key(id)).await? {
            Some(ours) => self.0.store.task_get(&String::from_utf8_lossy(&ours)).await,
            None => Ok(None),
        }
    }

    /// Tasks in `state`, oldest first, from just after `after` (the start if `None`), up to
    /// about `cap` (whole pages). Also returns where the next scan goes on: `None` when this
    /// one reached the end, so a scan that keeps its cursor reaches every record in turn.
    pub(crate) async fn scan_state(&self, state: crate::TaskState, after: Option<String>, cap: usize) -> StoreResult<(Vec<TaskRecord>, Option<String>)> {
        self.scan(crate::tasks::task::TaskQuery { state: Some(state), oldest_first: true, after, limit: crate::tasks::task::MAX_PAGE, ..Default::default() }, cap).await
    }

    /// The records `q` names, page after page, up to about `cap` (whole pages); also where the
    /// next scan goes on (`None`: this one reached the end).
    pub(crate) async fn scan(&self, mut q: crate::tasks::task::TaskQuery, cap: usize) -> StoreResult<(Vec<TaskRecord>, Option<String>)> {
        let mut out = Vec::new();
        loop {
            let page = self.0.store.task_list(&q).await?;
            out.extend(page.tasks);
            match page.next {
                Some(next) if out.len() < cap => q.after = Some(next),
                next => return Ok((out, next)),
            }
        }
    }

    /// Drops what this instance keeps of the queue (the fair shares, its last snapshot), so
    /// the next use reads them: after a change made here (a share, a pause).
    pub fn queue_changed(&self) {
        self.0.queue.forget();
    }

    /// Applies `change` to the stored record with compare-and-set, re-reading on conflict;
    /// `change` returns `false` to leave the record as it is. A change is published as a live
    /// event. Returns the new record if one was written.
    pub async fn modify(&self, id: &str, change: impl FnMut(&mut TaskRecord) -> bool) -> StoreResult<Option<TaskRecord>> {
        self.modify_with(id, &crate::store::UpdateWith::default(), change).await
    }

    /// [`Lifecycle::modify`], settling holds and counting charges in the same write
    /// ([`crate::store::UpdateWith`]): all of it, or — when `change` leaves the record as it
    /// is — none of it.
    pub async fn modify_with(&self, id: &str, with: &crate::store::UpdateWith<'_>, mut change: impl FnMut(&mut TaskRecord) -> bool) -> StoreResult<Option<TaskRecord>> {
        for _ in 0..64 {
            let Some(mut t) = self.0.store.task_get(id).await? else { return Ok(None) };
            let before = Before::of(&t);
            if !change(&mut t) {
                return Ok(None);
            }
            if let Some(t) = self.write(t, &before, with).await? {
                return Ok(Some(t));
            }
        }
        Err(StoreError::Unavailable(format!("task {id} kept changing under this update; gave up")))
    }

    /// [`Lifecycle::modify_with`] starting from `known`, the record as this instance last wrote
    /// or read it: no read when it is still the stored version (a chat call's end, a fold);
    /// otherwise, or when `change` declines it, as [`Lifecycle::modify_with`].
    pub(crate) async fn modify_from(&self, known: &TaskRecord, with: &crate::store::UpdateWith<'_>, mut change: impl FnMut(&mut TaskRecord) -> bool) -> StoreResult<Option<TaskRecord>> {
        let mut t = known.clone();
        if change(&mut t)
            && let Some(written) = self.write(t, &Before::of(known), with).await?
        {
            return Ok(Some(written));
        }
        self.modify_with(&known.id, with, change).await
    }

    /// Writes a changed record over the version it was read at (`before` is what the change
    /// found), with `with`, its live event and its story's new beats in the same step, and
    /// wakes the workers it concerns; `None` if that version is no longer the stored one
    /// (nothing written).
    async fn write(&self, mut t: TaskRecord, before: &Before, with: &crate::store::UpdateWith<'_>) -> StoreResult<Option<TaskRecord>> {
        let was_final = before.state.is_terminal();
        if !was_final && t.state.is_terminal() && self.0.opts.receipt_sync.is_some() && t.receipt_sync.is_none() {
            // Its receipt line is to be synced once it is folded (in the same write).
            t.receipt_sync = Some(Default::default());
        }
        let now = now_ms();
        t.updated_ms = now;
        crate::tasks::story::tell(before, &mut t, &self.0.opts.instance, now);
        // The event carries the version the write gives; one too large to keep is logged.
        let announce = events::announcement_of_next(&t).inspect_err(|e| tracing::warn!(task = %t.id, error = %e, "cannot publish a task event")).ok();
        let Some(v) = self.0.store.task_update_with(&t, &crate::store::UpdateWith { announce: announce.as_ref(), ..*with }).await? else { return Ok(None) };
        t.version = v;
        if before.settled {
            // Instances answer a settled record from memory: they read it again.
            self.announce_settled_change(&t.id).await?;
        }
        if !was_final && t.state.is_terminal() {
            // Counted by the one instance whose write ended it.
            self.0.opts.metrics.ended(&t.model, &t.project, t.state, t.actual_cost);
        }
        if t.fold_pending() {
            self.0.folder.wake();
        }
        if t.sync_pending() {
            self.0.sync.notify_one();
        }
        if t.delivery_pending() {
            self.0.deliveries.wake();
        }
        if t.archive_pending() {
            self.0.archive.notify_one();
        }
        Ok(Some(t))
    }

    /// Starts the dispatcher, poller, delivery, receipts and epoch workers, and the Library's
    /// archiver when there is a Library (it writes back through this lifecycle, which wakes
    /// it); they stop with [`Workers::stop`] or when the handle drops. Each worker is handed
    /// its job's own state; what the jobs share it reaches through the lifecycle.
    pub fn spawn_workers(&self, library: Option<&crate::library::Library>) -> Workers {
        let jobs = &self.0;
        jobs.stopping.store(false, std::sync::atomic::Ordering::Relaxed);
        jobs.settled.follow(SETTLED_CHANNEL);
        let handles = vec![
            tokio::spawn(poller::run(self.clone())),
            tokio::spawn(delivery::run(self.clone(), jobs.deliveries.clone())),
            tokio::spawn(watch_epoch(self.clone())),
            tokio::spawn(crate::money::receipts::run(self.clone(), jobs.folder.clone())),
            tokio::spawn(crate::money::receipt_sync::run(self.clone(), jobs.sync.clone())),
            tokio::spawn(bulk::run(self.clone(), jobs.bulk.clone())),
        ];
        // A download cut off by a stop leaves only a temporary file: the asset stays pending.
        let archiver = library.map(|l| tokio::spawn(crate::library::archiver::run(l.clone(), jobs.archive.clone())));
        let dispatcher = tokio::spawn(dispatch::run(self.clone(), jobs.queue.clone()));
        Workers { lifecycle: self.clone(), dispatcher: Some(dispatcher), others: handles.into_iter().chain(archiver).collect() }
    }

    /// A bulk action was started here ([`crate::tasks::bulk::start`]): its runner starts at
    /// once (the other instances' find it within a tick).
    pub fn bulk_started(&self) {
        self.0.bulk.notify_one();
    }

    /// The receipts' folder's state (a chat call's end folds it in the same write).
    pub(crate) fn folder(&self) -> &crate::money::receipts::Folder {
        &self.0.folder
    }

    /// The vetted outbound client (relay callbacks, webhooks, receipt sync).
    pub fn outbound(&self) -> &crate::outbound::Outbound {
        &self.0.outbound
    }

    /// The KIE client, if a key is configured (the archiver renews lapsed links with it).
    pub fn kie(&self) -> Option<&KieClient> {
        self.0.kie.as_ref()
    }

    /// Announces that settled records changed (every instance drops its copies of `ids`, or
    /// of all with [`watched::ALL`]).
    pub async fn announce_settled_change(&self, id: &str) -> StoreResult<()> {
        crate::store::watched::announce(self.0.store.as_ref(), SETTLED_CHANNEL, id).await
    }

    /// Budget alert checks running.
    pub(crate) fn alert_checks(&self) -> &alerts::AlertChecks {
        &self.0.alert_checks
    }

    /// Chat calls being ended in the background.
    pub(crate) fn chat_ends(&self) -> &Arc<crate::chat::EndsInFlight> {
        &self.0.chat_ends
    }

    /// Whether the workers were asked to stop.
    pub(crate) fn stopping(&self) -> bool {
        self.0.stopping.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// How long a stop waits for the dispatcher to finish the send under way.
const DISPATCH_DRAIN: Duration = Duration::from_secs(10);

/// How often the store's epoch is checked.
const EPOCH_CHECK: Duration = Duration::from_secs(2);

async fn watch_epoch(lc: Lifecycle) {
    while lc.0.opts.epoch.is_some() && !lc.halted() {
        if let Err(e) = lc.check_epoch().await {
            tracing::debug!(error = %e, "cannot check the store's epoch; trying again");
        }
        tokio::time::sleep(EPOCH_CHECK).await;
    }
}

/// The background workers of one instance; dropping this stops them.
pub struct Workers {
    lifecycle: Lifecycle,
    dispatcher: Option<tokio::task::JoinHandle<()>>,
    others: Vec<tokio::task::JoinHandle<()>>,
}

impl Workers {
    /// Stops every worker and waits until each has let go of what it held. The dispatcher
    /// first finishes the `createTask` under way and records its answer (at most
    /// [`DISPATCH_DRAIN`]), so a restart leaves no task in doubt that need not be.
    pub async fn stop(mut self) {
        self.lifecycle.0.stopping.store(true, std::sync::atomic::Ordering::Relaxed);
        self.lifecycle.0.settled.stop_and_wait().await;
        // Chat calls answered just before the stop are counted now, not by the poller later.
        if tokio::time::timeout(DISPATCH_DRAIN, self.lifecycle.0.chat_ends.idle()).await.is_err() {
            tracing::warn!("chat calls still being ended at the stop; the poller ends them");
        }
        self.lifecycle.0.queue.wake();
        if let Some(mut d) = self.dispatcher.take()
            && tokio::time::timeout(DISPATCH_DRAIN, &mut d).await.is_err()
        {
            d.abort();
            let _ = d.await;
        }
        for h in std::mem::take(&mut self.others) {
            h.abort();
            let _ = h.await;
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for h in self.dispatcher.iter().chain(&self.others) {
            h.abort();
        }
    }
}

/// KIE's task id → ours.
fn kie_id_key(kie_id: &str) -> String {
    format!("kietask:{kie_id}")
}

/// A callback token → our task id.
fn token_key(token: &str) -> String {
    format!("cbtoken:{token}")
}

/// How long lookups (KIE id, callback token) are kept: past KIE's 14-day retention.
const LOOKUP_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// `base` doubled per attempt (from the first), capped, with up to 25 % jitter.
fn backoff(base: Duration, attempt: u32, cap: Duration) -> Duration {
    let d = base.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(cap);
    d + d.mul_f64(fastrand::f64() * 0.25)
}
