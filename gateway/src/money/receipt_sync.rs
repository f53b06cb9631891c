//! Receipt sync: every receipt line, once its task is folded, is POSTed to `RECEIPT_SYNC_URL`
//! as JSON ([`super::receipts::Line`]) — at least once, until the receiver answers 2xx.
//!
//! - `Idempotency-Key: <Control Room task id>`, and `X-Receipt-Signature` =
//!   base64(HMAC-SHA256(`RECEIPT_SYNC_SECRET`, raw body)). The body is the same every time
//!   for the same task: a line is sent once its results' copies have settled (archived, or
//!   gone), so its exports no longer change; a receiver can dedupe on the key and check the
//!   signature on any attempt.
//! - Pending lines sit in the `receipt:sync` index, so a restart resumes them; each is taken
//!   by lease, so two instances never send one at once; a refusal or silence backs off (2 s
//!   doubling to 30 min) and the receiver's last answer is kept on the task for panel 09.
//! - Every request goes through the outbound policy (`crate::outbound`).

use base64::Engine;
use serde::{Deserialize, Serialize};
use futures::StreamExt;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

use crate::store::{StoreResult, now_ms};
use crate::tasks::task::{Mark, TaskQuery, TaskRecord};
use crate::{Lifecycle, Secret};

/// Where receipt lines go, and the key that signs them.
#[derive(Debug, Clone)]
pub struct SyncTarget {
    pub url: String,
    pub secret: Secret,
}

/// Lines sent at once by one instance.
const IN_FLIGHT: usize = 8;
/// Pending lines looked at per round.
const ROUND: usize = 2000;
/// How long one instance holds a line: longer than one attempt (the outbound client gives up
/// after 15 s), short enough that a line cut off by a crash is taken over soon.
const LEASE: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(1800);

/// Lines delivered, in all.
pub fn synced_scope() -> crate::store::Scope {
    crate::store::Scope { key: "receipt:synced".into(), limit: crate::store::MAX_AMOUNT, window: None }
}

/// Panel 09's view of the sync.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// Lines waiting (at most [`ROUND`] counted; `capped` then).
    pub pending: usize,
    /// Of those, lines the receiver refused or did not answer at least once.
    pub failing: usize,
    /// The receiver's latest answer to a refused line.
    pub last_error: Option<String>,
    pub synced: i64,
    pub capped: bool,
}

/// How the sync stands, from the `receipt:sync` index (bounded) and the delivered count.
pub async fn status(store: &dyn crate::Store) -> StoreResult<SyncStatus> {
    let mut s = SyncStatus { synced: store.usage(&synced_scope()).await?, ..Default::default() };
    let mut q = TaskQuery { mark: Some(Mark::ReceiptSync), oldest_first: true, limit: crate::tasks::task::MAX_PAGE, ..Default::default() };
    let mut latest = 0u64;
    loop {
        let page = store.task_list(&q).await?;
        for t in &page.tasks {
            s.pending += 1;
            if let Some(r) = t.receipt_sync.as_ref().filter(|r| r.attempts > 0) {
                s.failing += 1;
                if t.updated_ms >= latest {
                    latest = t.updated_ms;
                    s.last_error = r.last_error.clone();
                }
            }
        }
        match page.next {
            Some(next) if s.pending < ROUND => q.after = Some(next),
            Some(_) => {
                s.capped = true;
                break;
            }
            None => break,
        }
    }
    Ok(s)
}

