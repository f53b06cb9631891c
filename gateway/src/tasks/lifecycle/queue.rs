//! The rate guard's queue: the order queued tasks leave in, and what the Throttle panel and
//! the Task Monitor show of it (depth, each task's place and expected wait).
//!
//! Fairness: round-robin between owners, oldest first within each, so one person's burst of
//! 500 tasks delays another person's single task by at most one slot per other owner. The
//! rotation lives in the store (when each owner was last served), so it carries from one
//! dispatch round to the next and holds across instances: the owner served longest ago goes
//! first.
//!
//! At any depth: each owner's queued tasks are a lane of their own (the store's
//! `queued-by:<owner>` index, oldest first), so a round reads the head of every lane, not the
//! whole queue. The owners with queued work ([`Lanes`]) are known to every instance from the
//! arrivals log (each submission appends its owner once its record is written), from the
//! queue's oldest and newest pages each round, and — at start, or if the log moved on past
//! what an instance read — from one scan of the whole queue. An owner leaves the rotation when
//! their lane is read empty. One instance at a time sends an owner's tasks (a lease per
//! owner), so an owner's tasks reach KIE in the order they came.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Lifecycle;
use super::limits::RATE_LIMITED_COUNTER;
use crate::tasks::rate_guard::LimitRule;
use crate::store::{Store, StoreResult, now_ms};
use crate::tasks::fair_share::Share;
use crate::tasks::task::{TaskRecord, TaskState};

/// Most queued tasks one snapshot looks at.
const MAX_SNAPSHOT: usize = 5000;
/// How old a snapshot a task's place and expected wait are read from, at most.
pub const SNAPSHOT_FOR: Duration = Duration::from_secs(1);
/// Where each submission's owner is appended once its record is written.
pub(super) const ARRIVALS: &str = "queue:arrivals";
/// Arrivals kept (an instance further behind than this scans the queue instead).
pub(super) const ARRIVALS_KEPT: usize = 10_000;
/// Arrivals read per page.
const ARRIVALS_PAGE: usize = 500;
/// The head of each lane read per round (at least; more when few owners wait).
const LANE_HEAD: usize = 20;
/// Most tasks in doubt a lane's read passes over to reach its head.
const LANE_IN_DOUBT_READ: usize = 1000;

/// Most owners whose last service is read for one ordering (the rest count as never served).
const MAX_OWNERS_READ: usize = 64;
/// How long an owner's last service is remembered.
const SERVED_TTL: Duration = Duration::from_secs(24 * 3600);

fn served_key(owner: &str) -> String {
    format!("rate:served:{owner}")
}

/// Orders tasks (given newest first, as the store lists them) round-robin between owners: the
/// owner served longest ago (`served`: Unix ms; absent = never) first, ties in the order of
/// each owner's oldest task; within each owner by priority, then oldest first, up to `weight`
/// of the owner's next task (its project's share, at least 1) per turn.
pub fn fair_order(newest_first: Vec<TaskRecord>, served: &HashMap<String, u64>, weight: impl Fn(&TaskRecord) -> u32) -> Vec<TaskRecord> {
    let mut lanes: Vec<VecDeque<TaskRecord>> = Vec::new();
    let mut lane_of: HashMap<String, usize> = HashMap::new();
    let total = newest_first.len();
    for t in newest_first.into_iter().rev() {
        let i = *lane_of.entry(t.owner.clone()).or_insert_with(|| {
            lanes.push(VecDeque::new());
            lanes.len() - 1
        });
        lanes[i].push_back(t);
    }
    // Within an owner's lane: high priority first, low last, each oldest first (a stable sort).
    for lane in &mut lanes {
        lane.make_contiguous().sort_by_key(|t| t.priority);
    }
    // Stable: among owners served at the same time (or never), the one waiting longest first.
    lanes.sort_by_key(|lane| lane.front().map_or(0, |t| served.get(&t.owner).copied().unwrap_or(0)));
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        for lane in &mut lanes {
            let turn = lane.front().map_or(0, |t| weight(t).max(1));
            for _ in 0..turn {
                match lane.pop_front() {
                    Some(t) => out.push(t),
                    None => break,
                }
            }
        }
    }
    out
}

