//! Embedded backend: one instance, no setup. A `redb` database file under `DATA_DIR` holds
//! everything; every write is one durable transaction (redb serialises writers), so each trait
//! method is atomic and a crash loses no acknowledged write. Live events go through an
//! in-process broadcast, which is all a single instance needs.
//!
//! redb is synchronous; every call runs on tokio's blocking pool.

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

use super::{Created, CreateWith, UpdateWith, EventStream, LogEntry, Unchanged, MAX_LOG_PAGE, Refusal, ReserveOutcome, ReserveRequest, Scope, Store, StoreError, StoreResult, check, now_ms};
use crate::tasks::task::{TaskCounts, TaskPage, TaskQuery, TaskRecord, TaskState, index};

/// id → record JSON.
const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
/// (index, member) → (). Members sort by creation time then id.
const TASK_INDEX: TableDefinition<(&str, &str), ()> = TableDefinition::new("task_index");
/// index → how many members it has, kept with the index in the same transactions, so that
/// counting tasks (the strip, the Status panel, `/metrics`) is one read whatever the history.
/// [`SIZES_BUILT`] in it says the counts cover every index (a store from before them is
/// counted once, at open).
const INDEX_SIZES: TableDefinition<&str, u64> = TableDefinition::new("index_sizes");
const SIZES_BUILT: &str = "\u{0}built";
/// In [`INDEX_SIZES`]: the Error Review's index was built (see [`seed_review`]).
const REVIEW_SEEDED: &str = "\u{0}review-seeded";
/// In [`INDEX_SIZES`]: the per-state indexes of projects, people and models were built (see
/// [`seed_facets`]).
const FACETS_SEEDED: &str = "\u{0}facets-seeded";
/// key → (expires at ms or 0, value).
const KV: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("kv");
/// key → (value, expires at ms or 0).
const COUNTERS: TableDefinition<&str, (i64, u64)> = TableDefinition::new("counters");
/// (window key, time ms, id) → amount.
const WINDOWS: TableDefinition<(&str, u64, &str), i64> = TableDefinition::new("windows");
/// (window key, id) → time ms, to find an entry by id when settling.
const WINDOW_IDS: TableDefinition<(&str, &str), u64> = TableDefinition::new("window_ids");
/// window key → running sum of its entries, so a reservation never re-adds the whole window.
const WINDOW_SUMS: TableDefinition<&str, i64> = TableDefinition::new("window_sums");
/// reservation id → (expires at ms or 0, hold JSON).
const HOLDS: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("holds");
/// (log, sequence number) → entry.
const LOGS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("logs");
/// log → its last sequence number.
const LOG_SEQ: TableDefinition<&str, u64> = TableDefinition::new("log_seq");
/// lease name → (holder, expires at ms).
const LEASES: TableDefinition<&str, (&str, u64)> = TableDefinition::new("leases");

/// Capacity of each in-process event channel; a subscriber that falls further behind skips.
const EVENT_BUFFER: usize = 4096;
/// Most index entries one listing examines before it returns a short page with a cursor.
const LIST_SCAN_CAP: usize = 10_000;
const DB_FILE: &str = "control-room.redb";
/// How often expired rows are purged while the store is open.
const PURGE_EVERY: Duration = Duration::from_secs(10 * 60);

/// What a hold remembers so that [`Store::settle`] can undo or adjust it.
#[derive(Serialize, Deserialize)]
struct Hold {
    amount: i64,
    scopes: Vec<HoldScope>,
}

#[derive(Serialize, Deserialize)]
struct HoldScope {
    key: String,
    /// 0 for a running total.
    window_ms: u64,
}

/// The embedded [`Store`].
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    channels: Arc<Mutex<HashMap<String, broadcast::Sender<Vec<u8>>>>>,
    /// When expired rows were last purged (Unix ms).
    last_purge: Arc<AtomicU64>,
    purge_every: Duration,
}

fn fail(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("embedded store: {e}"))
}

fn deadline(ttl: Option<Duration>) -> u64 {
    ttl.map_or(0, |t| now_ms().saturating_add(t.as_millis() as u64))
}

fn live(expires: u64, now: u64) -> bool {
    expires == 0 || expires > now
}

fn decode_task(raw: &[u8]) -> StoreResult<TaskRecord> {
    serde_json::from_slice(raw).map_err(|e| StoreError::Corrupt(format!("task record: {e}")))
}

/// How long opening waits for a holder that is letting go of the database.
const RELEASE_WAIT: Duration = Duration::from_secs(2);

impl EmbeddedStore {
    /// Opens (or creates) the database in `dir`. Fails clearly if the directory cannot be
    /// written or another process holds the database.
    pub fn open(dir: &Path) -> StoreResult<Self> {
        Self::open_with(dir, PURGE_EVERY)
    }

