//! Reads against a year of history (issue 27): what the console page, each panel, a scrape of
//! `/metrics`, a small project's receipt, a search in the Monitor and the live stream's first
//! byte cost at 1,000, 20,000 and 100,000 ended tasks, on Redis and on the embedded store,
//! side by side.
//!
//!     cargo bench -p server --bench scale                  # 1,000 / 20,000 / 100,000
//!     BENCH_SMOKE=1 cargo bench -p server --bench scale    # 100 / 400: does it run?
//!
//! The history is written straight to the store: ended tasks (folded into the receipts, half
//! successes, half failures) over 5 projects, 7 owners and 3 models, the first 20 of them in a
//! project "small"; 100 tasks wait in the queue throughout (a queue that does not grow). For
//! each size a console starts on that store (no KIE key), an admin signs in, and each read is
//! made [`TRIES`] times: its median time, and the store operations it caused (the console's
//! own per-operation counters from `/metrics`, less what a scrape costs; the fewest seen, so
//! a background worker's round does not count). The last column is the 100,000-task time
//! over the 1,000-task time: the goal is at most 1.5. A producer limited to two projects reads
//! the console page and the panels that merge their projects' listings too.

mod support;

use server::config::StoreConfig;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gateway::{Credits, Store, TaskRecord, TaskState};

const TRIES: usize = 7;
const MODELS: [&str; 3] = ["google/imagen4-fast", "kling-2.6/text-to-video", "veo3"];
const ADMIN: &str = "scale-admin@bench.test";
/// A producer limited to two projects: the 20-task one and a fifth of the history.
const MEMBER: &str = "scale-member@bench.test";
const MEMBER_PROJECTS: &str = "small, project-1";

fn sizes() -> Vec<usize> {
    if support::smoke() { vec![100, 400] } else { vec![1_000, 20_000, 100_000] }
}

/// Adds ended tasks `from..to` (and, the first time, the queue and the admin).
async fn seed(store: &dyn Store, from: usize, to: usize) {
    use futures::StreamExt;
    let now = gateway::store::now_ms();
    if from == 0 {
        let cli = gateway::team::accounts::Actor::cli();
        gateway::team::accounts::add(store, &cli, ADMIN, "", gateway::team::accounts::Role::Admin, support::ADMIN_PASSWORD).await.expect("admin");
        gateway::team::accounts::add(store, &cli, MEMBER, "", gateway::team::accounts::Role::Producer, support::ADMIN_PASSWORD).await.expect("member");
        gateway::team::membership::set_projects(store, &cli, MEMBER, MEMBER_PROJECTS).await.expect("member's projects");
        for i in 0..100 {
            let t = TaskRecord::new(format!("queued-{i}"), format!("queue-owner-{}", i % 5), "queue", MODELS[i % 3], now - 60_000 + i as u64);
            store.task_insert(&t).await.expect("queued");
        }
    }
    let writes = (from..to).map(|i| async move {
        let project = if i < 20 { "small".to_string() } else { format!("project-{}", i % 5) };
        // Oldest first, a year back at most.
        let created = now - 365 * 86_400_000 + (i as u64 * 60_000) % (364 * 86_400_000);
        let mut t = TaskRecord::new(format!("ended-{i}"), format!("owner-{}", i % 7), project, MODELS[i % 3], created);
        t.state = if i % 2 == 0 { TaskState::Success } else { TaskState::Fail };
        t.estimated_cost = Credits::from_credits(4);
        t.actual_cost = Some(if i % 2 == 0 { Credits::from_credits(3) } else { Credits::ZERO });
        t.finished_ms = Some(created + 30_000);
        gateway::money::receipts::fold(store, &t).await.expect("fold");
        t.folded = true;
        store.task_insert(&t).await.expect("insert");
    });
    futures::stream::iter(writes).buffer_unordered(32).collect::<Vec<()>>().await;
}

