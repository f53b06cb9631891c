//! The relay's own callbacks: when a task submitted with a `callBackUrl` ends, its client is
//! sent KIE's callback shape with the Control Room's task id, signed with the relay key's
//! webhook secret the way KIE signs (`X-Webhook-Timestamp`, `X-Webhook-Signature`).
//!
//! Pending deliveries sit in a store index, so a restart resumes them; each is claimed with a
//! lease, so two instances never send one twice at once; a failed one is retried with
//! backoff ([`MAX_ATTEMPTS`] in all) and its last error is kept on the task.

use std::time::Duration;

use super::{Lifecycle, backoff};
use crate::kie::signature;
use crate::relay;
use crate::relay_keys;
use crate::store::{StoreResult, now_ms};
use crate::task::{TaskQuery, TaskRecord};

/// Attempts before a delivery is given up.
pub const MAX_ATTEMPTS: u32 = 8;
const MAX_BACKOFF: Duration = Duration::from_secs(300);

pub(super) async fn run(lc: Lifecycle) {
    loop {
        if let Err(e) = lc.delivery_round().await {
            tracing::warn!(error = %e, "relay callbacks: store error; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(lc.0.opts.tick) => {}
            _ = lc.0.wake_delivery.notified() => {}
        }
    }
}

impl Lifecycle {
    /// Sends every due relay callback once.
    pub async fn delivery_round(&self) -> StoreResult<()> {
        let q = TaskQuery { delivery_pending: true, limit: crate::task::MAX_PAGE, ..Default::default() };
        for t in self.0.store.task_list(&q).await?.tasks {
            let Some(cb) = &t.relay_callback else { continue };
            if cb.next_attempt_ms > now_ms() {
                continue;
            }
            let lease = format!("deliver:{}", t.id);
            if !self.0.store.lease_acquire(&lease, &self.0.opts.instance, Duration::from_secs(30)).await? {
                continue;
            }
            // Re-read under the lease: another instance may have delivered it meanwhile.
            if let Some(fresh) = self.0.store.task_get(&t.id).await?
                && fresh.delivery_pending()
            {
                let result = self.deliver(&fresh).await;
                self.record_delivery(&fresh.id, result).await?;
            }
            self.0.store.lease_release(&lease, &self.0.opts.instance).await?;
        }
        Ok(())
    }

    async fn deliver(&self, t: &TaskRecord) -> Result<(), String> {
        let Some(cb) = &t.relay_callback else { return Ok(()) };
        let key = relay_keys::find(self.0.store.as_ref(), &cb.key_id).await.map_err(|e| e.to_string())?;
        let ts = (now_ms() / 1000).to_string();
        let mut req = self.0.http.post(&cb.url).json(&relay::callback_body(t)).header("X-Webhook-Timestamp", &ts);
        if let Some(key) = key {
            req = req.header("X-Webhook-Signature", signature::sign(key.webhook_secret.as_bytes(), &t.id, &ts));
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("the client answered HTTP {}", r.status().as_u16())),
            Err(e) => Err(format!("cannot reach the client: {}", e.without_url())),
        }
    }

    async fn record_delivery(&self, id: &str, result: Result<(), String>) -> StoreResult<()> {
        self.modify(id, |t| {
            let Some(cb) = t.relay_callback.as_mut().filter(|c| c.pending()) else { return false };
            cb.attempts += 1;
            match &result {
                Ok(()) => {
                    cb.delivered = true;
                    cb.last_error = None;
                }
                Err(e) => {
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
        if let Err(e) = result {
            tracing::warn!(task = %id, error = %e, "relay callback not delivered");
        }
        Ok(())
    }
}
