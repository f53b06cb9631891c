//! A [`Store`] that times every operation of the store it wraps, into the metrics
//! (`control_room_store_operation_duration_seconds{backend, operation}`). What it passes on is
//! untouched: same answers, same errors.

use async_trait::async_trait;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{
    CreateWith, Created, EventStream, LogEntry, ReserveOutcome, ReserveRequest, Scope, Store, StoreResult, UpdateWith,
};
use crate::metrics::Metrics;
use crate::tasks::task::{TaskCounts, TaskPage, TaskQuery, TaskRecord};

/// `inner`, timed.
pub struct Metered {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl Metered {
    pub fn wrap(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Arc<dyn Store> {
        Arc::new(Metered { inner, metrics })
    }
}

/// The [`Store`] impl: each listed operation delegated to the inner store and timed under its
/// own name. (The whole impl is generated, so that `async_trait` sees the methods.)
macro_rules! timed_store {
    ($( $name:ident ( $($arg:ident : $ty:ty),* ) -> $out:ty; )*) => {
        #[async_trait]
        impl Store for Metered {
            fn backend(&self) -> &'static str {
                self.inner.backend()
            }
            fn failing_over(&self) -> bool {
                self.inner.failing_over()
            }
            $(
                async fn $name(&self, $($arg: $ty),*) -> $out {
                    let started = Instant::now();
                    let out = self.inner.$name($($arg),*).await;
                    self.metrics.store_op(self.inner.backend(), stringify!($name), started.elapsed());
                    out
                }
            )*
        }
    };
}

timed_store! {
    ping() -> StoreResult<()>;
    task_insert(task: &TaskRecord) -> StoreResult<bool>;
    task_create(task: &TaskRecord, with: &CreateWith<'_>) -> StoreResult<Created>;
    task_get(id: &str) -> StoreResult<Option<TaskRecord>>;
    task_update(task: &TaskRecord) -> StoreResult<Option<u64>>;
    task_update_with(task: &TaskRecord, with: &UpdateWith<'_>) -> StoreResult<Option<u64>>;
    task_delete(id: &str, version: u64) -> StoreResult<bool>;
    task_list(query: &TaskQuery) -> StoreResult<TaskPage>;
    task_counts() -> StoreResult<TaskCounts>;
    index_counts(keys: &[String]) -> StoreResult<Vec<u64>>;
    kv_get(key: &str) -> StoreResult<Option<Vec<u8>>>;
    kv_set(key: &str, value: &[u8], ttl: Option<Duration>) -> StoreResult<()>;
    kv_set_nx(key: &str, value: &[u8], ttl: Option<Duration>) -> StoreResult<bool>;
    kv_replace(key: &str, value: &[u8], ttl: Option<Duration>) -> StoreResult<bool>;
    kv_delete(key: &str) -> StoreResult<bool>;
    counter_add(key: &str, delta: i64, ttl: Option<Duration>) -> StoreResult<i64>;
    counter_get(key: &str) -> StoreResult<i64>;
    reserve(req: &ReserveRequest) -> StoreResult<ReserveOutcome>;
    settle(id: &str, actual: i64) -> StoreResult<bool>;
    usage(scope: &Scope) -> StoreResult<i64>;
    usage_many(scopes: &[Scope]) -> StoreResult<Vec<i64>>;
    log_append(log: &str, entry: &[u8], keep: usize) -> StoreResult<u64>;
    log_read(log: &str, before: Option<u64>, limit: usize) -> StoreResult<Vec<LogEntry>>;
    lease_acquire(name: &str, holder: &str, ttl: Duration) -> StoreResult<bool>;
    lease_release(name: &str, holder: &str) -> StoreResult<bool>;
    publish(channel: &str, payload: &[u8]) -> StoreResult<()>;
    subscribe(channel: &str) -> StoreResult<EventStream>;
}
