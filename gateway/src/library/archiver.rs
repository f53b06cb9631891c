//! The archiver: on every instance, copies each succeeded task's results into the Library.
//!
//! - **Finding work**: the `archive:pending` index, oldest first with a kept cursor (a task's
//!   deadline is its end plus a constant, and tasks end in about the order they were made,
//!   so this is deadline order to within the give-up time); each round's due tasks are
//!   sorted by deadline. Woken when a task succeeds, else every second.
//! - **One instance per task**: a lease (`library:archive:<task>`), renewed while a download
//!   runs; an instance that dies lets it lapse and another takes the task over.
//! - **A download** goes through the outbound policy (public addresses only, no redirects)
//!   and the source rule (https and KIE's result hosts, or `KIE_BASE_URL`'s own host), is
//!   capped at `LIBRARY_MAX_ASSET_MB`, hashed (SHA-256) and sniffed as it streams into
//!   `tmp/<task>/<n>.<random>`; its size is checked; then its bytes are reserved against
//!   the quota (keyed by asset: a retry counts once), it is renamed to `assets/<task>/<n>`,
//!   and only then does the record say `archived`. A crash anywhere before that leaves the
//!   asset pending (a temporary file is never served, and is swept after an hour); a crash
//!   after the rename re-downloads the same bytes over the same name.
//! - **Lapsed links**: a 403/404/410 from the source asks KIE's `download-url` for a fresh
//!   link, once; if that is refused too, the asset is `expired` and the task shows **Result
//!   expired** with the reason. Past KIE's retention a pending asset is expired as well.
//! - **Written results** (Suno's MIDI: notes KIE answers as data, a `kie-data:` source) are
//!   asked of KIE again, written into their file and committed the same way.
//! - **Failures that cannot pass** (a redirect, a private address, a host that is not KIE's,
//!   too large) end the asset `failed` with the reason; anything else is retried with
//!   backoff (2 s doubling to 10 min; 10 min while the Library is full).

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, WriteMultipart};
use sha2::{Digest, Sha256};
use std::time::Duration;

use super::asset::AssetState;
use super::{Library, asset_path, bytes_hold, bytes_scope, count_hold, count_scope, sniff};
use crate::store::{ReserveOutcome, ReserveRequest, StoreResult, now_ms};
use crate::tasks::task::{FailClass, Mark, TaskQuery, TaskRecord};

/// How long a task's lease lasts without renewal.
const LEASE: Duration = Duration::from_secs(120);
/// How often a lease is renewed while a download runs.
const RENEW: Duration = Duration::from_secs(30);
/// Most pending tasks one round reads.
const ROUND: usize = 1000;
/// The longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// Temporary files older than this are left over from a crash.
const TEMP_AGE: Duration = Duration::from_secs(3600);
/// How often temporary files are swept, and how many at most per sweep.
const TEMP_SWEEP: Duration = Duration::from_secs(600);
const TEMP_SWEEP_MAX: usize = 1000;
/// How often a Library with a problem is checked again.
const RECHECK: Duration = Duration::from_secs(60);
/// Upload parts (S3 needs at least 5 MiB per part but the last).
const PART: usize = 8 << 20;

/// What one try at one asset came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Archived { sha256: String, bytes: u64, content_type: String },
    /// Try again later, for this reason.
    Retry(String),
    /// Full: try again much later.
    Full(String),
    Expired(String),
    Failed(String),
}

/// Why a download did not produce a checked temporary copy.
pub(super) enum Fetch {
    /// The source answered 403/404/410 (or another 4xx): it lapsed.
    Gone(u16),
    /// The policy or the size cap refuses it: sending again cannot help.
    Refused(String),
    Transient(String),
}

/// A complete, checked temporary copy.
pub(super) struct Downloaded {
    pub(super) tmp: Path,
    pub(super) bytes: u64,
    pub(super) sha256: String,
    pub(super) content_type: &'static str,
}