/// One task waiting for the rate guard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    pub id: String,
    pub owner: String,
    /// 1 = next to leave.
    pub position: usize,
    /// Expected wait from now, by the request rules' windows (an estimate: a concurrency rule
    /// and tasks still to arrive can make it longer).
    pub eta_ms: u64,
}

/// One owner's lane as the Throttle panel shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerLane {
    pub owner: String,
    /// Tasks waiting for the rate guard.
    pub waiting: usize,
    /// How long their oldest has waited.
    pub oldest_age_ms: u64,
    /// How many of the next window's sends are theirs, in the fair order (an owner alone gets
    /// the whole window).
    pub next_window: usize,
}

/// One rule and how full it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleUse {
    pub rule: String,
    pub used: i64,
    pub limit: i64,
}

/// The queue as the Throttle panel shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSnapshot {
    /// Tasks waiting for the rate guard, in the order they will leave.
    pub waiting: Vec<Waiting>,
    /// The queue by owner, most waiting first.
    pub by_owner: Vec<OwnerLane>,
    /// Tasks waiting out a backoff after an upstream refusal (429, 455, 5xx).
    pub backed_off: usize,
    /// Sent, with no answer yet: never resent (see the dispatcher).
    pub in_doubt: usize,
    /// Held by a pause ([`crate::tasks::pause`]): they get no place and no expected wait.
    pub paused: usize,
    /// The pauses in force.
    pub pauses: crate::tasks::pause::Pauses,
    pub rules: Vec<RuleUse>,
    /// The safety margin added to every window.
    pub margin_ms: u64,
    /// Left of the cool-down after KIE's last 429.
    pub cooldown_ms: Option<u64>,
    /// How many times KIE answered 429 to a `createTask`.
    pub rate_limited_total: i64,
}

/// The dispatcher's own state: what wakes it, the lanes it reads and the fair shares it
/// weighs them by (submissions read the shares too, for their owner's quota).
#[derive(Debug, Default)]
pub(crate) struct Queue {
    wake: tokio::sync::Notify,
    lanes: std::sync::Mutex<Lanes>,
    /// The fair shares last read, and when (see [`crate::tasks::fair_share`]).
    shares: std::sync::Mutex<Option<(std::time::Instant, Arc<Vec<Share>>)>>,
    /// The last snapshot of the queue, and when it was begun (Unix ms): places and waits are
    /// read from it ([`Lifecycle::queue_as_of`]), so a read costs no scan of the queue.
    snapshot: tokio::sync::Mutex<Option<(u64, Arc<QueueSnapshot>)>>,
}

impl Queue {
    /// Wakes the dispatcher (a task was queued, or the workers are stopping).
    pub(super) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Resolves when [`Queue::wake`] is called.
    pub(super) async fn woken(&self) {
        self.wake.notified().await;
    }

    /// The fair shares, read from the store at most every [`crate::tasks::fair_share::CACHE_FOR`].
    pub(super) async fn shares(&self, store: &dyn Store) -> StoreResult<Arc<Vec<Share>>> {
        if let Some((at, s)) = self.shares.lock().unwrap_or_else(|e| e.into_inner()).clone()
            && at.elapsed() < crate::tasks::fair_share::CACHE_FOR
        {
            return Ok(s);
        }
        let read = Arc::new(crate::tasks::fair_share::shares(store).await?);
        *self.shares.lock().unwrap_or_else(|e| e.into_inner()) = Some((std::time::Instant::now(), read.clone()));
        Ok(read)
    }

    /// Drops the fair shares read and the last snapshot, so the next use reads them.
    pub(super) fn forget(&self) {
        *self.shares.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if let Ok(mut snap) = self.snapshot.try_lock() {
            *snap = None;
        }
    }

