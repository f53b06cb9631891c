//! How long a model typically takes at KIE: from `createTask` accepted to success, averaged
//! over the successes of up to the last [`WINDOW`] (two counters per model that start afresh
//! when their window ends). The Monitor sets a generating task's time so far against it ("is
//! it stuck, or is KIE busy?"). A statistic, not money: a success counted twice or missed in a
//! crash moves an average, nothing else.

use std::time::Duration;

use crate::store::{Store, StoreResult};

/// How long a model's average runs before it starts afresh.
pub const WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
/// Successes an average needs before it is shown.
pub const MIN_SAMPLES: i64 = 3;
/// Most models one read looks up.
pub const MAX_MODELS: usize = 32;

fn keys(model: &str) -> (String, String) {
    (format!("typical:{model}:n"), format!("typical:{model}:ms"))
}

/// Counts one success of `model` that took `took_ms` at KIE.
pub async fn record(store: &dyn Store, model: &str, took_ms: u64) -> StoreResult<()> {
    let (n, ms) = keys(model);
    store.counter_add(&n, 1, Some(WINDOW)).await?;
    store.counter_add(&ms, took_ms.min(i64::MAX as u64 / 2) as i64, Some(WINDOW)).await?;
    Ok(())
}

/// The typical time of each of `models` that has one (at least [`MIN_SAMPLES`] successes), ms.
pub async fn read(store: &dyn Store, models: &[String]) -> StoreResult<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for m in models.iter().take(MAX_MODELS) {
        let (n, ms) = keys(m);
        let count = store.counter_get(&n).await?;
        if count >= MIN_SAMPLES {
            out.push((m.clone(), (store.counter_get(&ms).await?.max(0) / count) as u64));
        }
    }
    Ok(out)
}