    /// [`EmbeddedStore::open`] with expired rows purged every `purge_every` while running.
    pub fn open_with(dir: &Path, purge_every: Duration) -> StoreResult<Self> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(DB_FILE);
        // A holder that is letting go (its last operations finishing on the blocking pool, as
        // in a restart within one process) gets a moment before the file counts as taken.
        let deadline = std::time::Instant::now() + RELEASE_WAIT;
        let opened = loop {
            match Database::create(&path) {
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(25)),
                other => break other,
            }
        };
        let db = opened.map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Unavailable(format!(
                "{} is in use by another process (run one instance per DATA_DIR, or set REDIS_URL)",
                path.display()
            )),
            other => StoreError::Unavailable(format!("cannot open {}: {other}", path.display())),
        })?;
        let store = EmbeddedStore { db: Arc::new(db), channels: Arc::default(), last_purge: Arc::new(AtomicU64::new(now_ms())), purge_every };
        store.write_sync(|tx| {
            // Create every table up front so that readers never meet a missing one.
            tx.open_table(TASKS)?;
            tx.open_table(TASK_INDEX)?;
            tx.open_table(INDEX_SIZES)?;
            tx.open_table(KV)?;
            tx.open_table(COUNTERS)?;
            tx.open_table(WINDOWS)?;
            tx.open_table(WINDOW_IDS)?;
            tx.open_table(WINDOW_SUMS)?;
            tx.open_table(HOLDS)?;
            tx.open_table(LEASES)?;
            tx.open_table(LOGS)?;
            tx.open_table(LOG_SEQ)?;
            Ok(())
        })?;
        store.write_sync(build_index_sizes)?;
        store.write_sync(seed_review)?;
        store.write_sync(seed_facets)?;
        store.purge_expired_sync()?;
        Ok(store)
    }

    fn write_sync<T>(&self, f: impl FnOnce(&WriteTransaction) -> Result<T, StoreError>) -> StoreResult<T> {
        let tx = self.db.begin_write().map_err(fail)?;
        let out = f(&tx)?;
        tx.commit().map_err(fail)?;
        self.purge_if_due();
        Ok(out)
    }

    /// While running, expired rows are purged every `purge_every` (10 minutes), after a write (one
    /// writer wins the turn; the others go on).
    fn purge_if_due(&self) {
        let now = now_ms();
        let last = self.last_purge.load(Ordering::Relaxed);
        if now.saturating_sub(last) < self.purge_every.as_millis() as u64
            || self.last_purge.compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed).is_err()
        {
            return;
        }
        if let Err(e) = self.purge_expired_sync() {
            tracing::warn!(error = %e, "embedded store: cannot purge expired rows; will try again");
        }
    }

    /// Runs a write transaction on the blocking pool. An `Err` from `f` aborts it: nothing is
    /// written.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreResult<T> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.write_sync(f)).await.map_err(fail)?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreResult<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_read().map_err(fail)?;
            f(&tx)
        })
        .await
        .map_err(fail)?
    }

    /// Sets `key` only if a live value is there (`present`) or is not (`!present`).
    async fn kv_set_if(&self, key: &str, value: &[u8], ttl: Option<Duration>, present: bool) -> StoreResult<bool> {
        check::key(key)?;
        check::value(value)?;
        check::ttl(ttl)?;
        let (key, value, exp) = (key.to_string(), value.to_vec(), deadline(ttl));
        self.write(move |tx| {
            let mut t = tx.open_table(KV)?;
            let now = now_ms();
            if t.get(key.as_str())?.is_some_and(|g| live(g.value().0, now)) != present {
                return Ok(false);
            }
            t.insert(key.as_str(), (exp, value.as_slice()))?;
            Ok(true)
        })
        .await
    }

    /// Rows in the key/value table, live or expired but not yet purged (diagnostics, tests).
    pub async fn kv_rows(&self) -> StoreResult<u64> {
        self.read(|tx| Ok(tx.open_table(KV)?.len()?)).await
    }

    /// Drops expired key/values, counters, holds and leases (they are already invisible;
    /// this reclaims the space). Runs at open and every [`PURGE_EVERY`] while running.
    fn purge_expired_sync(&self) -> StoreResult<()> {
        let now = now_ms();
        let tx = self.db.begin_write().map_err(fail)?;
        {
            let tx = &tx;
            tx.open_table(KV)?.retain(|_, (exp, _)| live(exp, now))?;
            tx.open_table(COUNTERS)?.retain(|_, (_, exp)| live(exp, now))?;
            tx.open_table(HOLDS)?.retain(|_, (exp, _)| live(exp, now))?;
            tx.open_table(LEASES)?.retain(|_, (_, exp)| exp > now)?;
        }
        tx.commit().map_err(fail)
    }
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        fail(e)
    }
}
impl From<redb::TableError> for StoreError {
    fn from(e: redb::TableError) -> Self {
        fail(e)
    }
}
impl From<redb::StorageError> for StoreError {
    fn from(e: redb::StorageError) -> Self {
        fail(e)
    }
}