    fn lanes(&self) -> std::sync::MutexGuard<'_, Lanes> {
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The owners with queued work, as this instance knows them (see the module doc).
#[derive(Debug, Default)]
struct Lanes {
    owners: std::collections::BTreeSet<String>,
    /// The last arrival read.
    cursor: u64,
    /// The whole queue was scanned once (at start, or after falling behind the log).
    scanned: bool,
}

impl Lifecycle {
    /// The owners with queued work: those known, with every arrival since the last call (or,
    /// if the log moved past it, a scan of the whole queue, oldest first, at any depth).
    async fn queued_owners(&self) -> StoreResult<Vec<String>> {
        let (cursor, scanned) = {
            let lanes = self.0.queue.lanes();
            (lanes.cursor, lanes.scanned)
        };
        let mut found = Vec::new();
        let mut newest = None;
        let mut before = None;
        let mut behind = !scanned;
        'read: loop {
            let page = self.0.store.log_read(ARRIVALS, before, ARRIVALS_PAGE).await?;
            for e in &page {
                newest = newest.max(Some(e.seq));
                if e.seq <= cursor {
                    break 'read;
                }
                found.push(String::from_utf8_lossy(&e.data).into_owned());
            }
            match page.last() {
                Some(last) if page.len() == ARRIVALS_PAGE && last.seq > 1 => before = Some(last.seq),
                // The log's start: anything older than what it keeps was dropped.
                Some(last) => {
                    behind |= cursor + 1 < last.seq && cursor > 0;
                    break;
                }
                None => break,
            }
        }
        if behind {
            let mut after = None;
            loop {
                let (tasks, next) = self.scan_state(TaskState::Queued, after, crate::tasks::task::MAX_PAGE * 10).await?;
                found.extend(tasks.into_iter().map(|t| t.owner));
                match next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
        }
        let mut lanes = self.0.queue.lanes();
        lanes.owners.extend(found);
        lanes.cursor = lanes.cursor.max(newest.unwrap_or(cursor));
        lanes.scanned = true;
        Ok(lanes.owners.iter().cloned().collect())
    }

    /// Queued tasks in the order they leave, about `cap` of them: the head of every owner's
    /// lane (see the module doc), plus the queue's oldest and newest pages, so an owner this
    /// instance has not heard of yet is in the rotation at once.
    pub(super) async fn fair_queue(&self, cap: usize) -> StoreResult<Vec<TaskRecord>> {
        use crate::tasks::task::{MAX_PAGE, TaskQuery};
        let store = &self.0.store;
        let mut owners = self.queued_owners().await?;
        let page = |oldest_first| TaskQuery { state: Some(TaskState::Queued), oldest_first, limit: MAX_PAGE, ..Default::default() };
        let mut queued = store.task_list(&page(true)).await?.tasks;
        queued.extend(store.task_list(&page(false)).await?.tasks);
        // High-priority tasks however deep in their lanes: each goes first in its owner's.
        let high = TaskQuery { mark: Some(crate::tasks::task::Mark::QueuedHigh), oldest_first: true, limit: MAX_PAGE, ..Default::default() };
        queued.extend(store.task_list(&high).await?.tasks);
        for t in &queued {
            if !owners.contains(&t.owner) {
                owners.push(t.owner.clone());
            }
        }
        let head = (cap / owners.len().max(1)).max(LANE_HEAD);
        let mut empty = Vec::new();
        for owner in &owners {
            // The lane's head: `head` tasks that can be sent, read past any in doubt (never
            // sent again, they may stay for the give-up time), at most a few pages.
            let mut lane = TaskQuery { state: Some(TaskState::Queued), owner: Some(owner.clone()), oldest_first: true, limit: MAX_PAGE, ..Default::default() };
            let (mut read, mut sendable) = (0, 0);
            loop {
                let page = store.task_list(&lane).await?;
                read += page.tasks.len();
                sendable += page.tasks.iter().filter(|t| !t.in_doubt()).count();
                queued.extend(page.tasks);
                match page.next {
                    Some(next) if sendable < head && read < head + LANE_IN_DOUBT_READ => lane.after = Some(next),
                    _ => break,
                }
            }
            if read == 0 {
                empty.push(owner.clone());
            }
        }
        {
            let mut lanes = self.0.queue.lanes();
            lanes.owners.extend(owners.iter().cloned());
            for owner in &empty {
                lanes.owners.remove(owner);
            }
        }
        // `fair_order` takes them newest first, as the store lists them; each once.
        queued.sort_by_key(|t| std::cmp::Reverse(t.index_member()));
        queued.dedup_by(|a, b| a.id == b.id);
        let mut served = HashMap::new();
        for t in &queued {
            if served.len() >= MAX_OWNERS_READ {
                break;
            }
            if !served.contains_key(&t.owner) {
                let at = self.0.store.kv_get(&served_key(&t.owner)).await?.and_then(|b| String::from_utf8(b).ok()?.parse().ok());
                served.insert(t.owner.clone(), at.unwrap_or(0));
            }
        }
        let shares = self.0.queue.shares(store.as_ref()).await?;
        Ok(fair_order(queued, &served, |t| crate::tasks::fair_share::weight_of(&shares, &t.project)))
    }

