//! The tasks a person may see: the one door every read of tasks on someone's behalf goes
//! through (the Monitor, its counts, the Error Review, a task's story, re-runs). A person
//! limited to some projects ([`Membership::Only`]) is shown only theirs; a task of another project
//! is, for them, not found.
//!
//! A listing stays bounded by the page: one project's listing reads that project's index; a
//! person on several projects gets one bounded listing per project, merged by the indexes'
//! common order (creation time, then id), so the cursor is the same kind as the store's and a
//! page never skips a task another project's scan had not reached yet.

use std::cmp::Reverse;

use crate::store::{Store, StoreResult};
use crate::tasks::facets::{self, StateCounts};
use crate::tasks::lifecycle::Lifecycle;
use crate::tasks::task::{TaskPage, TaskQuery, TaskRecord, TaskState, index};
use crate::team::membership::Membership;

/// `query`'s page of the tasks `membership` sees.
pub async fn list(store: &dyn Store, membership: &Membership, query: &TaskQuery) -> StoreResult<TaskPage> {
    let projects = match (membership.projects(), &query.project) {
        (None, _) => return store.task_list(query).await,
        (Some(_), Some(p)) if membership.sees(p) => return store.task_list(query).await,
        (Some(_), Some(_)) => return Ok(TaskPage::default()),
        (Some(ps), None) => ps,
    };
    let mut tasks = Vec::new();
    // How far the least advanced of the project scans got: past it, another page may hold
    // tasks older (newer, oldest first) than what a further scan would still find.
    let mut edge: Option<String> = None;
    for p in projects {
        let page = store.task_list(&narrowest(store, TaskQuery { project: Some(p.clone()), ..query.clone() }).await?).await?;
        if let Some(next) = page.next {
            edge = Some(match edge {
                Some(e) if (e > next) != query.oldest_first => e,
                _ => next,
            });
        }
        tasks.extend(page.tasks.into_iter().map(|t| (index::member(t.created_ms, &t.id), t)));
    }
    if query.oldest_first {
        tasks.sort_by(|a, b| a.0.cmp(&b.0));
    } else {
        tasks.sort_by_key(|(m, _)| Reverse(m.clone()));
    }
    if let Some(e) = &edge {
        tasks.retain(|(m, _)| if query.oldest_first { m <= e } else { m >= e });
    }
    let want = query.page_size();
    let next = if tasks.len() > want {
        tasks.truncate(want);
        tasks.last().map(|(m, _)| m.clone())
    } else {
        edge
    };
    Ok(TaskPage { tasks: tasks.into_iter().map(|(_, t)| t).collect(), next })
}

/// `q` (one project's) read from whichever is smaller: the index it would drive by (a mark's,
/// a search word's…) or the project's own — so a small project's failures are not looked for
/// through the whole team's (one count of two indexes decides).
async fn narrowest(store: &dyn Store, mut q: TaskQuery) -> StoreResult<TaskQuery> {
    let Some(p) = q.project.clone() else { return Ok(q) };
    let (driving, own) = (q.driving_index(), index::project(&p));
    if driving != own {
        let sizes = store.index_counts(&[driving, own]).await?;
        q.by_project = sizes.get(1) < sizes.first();
    }
    Ok(q)
}

/// `query`'s tasks that `membership` sees, counted by state (`None` where the store keeps no count
/// for that filter).
pub async fn count(store: &dyn Store, membership: &Membership, query: &TaskQuery) -> StoreResult<Option<StateCounts>> {
    let projects = match (membership.projects(), &query.project) {
        (None, _) => return facets::count(store, query).await,
        (Some(_), Some(p)) if membership.sees(p) => return facets::count(store, query).await,
        (Some(_), Some(_)) => return Ok(Some(StateCounts(TaskState::ALL.into_iter().map(|s| (s, 0)).collect()))),
        (Some(ps), None) => ps,
    };
    let mut sum = StateCounts(TaskState::ALL.into_iter().map(|s| (s, 0)).collect());
    for p in projects {
        let Some(c) = facets::count(store, &TaskQuery { project: Some(p.clone()), ..query.clone() }).await? else { return Ok(None) };
        for ((_, n), (_, m)) in sum.0.iter_mut().zip(c.0) {
            *n += m;
        }
    }
    Ok(Some(sum))
}

/// Task `id` (the Control Room's or KIE's) if `membership` sees it; else, as for a task that does
/// not exist, `None`.
pub async fn find(lifecycle: &Lifecycle, membership: &Membership, id: &str) -> StoreResult<Option<TaskRecord>> {
    Ok(lifecycle.find(id).await?.filter(|t| membership.sees(&t.project)))
}