/// Inserts a task's index entries (and counts the new ones).
fn index_add(tx: &WriteTransaction, t: &TaskRecord) -> StoreResult<()> {
    let mut idx = tx.open_table(TASK_INDEX)?;
    let mut sizes = tx.open_table(INDEX_SIZES)?;
    let member = t.index_member();
    for key in t.index_keys() {
        if idx.insert((key.as_str(), member.as_str()), ())?.is_none() {
            resize(&mut sizes, &key, 1)?;
        }
    }
    Ok(())
}

/// Moves a record's index entries from `old` to `new`: those it no longer has are removed, and
/// those it has are inserted (a no-op for the ones already there, so an entry a version before
/// this one did not write is written now); all of them move if its member changed.
fn index_move(tx: &WriteTransaction, old: &TaskRecord, new: &TaskRecord) -> StoreResult<()> {
    let (was, is) = (old.index_member(), new.index_member());
    if was != is {
        index_remove(tx, old)?;
        return index_add(tx, new);
    }
    let (before, after) = (old.index_keys(), new.index_keys());
    let mut idx = tx.open_table(TASK_INDEX)?;
    let mut sizes = tx.open_table(INDEX_SIZES)?;
    for key in before.iter().filter(|k| !after.contains(k)) {
        if idx.remove((key.as_str(), was.as_str()))?.is_some() {
            resize(&mut sizes, key, -1)?;
        }
    }
    for key in &after {
        if idx.insert((key.as_str(), is.as_str()), ())?.is_none() {
            resize(&mut sizes, key, 1)?;
        }
    }
    Ok(())
}

fn index_remove(tx: &WriteTransaction, t: &TaskRecord) -> StoreResult<()> {
    let mut idx = tx.open_table(TASK_INDEX)?;
    let mut sizes = tx.open_table(INDEX_SIZES)?;
    let member = t.index_member();
    for key in t.index_keys() {
        if idx.remove((key.as_str(), member.as_str()))?.is_some() {
            resize(&mut sizes, &key, -1)?;
        }
    }
    Ok(())
}

/// Moves an index's member count by `delta` (an index with none has no row).
fn resize(sizes: &mut redb::Table<&str, u64>, key: &str, delta: i64) -> StoreResult<()> {
    let now = sizes.get(key)?.map_or(0, |g| g.value());
    match now.saturating_add_signed(delta) {
        0 => {
            sizes.remove(key)?;
        }
        n => {
            sizes.insert(key, n)?;
        }
    }
    Ok(())
}

/// Counts every index once, for a store written before the counts were kept.
fn build_index_sizes(tx: &WriteTransaction) -> StoreResult<()> {
    let mut sizes = tx.open_table(INDEX_SIZES)?;
    if sizes.get(SIZES_BUILT)?.is_some() {
        return Ok(());
    }
    let mut counted: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    let idx = tx.open_table(TASK_INDEX)?;
    for row in idx.iter()? {
        let (k, _) = row?;
        *counted.entry(k.value().0.to_string()).or_default() += 1;
    }
    for (key, n) in counted {
        sizes.insert(key.as_str(), n)?;
    }
    sizes.insert(SIZES_BUILT, 1)?;
    Ok(())
}

/// Builds the Error Review's index once in a store written before it was kept: every failure
/// on record then is still to review.
fn seed_review(tx: &WriteTransaction) -> StoreResult<()> {
    let mut sizes = tx.open_table(INDEX_SIZES)?;
    if sizes.get(REVIEW_SEEDED)?.is_some() {
        return Ok(());
    }
    let mut idx = tx.open_table(TASK_INDEX)?;
    let mut members = Vec::new();
    for seed in index::TO_REVIEW_SEEDS {
        for row in idx.range((seed, "")..=(seed, "\u{10FFFF}"))? {
            members.push(row?.0.value().1.to_string());
        }
    }
    for m in members {
        if idx.insert((index::TO_REVIEW, m.as_str()), ())?.is_none() {
            resize(&mut sizes, index::TO_REVIEW, 1)?;
        }
    }
    sizes.insert(REVIEW_SEEDED, 1)?;
    Ok(())
}

/// Builds the per-state indexes of each project, person and model ([`index::facet`]) once in
/// a store written before they were kept, from the dimensions' and the states' own indexes
/// (in the one write transaction, so no write comes between).
fn seed_facets(tx: &WriteTransaction) -> StoreResult<()> {
    let mut sizes = tx.open_table(INDEX_SIZES)?;
    if sizes.get(FACETS_SEEDED)?.is_some() {
        return Ok(());
    }
    let mut idx = tx.open_table(TASK_INDEX)?;
    let mut state_of: HashMap<String, TaskState> = HashMap::new();
    for s in TaskState::ALL {
        let key = index::state(s);
        for row in idx.range((key.as_str(), "")..=(key.as_str(), "\u{10FFFF}"))? {
            state_of.insert(row?.0.value().1.to_string(), s);
        }
    }
    let mut rows = Vec::new();
    for dimension in index::FACETS {
        // Every index named `<dimension>:<value>`: `;` is the character after `:`.
        let (from, to) = (format!("{dimension}:"), format!("{dimension};"));
        for row in idx.range((from.as_str(), "")..(to.as_str(), ""))? {
            let (k, _) = row?;
            let (key, member) = k.value();
            if let (Some(value), Some(s)) = (key.strip_prefix(&from), state_of.get(member)) {
                rows.push((index::facet(dimension, value, *s), member.to_string()));
            }
        }
    }
    for (key, member) in rows {
        if idx.insert((key.as_str(), member.as_str()), ())?.is_none() {
            resize(&mut sizes, &key, 1)?;
        }
    }
    sizes.insert(FACETS_SEEDED, 1)?;
    Ok(())
}