/// Woken by `wake` when a task has results to copy.
pub(crate) async fn run(lib: Library, wake: std::sync::Arc<tokio::sync::Notify>) {
    let lc = lib.0.lifecycle.clone();
    let mut cursor: Option<String> = None;
    let mut swept: Option<tokio::time::Instant> = None;
    let mut checked = tokio::time::Instant::now();
    loop {
        if lc.stopping() {
            return;
        }
        // A Library that could not be used (the store or the bucket away at start) is checked
        // again every minute, so it comes back without a restart.
        if lib.problem().is_some() && checked.elapsed() >= RECHECK {
            checked = tokio::time::Instant::now();
            let _ = lib.check().await;
        }
        if !lc.halted() && lib.problem().is_none() {
            if let Err(e) = lib.round(&mut cursor).await {
                tracing::debug!(error = %e, "archiver: a round failed; trying again");
            }
            if swept.is_none_or(|t| t.elapsed() >= TEMP_SWEEP) {
                lib.sweep_temp().await;
                swept = Some(tokio::time::Instant::now());
            }
        }
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

impl Library {
    /// One round: the due tasks of the next stretch of the pending index, nearest deadline
    /// first, `concurrency` at a time.
    pub async fn round(&self, cursor: &mut Option<String>) -> StoreResult<()> {
        let mut q = TaskQuery { mark: Some(Mark::ArchivePending), oldest_first: true, after: cursor.take(), limit: crate::tasks::task::MAX_PAGE, ..Default::default() };
        let mut due = Vec::new();
        let now = now_ms();
        loop {
            let page = self.store().task_list(&q).await?;
            due.extend(page.tasks.into_iter().filter(|t| t.archive.as_ref().is_some_and(|a| a.next_attempt_ms <= now)));
            match page.next {
                Some(next) if due.len() < ROUND => q.after = Some(next),
                // Past the cap: the next round goes on from here (every task is reached).
                Some(next) => {
                    *cursor = Some(next);
                    break;
                }
                None => break,
            }
        }
        due.sort_by_key(|t| t.archive.as_ref().map_or(u64::MAX, |a| a.deadline_ms));
        futures::stream::iter(due)
            .for_each_concurrent(self.0.cfg.concurrency.max(1), |t| async move {
                if let Err(e) = self.archive_task(&t.id).await {
                    tracing::warn!(task = %t.id, error = %e, "archiver: cannot record an asset; will try again");
                }
            })
            .await;
        Ok(())
    }

    /// Copies the pending assets of one task, under its lease.
    pub async fn archive_task(&self, id: &str) -> StoreResult<()> {
        let lease = format!("library:archive:{id}");
        let holder = self.0.lifecycle.options().instance.clone();
        if !self.store().lease_acquire(&lease, &holder, LEASE).await? {
            return Ok(());
        }
        let result = self.archive_held(id, &lease, &holder).await;
        let _ = self.store().lease_release(&lease, &holder).await;
        result
    }

    async fn archive_held(&self, id: &str, lease: &str, holder: &str) -> StoreResult<()> {
        // Re-read under the lease: another instance may have finished it.
        let Some(t) = self.store().task_get(id).await? else { return Ok(()) };
        let Some(archive) = t.archive.clone().filter(|_| t.archive_pending()) else { return Ok(()) };
        if archive.next_attempt_ms > now_ms() {
            return Ok(());
        }
        let mut retry: Option<Duration> = None;
        for (n, asset) in archive.assets.iter().enumerate().filter(|(_, a)| a.state == AssetState::Pending) {
            let renew = async {
                loop {
                    tokio::time::sleep(RENEW).await;
                    let _ = self.store().lease_acquire(lease, holder, LEASE).await;
                }
            };
            let (mut outcome, renewed) = tokio::select! {
                o = self.try_asset(&t, n, &asset.source, asset.renewed) => o,
                () = renew => unreachable!("the renewal loop never ends"),
            };
            let now = now_ms();
            if matches!(outcome, Outcome::Retry(_) | Outcome::Full(_)) && now > archive.lapses_ms {
                let why = match &outcome {
                    Outcome::Retry(w) | Outcome::Full(w) => w.clone(),
                    _ => String::new(),
                };
                outcome = Outcome::Expired(format!("KIE's retention ran out before a copy could be made (last try: {why})"));
            }
            retry = match &outcome {
                Outcome::Full(_) => Some(MAX_BACKOFF),
                Outcome::Retry(_) => Some(retry.unwrap_or_default().max(self.backoff(archive.attempts + 1))),
                _ => retry,
            };
            self.0.lifecycle.options().metrics.library_asset(outcome_name(&outcome));
            self.record(id, n, &outcome, renewed).await?;
        }
        if let Some(wait) = retry {
            self.0
                .lifecycle
                .modify(id, |t| {
                    let Some(a) = t.archive.as_mut().filter(|a| a.pending()) else { return false };
                    a.attempts += 1;
                    a.next_attempt_ms = now_ms() + wait.as_millis() as u64;
                    true
                })
                .await?;
        }
        Ok(())
    }

    fn backoff(&self, attempt: u32) -> Duration {
        self.0.cfg.retry_base.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(MAX_BACKOFF)
    }

    /// Writes what a try came to into the task's record (only while the asset is pending).
    pub(super) async fn record(&self, id: &str, n: usize, outcome: &Outcome, renewed: bool) -> StoreResult<Option<TaskRecord>> {
        let now = now_ms();
        self.0
            .lifecycle
            .modify(id, |t| {
                let Some(x) = t.archive.as_mut().and_then(|a| a.assets.get_mut(n)).filter(|x| x.state == AssetState::Pending) else { return false };
                x.attempts += 1;
                x.renewed |= renewed;
                x.arriving = None;
                let mut lost = None;
                match outcome {
                    Outcome::Archived { sha256, bytes, content_type } => {
                        x.state = AssetState::Archived;
                        x.sha256 = Some(sha256.clone());
                        x.bytes = Some(*bytes);
                        x.content_type = Some(content_type.clone());
                        x.archived_ms = Some(now);
                        x.last_error = None;
                    }
                    Outcome::Retry(why) | Outcome::Full(why) => x.last_error = Some(why.clone()),
                    Outcome::Failed(why) => {
                        x.state = AssetState::Failed;
                        x.last_error = Some(why.clone());
                    }
                    Outcome::Expired(why) => {
                        x.state = AssetState::Expired;
                        x.last_error = Some(why.clone());
                        lost = Some(why.clone());
                    }
                }
                if let Some(why) = lost {
                    // The task succeeded (KIE charged it) but its result is gone: the Error
                    // Review shows it as Result expired.
                    t.fail_class = Some(FailClass::ResultExpired);
                    t.fail_msg = Some(why);
                }
                true
            })
            .await
    }

    /// One try at asset `n` of `t`: the source, then (if it lapsed, once) a fresh link from
    /// KIE. Returns the outcome and whether a fresh link was asked for and answered.
    async fn try_asset(&self, t: &TaskRecord, n: usize, source: &str, renewed_before: bool) -> (Outcome, bool) {
        if let Some(kie_task) = source.strip_prefix(crate::kie::WRITTEN_SOURCE) {
            return (self.write(t, n, kie_task).await, false);
        }
        let first = match self.download(&t.id, n, source).await {
            Ok(d) => return (self.commit(&t.id, n, d).await, false),
            Err(f) => f,
        };
        let status = match first {
            Fetch::Gone(s) => s,
            Fetch::Refused(why) => return (Outcome::Failed(why), false),
            Fetch::Transient(why) => return (Outcome::Retry(why), false),
        };
        let gone = |detail: String| Outcome::Expired(format!("Result expired: KIE's link answered HTTP {status}; {detail}"));
        let Some(kie) = self.0.lifecycle.kie() else { return (gone("no KIE key to ask for a fresh link".into()), false) };
        if renewed_before {
            return (gone("a fresh link was already tried".into()), false);
        }
        let fresh = match kie.download_url(source).await {
            Ok(u) => u,
            Err(e) if e.is_transient() => return (Outcome::Retry(format!("the link lapsed and KIE's download-url did not answer: {e}")), false),
            Err(e) => return (gone(format!("KIE's download-url refused a fresh link: {e}")), true),
        };
        if let Err(why) = self.0.cfg.sources.admit(&fresh) {
            return (Outcome::Failed(format!("KIE's fresh link is refused: {why}")), true);
        }
        match self.download(&t.id, n, &fresh).await {
            Ok(d) => (self.commit(&t.id, n, d).await, true),
            Err(Fetch::Gone(s)) => (gone(format!("KIE's fresh link answered HTTP {s} too")), true),
            Err(Fetch::Refused(why)) => (Outcome::Failed(why), true),
            Err(Fetch::Transient(why)) => (Outcome::Retry(why), false),
        }
    }

    /// A written result ([`crate::kie::ApiFamily::writes_result`]): its data asked of KIE
    /// (the task `kie_task`), its file written from it and committed as a download is.
    async fn write(&self, t: &TaskRecord, n: usize, kie_task: &str) -> Outcome {
        let adapter = t.family.adapter();
        let Some(kie) = self.0.lifecycle.kie() else { return Outcome::Retry("no KIE key to ask for the result's data".into()) };
        let data = match kie.status_answer(adapter, kie_task, &t.input).await {
            Ok(d) => d,
            // KIE no longer has the task: its data is gone with it.
            Err(e @ (crate::kie::KieError::NotFound(_) | crate::kie::KieError::Validation(_))) => return Outcome::Expired(format!("Result expired: KIE no longer answers the result's data: {e}")),
            // Asked again, KIE would answer the same.
            Err(e @ crate::kie::KieError::TooLarge(_)) => return Outcome::Failed(format!("the result's data cannot be kept: {e}")),
            Err(e) => return Outcome::Retry(format!("KIE did not answer the result's data: {e}")),
        };
        let file = match adapter.result_file(&data) {
            Ok(f) => f,
            Err(why) => return Outcome::Failed(format!("the result's file cannot be written: {why}")),
        };
        let max = self.0.cfg.max_asset_bytes;
        let chunk = futures::stream::once(async move { Ok(bytes::Bytes::from(file)) });
        match self.write_temp(&t.id, n, chunk, max, || Fetch::Refused(format!("the result's file is larger than LIBRARY_MAX_ASSET_MB ({} MB)", max >> 20))).await {
            Ok(d) => self.commit(&t.id, n, d).await,
            Err(Fetch::Refused(why)) => Outcome::Failed(why),
            Err(Fetch::Transient(why)) => Outcome::Retry(why),
            Err(Fetch::Gone(status)) => Outcome::Retry(format!("HTTP {status}")),
        }
    }

    /// Streams `url` into a temporary object, capped, hashed and sniffed; checks its size.
    async fn download(&self, task: &str, n: usize, url: &str) -> Result<Downloaded, Fetch> {
        if url.starts_with(super::desk::DESK_SOURCE) {
            return Err(Fetch::Refused("the file's upload from the desk did not finish; add it again".into()));
        }
        self.0.cfg.sources.admit(url).map_err(Fetch::Refused)?;
        let resp = self.0.outbound.get_streamed(url).await.map_err(|e| if e.is_refusal() { Fetch::Refused(format!("download refused: {e}")) } else { Fetch::Transient(format!("download failed: {e}")) })?;
        match resp.status {
            200..=299 => {}
            s @ 300..=399 => {
                let to = resp.location.as_deref().map(|l| format!(" to {l}")).unwrap_or_default();
                return Err(Fetch::Refused(format!("the result URL redirects (HTTP {s}{to}); redirects are never followed")));
            }
            s @ (408 | 425 | 429 | 500..=599) => return Err(Fetch::Transient(format!("the source answered HTTP {s}"))),
            s => return Err(Fetch::Gone(s)),
        }
        let max = self.0.cfg.max_asset_bytes;
        let too_large = || Fetch::Refused(format!("the result is larger than LIBRARY_MAX_ASSET_MB ({} MB)", max >> 20));
        if resp.content_length().is_some_and(|l| l > max) {
            return Err(too_large());
        }
        let chunks = futures::stream::unfold(resp, |mut resp| async move {
            match resp.chunk().await {
                Ok(Some(c)) => Some((Ok(c), resp)),
                Ok(None) => None,
                Err(e) => Some((Err(format!("the download broke off: {e}")), resp)),
            }
        });
        self.write_temp(task, n, chunks, max, too_large).await
    }

    /// Streams `chunks` into a temporary copy of asset `n` of `task` (`tmp/<task>/<n>.<random>`),
    /// hashed, sniffed and capped at `max` bytes (past it: `too_large()`), and checks the
    /// stored size. Nothing counts until [`Library::commit`].
    pub(super) async fn write_temp(
        &self,
        task: &str,
        n: usize,
        chunks: impl futures::Stream<Item = Result<bytes::Bytes, String>>,
        max: u64,
        too_large: impl Fn() -> Fetch,
    ) -> Result<Downloaded, Fetch> {
        let objects = &self.0.objects;
        let tmp = Path::from(format!("tmp/{task}/{n}.{}", crate::secret::random_hex(6)));
        let transient = |what: &str, e: &dyn std::fmt::Display| Fetch::Transient(format!("{what}: {e}"));
        let upload = objects.put_multipart(&tmp).await.map_err(|e| transient("cannot write to the Library", &e))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
        let (mut hash, mut size, mut head) = (Sha256::new(), 0u64, Vec::with_capacity(sniff::SNIFF_LEN));
        let mut chunks = std::pin::pin!(chunks);
        let failure = loop {
            match chunks.next().await {
                Some(Ok(chunk)) => {
                    size += chunk.len() as u64;
                    if size > max {
                        break Some(too_large());
                    }
                    hash.update(&chunk);
                    let room = sniff::SNIFF_LEN.saturating_sub(head.len());
                    head.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if let Err(e) = w.wait_for_capacity(4).await {
                        break Some(transient("cannot write to the Library", &e));
                    }
                    w.put(chunk);
                }
                None if size == 0 => break Some(Fetch::Transient("the source answered an empty body".into())),
                None => break None,
                Some(Err(e)) => break Some(Fetch::Transient(e)),
            }
        };
        if let Some(f) = failure {
            let _ = w.abort().await;
            return Err(f);
        }
        w.finish().await.map_err(|e| transient("cannot finish the copy", &e))?;
        // The check before it counts: the stored object is exactly what was read.
        match objects.head(&tmp).await {
            Ok(meta) if meta.size == size => {}
            Ok(meta) => {
                let _ = objects.delete(&tmp).await;
                return Err(Fetch::Transient(format!("the copy holds {} bytes, {size} were read", meta.size)));
            }
            Err(e) => return Err(transient("cannot check the copy", &e)),
        }
        Ok(Downloaded { tmp, bytes: size, sha256: crate::secret::hex(&hash.finalize()), content_type: sniff::content_type(&head) })
    }

    /// Counts a checked copy against the quota and gives it its final name.
    pub(super) async fn commit(&self, task: &str, n: usize, d: Downloaded) -> Outcome {
        let objects = &self.0.objects;
        let bytes = i64::try_from(d.bytes).unwrap_or(i64::MAX);
        let reserve = |id: String, amount: i64, scope| ReserveRequest { id, amount, scopes: vec![scope], hold_ttl: None };
        let outcome = async {
            match self.store().reserve(&reserve(bytes_hold(task, n), bytes, bytes_scope(self.0.cfg.quota_bytes))).await? {
                ReserveOutcome::Refused(r) => {
                    return Ok(Outcome::Full(format!(
                        "Library full: {} of {} bytes used, this result needs {bytes} (LIBRARY_MAX_GB); raise the quota or delete a project's copies",
                        r.used, r.limit
                    )));
                }
                ReserveOutcome::Reserved | ReserveOutcome::AlreadyHeld => {}
            }
            self.store().reserve(&reserve(count_hold(task, n), 1, count_scope())).await?;
            Ok::<_, crate::StoreError>(Outcome::Archived { sha256: d.sha256.clone(), bytes: d.bytes, content_type: d.content_type.to_string() })
        }
        .await;
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => Outcome::Retry(format!("cannot count the copy in the store: {e}")),
        };
        if !matches!(outcome, Outcome::Archived { .. }) {
            let _ = objects.delete(&d.tmp).await;
            return outcome;
        }
        match objects.rename(&d.tmp, &asset_path(task, n)).await {
            Ok(()) => outcome,
            Err(e) => {
                let _ = objects.delete(&d.tmp).await;
                Outcome::Retry(format!("cannot commit the copy: {e}"))
            }
        }
    }

    /// Deletes temporary copies left by a crash (older than an hour), a bounded number.
    async fn sweep_temp(&self) {
        let cutoff = chrono_cutoff();
        let prefix = Path::from("tmp");
        let stale: Vec<Path> = self
            .0
            .objects
            .list(Some(&prefix))
            .take(TEMP_SWEEP_MAX)
            .filter_map(|m| async move { m.ok().filter(|m| m.last_modified.timestamp_millis() < cutoff).map(|m| m.location) })
            .collect()
            .await;
        for p in &stale {
            let _ = self.0.objects.delete(p).await;
        }
        if !stale.is_empty() {
            tracing::info!(count = stale.len(), "archiver: temporary copies left by an interrupted download removed");
        }
    }
}

fn chrono_cutoff() -> i64 {
    now_ms().saturating_sub(TEMP_AGE.as_millis() as u64) as i64
}

fn outcome_name(o: &Outcome) -> &'static str {
    match o {
        Outcome::Archived { .. } => "archived",
        Outcome::Retry(_) => "retry",
        Outcome::Full(_) => "full",
        Outcome::Expired(_) => "expired",
        Outcome::Failed(_) => "failed",
    }
}