    /// Notes that `owner` was just served, moving them to the back of the rotation.
    pub(super) async fn note_served(&self, owner: &str) -> StoreResult<()> {
        self.0.store.kv_set(&served_key(owner), now_ms().to_string().as_bytes(), Some(SERVED_TTL)).await
    }

    /// The queue as of `at_ms` (Unix ms) or later, and at most [`SNAPSHOT_FOR`] old: one
    /// snapshot per instance serves every reader in that time (the others wait for it), so
    /// what a read costs is bounded however often places are asked for. A reader passes the
    /// time of the newest change it shows, so a task just queued is in what it reads.
    pub async fn queue_as_of(&self, at_ms: u64) -> StoreResult<Arc<QueueSnapshot>> {
        let mut held = self.0.queue.snapshot.lock().await;
        let now = now_ms();
        if let Some((taken, snap)) = held.as_ref()
            && *taken >= at_ms
            && now.saturating_sub(*taken) < SNAPSHOT_FOR.as_millis() as u64
        {
            return Ok(snap.clone());
        }
        let snap = Arc::new(self.queue().await?);
        *held = Some((now, snap.clone()));
        Ok(snap)
    }

    /// Where queued task `t` stands: its place in the order tasks leave and its expected
    /// wait, from [`Lifecycle::queue_as_of`] its last change. `None` when it is not waiting
    /// for the rate guard (sent, ended, backed off, in doubt, held by a pause, or past the
    /// snapshot's depth).
    pub async fn place(&self, t: &TaskRecord) -> StoreResult<Option<Waiting>> {
        Ok(self.queue_as_of(t.updated_ms).await?.waiting.iter().find(|w| w.id == t.id).cloned())
    }