/// Drops a window's entries at or before `now - window` and returns its live sum.
fn window_prune(tx: &WriteTransaction, key: &str, window_ms: u64, now: u64) -> StoreResult<i64> {
    let cutoff = now.saturating_sub(window_ms);
    let mut windows = tx.open_table(WINDOWS)?;
    let mut expired = Vec::new();
    for row in windows.range((key, 0u64, "")..=(key, cutoff, "\u{10FFFF}"))? {
        let (k, v) = row?;
        let (_, ts, id) = k.value();
        expired.push((ts, id.to_string(), v.value()));
    }
    let gone: i64 = expired.iter().map(|(_, _, a)| a).sum();
    let mut ids = tx.open_table(WINDOW_IDS)?;
    for (ts, id, _) in &expired {
        windows.remove((key, *ts, id.as_str()))?;
        ids.remove((key, id.as_str()))?;
    }
    window_add(tx, key, -gone)
}

/// Moves a window's running sum by `delta`; returns the new sum.
fn window_add(tx: &WriteTransaction, key: &str, delta: i64) -> StoreResult<i64> {
    let mut sums = tx.open_table(WINDOW_SUMS)?;
    let sum = sums.get(key)?.map_or(0, |g| g.value()) + delta;
    if sum == 0 {
        sums.remove(key)?;
    } else {
        sums.insert(key, sum)?;
    }
    Ok(sum)
}

/// When enough of a window will have aged out for `need` more to fit (only on refusal).
fn window_retry(tx: &WriteTransaction, key: &str, window_ms: u64, need: i64, now: u64) -> StoreResult<Option<Duration>> {
    let windows = tx.open_table(WINDOWS)?;
    let mut freed = 0;
    for row in windows.range((key, 0u64, "")..=(key, u64::MAX, "\u{10FFFF}"))? {
        let (k, v) = row?;
        freed += v.value();
        if freed >= need {
            let ts = k.value().1;
            return Ok(Some(Duration::from_millis((ts + window_ms).saturating_sub(now))));
        }
    }
    Ok(None)
}

/// A counter's live value (0 if absent or expired), from any transaction's view of COUNTERS.
fn live_counter(t: &impl ReadableTable<&'static str, (i64, u64)>, key: &str, now: u64) -> StoreResult<i64> {
    Ok(t.get(key)?.map(|g| g.value()).filter(|(_, exp)| live(*exp, now)).map_or(0, |(v, _)| v))
}

fn counter_value(tx: &WriteTransaction, key: &str, now: u64) -> StoreResult<i64> {
    live_counter(&tx.open_table(COUNTERS)?, key, now)
}

/// Adds to a counter, keeping its expiry (or setting `new_expiry` if the counter is new).
fn counter_bump(tx: &WriteTransaction, key: &str, delta: i64, new_expiry: u64, now: u64) -> StoreResult<i64> {
    let mut t = tx.open_table(COUNTERS)?;
    let current = t.get(key)?.map(|g| g.value()).filter(|(_, exp)| live(*exp, now));
    let (value, exp) = match current {
        Some((v, exp)) => (v.saturating_add(delta), exp),
        None => (delta, new_expiry),
    };
    t.insert(key, (value, exp))?;
    Ok(value)
}

/// Whether a reservation fits now (see [`Store::reserve`]).
enum Fit {
    /// A hold with its id exists already.
    Held,
    Fits,
    Refused(Refusal),
}

/// Whether a live hold `id` exists.
fn hold_exists(tx: &WriteTransaction, id: &str, now: u64) -> StoreResult<bool> {
    Ok(tx.open_table(HOLDS)?.get(id)?.is_some_and(|g| live(g.value().0, now)))
}

/// Checks every scope of `req` (pruning what aged out of its windows, which changes no live
/// sum) without claiming anything.
fn hold_fit(tx: &WriteTransaction, req: &ReserveRequest, now: u64) -> StoreResult<Fit> {
    if hold_exists(tx, &req.id, now)? {
        return Ok(Fit::Held);
    }
    for (i, s) in req.scopes.iter().enumerate() {
        let used = match s.window {
            Some(w) => window_prune(tx, &s.key, w.as_millis() as u64, now)?,
            None => counter_value(tx, &s.key, now)?,
        };
        // Checked: a sum past i64 (impossible within MAX_AMOUNT) refuses, never wraps.
        let after = used.checked_add(req.amount);
        if after.is_none_or(|a| a > s.limit) {
            let need = after.map_or(i64::MAX, |a| a - s.limit);
            let retry_after = match s.window {
                Some(w) if req.amount <= s.limit => window_retry(tx, &s.key, w.as_millis() as u64, need, now)?,
                _ => None,
            };
            return Ok(Fit::Refused(Refusal { scope: i, key: s.key.clone(), used, limit: s.limit, retry_after }));
        }
    }
    Ok(Fit::Fits)
}

