//! Store benchmark: operations per second on both backends, side by side.
//!
//!     cargo bench -p gateway --bench store            # uses TEST_REDIS_URL or a private redis-server (AOF on)
//!     BENCH_SMOKE=1 cargo bench -p gateway --bench store   # a tenth of a second per row: does it run?
//!
//! For each backend and each operation it runs 1 and 32 tasks for 3 seconds and counts
//! completed operations; latencies are per operation (p50/p99). The output is a Markdown table
//! for docs/benchmarks.md.

use gateway::store::{ReserveRequest, Scope};
use gateway::tasks::task::TaskRecord;
use gateway::{EmbeddedStore, RedisStore, Store};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Seconds per row (`BENCH_SMOKE=1`: a tenth of a second, to prove it runs).
fn seconds() -> f64 {
    if std::env::var("BENCH_SMOKE").is_ok_and(|v| !v.is_empty() && v != "0") { 0.1 } else { 3.0 }
}
static NEXT: AtomicU64 = AtomicU64::new(1_000);

type Op = Arc<dyn Fn(Arc<dyn Store>, u64) -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

async fn measure(store: Arc<dyn Store>, concurrency: usize, op: Op) -> (f64, Duration, Duration) {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds());
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..concurrency {
        let (store, op) = (store.clone(), op.clone());
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                // Globally unique across runs, above the 500 preloaded records.
                let n = NEXT.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                op(store.clone(), n).await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.await.expect("worker"));
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or_default();
    (lat.len() as f64 / elapsed, pct(0.50), pct(0.99))
}

fn task(n: u64) -> TaskRecord {
    let mut t = TaskRecord::new(format!("bench-{n}"), format!("user-{}", n % 7), format!("project-{}", n % 5), "kling-2.6/text-to-video", 1_700_000_000_000 + n);
    t.input = serde_json::json!({"prompt": "a slow dolly shot across a neon-lit street at night, rain", "duration": "5"});
    t
}

fn ops() -> Vec<(&'static str, Op)> {
    let write: Op = Arc::new(|s, n| Box::pin(async move { assert!(s.task_insert(&task(n)).await.expect("insert")) }));
    let read: Op = Arc::new(|s, n| Box::pin(async move { assert!(s.task_get(&format!("bench-{}", n % 500)).await.expect("get").is_some()) }));
    let reserve: Op = Arc::new(|s, n| {
        Box::pin(async move {
            let scopes = vec![
                Scope { key: "b:team:total".into(), limit: i64::MAX / 4, window: None },
                Scope { key: format!("b:project:{}:total", n % 5), limit: i64::MAX / 4, window: None },
                Scope { key: format!("b:project:{}:day", n % 5), limit: i64::MAX / 4, window: Some(Duration::from_secs(86_400)) },
            ];
            let req = ReserveRequest { id: format!("r-{n}"), amount: 8_000, scopes, hold_ttl: None };
            s.reserve(&req).await.expect("reserve");
        })
    });
    vec![("task write (insert + 5 index entries)", write), ("status read (task_get)", read), ("reservation (3 scopes, 1 window)", reserve)]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let _redis_guard;
    let url = match std::env::var("TEST_REDIS_URL") {
        Ok(u) => u,
        Err(_) => {
            let r = testkit::RedisServer::start();
            let u = r.url();
            _redis_guard = r;
            u
        }
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let backends: Vec<(&str, Arc<dyn Store>)> = vec![
        ("redis", Arc::new(RedisStore::connect(&url, &format!("{}:", testkit::unique("bench"))).await.expect("redis"))),
        ("embedded", Arc::new(EmbeddedStore::open(dir.path()).expect("embedded"))),
    ];
    println!("| operation | backend | concurrency | ops/s | p50 | p99 |");
    println!("|---|---|---:|---:|---:|---:|");
    for (name, op) in ops() {
        for (backend, store) in &backends {
            // Reads need records to read.
            for n in 0..500 {
                let _ = store.task_insert(&task(n)).await;
            }
            for concurrency in [1, 32] {
                let (rate, p50, p99) = measure(store.clone(), concurrency, op.clone()).await;
                assert!(rate > 0.0 && p50 > Duration::ZERO && p99 >= p50, "{name} on {backend}: no figures");
                println!("| {name} | {backend} | {concurrency} | {rate:.0} | {p50:.2?} | {p99:.2?} |");
            }
        }
    }
}