    /// The rate guard's queue now.
    pub async fn queue(&self) -> StoreResult<QueueSnapshot> {
        let store = &self.0.store;
        let queued = self.fair_queue(MAX_SNAPSHOT).await?;
        let now = now_ms();
        let pauses = crate::tasks::pause::read(store.as_ref()).await?;
        let mut snap = QueueSnapshot { margin_ms: self.0.opts.rate_margin.as_millis() as u64, ..Default::default() };
        let mut ready = Vec::new();
        for t in queued {
            if pauses.holding(&t.project).is_some() {
                snap.paused += 1;
            } else if t.in_doubt() {
                snap.in_doubt += 1;
            } else if t.dispatch.next_attempt_ms > now {
                snap.backed_off += 1;
            } else if !t.budget_pending {
                ready.push(t);
            }
        }
        let mut windows = Vec::new();
        for (rule, scope) in self.guard_scopes() {
            let used = store.usage(&scope).await?;
            if let LimitRule::Requests { limit, window } = rule {
                windows.push(((limit - used).max(0) as usize, limit.max(1) as usize, window + self.0.opts.rate_margin));
            }
            snap.rules.push(RuleUse { rule: rule.to_string(), used, limit: scope.limit });
        }
        // The language models' windows, shown beside the tasks' (they hold no queue).
        for (model, scopes) in self.chat_rule_sets() {
            for (rule, scope) in scopes {
                let used = store.usage(&scope).await?;
                let label = model.map_or_else(|| format!("chat: {rule}"), |m| format!("chat {m}: {rule}"));
                snap.rules.push(RuleUse { rule: label, used, limit: scope.limit });
            }
        }
        // The next window's sends: the first rule's limit (the tightest is what KIE enforces).
        let window_sends = windows.iter().map(|(_, limit, _)| *limit).min().unwrap_or(usize::MAX);
        let mut owners: HashMap<String, OwnerLane> = HashMap::new();
        for (i, t) in ready.into_iter().enumerate() {
            let lane = owners.entry(t.owner.clone()).or_insert_with(|| OwnerLane { owner: t.owner.clone(), waiting: 0, oldest_age_ms: 0, next_window: 0 });
            lane.waiting += 1;
            lane.oldest_age_ms = lane.oldest_age_ms.max(now.saturating_sub(t.created_ms));
            lane.next_window += usize::from(i < window_sends);
            let eta = windows.iter().map(|(free, limit, window)| if i < *free { Duration::ZERO } else { *window * ((i - free) / limit + 1) as u32 }).max().unwrap_or_default();
            snap.waiting.push(Waiting { id: t.id, owner: t.owner, position: i + 1, eta_ms: eta.as_millis() as u64 });
        }
        snap.by_owner = owners.into_values().collect();
        snap.by_owner.sort_by(|a, b| b.waiting.cmp(&a.waiting).then_with(|| a.owner.cmp(&b.owner)));
        snap.cooldown_ms = self.cooldown_left().await?.map(|d| d.as_millis() as u64);
        snap.rate_limited_total = store.counter_get(RATE_LIMITED_COUNTER).await?;
        snap.pauses = pauses;
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_does_not_starve_a_single_task() {
        // Newest first, as listed: ana's 5 tasks, then bo's one, then ana's sixth.
        let mut tasks: Vec<TaskRecord> = (0..5).map(|i| TaskRecord::new(format!("a{i}"), "ana", "p", "m", i)).collect();
        tasks.push(TaskRecord::new("b0", "bo", "p", "m", 10));
        tasks.push(TaskRecord::new("a5", "ana", "p", "m", 11));
        tasks.reverse();
        let order: Vec<String> = fair_order(tasks.clone(), &HashMap::new(), |_| 1).into_iter().map(|t| t.id).collect();
        assert_eq!(order, ["a0", "b0", "a1", "a2", "a3", "a4", "a5"]);
        // Once ana has been served, bo goes first: the rotation carries across rounds.
        let served = HashMap::from([("ana".to_string(), 500)]);
        let order: Vec<String> = fair_order(tasks, &served, |_| 1).into_iter().map(|t| t.id).collect();
        assert_eq!(order, ["b0", "a0", "a1", "a2", "a3", "a4", "a5"]);
    }

    #[test]
    fn priority_orders_an_owners_own_tasks_and_never_takes_another_owners_turn() {
        use crate::tasks::task::Priority;
        let task = |id: &str, owner: &str, at: u64, p: Priority| TaskRecord { priority: p, ..TaskRecord::new(id, owner, "p", "m", at) };
        // Oldest first: ana's a0 (low), a1, a2 (high), a3 (high); bo's b0 in between.
        let mut tasks = vec![task("a0", "ana", 0, Priority::Low), task("a1", "ana", 1, Priority::Normal), task("b0", "bo", 2, Priority::Normal), task("a2", "ana", 3, Priority::High), task("a3", "ana", 4, Priority::High)];
        tasks.reverse();
        let order: Vec<String> = fair_order(tasks, &HashMap::new(), |_| 1).into_iter().map(|t| t.id).collect();
        assert_eq!(order, ["a2", "b0", "a3", "a1", "a0"]);
    }

    #[test]
    fn a_projects_weight_gives_its_owners_more_sends_per_turn() {
        // Newest first: ana's 6 in "feature" (weight 3), bo's 4 in "promo" (weight 1).
        let mut tasks: Vec<TaskRecord> = (0..6).map(|i| TaskRecord::new(format!("a{i}"), "ana", "feature", "m", i)).collect();
        tasks.extend((0..4).map(|i| TaskRecord::new(format!("b{i}"), "bo", "promo", "m", 100 + i)));
        tasks.reverse();
        let weight = |t: &TaskRecord| if t.project == "feature" { 3 } else { 1 };
        let order: Vec<String> = fair_order(tasks, &HashMap::new(), weight).into_iter().map(|t| t.id).collect();
        assert_eq!(order, ["a0", "a1", "a2", "b0", "a3", "a4", "a5", "b1", "b2", "b3"]);
    }
}