/// Every store operation the console has counted so far.
async fn store_ops(http: &reqwest::Client, base: &str) -> f64 {
    let text = http.get(format!("{base}/metrics")).send().await.expect("scrape").text().await.expect("text");
    text.lines().filter(|l| l.starts_with("control_room_store_operation_duration_seconds_count{")).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

/// Median time and fewest store operations of `what` over [`TRIES`].
async fn measure(http: &reqwest::Client, base: &str, url: &str, scrape_cost: f64, first_byte_only: bool) -> (Duration, f64) {
    let mut times = Vec::with_capacity(TRIES);
    let mut ops = f64::MAX;
    for _ in 0..TRIES {
        let before = store_ops(http, base).await;
        let started = Instant::now();
        let r = http.get(format!("{base}{url}")).send().await.expect("GET");
        assert!(r.status().is_success(), "{url}: {}", r.status());
        if !first_byte_only {
            let _ = r.bytes().await.expect("body");
        } else {
            drop(r);
        }
        times.push(started.elapsed());
        let after = store_ops(http, base).await;
        ops = ops.min((after - before - scrape_cost).max(0.0));
    }
    times.sort();
    (times[TRIES / 2], ops)
}

/// One console on `store` with `n` ended tasks: each read's median time and store operations.
async fn round(store: StoreConfig) -> BTreeMap<String, (Duration, f64)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let mut cfg = support::config(store, &format!("http://127.0.0.1:{}", testkit::free_port()), &base, vec![gateway::tasks::rate_guard::KIE_DEFAULT], Duration::from_millis(50));
    cfg.kie_key = None;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::run(listener, cfg, async move {
        let _ = stopped.await;
    }));
    support::answers(&base).await;
    let http = support::signed_in(&base, ADMIN).await;
    // What a scrape itself costs (the fewest of a few).
    let mut scrape_cost = f64::MAX;
    for _ in 0..3 {
        let a = store_ops(&http, &base).await;
        let b = store_ops(&http, &base).await;
        scrape_cost = scrape_cost.min(b - a);
    }
    let mut reads: Vec<(String, String, bool)> = vec![("console page".into(), "/".into(), false)];
    for p in app::panels::PanelId::ALL {
        reads.push((format!("panel {}", p.slug()), format!("/panel/{}", p.slug()), false));
    }
    reads.push(("receipt of a 20-task project".into(), "/receipts.json?project=small".into(), false));
    // A search in the Monitor, as the page lists it: a word a third of the tasks have, and
    // one only 20 have.
    reads.push(("search \"veo3\" (console page)".into(), "/?q=veo3".into(), false));
    reads.push(("search \"small\" (console page)".into(), "/?q=small".into(), false));
    reads.push(("/events first byte".into(), "/events".into(), true));
    let mut out = BTreeMap::new();
    for (label, url, first_byte) in reads {
        out.insert(label, measure(&http, &base, &url, scrape_cost, first_byte).await);
    }
    // Someone limited to two projects: their Monitor merges one listing per project.
    let member = support::signed_in(&base, MEMBER).await;
    for (label, url) in [("member of 2 projects: console page", "/"), ("member of 2 projects: panel failures", "/panel/failures"), ("member of 2 projects: panel ledger", "/panel/ledger")] {
        out.insert(label.into(), measure(&member, &base, url, scrape_cost, false).await);
    }
    let (t, _) = measure(&http, &base, "/metrics", 0.0, false).await;
    out.insert("/metrics".into(), (t, scrape_cost));
    let _ = stop.send(());
    server.await.expect("server task").expect("server");
    out
}

async fn store_rows(label: &str, make: impl Fn() -> StoreConfig) -> Vec<(usize, BTreeMap<String, (Duration, f64)>)> {
    let mut rows = Vec::new();
    let mut seeded = 0;
    for n in sizes() {
        {
            let store = server::open_store(&make()).await.expect("open the store to seed it");
            let started = Instant::now();
            seed(store.as_ref(), seeded, n).await;
            eprintln!("{label}: {n} ended tasks written in {:.1} s", started.elapsed().as_secs_f64());
        }
        seeded = n;
        rows.push((n, round(make()).await));
    }
    rows
}

fn table(label: &str, rows: &[(usize, BTreeMap<String, (Duration, f64)>)]) {
    println!("\n### {label}\n");
    let sizes: Vec<String> = rows.iter().map(|(n, _)| n.to_string()).collect();
    println!("| read | {} | ratio |", sizes.iter().map(|n| format!("{n}: ms (store ops)")).collect::<Vec<_>>().join(" | "));
    println!("|---|{}---:|", "---:|".repeat(rows.len()));
    for read in rows[0].1.keys() {
        let cells: Vec<String> = rows.iter().map(|(_, m)| m.get(read).map_or("—".into(), |(t, ops)| format!("{:.2} ({ops:.0})", t.as_secs_f64() * 1000.0))).collect();
        let first = rows.first().and_then(|(_, m)| m.get(read)).map_or(0.0, |(t, _)| t.as_secs_f64());
        let last = rows.last().and_then(|(_, m)| m.get(read)).map_or(0.0, |(t, _)| t.as_secs_f64());
        let ratio = if first > 0.0 { last / first } else { 0.0 };
        println!("| {read} | {} | {ratio:.2} |", cells.join(" | "));
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let redis_prefix = format!("{}:", testkit::unique("scale"));
    let redis = store_rows("redis", || StoreConfig::Redis { url: testkit::redis_url(), prefix: redis_prefix.clone(), options: Default::default() }).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let embedded = store_rows("embedded", || StoreConfig::Embedded { dir: path.clone() }).await;
    println!("## Reads against the history (`cargo bench -p server --bench scale`)");
    table("Redis", &redis);
    table("Embedded", &embedded);
}
