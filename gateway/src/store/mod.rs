//! The store: everything the Control Room shares between requests and between instances.
//!
//! One trait, [`Store`], two backends:
//! - [`RedisStore`] (`REDIS_URL` set): any number of instances act as one; multi-key work runs
//!   in Lua scripts so it is atomic on the Redis server; live events use Redis pub/sub.
//! - [`EmbeddedStore`] (no `REDIS_URL`): one instance, a `redb` file under `DATA_DIR` (every
//!   write is a durable transaction, so a restart loses nothing) and an in-process broadcast.
//!
//! What it holds, by kind:
//! - **task records** with indexes by state, project, owner, model and time ([`crate::tasks::task`]),
//!   written with optimistic concurrency (a stale version is refused);
//! - **key/value with TTL** (sessions, lookups such as KIE task id → task, favorites);
//! - **counters with expiry** (alert windows, attempt limits);
//! - **reservations** ([`Store::reserve`]): one atomic, all-or-nothing step over several
//!   scopes, each a running total or a sliding window; this one primitive carries budgets
//!   (per job, per day, per project), the rate guard's request windows, concurrency slots and
//!   token-per-minute limits;
//! - **append-only logs** ([`Store::log_append`]): numbered entries, newest kept up to a
//!   bound, never edited (the audit log);
//! - **leases** so that background work runs once across instances;
//! - **publish/subscribe** for live events.
//!
//! The conformance suite in `gateway/tests/store_conformance.rs` runs the same cases against
//! both backends.

mod embedded;
pub mod metered;
mod primary;
mod redis;
pub(crate) mod watched;

pub use embedded::EmbeddedStore;
pub use primary::{FAILOVER_PATIENCE, ReplicaAcks, SentinelSettings, parse_sentinels};
pub use redis::{Persistence, RedisOptions, RedisStore, RedisTls};

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::tasks::task::{TaskCounts, TaskPage, TaskQuery, TaskRecord};

/// Largest value the store accepts for one key/value entry or event (1 MiB).
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Most scopes one reservation may touch.
pub const MAX_SCOPES: usize = 16;
/// Most holds one [`Store::task_create`] takes.
pub const MAX_HOLDS: usize = 8;
/// Largest amount one reservation or settlement may carry (2^46, about 7·10^13 — $350 M in
/// milli-credits). Every sum stays exact on both backends (Redis' Lua counts in doubles,
/// exact to 2^53) and far from `i64` overflow.
pub const MAX_AMOUNT: i64 = 1 << 46;

/// What can go wrong talking to the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached or failed an operation (network, disk).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Data in the store cannot be read back (a bug or a foreign writer).
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
    /// The request itself is wrong (empty key, oversized value, too many scopes).
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// A write that decides money or a send reached the primary, but not enough replicas
    /// acknowledged it in time (`REDIS_MIN_REPLICAS_ACKS`): a failover now could lose it, so
    /// its caller treats it as not done.
    #[error("store unavailable: the write was not acknowledged by a replica: {0}")]
    Unreplicated(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// One limit that a reservation counts against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// The counter's key, e.g. `budget:project:trailer:total`.
    pub key: String,
    /// The most the scope may hold (inclusive).
    pub limit: i64,
    /// `None`: a running total (until settled down). `Some(w)`: a sliding window; only
    /// reservations made in the last `w` count.
    pub window: Option<Duration>,
}

/// An all-or-nothing claim of `amount` against every scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReserveRequest {
    /// Idempotency key: a second reservation with the same id changes nothing.
    pub id: String,
    /// How much to claim (credits in milli-credits, requests as 1, tokens as tokens…).
    pub amount: i64,
    pub scopes: Vec<Scope>,
    /// How long the hold is kept for [`Store::settle`]; `None` keeps it until settled.
    /// Windows and rate slots that are never settled use a TTL so holds do not pile up.
    pub hold_ttl: Option<Duration>,
}

