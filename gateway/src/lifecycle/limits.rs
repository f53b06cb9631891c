//! KIE's limits, held across every instance through the store's sliding windows: at most
//! `rate_limit` new tasks per `rate_window` (20 per 10 s), at most `record_info_per_sec`
//! status reads per second (10). A refused claim says how long until it would fit.

use std::time::Duration;

use super::Lifecycle;
use crate::secret::random_hex;
use crate::store::{ReserveOutcome, ReserveRequest, Scope, StoreResult};

/// The window every instance's `createTask` calls count against.
pub const CREATE_WINDOW: &str = "rate:kie:create";
/// The window every instance's `recordInfo` calls count against.
pub const RECORD_INFO_WINDOW: &str = "rate:kie:recordinfo";

impl Lifecycle {
    /// The rate guard's scope, as the Throttle panel reads it.
    pub fn create_scope(&self) -> Scope {
        Scope { key: CREATE_WINDOW.into(), limit: self.0.opts.rate_limit, window: Some(self.0.opts.rate_window) }
    }

    fn record_info_scope(&self) -> Scope {
        Scope { key: RECORD_INFO_WINDOW.into(), limit: self.0.opts.record_info_per_sec, window: Some(Duration::from_secs(1)) }
    }

    /// Claims one slot of `scope` now, or says how long to wait.
    async fn claim(&self, scope: Scope) -> StoreResult<Result<(), Duration>> {
        let window = scope.window.unwrap_or(Duration::from_secs(1));
        let req = ReserveRequest { id: format!("{}:{}", scope.key, random_hex(8)), amount: 1, scopes: vec![scope], hold_ttl: Some(window) };
        Ok(match self.0.store.reserve(&req).await? {
            ReserveOutcome::Reserved | ReserveOutcome::AlreadyHeld => Ok(()),
            ReserveOutcome::Refused(r) => Err(r.retry_after.unwrap_or(Duration::from_millis(100)).max(Duration::from_millis(5))),
        })
    }

    /// One `createTask` slot, or how long until one frees.
    pub async fn claim_create(&self) -> StoreResult<Result<(), Duration>> {
        self.claim(self.create_scope()).await
    }

    /// Waits (up to `max_wait`) for one `recordInfo` slot. `false` if none came in time.
    pub async fn claim_record_info(&self, max_wait: Duration) -> StoreResult<bool> {
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            match self.claim(self.record_info_scope()).await? {
                Ok(()) => return Ok(true),
                Err(wait) if tokio::time::Instant::now() + wait <= deadline => tokio::time::sleep(wait).await,
                Err(_) => return Ok(false),
            }
        }
    }
}
