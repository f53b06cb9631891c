//! Spend breakdowns read what they show: the largest bars of 30 projects, exact, in the same
//! few store operations as for 3 projects — on a real Redis and on the embedded store.

use gateway::money::receipts::{self, By};
use gateway::store::metered::Metered;
use gateway::{Credits, EmbeddedStore, RedisStore, Store, TaskRecord, TaskState};
use std::sync::Arc;

/// Ended tasks over `projects` projects: project `i` has `i + 1` tasks at 3 credits each.
async fn fold_history(store: &dyn Store, projects: usize) {
    let now = gateway::store::now_ms();
    for p in 0..projects {
        for n in 0..=p {
            let mut t = TaskRecord::new(format!("t-{p}-{n}"), format!("owner-{}", n % 3), format!("project-{p:02}"), "veo3", now - 1_000);
            t.state = TaskState::Success;
            t.estimated_cost = Credits::from_credits(4);
            t.actual_cost = Some(Credits::from_credits(3));
            t.finished_ms = Some(now);
            receipts::fold(store, &t).await.expect("fold");
        }
    }
}

/// Store operations the metrics counted so far, by operation.
fn ops(metrics: &gateway::metrics::Metrics, operation: &str) -> f64 {
    metrics
        .prometheus_text()
        .lines()
        .filter(|l| l.starts_with("control_room_store_operation_duration_seconds_count{") && l.contains(&format!("operation=\"{operation}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn check(inner: Arc<dyn Store>) {
    let metrics = Arc::new(gateway::metrics::Metrics::new());
    let store = Metered::wrap(inner, metrics.clone());
    // The directory learns names as tasks are folded by the folder; here the test notes them.
    fold_history(store.as_ref(), 30).await;
    gateway::store::edit_doc(store.as_ref(), "receipts:directory", |d: &mut receipts::Directory| {
        d.projects = (0..30).map(|p| format!("project-{p:02}")).collect();
        d.models.insert("veo3".into());
        Ok::<_, gateway::StoreError>(())
    })
    .await
    .expect("directory");

    let (usage_before, many_before) = (ops(&metrics, "usage"), ops(&metrics, "usage_many"));
    let top = receipts::spend(store.as_ref(), By::Project, 25).await.expect("spend");
    assert_eq!(top.labels, 30);
    assert_eq!(top.bars.len(), 25, "the largest 25 only");
    assert_eq!(top.bars[0].label, "project-29");
    assert_eq!((top.bars[0].tasks, top.bars[0].charged, top.bars[0].estimated), (30, Credits::from_credits(90), Credits::from_credits(120)));
    assert!(top.bars.windows(2).all(|w| w[0].charged >= w[1].charged), "largest first");
    assert_eq!(top.bars.last().map(|b| b.label.as_str()), Some("project-05"));
    assert_eq!(ops(&metrics, "usage") - usage_before, 0.0, "no read per label");
    assert_eq!(ops(&metrics, "usage_many") - many_before, 2.0, "every label's charge, then the kept bars' figures");

    let days = receipts::spend(store.as_ref(), By::Day, 25).await.expect("by day");
    assert_eq!(days.bars.len(), receipts::DAYS_SHOWN as usize, "by day: every one of the last 30 days");
    assert_eq!(days.bars.last().map(|b| b.tasks), Some((1..=30).sum::<i64>()), "today holds every task");
}

#[tokio::test]
async fn a_breakdown_reads_its_largest_bars_in_two_reads_on_redis() {
    let prefix = format!("{}:", testkit::unique("spend"));
    check(Arc::new(RedisStore::connect(&testkit::redis_url(), &prefix).await.expect("redis"))).await;
}

#[tokio::test]
async fn a_breakdown_reads_its_largest_bars_in_two_reads_embedded() {
    let dir = tempfile::tempdir().expect("tempdir");
    check(Arc::new(EmbeddedStore::open(dir.path()).expect("embedded"))).await;
}

/// A receipt's lines page by page: every folded line once, newest first, at any length; a day
/// range keeps its days only; and the receipt lists the same lines.
#[tokio::test]
async fn a_receipts_lines_come_a_page_at_a_time_each_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path()).expect("embedded");
    let day_ms = 86_400_000u64;
    let today = gateway::store::now_ms() / day_ms * day_ms;
    for i in 0..450u64 {
        // Three days: 150 tasks ended on each.
        let ended = today - (i % 3) * day_ms + 1_000;
        let mut t = TaskRecord::new(format!("line-{i:03}"), "owner", "long", "veo3", ended - 500 + i);
        t.state = TaskState::Success;
        t.actual_cost = Some(Credits::from_credits(1));
        t.finished_ms = Some(ended);
        t.folded = true;
        receipts::fold(&store, &t).await.expect("fold");
        store.task_insert(&t).await.expect("insert");
    }
    let mut pages = receipts::LinePages::new("long", None, None, None).expect("pages");
    let (mut ids, mut count) = (Vec::new(), 0);
    while let Some(page) = pages.next(&store).await.expect("page") {
        assert!(page.len() <= gateway::tasks::task::MAX_PAGE);
        count += 1;
        ids.extend(page.into_iter().map(|l| l.task_id));
    }
    assert!(count >= 3, "450 lines take several pages: {count}");
    assert_eq!(ids.len(), 450);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 450, "each line once");
    let yesterday = receipts::day(today - day_ms);
    let r = receipts::receipt(&store, "long", Some(&yesterday), Some(&yesterday), None).await.expect("one day");
    assert_eq!((r.lines.len(), r.tasks), (150, 150), "a day's lines and its folded count agree");
    let all = receipts::receipt(&store, "long", None, None, None).await.expect("all");
    assert_eq!(all.lines.iter().map(|l| l.task_id.clone()).collect::<Vec<_>>(), ids, "the receipt lists what the pages give, in order");
    assert!(receipts::LinePages::new("no/such", None, None, None).is_err(), "a malformed project is refused");
}