/// Why a reservation was refused: the first scope that would overflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// Index into the request's scopes.
    pub scope: usize,
    pub key: String,
    /// What the scope already holds.
    pub used: i64,
    pub limit: i64,
    /// For a window: how long until enough of it has aged out for this amount to fit.
    pub retry_after: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReserveOutcome {
    /// Claimed against every scope.
    Reserved,
    /// A hold with this id exists already; nothing changed.
    AlreadyHeld,
    /// Nothing changed.
    Refused(Refusal),
}

/// One entry of an append-only log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub seq: u64,
    pub data: Vec<u8>,
}

/// A key/value entry written with a task by [`Store::task_create`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub key: String,
    pub value: Vec<u8>,
    pub ttl: Option<Duration>,
}

/// A condition for [`Store::task_create`]: the key/value entry `key` still holds what the
/// caller read from it (compared by SHA-1), or still holds nothing. A submission states the
/// cost rules it was judged under this way, so that it can keep them in memory and still
/// never be recorded under rules that changed meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unchanged {
    pub key: String,
    /// Lowercase hex SHA-1 of the value read; `None` if there was none.
    pub sha1: Option<String>,
}

impl Unchanged {
    /// The condition that `key` still holds `value` (as read).
    pub fn of(key: &str, value: Option<&[u8]>) -> Unchanged {
        use sha1::Digest;
        Unchanged { key: key.to_string(), sha1: value.map(|v| crate::secret::hex(&sha1::Sha1::digest(v))) }
    }
}

/// What [`Store::task_create`] writes with a new record, all in the same atomic step.
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateWith<'a> {
    /// Key/value entries, with their TTLs (a callback token's lookup).
    pub lookups: &'a [Lookup],
    /// The record's live event.
    pub announce: Option<&'a Announcement>,
    /// Taken only while this holds (the cost rules the task was judged under).
    pub unchanged: Option<&'a Unchanged>,
    /// Reservations that must all fit for the record to be written: a queue place, the rate
    /// guard's slots, the cost rules' hold. Each is taken as [`Store::reserve`] would (one
    /// already held is left as it is); if any would be refused, nothing is written. No scope
    /// may appear in two of them.
    pub holds: &'a [ReserveRequest],
    /// An entry appended to a log once the record is written (the queue's arrivals).
    pub log: Option<LogLine<'a>>,
}

/// What [`Store::task_update_with`] does with a record's new version, in the same atomic step.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpdateWith<'a> {
    /// Holds settled (id, actual), as [`Store::settle`] would: a missing one is skipped.
    pub settles: &'a [(&'a str, i64)],
    /// Charges counted, as [`Store::reserve`] would take them but whatever their scopes'
    /// limits (what was spent is counted): one already held is left as it is.
    pub charges: &'a [ReserveRequest],
    /// The new version's live event, numbered and published once the write is taken (never
    /// on a conflict).
    pub announce: Option<&'a Announcement>,
}

/// An entry for [`Store::log_append`], written by [`Store::task_create`].
#[derive(Debug, Clone, Copy)]
pub struct LogLine<'a> {
    pub log: &'a str,
    pub entry: &'a [u8],
    pub keep: usize,
}

/// What [`Store::task_create`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// Inserted, with its announcement's number (0 without one).
    Inserted(u64),
    /// A task with this id exists already; nothing changed.
    Exists,
    /// The [`Unchanged`] condition no longer held; nothing changed.
    Changed,
    /// The hold at this index of [`CreateWith::holds`] would be refused; nothing changed.
    Refused(usize, Refusal),
}

/// A message numbered by a counter as it is written: `{before}{n}{after}`, where `n` is the
/// counter `seq_key` moved on by one; kept as the key/value entry `{log_prefix}{n}` for
/// `keep` and published on `channel` (live events use this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub seq_key: String,
    pub log_prefix: String,
    pub keep: Duration,
    pub channel: String,
    pub before: String,
    pub after: String,
}

impl Announcement {
    /// The message with its number.
    pub fn message(&self, seq: u64) -> Vec<u8> {
        format!("{}{seq}{}", self.before, self.after).into_bytes()
    }
}

