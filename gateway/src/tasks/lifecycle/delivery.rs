//! The relay's own callbacks: when a task submitted with a `callBackUrl` ends, its client is
//! sent KIE's callback shape with the Control Room's task id, signed with the relay key's
//! webhook secret the way KIE signs (`X-Webhook-Timestamp`, `X-Webhook-Signature`).
//!
//! Pending deliveries sit in a store index, so a restart resumes them; each is claimed with a
//! lease, so two instances never send one twice at once; a failed one is retried with
//! backoff ([`MAX_ATTEMPTS`] in all) and its last error is kept on the task. Every request
//! goes through the vetted outbound client ([`crate::outbound`]); one the policy refuses is
//! given up at once (sending it again cannot help).
//!
//! Deliveries run concurrently: at most [`PER_DESTINATION`] at once to one `host:port` and
//! [`IN_FLIGHT`] in all, so one slow or dead receiver cannot hold up another project's
//! callbacks. The index is read oldest first, page by page, so every pending delivery is
//! reached however many there are.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::{Lifecycle, backoff};
use crate::kie::signature;
use crate::tasks::relay;
use crate::team::relay_keys;
use crate::store::{StoreResult, now_ms};
use crate::tasks::task::{TaskQuery, TaskRecord};

/// Attempts before a delivery is given up.
pub const MAX_ATTEMPTS: u32 = 8;
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Deliveries in flight at once to one destination (`host:port`).
pub const PER_DESTINATION: usize = 4;
/// Deliveries in flight at once from this instance.
pub const IN_FLIGHT: usize = 64;
/// Pending deliveries looked at per round (the rest wait for the next round).
const MAX_ROUND: usize = 2000;
/// How long one instance holds a delivery: longer than one attempt can take.
const DELIVERY_LEASE: Duration = Duration::from_secs(60);

/// The relay callbacks' own state: what wakes them, and this instance's deliveries under way.
pub(super) struct Deliveries {
    wake: tokio::sync::Notify,
    in_flight: Mutex<HashSet<String>>,
    per_destination: Mutex<HashMap<String, Arc<Semaphore>>>,
    all: Arc<Semaphore>,
}

impl Default for Deliveries {
    fn default() -> Self {
        Deliveries { wake: Default::default(), in_flight: Mutex::default(), per_destination: Mutex::default(), all: Arc::new(Semaphore::new(IN_FLIGHT)) }
    }
}

impl Deliveries {
    /// Wakes the worker: a delivery is due.
    pub(super) fn wake(&self) {
        self.wake.notify_one();
    }

    fn destination(&self, url: &str) -> Arc<Semaphore> {
        let dest = url::Url::parse(url).ok().and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?))).unwrap_or_default();
        let mut map = self.per_destination.lock().unwrap_or_else(|e| e.into_inner());
        // Forget idle destinations so the map stays small.
        if map.len() > 1024 {
            map.retain(|_, s| s.available_permits() < PER_DESTINATION);
        }
        map.entry(dest).or_insert_with(|| Arc::new(Semaphore::new(PER_DESTINATION))).clone()
    }

    /// Marks `id` as under way here; `false` if it already is.
    fn start(&self, id: &str) -> bool {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_string())
    }

    fn finish(&self, id: &str) {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}

