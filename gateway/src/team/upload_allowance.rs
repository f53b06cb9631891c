//! What a relay key may upload to KIE through the relay in a day (`RELAY_UPLOAD_GB_PER_DAY`).
//! KIE's uploads cost no credits, but each file passes through this console on its way: a
//! key's uploads are counted in bytes over a sliding 24 hours in the store, across every
//! instance, so one key cannot spend the house's bandwidth without end.
//!
//! An upload claims its size before anything is sent (the bytes read, or the length its
//! client declared; a stream of unknown length claims the most one file may be) and settles
//! to what was sent once it ends: nothing, when KIE did not take it.

use std::time::Duration;

use crate::store::{ReserveOutcome, ReserveRequest, Scope, Store, StoreError};

/// How far back a key's uploads count.
pub const DAY: Duration = Duration::from_secs(24 * 3600);

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum AllowanceError {
    #[error(
        "This relay key has uploaded {used} of the {limit} bytes it may in 24 hours (RELAY_UPLOAD_GB_PER_DAY); this file needs {needs} more. Try again in {} minutes, or ask an admin to raise it.",
        retry_after.as_secs().div_ceil(60)
    )]
    Spent { used: i64, limit: i64, needs: u64, retry_after: Duration },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An upload's claim on its key's day, settled when it ends.
#[must_use = "a claim is settled to what was sent"]
pub struct Claim {
    id: String,
}

fn scope(key_id: &str, per_day: u64) -> Scope {
    Scope { key: format!("relay-uploads:{key_id}"), limit: per_day.min(crate::store::MAX_AMOUNT as u64) as i64, window: Some(DAY) }
}

/// Claims `bytes` of `key_id`'s day (`per_day`: `None` counts nothing).
pub async fn claim(store: &dyn Store, key_id: &str, bytes: u64, per_day: Option<u64>) -> Result<Option<Claim>, AllowanceError> {
    let Some(per_day) = per_day else { return Ok(None) };
    let id = format!("upload:{}", crate::secret::random_hex(12));
    let amount = bytes.min(crate::store::MAX_AMOUNT as u64) as i64;
    let req = ReserveRequest { id: id.clone(), amount, scopes: vec![scope(key_id, per_day)], hold_ttl: Some(DAY) };
    match store.reserve(&req).await? {
        ReserveOutcome::Reserved | ReserveOutcome::AlreadyHeld => Ok(Some(Claim { id })),
        ReserveOutcome::Refused(r) => Err(AllowanceError::Spent { used: r.used, limit: r.limit, needs: bytes, retry_after: r.retry_after.unwrap_or(DAY) }),
    }
}

impl Claim {
    /// What the upload sent, in bytes (0: KIE did not take it).
    pub async fn settle(self, store: &dyn Store, sent: u64) -> Result<(), StoreError> {
        store.settle(&self.id, sent.min(crate::store::MAX_AMOUNT as u64) as i64).await.map(|_| ())
    }
}
