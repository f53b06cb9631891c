//! Folding receipts: how long the folder takes to count a backlog of ended tasks into the
//! receipts' running totals, and the memory it takes, on both stores side by side.
//!
//!     cargo bench -p gateway --bench receipts           # 100,000 tasks per store
//!     BENCH_SMOKE=1 cargo bench -p gateway --bench receipts   # 500: does it run?
//!
//! The tasks are written straight to the store as ended and not yet folded (half of them a
//! success with KIE's charge, the rest failures at 0, over 5 projects, 7 owners, 3 models),
//! then `receipts::fold_round` runs until nothing is left; the totals are checked to be
//! exact at the end. Memory is the process's resident set (VmRSS) before and after, and its
//! peak (VmHWM), from /proc.

use gateway::money::receipts::{self, Slice, Total};
use gateway::{Credits, EmbeddedStore, Lifecycle, LifecycleOptions, RedisStore, Store, TaskRecord, TaskState};
use std::sync::Arc;
use std::time::Instant;

fn count() -> usize {
    if std::env::var("BENCH_SMOKE").is_ok_and(|v| !v.is_empty() && v != "0") { 500 } else { 100_000 }
}

fn kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

async fn row(label: &str, store: Arc<dyn Store>) {
    let n = count();
    let now = gateway::store::now_ms();
    let started = Instant::now();
    let writes: Vec<_> = (0..n)
        .map(|i| {
            let store = store.clone();
            async move {
                let mut t = TaskRecord::new(format!("fold-{i}"), format!("owner-{}", i % 7), format!("project-{}", i % 5), ["google/imagen4-fast", "kling-2.6/text-to-video", "veo3"][i % 3], now - (n - i) as u64);
                t.state = if i % 2 == 0 { TaskState::Success } else { TaskState::Fail };
                t.estimated_cost = Credits::from_credits(4);
                t.actual_cost = Some(if i % 2 == 0 { Credits::from_credits(3) } else { Credits::ZERO });
                t.finished_ms = Some(now);
                store.task_insert(&t).await.expect("insert");
            }
        })
        .collect();
    use futures::StreamExt;
    futures::stream::iter(writes).buffer_unordered(32).collect::<Vec<()>>().await;
    let inserted = started.elapsed();
    let lc = Lifecycle::new(store.clone(), None, Arc::new(gateway::money::catalog::Catalog::builtin()), LifecycleOptions::default());
    let rss_before = kib("VmRSS:");
    let start = Instant::now();
    let mut backfill = None;
    let mut folded = 0;
    loop {
        let f = receipts::fold_round(&lc, &mut backfill).await.expect("fold");
        folded += f.tasks;
        if f.tasks == 0 && folded >= n {
            break;
        }
    }
    let took = start.elapsed().as_secs_f64();
    let rss_after = kib("VmRSS:");
    let charged = store.usage(&receipts::scope(Total::Charged, &Slice::default())).await.expect("usage");
    let tasks = store.usage(&receipts::scope(Total::Tasks, &Slice::default())).await.expect("usage");
    assert_eq!((tasks as usize, charged), (n, (n.div_ceil(2) * 3000) as i64), "the totals are exact");
    println!(
        "| {label} | {n} | {:.1} | {:.0} | {:.1} | {} | {} | {} |",
        inserted.as_secs_f64(),
        n as f64 / took,
        took,
        rss_before / 1024,
        rss_after / 1024,
        kib("VmHWM:") / 1024
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("| store | ended tasks | insert s | folded/s | fold s | RSS before MiB | RSS after MiB | peak MiB |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let redis: Arc<dyn Store> = Arc::new(RedisStore::connect(&testkit::redis_url(), &format!("{}:", testkit::unique("benchfold"))).await.expect("redis"));
    row("redis", redis).await;
    let dir = testkit::scratch_dir("bench-fold");
    let embedded: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir).expect("embedded"));
    row("embedded", embedded).await;
    let _ = std::fs::remove_dir_all(&dir);
}