/// Claims `req` in every scope and keeps the hold (after [`hold_fit`] said it fits).
fn hold_take(tx: &WriteTransaction, req: &ReserveRequest, now: u64) -> StoreResult<()> {
    let mut hold = Hold { amount: req.amount, scopes: Vec::with_capacity(req.scopes.len()) };
    for s in &req.scopes {
        match s.window {
            Some(w) => {
                tx.open_table(WINDOWS)?.insert((s.key.as_str(), now, req.id.as_str()), req.amount)?;
                tx.open_table(WINDOW_IDS)?.insert((s.key.as_str(), req.id.as_str()), now)?;
                window_add(tx, &s.key, req.amount)?;
                hold.scopes.push(HoldScope { key: s.key.clone(), window_ms: w.as_millis() as u64 });
            }
            None => {
                counter_bump(tx, &s.key, req.amount, 0, now)?;
                hold.scopes.push(HoldScope { key: s.key.clone(), window_ms: 0 });
            }
        }
    }
    let json = serde_json::to_vec(&hold).map_err(|e| StoreError::Invalid(e.to_string()))?;
    tx.open_table(HOLDS)?.insert(req.id.as_str(), (deadline(req.hold_ttl), json.as_slice()))?;
    Ok(())
}

/// Settles the hold `id` to `actual` (see [`Store::settle`]); `false` if there was none.
fn hold_settle(tx: &WriteTransaction, id: &str, actual: i64, now: u64) -> StoreResult<bool> {
    let hold: Hold = {
        let mut holds = tx.open_table(HOLDS)?;
        let Some(g) = holds.remove(id)? else { return Ok(false) };
        let (exp, raw) = g.value();
        if !live(exp, now) {
            return Ok(false);
        }
        serde_json::from_slice(raw).map_err(|e| StoreError::Corrupt(format!("hold: {e}")))?
    };
    for s in &hold.scopes {
        if s.window_ms > 0 {
            let mut ids = tx.open_table(WINDOW_IDS)?;
            let Some(ts) = ids.get((s.key.as_str(), id))?.map(|g| g.value()) else { continue };
            let mut windows = tx.open_table(WINDOWS)?;
            let held = if actual == 0 {
                ids.remove((s.key.as_str(), id))?;
                windows.remove((s.key.as_str(), ts, id))?.map(|g| g.value())
            } else {
                windows.insert((s.key.as_str(), ts, id), actual)?.map(|g| g.value())
            };
            drop((ids, windows));
            if let Some(held) = held {
                window_add(tx, &s.key, actual - held)?;
            }
        } else {
            counter_bump(tx, &s.key, actual - hold.amount, 0, now)?;
        }
    }
    Ok(true)
}

/// Numbers an announcement and keeps it for replay; its number and what to publish once the
/// transaction is committed (channel, message).
fn announce_in(tx: &WriteTransaction, a: &super::Announcement, now: u64) -> StoreResult<(u64, (String, Vec<u8>))> {
    let seq = counter_bump(tx, &a.seq_key, 1, 0, now)? as u64;
    let msg = a.message(seq);
    tx.open_table(KV)?.insert(format!("{}{seq}", a.log_prefix).as_str(), (deadline(Some(a.keep)), msg.as_slice()))?;
    Ok((seq, (a.channel.clone(), msg)))
}

/// Appends to a log and drops what is beyond its bound; returns the entry's number.
fn log_add(tx: &WriteTransaction, log: &str, entry: &[u8], keep: usize) -> StoreResult<u64> {
    let mut seqs = tx.open_table(LOG_SEQ)?;
    let seq = seqs.get(log)?.map_or(0, |g| g.value()) + 1;
    seqs.insert(log, seq)?;
    let mut logs = tx.open_table(LOGS)?;
    logs.insert((log, seq), entry)?;
    // Drop what is beyond the bound (at most a few per append once the log is full).
    if let Some(cut) = seq.checked_sub(keep as u64) {
        let old: Vec<u64> = logs.range((log, 0)..=(log, cut))?.map(|r| r.map(|(k, _)| k.value().1)).collect::<Result<_, _>>()?;
        for s in old {
            logs.remove((log, s))?;
        }
    }
    Ok(seq)
}