/// Folded tasks of project `busy`: 600 ended five days ago, 4 yesterday, on `store`.
async fn busy_history(store: &dyn Store) -> (u64, u64) {
    let day_ms = 86_400_000u64;
    let today = gateway::store::now_ms() / day_ms * day_ms;
    for i in 0..604u64 {
        let ended = if i < 600 { today - 5 * day_ms } else { today - day_ms } + 1_000 + i;
        let mut t = TaskRecord::new(format!("busy-{i:03}"), "owner", "busy", "veo3", ended - 500);
        t.state = TaskState::Success;
        t.actual_cost = Some(Credits::from_credits(1));
        t.finished_ms = Some(ended);
        t.folded = true;
        receipts::fold(store, &t).await.expect("fold");
        store.task_insert(&t).await.expect("insert");
    }
    (today, day_ms)
}

/// The receipt of `from..=to` with how many task listings it took.
async fn range(store: &Arc<dyn Store>, metrics: &gateway::metrics::Metrics, from: u64, to: u64) -> (usize, f64) {
    let before = ops(metrics, "task_list");
    let r = receipts::receipt(store.as_ref(), "busy", Some(&receipts::day(from)), Some(&receipts::day(to)), None).await.expect("receipt");
    assert_eq!(r.lines.len() as i64, r.tasks, "the lines and the folded count agree");
    (r.lines.len(), ops(metrics, "task_list") - before)
}

/// Runs the folder's rounds until its one-time scans are done.
async fn until_scans_done(store: &Arc<dyn Store>) {
    let lc = gateway::Lifecycle::new(store.clone(), None, Arc::new(gateway::money::catalog::Catalog::builtin()), Default::default());
    let mut backfill = None;
    for _ in 0..100 {
        receipts::fold_round(&lc, &mut backfill).await.expect("round");
        if store.kv_get("receipts:day-indexed").await.expect("marker").is_some() {
            return;
        }
    }
    panic!("the one-time scans did not end");
}

/// A day range reads its days' indexes: a day of 4 lines costs one listing, whatever else
/// the project holds; before the upgrade's one-time scan has indexed every folded task, the
/// same receipt comes from the project's history, line for line.
async fn range_reads(inner: Arc<dyn Store>, unindex: impl AsyncFnOnce(u64)) {
    let metrics = Arc::new(gateway::metrics::Metrics::new());
    let store = Metered::wrap(inner, metrics.clone());
    let (today, day_ms) = busy_history(store.as_ref()).await;
    // As a store written before day indexes: the old day's entries gone, no marker.
    unindex(today - 5 * day_ms).await;
    let (lines, listings) = range(&store, &metrics, today - day_ms, today - day_ms).await;
    assert_eq!(lines, 4);
    assert!(listings >= 4.0, "before the scan: the project's history, page by page ({listings})");
    let (old, _) = range(&store, &metrics, today - 5 * day_ms, today - 5 * day_ms).await;
    assert_eq!(old, 600, "found without its index");
    until_scans_done(&store).await;
    let (lines, listings) = range(&store, &metrics, today - day_ms, today - day_ms).await;
    assert_eq!((lines, listings), (4, 1.0), "one day: one listing of its own index");
    let (week, listings) = range(&store, &metrics, today - 6 * day_ms, today).await;
    assert_eq!(week, 604, "every line of the week, each once");
    assert!((9.0..=10.0).contains(&listings), "a listing a day, and the busy day's further pages: {listings}");
}

