//! Archive throughput: how fast the archiver copies results into the Library, on a local
//! folder and on an S3-compatible server (moto), side by side.
//!
//!     cargo bench -p gateway --bench library             # Redis from TEST_REDIS_URL or a private one
//!     BENCH_SMOKE=1 cargo bench -p gateway --bench library   # a few small assets: does it run?
//!
//! The source is a loopback HTTP server standing in for KIE's result host; each row copies
//! `count` assets of `size` bytes, one per task, with the archiver's default concurrency (4),
//! through the whole path (outbound policy, streaming, SHA-256, sniffing, the size check, the
//! quota reservation, the commit by rename, the record's update). Prints a Markdown table
//! for docs/benchmarks.md.

use gateway::library::asset::{Archive, Terms};
use gateway::library::{Library, LibraryConfig, Sources};
use gateway::outbound::OutboundPolicy;
use gateway::{Lifecycle, LifecycleOptions, RedisStore, Store, TaskRecord};
use std::sync::Arc;
use std::time::Instant;

fn smoke() -> bool {
    std::env::var("BENCH_SMOKE").is_ok_and(|v| !v.is_empty() && v != "0")
}

async fn row(label: &str, objects: Arc<dyn object_store::ObjectStore>, source: &str, count: usize, size: usize) {
    let store: Arc<dyn Store> = Arc::new(RedisStore::connect(&testkit::redis_url(), &format!("{}:", testkit::unique("benchlib"))).await.expect("redis"));
    let lc = Lifecycle::new(store.clone(), None, Arc::new(gateway::money::catalog::Catalog::builtin()), LifecycleOptions::default());
    let base: url::Url = source.parse().expect("url");
    let cfg = LibraryConfig { url: label.into(), sources: Sources::new("", Some(&base)), ..Default::default() };
    let lib = Library::new(objects, cfg, lc, OutboundPolicy::strict().also_allowing(&base));
    lib.check().await.expect("library usable");
    let now = gateway::store::now_ms();
    for i in 0..count {
        let mut t = TaskRecord::new(format!("bench-{i}-{}", testkit::unique("t")), "bench", "bench", "google/imagen4-fast", now);
        t.state = gateway::TaskState::Success;
        t.result_urls = vec![format!("{source}/bytes/{size}")];
        t.archive = Some(Archive::plan(&t.result_urls, now, &Terms::default()));
        store.task_insert(&t).await.expect("insert");
    }
    let start = Instant::now();
    lib.round(&mut None).await.expect("round");
    let took = start.elapsed().as_secs_f64();
    let s = lib.status().await.expect("status");
    assert_eq!((s.assets as usize, s.pending_assets), (count, 0), "every asset archived");
    let mb = (count * size) as f64 / 1e6;
    println!("| {label} | {count} × {} | {:.0} | {:.1} | {:.2} |", human(size), count as f64 / took, mb / took, took);
}

fn human(size: usize) -> String {
    if size >= 1 << 20 { format!("{} MiB", size >> 20) } else { format!("{} KiB", size >> 10) }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let source = testkit::result_host().await;
    let s3 = testkit::S3Server::start();
    let rows: &[(usize, usize)] = if smoke() { &[(4, 64 << 10)] } else { &[(200, 256 << 10), (40, 8 << 20), (8, 64 << 20)] };
    println!("| Library | assets | assets/s | MB/s | seconds |");
    println!("|---|---|---|---|---|");
    for &(count, size) in rows {
        let dir = testkit::scratch_dir("bench-library");
        let local = gateway::library::open_objects(&url::Url::from_directory_path(&dir).expect("url"), []).expect("folder");
        row("local folder", local, &source, count, size).await;
        let _ = std::fs::remove_dir_all(&dir);
        let bucket = s3.bucket("bench").await;
        let remote = gateway::library::open_objects(&format!("s3://{bucket}/library").parse().expect("url"), s3.aws()).expect("s3");
        row("S3 (moto on loopback)", remote, &source, count, size).await;
    }
}
