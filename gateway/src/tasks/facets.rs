//! The Monitor's counts by state for its current filter ("412 tasks · 12 queued · 380 success
//! · 20 fail"), read from the store's per-state indexes ([`index::state`], [`index::facet`])
//! in one read of eight counts: what a count costs never grows with the history. A filter
//! they cannot count exactly (a search, a time or cost range, two of project, person and model
//! at once) has no counts: its listing says only whether more pages follow.

use crate::store::{Store, StoreResult};
use crate::tasks::task::{TaskQuery, TaskState, index};

/// How many of a filter's tasks are in each state (its own state filter aside).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateCounts(pub Vec<(TaskState, u64)>);

impl StateCounts {
    pub fn total(&self) -> u64 {
        self.0.iter().map(|(_, n)| n).sum()
    }

    pub fn get(&self, s: TaskState) -> u64 {
        self.0.iter().find(|(st, _)| *st == s).map_or(0, |(_, n)| *n)
    }

    /// The tasks the filter lists: all of them, or those of its state.
    pub fn matching(&self, q: &TaskQuery) -> u64 {
        q.state.map_or_else(|| self.total(), |s| self.get(s))
    }
}

/// The indexes that count `q`'s tasks by state, in [`TaskState::ALL`]'s order, when the store
/// keeps them: no filter, or one project, person, model or batch.
fn keys(q: &TaskQuery) -> Option<Vec<String>> {
    let plain = q.text.is_none()
        && q.mark.is_none()
        && !q.delivery_pending
        && q.receipt_day.is_none()
        && q.created_from_ms.is_none()
        && q.created_before_ms.is_none()
        && q.cost_min.is_none()
        && q.cost_max.is_none();
    let narrowed = [&q.project, &q.owner, &q.model].iter().filter(|v| v.is_some()).count();
    let key: Box<dyn Fn(TaskState) -> String> = match (&q.batch, q.dimension()) {
        _ if !plain => return None,
        (Some(b), None) if narrowed == 0 => Box::new(move |s| index::batch_state(b, s)),
        (None, Some((dimension, value))) => Box::new(move |s| index::facet(dimension, value, s)),
        (None, None) if narrowed == 0 => Box::new(index::state),
        _ => return None,
    };
    Some(TaskState::ALL.into_iter().map(key).collect())
}

/// `q`'s tasks counted by state, or `None` when the store keeps no count for that filter.
pub async fn count(store: &dyn Store, q: &TaskQuery) -> StoreResult<Option<StateCounts>> {
    let Some(keys) = keys(q) else { return Ok(None) };
    let n = store.index_counts(&keys).await?;
    Ok(Some(StateCounts(TaskState::ALL.into_iter().zip(n).collect())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_filters_kept_by_state_are_counted() {
        let q = |f: fn(&mut TaskQuery)| {
            let mut q = TaskQuery::default();
            f(&mut q);
            keys(&q).map(|k| k[0].clone())
        };
        assert_eq!(q(|_| ()), Some("state:queued".into()));
        assert_eq!(q(|q| q.state = Some(TaskState::Fail)), Some("state:queued".into()), "its own state aside");
        assert_eq!(q(|q| q.project = Some("teaser".into())), Some("project-state:teaser|queued".into()));
        assert_eq!(q(|q| q.owner = Some("ana".into())), Some("owner-state:ana|queued".into()));
        assert_eq!(q(|q| q.batch = Some("b".into())), Some("batch-state:b|queued".into()));
        assert_eq!(q(|q| { q.project = Some("p".into()); q.model = Some("m".into()) }), None, "two dimensions");
        assert_eq!(q(|q| { q.batch = Some("b".into()); q.model = Some("m".into()) }), None);
        assert_eq!(q(|q| q.text = Some("kite".into())), None);
        assert_eq!(q(|q| q.created_from_ms = Some(1)), None);
        assert_eq!(q(|q| q.cost_max = Some(crate::Credits(5))), None);
    }
}