/// Most entries one [`Store::log_read`] returns.
pub const MAX_LOG_PAGE: usize = 1000;
/// Most scopes one [`Store::usage_many`] reads.
pub const MAX_USAGE_BATCH: usize = 4096;
/// Most indexes one [`Store::index_counts`] counts.
pub const MAX_INDEX_COUNTS: usize = 64;

/// A message from a subscription.
pub type EventStream = BoxStream<'static, Vec<u8>>;

/// The shared state of the Control Room. Every method is safe to call from many tasks and (on
/// Redis) many instances at once; each is atomic on its own.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// "redis" or "embedded", for the console and logs.
    fn backend(&self) -> &'static str;

    /// Round trip to the backend (readiness).
    async fn ping(&self) -> StoreResult<()>;

    /// Whether the backend lost its primary and is looking for the new one (a Redis
    /// Sentinel failover): calls fail or wait meanwhile, and `/readyz` says so.
    fn failing_over(&self) -> bool {
        false
    }

    // ---- tasks -------------------------------------------------------------------------

    /// Writes a new record (write-ahead). `Ok(false)` if a task with this id exists already,
    /// in which case nothing changes.
    async fn task_insert(&self, task: &TaskRecord) -> StoreResult<bool> {
        Ok(self.task_create(task, &CreateWith::default()).await? == Created::Inserted(0))
    }

    /// [`Store::task_insert`] with everything a submission writes ([`CreateWith`]: lookups,
    /// a numbered [`Announcement`], the holds that admit it, a log entry), all in one atomic
    /// step: one round trip on Redis, one transaction on the embedded store. The hot path of
    /// a submission and of a chat call. Taken only while `unchanged` holds (if given) and
    /// every hold fits; see [`Created`] for the outcomes.
    async fn task_create(&self, task: &TaskRecord, with: &CreateWith<'_>) -> StoreResult<Created>;

    async fn task_get(&self, id: &str) -> StoreResult<Option<TaskRecord>>;

    /// Replaces a record if the stored version equals `task.version`; the stored copy gets
    /// `version + 1`, which is returned. `Ok(None)` on a version conflict or a missing task:
    /// nothing changes and the caller re-reads.
    async fn task_update(&self, task: &TaskRecord) -> StoreResult<Option<u64>> {
        self.task_update_with(task, &UpdateWith::default()).await
    }

    /// [`Store::task_update`] with the holds a change settles and the charges it counts
    /// ([`UpdateWith`]), all in one atomic step, taken only if the version matches: one round
    /// trip on Redis, one transaction on the embedded store (the end of a chat call).
    async fn task_update_with(&self, task: &TaskRecord, with: &UpdateWith<'_>) -> StoreResult<Option<u64>>;

    /// Removes a record and its index entries if the stored version equals `version`.
    /// `Ok(false)` on a version conflict or a missing task: nothing changes. Used only to take
    /// back a submission that was refused before anyone saw it (a cost rule said no).
    async fn task_delete(&self, id: &str, version: u64) -> StoreResult<bool>;

    /// Newest first; see [`TaskQuery`].
    async fn task_list(&self, query: &TaskQuery) -> StoreResult<TaskPage>;

    async fn task_counts(&self) -> StoreResult<TaskCounts>;

    /// How many tasks each of up to [`MAX_INDEX_COUNTS`] indexes holds, in order, in one
    /// read (a batch's progress by state), without reading them.
    async fn index_counts(&self, keys: &[String]) -> StoreResult<Vec<u64>>;

    // ---- key/value ---------------------------------------------------------------------

    async fn kv_get(&self, key: &str) -> StoreResult<Option<Vec<u8>>>;
    async fn kv_set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> StoreResult<()>;
    /// Sets only if absent (or expired). `Ok(true)` if this call set it.
    async fn kv_set_nx(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> StoreResult<bool>;
    /// Sets only if present (and live): an update that must not bring back what another
    /// request just deleted (a session touched while it is signed out). `Ok(true)` if set.
    async fn kv_replace(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> StoreResult<bool>;
    /// `Ok(true)` if something was deleted.
    async fn kv_delete(&self, key: &str) -> StoreResult<bool>;

    // ---- counters ----------------------------------------------------------------------

    /// Adds `delta` and returns the new value. `ttl` is applied only when the counter is
    /// created, so a window starts at its first event and ends on time.
    async fn counter_add(&self, key: &str, delta: i64, ttl: Option<Duration>) -> StoreResult<i64>;
    async fn counter_get(&self, key: &str) -> StoreResult<i64>;

    // ---- reservations ------------------------------------------------------------------

    /// Checks every scope and, only if all fit, claims `amount` in each — in one atomic step.
    async fn reserve(&self, req: &ReserveRequest) -> StoreResult<ReserveOutcome>;

    /// Turns a hold into its final amount: each scope it touched moves by `actual - amount`
    /// (0 releases it entirely). `Ok(false)` if there is no such hold (settled already,
    /// expired, or never made): nothing changes, so settling twice is harmless.
    async fn settle(&self, id: &str, actual: i64) -> StoreResult<bool>;

    /// What a scope holds now (a window counts only its live entries).
    async fn usage(&self, scope: &Scope) -> StoreResult<i64>;

    /// [`Store::usage`] of up to [`MAX_USAGE_BATCH`] scopes, in order, in one round trip
    /// (the Ledger reads a breakdown's hundreds of running totals at once).
    async fn usage_many(&self, scopes: &[Scope]) -> StoreResult<Vec<i64>> {
        check::usage_batch(scopes)?;
        let mut out = Vec::with_capacity(scopes.len());
        for s in scopes {
            out.push(self.usage(s).await?);
        }
        Ok(out)
    }

    // ---- append-only logs --------------------------------------------------------------

    /// Appends `entry` to `log` and returns its sequence number (1, 2, 3… per log, never
    /// reused). Entries are never changed; only the oldest beyond `keep` are dropped.
    async fn log_append(&self, log: &str, entry: &[u8], keep: usize) -> StoreResult<u64>;

    /// Up to `limit` entries of `log` with a sequence number below `before` (all if `None`),
    /// newest first.
    async fn log_read(&self, log: &str, before: Option<u64>, limit: usize) -> StoreResult<Vec<LogEntry>>;

    // ---- leases ------------------------------------------------------------------------

    /// Takes or renews a lease. `Ok(true)` if `holder` holds it for `ttl` from now.
    async fn lease_acquire(&self, name: &str, holder: &str, ttl: Duration) -> StoreResult<bool>;
    /// Gives a lease back if `holder` holds it.
    async fn lease_release(&self, name: &str, holder: &str) -> StoreResult<bool>;

    // ---- live events -------------------------------------------------------------------

    /// Sends to every current subscriber of `channel`, on every instance.
    async fn publish(&self, channel: &str, payload: &[u8]) -> StoreResult<()>;
    /// Messages published after this call returns.
    async fn subscribe(&self, channel: &str) -> StoreResult<EventStream>;
}

/// Reads a JSON document kept under one key (its default when absent).
pub async fn read_doc<T: Default + serde::de::DeserializeOwned>(store: &dyn Store, key: &str) -> StoreResult<T> {
    match store.kv_get(key).await? {
        Some(b) => serde_json::from_slice(&b).map_err(|e| StoreError::Corrupt(format!("{key}: {e}"))),
        None => Ok(T::default()),
    }
}

/// Reads, changes and writes back a JSON document under a lease, so that edits from several
/// instances never overwrite each other. If `change` fails, nothing is written.
pub async fn edit_doc<T, R, E>(store: &dyn Store, key: &str, change: impl FnOnce(&mut T) -> Result<R, E>) -> Result<R, E>
where
    T: Default + Serialize + serde::de::DeserializeOwned,
    E: From<StoreError>,
{
    let lease = format!("{key}:edit");
    let holder = crate::secret::random_hex(8);
    let mut tries = 0;
    while !store.lease_acquire(&lease, &holder, Duration::from_secs(5)).await? {
        tries += 1;
        if tries > 100 {
            return Err(StoreError::Unavailable(format!("{key} is being edited elsewhere; try again")).into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let result = async {
        let mut doc: T = read_doc(store, key).await?;
        let out = change(&mut doc)?;
        let bytes = serde_json::to_vec(&doc).map_err(|e| StoreError::Invalid(e.to_string()))?;
        store.kv_set(key, &bytes, None).await?;
        Ok(out)
    }
    .await;
    store.lease_release(&lease, &holder).await?;
    result
}

/// Checks shared by both backends, so that both refuse the same bad requests.
pub(crate) mod check {
    use super::*;

    pub fn key(key: &str) -> StoreResult<()> {
        if key.is_empty() || key.len() > 512 {
            return Err(StoreError::Invalid(format!("key must be 1..=512 bytes, got {}", key.len())));
        }
        Ok(())
    }

    pub fn value(v: &[u8]) -> StoreResult<()> {
        if v.len() > MAX_VALUE_BYTES {
            return Err(StoreError::Invalid(format!("value of {} bytes exceeds {MAX_VALUE_BYTES}", v.len())));
        }
        Ok(())
    }

    pub fn ttl(ttl: Option<Duration>) -> StoreResult<()> {
        if ttl.is_some_and(|t| t.as_millis() == 0) {
            return Err(StoreError::Invalid("ttl must be at least 1 ms".into()));
        }
        Ok(())
    }

    pub fn task(t: &TaskRecord) -> StoreResult<()> {
        key(&t.id)?;
        if t.id.contains('|') {
            return Err(StoreError::Invalid("task id must not contain '|'".into()));
        }
        if t.version == 0 {
            return Err(StoreError::Invalid("task version starts at 1".into()));
        }
        Ok(())
    }

    /// A batch of [`Store::usage_many`]: at most [`MAX_USAGE_BATCH`] scopes, each key valid.
    pub fn usage_batch(scopes: &[Scope]) -> StoreResult<()> {
        if scopes.len() > MAX_USAGE_BATCH {
            return Err(StoreError::Invalid(format!("at most {MAX_USAGE_BATCH} scopes in one read, got {}", scopes.len())));
        }
        scopes.iter().try_for_each(|s| key(&s.key))
    }

    /// A read of [`Store::index_counts`]: at most [`MAX_INDEX_COUNTS`] keys, each valid.
    pub fn index_counts(keys: &[String]) -> StoreResult<()> {
        if keys.len() > MAX_INDEX_COUNTS {
            return Err(StoreError::Invalid(format!("at most {MAX_INDEX_COUNTS} indexes in one count, got {}", keys.len())));
        }
        keys.iter().try_for_each(|k| key(k))
    }

    /// An amount of a reservation or settlement: 0..=[`MAX_AMOUNT`].
    pub fn amount(what: &str, v: i64) -> StoreResult<()> {
        if !(0..=MAX_AMOUNT).contains(&v) {
            return Err(StoreError::Invalid(format!("{what} must be 0..={MAX_AMOUNT}, got {v}")));
        }
        Ok(())
    }

    pub fn create(t: &TaskRecord, with: &CreateWith<'_>) -> StoreResult<()> {
        let CreateWith { lookups, announce, unchanged, holds, log: line } = *with;
        task(t)?;
        if holds.len() > MAX_HOLDS {
            return Err(StoreError::Invalid(format!("at most {MAX_HOLDS} holds with one record, got {}", holds.len())));
        }
        for (i, h) in holds.iter().enumerate() {
            reserve(h)?;
            if holds[..i].iter().any(|g| g.id == h.id) {
                return Err(StoreError::Invalid(format!("hold {} appears twice", h.id)));
            }
            if let Some(s) = h.scopes.iter().find(|s| holds[..i].iter().flat_map(|g| &g.scopes).any(|o| o.key == s.key)) {
                return Err(StoreError::Invalid(format!("scope {} appears in two holds", s.key)));
            }
        }
        if let Some(l) = line {
            log(l.log, l.keep)?;
            value(l.entry)?;
        }
        if let Some(u) = unchanged {
            key(&u.key)?;
            if u.sha1.as_ref().is_some_and(|h| h.len() != 40 || !h.bytes().all(|b| b.is_ascii_hexdigit())) {
                return Err(StoreError::Invalid("a SHA-1 is 40 hex digits".into()));
            }
        }
        for l in lookups {
            key(&l.key)?;
            value(&l.value)?;
            ttl(l.ttl)?;
        }
        announce.map_or(Ok(()), announcement)
    }

    pub fn update(t: &TaskRecord, with: &UpdateWith<'_>) -> StoreResult<()> {
        task(t)?;
        if with.settles.len() > MAX_HOLDS || with.charges.len() > MAX_HOLDS {
            return Err(StoreError::Invalid(format!("at most {MAX_HOLDS} settlements and {MAX_HOLDS} charges with one record")));
        }
        for (id, actual) in with.settles {
            key(id)?;
            amount("settled amount", *actual)?;
        }
        with.charges.iter().try_for_each(reserve)?;
        with.announce.map_or(Ok(()), announcement)
    }

    pub fn announcement(a: &Announcement) -> StoreResult<()> {
        key(&a.seq_key)?;
        key(&a.channel)?;
        key(&format!("{}{}", a.log_prefix, u64::MAX))?;
        value(&a.message(u64::MAX))?;
        ttl(Some(a.keep))
    }

    pub fn log(log: &str, limit_or_keep: usize) -> StoreResult<()> {
        key(log)?;
        if limit_or_keep == 0 {
            return Err(StoreError::Invalid("a log page or bound must be at least 1".into()));
        }
        Ok(())
    }

    pub fn reserve(req: &ReserveRequest) -> StoreResult<()> {
        key(&req.id)?;
        amount("reservation amount", req.amount)?;
        if req.scopes.is_empty() || req.scopes.len() > MAX_SCOPES {
            return Err(StoreError::Invalid(format!("a reservation needs 1..={MAX_SCOPES} scopes")));
        }
        for s in &req.scopes {
            key(&s.key)?;
            if s.limit < 0 {
                return Err(StoreError::Invalid(format!("scope {} has a negative limit", s.key)));
            }
            if s.window.is_some_and(|w| w.as_millis() == 0) {
                return Err(StoreError::Invalid("a window must be at least 1 ms".into()));
            }
        }
        for (i, a) in req.scopes.iter().enumerate() {
            if req.scopes[..i].iter().any(|b| b.key == a.key) {
                return Err(StoreError::Invalid(format!("scope {} appears twice", a.key)));
            }
        }
        ttl(req.hold_ttl)
    }
}

/// The store's epoch: a random id written once, when a deployment first starts on an empty
/// store. Every instance remembers the epoch it started with; if the key vanishes while it
/// runs (the store was wiped, or a Redis without persistence restarted), the instance stops
/// acting on it rather than start over silently with empty budgets and no tasks.
pub mod epoch {
    use super::{Store, StoreResult};

    const KEY: &str = "epoch";

    /// The epoch, written now if the store has none. Returns it, and whether it was written.
    pub async fn claim(store: &dyn Store) -> StoreResult<(String, bool)> {
        let mine = crate::secret::random_hex(8);
        let fresh = store.kv_set_nx(KEY, mine.as_bytes(), None).await?;
        let now = store.kv_get(KEY).await?.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or(mine);
        Ok((now, fresh))
    }

    /// Whether the store still carries `expected`.
    pub async fn holds(store: &dyn Store, expected: &str) -> StoreResult<bool> {
        Ok(store.kv_get(KEY).await?.is_some_and(|b| b == expected.as_bytes()))
    }
}

/// Milliseconds since the Unix epoch by this machine's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