#[tokio::test]
async fn a_day_range_reads_its_days_index_on_redis() {
    let prefix = format!("{}:", testkit::unique("days"));
    let store = Arc::new(RedisStore::connect(&testkit::redis_url(), &prefix).await.expect("redis"));
    let raw = redis::Client::open(testkit::redis_url()).expect("client");
    range_reads(store, async |old_day| {
        let mut c = raw.get_multiplexed_async_connection().await.expect("connection");
        let key = format!("{prefix}ti:{}", gateway::tasks::task::index::receipt_day("busy", &receipts::day(old_day)));
        let gone: i64 = redis::cmd("DEL").arg(&key).query_async(&mut c).await.expect("del");
        assert_eq!(gone, 1, "the old day had an index ({key})");
        // Nor does any record's list of its index keys name it.
        let strip = redis::Script::new(
            "local n = 0
             for _, t in ipairs(KEYS) do
               local kept = {}
               for k in string.gmatch(redis.call('HGET', t, 'i'), '[^\\n]+') do
                 if k == ARGV[1] then n = n + 1 else kept[#kept + 1] = k end
               end
               redis.call('HSET', t, 'i', table.concat(kept, '\\n'))
             end
             return n",
        );
        let mut inv = strip.prepare_invoke();
        for i in 0..600 {
            inv.key(format!("{prefix}t:busy-{i:03}"));
        }
        let named: i64 = inv.arg(&key).invoke_async(&mut c).await.expect("strip");
        assert_eq!(named, 600, "each of the old day's records named it");
    })
    .await;
}

#[tokio::test]
async fn a_day_range_reads_its_days_index_embedded() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The embedded store cannot lose an index entry from outside: only the reads are checked.
    range_reads(Arc::new(EmbeddedStore::open(dir.path()).expect("embedded")), async |_| {}).await;
}

/// The one-time scans cover the tasks created before they began, and end while tasks keep
/// ending: a busy deployment's upgrade does not chase its own new tasks (nor write them again).
#[tokio::test]
async fn the_one_time_scans_end_while_tasks_keep_ending() {
    let prefix = format!("{}:", testkit::unique("scans"));
    let store: Arc<dyn Store> = Arc::new(RedisStore::connect(&testkit::redis_url(), &prefix).await.expect("redis"));
    let ended = |id: String, created: u64, folded: bool| {
        let mut t = TaskRecord::new(id, "owner", "steady", "veo3", created);
        t.state = TaskState::Success;
        t.actual_cost = Some(Credits::from_credits(1));
        t.finished_ms = Some(created + 10);
        t.folded = folded;
        t
    };
    let past = gateway::store::now_ms() - 3_600_000;
    for i in 0..300u64 {
        store.task_insert(&ended(format!("old-{i:03}"), past + i, false)).await.expect("insert");
    }
    let lc = gateway::Lifecycle::new(store.clone(), None, Arc::new(gateway::money::catalog::Catalog::builtin()), Default::default());
    let mut backfill = None;
    let mut fresh = Vec::new();
    let mut rounds = 0;
    while store.kv_get("receipts:day-indexed").await.expect("marker").is_none() {
        rounds += 1;
        assert!(rounds <= 40, "the one-time scans did not end while tasks kept ending");
        receipts::fold_round(&lc, &mut backfill).await.expect("round");
        // More tasks end, folded by the write that ended them, than a round's page.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        for _ in 0..250 {
            let t = ended(format!("new-{:05}", fresh.len()), gateway::store::now_ms(), true);
            receipts::fold(store.as_ref(), &t).await.expect("fold");
            store.task_insert(&t).await.expect("insert");
            fresh.push(t.id);
        }
    }
    for i in 0..300u64 {
        let t = store.task_get(&format!("old-{i:03}")).await.expect("get").expect("old task");
        assert!(t.folded, "every task from before the scans is folded");
    }
    for id in &fresh {
        assert_eq!(store.task_get(id).await.expect("get").expect("new task").version, 1, "{id}: not written again");
    }
    let r = receipts::receipt(store.as_ref(), "steady", None, None, None).await.expect("receipt");
    assert_eq!(r.tasks as usize, 300 + fresh.len(), "each task counted once");
}