#[async_trait]
impl Store for EmbeddedStore {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|tx| {
            tx.open_table(TASKS)?;
            Ok(())
        })
        .await
    }

    async fn task_create(&self, task: &TaskRecord, with: &CreateWith<'_>) -> StoreResult<Created> {
        check::create(task, with)?;
        let json = serde_json::to_vec(task).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let task = task.clone();
        let (lookups, announce, unchanged, holds) = (with.lookups.to_vec(), with.announce.cloned(), with.unchanged.cloned(), with.holds.to_vec());
        let line = with.log.map(|l| (l.log.to_string(), l.entry.to_vec(), l.keep));
        let written = self
            .write(move |tx| {
                let now = now_ms();
                if let Some(u) = unchanged {
                    let kv = tx.open_table(KV)?;
                    let current = kv.get(u.key.as_str())?.filter(|g| live(g.value().0, now)).map(|g| g.value().1.to_vec());
                    if Unchanged::of(&u.key, current.as_deref()) != u {
                        return Ok(Err(Created::Changed));
                    }
                }
                if tx.open_table(TASKS)?.get(task.id.as_str())?.is_some() {
                    return Ok(Err(Created::Exists));
                }
                // Every hold must fit before anything is claimed (only window pruning, which
                // changes no live sum, is committed on a refusal).
                let mut take = Vec::with_capacity(holds.len());
                for (i, h) in holds.iter().enumerate() {
                    match hold_fit(tx, h, now)? {
                        Fit::Held => {}
                        Fit::Fits => take.push(h),
                        Fit::Refused(r) => return Ok(Err(Created::Refused(i, r))),
                    }
                }
                for h in take {
                    hold_take(tx, h, now)?;
                }
                tx.open_table(TASKS)?.insert(task.id.as_str(), json.as_slice())?;
                index_add(tx, &task)?;
                {
                    let mut kv = tx.open_table(KV)?;
                    for l in &lookups {
                        kv.insert(l.key.as_str(), (deadline(l.ttl), l.value.as_slice()))?;
                    }
                }
                if let Some((log, entry, keep)) = &line {
                    log_add(tx, log, entry, *keep)?;
                }
                let Some(a) = announce else { return Ok(Ok((0, None))) };
                let (seq, message) = announce_in(tx, &a, now)?;
                Ok(Ok((seq, Some(message))))
            })
            .await?;
        let (seq, message) = match written {
            Ok(w) => w,
            Err(nothing) => return Ok(nothing),
        };
        // Published once committed, as on Redis (a subscriber never sees an unwritten task).
        if let Some((channel, msg)) = message {
            self.publish(&channel, &msg).await?;
        }
        Ok(Created::Inserted(seq))
    }

    async fn task_get(&self, id: &str) -> StoreResult<Option<TaskRecord>> {
        check::key(id)?;
        let id = id.to_string();
        self.read(move |tx| {
            let tasks = tx.open_table(TASKS)?;
            let raw = tasks.get(id.as_str())?;
            raw.map(|g| decode_task(g.value())).transpose()
        })
        .await
    }

    async fn task_update_with(&self, task: &TaskRecord, with: &UpdateWith<'_>) -> StoreResult<Option<u64>> {
        check::update(task, with)?;
        let mut next = task.clone();
        next.version = task.version + 1;
        let json = serde_json::to_vec(&next).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let settles: Vec<(String, i64)> = with.settles.iter().map(|(id, a)| (id.to_string(), *a)).collect();
        let (charges, announce) = (with.charges.to_vec(), with.announce.cloned());
        let written = self.write(move |tx| {
            let mut tasks = tx.open_table(TASKS)?;
            let old = match tasks.get(next.id.as_str())? {
                Some(g) => decode_task(g.value())?,
                None => return Ok(None),
            };
            if old.version + 1 != next.version {
                return Ok(None);
            }
            tasks.insert(next.id.as_str(), json.as_slice())?;
            drop(tasks);
            index_move(tx, &old, &next)?;
            let now = now_ms();
            for (id, actual) in &settles {
                hold_settle(tx, id, *actual, now)?;
            }
            for c in &charges {
                if !hold_exists(tx, &c.id, now)? {
                    hold_take(tx, c, now)?;
                }
            }
            let message = announce.map(|a| announce_in(tx, &a, now).map(|(_, m)| m)).transpose()?;
            Ok(Some((next.version, message)))
        })
        .await?;
        let Some((version, message)) = written else { return Ok(None) };
        // Published once committed, as on Redis.
        if let Some((channel, msg)) = message {
            self.publish(&channel, &msg).await?;
        }
        Ok(Some(version))
    }

    async fn task_delete(&self, id: &str, version: u64) -> StoreResult<bool> {
        check::key(id)?;
        let id = id.to_string();
        self.write(move |tx| {
            let mut tasks = tx.open_table(TASKS)?;
            let old = match tasks.get(id.as_str())? {
                Some(g) => decode_task(g.value())?,
                None => return Ok(false),
            };
            if old.version != version {
                return Ok(false);
            }
            tasks.remove(id.as_str())?;
            drop(tasks);
            index_remove(tx, &old)?;
            Ok(true)
        })
        .await
    }

    async fn task_list(&self, query: &TaskQuery) -> StoreResult<TaskPage> {
        let query = query.clone();
        self.read(move |tx| {
            let idx = tx.open_table(TASK_INDEX)?;
            let tasks = tx.open_table(TASKS)?;
            let driving = query.driving_index();
            let want = query.page_size();
            let mut page = TaskPage::default();
            let Some((low, high)) = query.member_range() else { return Ok(page) };
            // Within the driving index's rows: an open end is its first or last member.
            fn row<'a>(driving: &'a str, b: &'a Bound<String>, open: &'static str) -> Bound<(&'a str, &'a str)> {
                match b {
                    Bound::Included(m) => Bound::Included((driving, m.as_str())),
                    Bound::Excluded(m) => Bound::Excluded((driving, m.as_str())),
                    Bound::Unbounded => Bound::Included((driving, open)),
                }
            }
            let range = idx.range((row(&driving, &low, ""), row(&driving, &high, "\u{10FFFF}")))?;
            let rows: Box<dyn Iterator<Item = _>> = if query.oldest_first { Box::new(range) } else { Box::new(range.rev()) };
            for (scanned, row) in rows.enumerate() {
                let (k, _) = row?;
                let (_, member) = k.value();
                let id = index::id_of(member);
                if let Some(raw) = tasks.get(id)? {
                    let t = decode_task(raw.value())?;
                    if query.matches(&t) {
                        page.tasks.push(t);
                    }
                }
                if page.tasks.len() == want || scanned + 1 >= LIST_SCAN_CAP {
                    page.next = Some(member.to_string());
                    break;
                }
            }
            Ok(page)
        })
        .await
    }

    async fn task_counts(&self) -> StoreResult<TaskCounts> {
        self.read(|tx| {
            let sizes = tx.open_table(INDEX_SIZES)?;
            let count = |name: &str| -> StoreResult<u64> { Ok(sizes.get(name)?.map_or(0, |g| g.value())) };
            let total = tx.open_table(TASKS)?.len()?;
            let mut by_state = Vec::with_capacity(TaskState::ALL.len());
            for s in TaskState::ALL {
                by_state.push((s, count(&index::state(s))?));
            }
            Ok(TaskCounts { total, by_state, to_review: count(index::TO_REVIEW)? })
        })
        .await
    }

    async fn index_counts(&self, keys: &[String]) -> StoreResult<Vec<u64>> {
        check::index_counts(keys)?;
        let keys = keys.to_vec();
        self.read(move |tx| {
            let sizes = tx.open_table(INDEX_SIZES)?;
            keys.iter().map(|k| Ok(sizes.get(k.as_str())?.map_or(0, |g| g.value()))).collect()
        })
        .await
    }

    async fn kv_get(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        check::key(key)?;
        let key = key.to_string();
        self.read(move |tx| {
            let t = tx.open_table(KV)?;
            let now = now_ms();
            let Some(g) = t.get(key.as_str())? else { return Ok(None) };
            let (exp, value) = g.value();
            Ok(live(exp, now).then(|| value.to_vec()))
        })
        .await
    }

    async fn kv_set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> StoreResult<()> {
        check::key(key)?;
        check::value(value)?;
        check::ttl(ttl)?;
        let (key, value, exp) = (key.to_string(), value.to_vec(), deadline(ttl));
        self.write(move |tx| {
            tx.open_table(KV)?.insert(key.as_str(), (exp, value.as_slice()))?;
            Ok(())
        })
        .await
    }

    async fn kv_set_nx(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> StoreResult<bool> {
        self.kv_set_if(key, value, ttl, false).await
    }

    async fn kv_replace(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> StoreResult<bool> {
        self.kv_set_if(key, value, ttl, true).await
    }

    async fn kv_delete(&self, key: &str) -> StoreResult<bool> {
        check::key(key)?;
        let key = key.to_string();
        self.write(move |tx| {
            let now = now_ms();
            let removed = tx.open_table(KV)?.remove(key.as_str())?.is_some_and(|g| live(g.value().0, now));
            Ok(removed)
        })
        .await
    }

    async fn counter_add(&self, key: &str, delta: i64, ttl: Option<Duration>) -> StoreResult<i64> {
        check::key(key)?;
        check::ttl(ttl)?;
        let (key, exp) = (key.to_string(), deadline(ttl));
        self.write(move |tx| counter_bump(tx, &key, delta, exp, now_ms())).await
    }

    async fn counter_get(&self, key: &str) -> StoreResult<i64> {
        check::key(key)?;
        let key = key.to_string();
        self.read(move |tx| {
            live_counter(&tx.open_table(COUNTERS)?, &key, now_ms())
        })
        .await
    }

    async fn log_append(&self, log: &str, entry: &[u8], keep: usize) -> StoreResult<u64> {
        check::log(log, keep)?;
        check::value(entry)?;
        let (log, entry) = (log.to_string(), entry.to_vec());
        self.write(move |tx| log_add(tx, &log, &entry, keep)).await
    }

    async fn log_read(&self, log: &str, before: Option<u64>, limit: usize) -> StoreResult<Vec<LogEntry>> {
        check::log(log, limit)?;
        let log = log.to_string();
        self.read(move |tx| {
            let logs = tx.open_table(LOGS)?;
            let end = before.unwrap_or(u64::MAX);
            let mut out = Vec::new();
            for r in logs.range((log.as_str(), 0)..(log.as_str(), end))?.rev().take(limit.min(MAX_LOG_PAGE)) {
                let (k, v) = r?;
                out.push(LogEntry { seq: k.value().1, data: v.value().to_vec() });
            }
            Ok(out)
        })
        .await
    }

    async fn reserve(&self, req: &ReserveRequest) -> StoreResult<ReserveOutcome> {
        check::reserve(req)?;
        let req = req.clone();
        self.write(move |tx| {
            let now = now_ms();
            Ok(match hold_fit(tx, &req, now)? {
                Fit::Held => ReserveOutcome::AlreadyHeld,
                Fit::Refused(r) => ReserveOutcome::Refused(r),
                Fit::Fits => {
                    hold_take(tx, &req, now)?;
                    ReserveOutcome::Reserved
                }
            })
        })
        .await
    }

    async fn settle(&self, id: &str, actual: i64) -> StoreResult<bool> {
        check::key(id)?;
        check::amount("settled amount", actual)?;
        let id = id.to_string();
        self.write(move |tx| hold_settle(tx, &id, actual, now_ms())).await
    }

    async fn usage(&self, scope: &Scope) -> StoreResult<i64> {
        Ok(self.usage_many(std::slice::from_ref(scope)).await?.first().copied().unwrap_or(0))
    }

    async fn usage_many(&self, scopes: &[Scope]) -> StoreResult<Vec<i64>> {
        check::usage_batch(scopes)?;
        let scopes = scopes.to_vec();
        self.read(move |tx| {
            let now = now_ms();
            let (sums, windows, counters) = (tx.open_table(WINDOW_SUMS)?, tx.open_table(WINDOWS)?, tx.open_table(COUNTERS)?);
            let mut out = Vec::with_capacity(scopes.len());
            for scope in &scopes {
                out.push(match scope.window {
                    Some(w) => {
                        // The running sum, less entries that aged out but are not pruned yet.
                        let cutoff = now.saturating_sub(w.as_millis() as u64);
                        let key = scope.key.as_str();
                        let mut sum = sums.get(key)?.map_or(0, |g| g.value());
                        for row in windows.range((key, 0u64, "")..=(key, cutoff, "\u{10FFFF}"))? {
                            sum -= row?.1.value();
                        }
                        sum
                    }
                    None => live_counter(&counters, &scope.key, now)?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn lease_acquire(&self, name: &str, holder: &str, ttl: Duration) -> StoreResult<bool> {
        check::key(name)?;
        check::key(holder)?;
        check::ttl(Some(ttl))?;
        let (name, holder, exp) = (name.to_string(), holder.to_string(), deadline(Some(ttl)));
        self.write(move |tx| {
            let mut t = tx.open_table(LEASES)?;
            let now = now_ms();
            let taken = t.get(name.as_str())?.is_some_and(|g| {
                let (h, e) = g.value();
                e > now && h != holder
            });
            if taken {
                return Ok(false);
            }
            t.insert(name.as_str(), (holder.as_str(), exp))?;
            Ok(true)
        })
        .await
    }

    async fn lease_release(&self, name: &str, holder: &str) -> StoreResult<bool> {
        check::key(name)?;
        let (name, holder) = (name.to_string(), holder.to_string());
        self.write(move |tx| {
            let mut t = tx.open_table(LEASES)?;
            let now = now_ms();
            let mine = t.get(name.as_str())?.is_some_and(|g| {
                let (h, e) = g.value();
                e > now && h == holder
            });
            if mine {
                t.remove(name.as_str())?;
            }
            Ok(mine)
        })
        .await
    }

    async fn publish(&self, channel: &str, payload: &[u8]) -> StoreResult<()> {
        check::key(channel)?;
        check::value(payload)?;
        let sender = self.channels.lock().map_err(fail)?.get(channel).cloned();
        if let Some(tx) = sender {
            // No receivers is not an error: nobody is watching.
            let _ = tx.send(payload.to_vec());
        }
        Ok(())
    }

    async fn subscribe(&self, channel: &str) -> StoreResult<EventStream> {
        check::key(channel)?;
        let rx = {
            let mut channels = self.channels.lock().map_err(fail)?;
            channels.retain(|_, tx| tx.receiver_count() > 0);
            channels.entry(channel.to_string()).or_insert_with(|| broadcast::channel(EVENT_BUFFER).0).subscribe()
        };
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(msg) => return Some((msg, rx)),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "event subscriber fell behind");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Ok(Box::pin(stream))
    }
}