pub(super) async fn run(lc: Lifecycle, deliveries: Arc<Deliveries>) {
    loop {
        if let Err(e) = lc.delivery_round().await {
            tracing::warn!(error = %e, "relay callbacks: store error; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(lc.0.opts.tick) => {}
            () = deliveries.wake.notified() => {}
        }
    }
}

impl Lifecycle {
    /// Starts every due relay callback that has room at its destination; returns without
    /// waiting for them.
    pub async fn delivery_round(&self) -> StoreResult<()> {
        if self.halted() {
            return Ok(());
        }
        let mut q = TaskQuery { delivery_pending: true, oldest_first: true, limit: crate::tasks::task::MAX_PAGE, ..Default::default() };
        let mut looked = 0;
        loop {
            let page = self.0.store.task_list(&q).await?;
            looked += page.tasks.len();
            for t in page.tasks {
                self.start_delivery(t).await?;
            }
            match page.next {
                Some(next) if looked < MAX_ROUND => q.after = Some(next),
                _ => return Ok(()),
            }
        }
    }

    async fn start_delivery(&self, t: TaskRecord) -> StoreResult<()> {
        let Some(cb) = &t.relay_callback else { return Ok(()) };
        if cb.next_attempt_ms > now_ms() {
            return Ok(());
        }
        let deliveries = &self.0.deliveries;
        let Ok(dest) = deliveries.destination(&cb.url).try_acquire_owned() else { return Ok(()) };
        let Ok(slot) = deliveries.all.clone().try_acquire_owned() else { return Ok(()) };
        if !deliveries.start(&t.id) {
            return Ok(());
        }
        let lease = format!("deliver:{}", t.id);
        if !self.0.store.lease_acquire(&lease, &self.0.opts.instance, DELIVERY_LEASE).await? {
            deliveries.finish(&t.id);
            return Ok(());
        }
        let lc = self.clone();
        tokio::spawn(async move {
            let _permits = (dest, slot);
            if let Err(e) = lc.deliver_once(&t.id).await {
                tracing::warn!(task = %t.id, error = %e, "relay callback: store error; will retry");
            }
            let _ = lc.0.store.lease_release(&lease, &lc.0.opts.instance).await;
            lc.0.deliveries.finish(&t.id);
        });
        Ok(())
    }

    /// One attempt for a task whose delivery this instance holds.
    async fn deliver_once(&self, id: &str) -> StoreResult<()> {
        // Re-read under the lease: another instance may have delivered it meanwhile.
        let Some(fresh) = self.0.store.task_get(id).await?.filter(TaskRecord::delivery_pending) else { return Ok(()) };
        let result = self.deliver(&fresh).await;
        self.record_delivery(id, result).await
    }

    async fn deliver(&self, t: &TaskRecord) -> Result<(), Failure> {
        let Some(cb) = &t.relay_callback else { return Ok(()) };
        let key = relay_keys::find(self.0.store.as_ref(), &cb.key_id).await.map_err(|e| Failure::Retry(e.to_string()))?;
        let ts = (now_ms() / 1000).to_string();
        let body = relay::callback(t, self.0.opts.library_links.as_ref(), self.written_content(t).await).to_string();
        let mut headers = vec![("X-Webhook-Timestamp", ts.clone())];
        if let Some(key) = key {
            headers.push(("X-Webhook-Signature", signature::sign(key.webhook_secret.as_bytes(), &t.id, &ts)));
        }
        match self.0.outbound.post_json(&cb.url, body.as_bytes(), &headers).await {
            Ok(a) if a.is_success() => Ok(()),
            Ok(a) if (300..400).contains(&a.status) => Err(Failure::Retry(format!("the client answered HTTP {} (a redirect; redirects are not followed)", a.status))),
            Ok(a) => Err(Failure::Retry(format!("the client answered HTTP {}", a.status))),
            Err(e) if e.is_refusal() => Err(Failure::Final(format!("callBackUrl refused: {e}"))),
            Err(e) => Err(Failure::Retry(format!("cannot reach the client: {e}"))),
        }
    }

    async fn record_delivery(&self, id: &str, result: Result<(), Failure>) -> StoreResult<()> {
        self.modify(id, |t| {
            let Some(cb) = t.relay_callback.as_mut().filter(|c| c.pending()) else { return false };
            cb.attempts += 1;
            match &result {
                Ok(()) => {
                    cb.delivered = true;
                    cb.last_error = None;
                }
                Err(Failure::Final(e)) => {
                    cb.last_error = Some(e.clone());
                    cb.gave_up = true;
                }
                Err(Failure::Retry(e)) => {
                    cb.last_error = Some(e.clone());
                    if cb.attempts >= MAX_ATTEMPTS {
                        cb.gave_up = true;
                    } else {
                        cb.next_attempt_ms = now_ms() + backoff(Duration::from_secs(1), cb.attempts, MAX_BACKOFF).as_millis() as u64;
                    }
                }
            }
            true
        })
        .await?;
        if let Err(Failure::Retry(e) | Failure::Final(e)) = result {
            tracing::warn!(task = %id, error = %e, "relay callback not delivered");
        }
        Ok(())
    }
}

/// Why one attempt did not deliver.
enum Failure {
    /// Worth another attempt later.
    Retry(String),
    /// Another attempt cannot help (the policy refuses the URL).
    Final(String),
}
