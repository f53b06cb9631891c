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