/// `X-Receipt-Signature` for a body.
pub fn signature(secret: &Secret, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The body synced for a task (the same on every attempt).
pub fn body(t: &TaskRecord, public_base: Option<&str>) -> Vec<u8> {
    serde_json::to_vec(&super::receipts::line(t, public_base)).unwrap_or_default()
}

/// Woken by `wake` when a receipt line is ready to sync.
pub(crate) async fn run(lc: Lifecycle, wake: std::sync::Arc<tokio::sync::Notify>) {
    let Some(target) = lc.options().receipt_sync.clone() else { return };
    loop {
        if !lc.halted()
            && let Err(e) = sync_round(&lc, &target).await
        {
            tracing::warn!(error = %e, "receipt sync: store error; retrying");
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = wake.notified() => {}
        }
    }
}

/// Sends every due pending line (at most [`IN_FLIGHT`] at once) and records each answer.
pub async fn sync_round(lc: &Lifecycle, target: &SyncTarget) -> StoreResult<usize> {
    let mut q = TaskQuery { mark: Some(Mark::ReceiptSync), oldest_first: true, limit: crate::tasks::task::MAX_PAGE, ..Default::default() };
    let now = now_ms();
    let mut due = Vec::new();
    loop {
        let page = lc.store().task_list(&q).await?;
        due.extend(page.tasks.into_iter().filter(|t| t.receipt_sync.as_ref().is_some_and(|s| s.next_attempt_ms <= now)));
        match page.next {
            Some(next) if due.len() < ROUND => q.after = Some(next),
            _ => break,
        }
    }
    let sent = std::sync::atomic::AtomicUsize::new(0);
    futures::stream::iter(due)
        .for_each_concurrent(IN_FLIGHT, |t| {
            let sent = &sent;
            async move {
                match send(lc, target, &t).await {
                    Ok(true) => {
                        sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(task = %t.id, error = %e, "receipt sync: cannot record an attempt"),
                }
            }
        })
        .await;
    Ok(sent.into_inner())
}

/// One attempt for one task, under its lease. `Ok(true)` if the receiver took it.
async fn send(lc: &Lifecycle, target: &SyncTarget, t: &TaskRecord) -> StoreResult<bool> {
    let store = lc.store();
    let lease = format!("receipt-sync:{}", t.id);
    let holder = lc.options().instance.clone();
    if !store.lease_acquire(&lease, &holder, LEASE).await? {
        return Ok(false);
    }
    // Re-read under the lease: another instance may have delivered it.
    let fresh = store.task_get(&t.id).await?;
    let Some(t) = fresh.filter(TaskRecord::sync_pending) else {
        store.lease_release(&lease, &holder).await?;
        return Ok(false);
    };
    let body = body(&t, lc.options().public_base.as_deref());
    // A task KIE completed after the give-up is a second line, the one that counts: a key of
    // its own, so a receiver that kept the first does not drop it.
    let key = if t.completed_late { format!("{}.late", t.id) } else { t.id.clone() };
    let headers = [("Idempotency-Key", key), ("X-Receipt-Signature", signature(&target.secret, &body))];
    let answer = lc.outbound().post_json(&target.url, &body, &headers).await;
    let (ok, status, error) = match &answer {
        Ok(a) if a.is_success() => (true, Some(a.status), None),
        Ok(a) => (false, Some(a.status), Some(format!("HTTP {}: {}", a.status, String::from_utf8_lossy(&a.body[..a.body.len().min(200)]).trim()))),
        Err(e) => (false, None, Some(e.to_string())),
    };
    let attempts = t.receipt_sync.as_ref().map_or(0, |s| s.attempts) + 1;
    let wait = Duration::from_secs(2).saturating_mul(1 << attempts.saturating_sub(1).min(16)).min(MAX_BACKOFF);
    lc.modify(&t.id, |t| {
        let Some(s) = t.receipt_sync.as_mut().filter(|s| !s.delivered) else { return false };
        s.attempts = attempts;
        s.delivered = ok;
        s.last_status = status;
        s.last_error = error.clone();
        s.next_attempt_ms = if ok { 0 } else { now_ms() + wait.as_millis() as u64 };
        true
    })
    .await?;
    if ok {
        // Counted once per task, whoever delivered it (panel 09's "synced").
        let req = crate::store::ReserveRequest { id: format!("receipt-synced:{}", t.id), amount: 1, scopes: vec![synced_scope()], hold_ttl: Some(Duration::from_secs(90 * 24 * 3600)) };
        store.reserve(&req).await?;
    }
    store.lease_release(&lease, &holder).await?;
    if !ok {
        tracing::info!(task = %t.id, error = ?error, "receipt sync: not taken; will retry");
    }
    Ok(ok)
}
