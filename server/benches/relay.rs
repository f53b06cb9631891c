//! Relay overhead and callback → browser latency, measured side by side in one run.
//!
//! `cargo bench -p server --bench relay` (`BENCH_SMOKE=1` for a few iterations) — a private
//! redis-server (AOF on), kie-sim and the Control
//! Room all on this machine's loopback, in this process (the client too), so every figure
//! shares the same two cores. Prints Markdown for `docs/benchmarks.md`.
//!
//! 1. `createTask` and `recordInfo` straight to kie-sim vs through the relay (Redis store), at
//!    1 and at 200 concurrent clients: p50/p99 latency and requests per second.
//! 2. Callback → browser: from the moment a KIE callback is sent to the moment the task's
//!    `success` event arrives on an SSE connection, with 1 and with 1,000 connections open.

mod support;

use serde_json::{Value, json};
use server::config::StoreConfig;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::sse::SseClient;

use support::KEY;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

struct Stats {
    p50: Duration,
    p99: Duration,
    per_sec: f64,
}

/// `clients` tasks each sending `each` requests made by `make`; latency per request.
async fn load<F, Fut>(clients: usize, each: usize, make: F) -> Stats
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let make = Arc::new(make);
    let start = Instant::now();
    let mut handles = Vec::new();
    for c in 0..clients {
        let make = make.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(each);
            for i in 0..each {
                let t = Instant::now();
                make(c * each + i).await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("client"));
    }
    let wall = start.elapsed();
    all.sort();
    Stats { p50: pct(&all, 0.5), p99: pct(&all, 0.99), per_sec: all.len() as f64 / wall.as_secs_f64() }
}

async fn start_sim(settings: kie_sim::Settings) -> (String, kie_sim::Sim) {
    let sim = kie_sim::Sim::new(settings);
    sim.add_account(KEY, 1e12, None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(sim.clone().serve(listener, std::future::pending()));
    (base, sim)
}

async fn start_console(sim: &str, prefix: &str, rate_limit: i64) -> String {
    let rule = gateway::tasks::rate_guard::LimitRule::Requests { limit: rate_limit, window: Duration::from_secs(10) };
    support::console(sim, prefix, vec![rule], Duration::from_millis(50)).await
}

async fn relay_key(prefix: &str) -> String {
    let store = server::open_store(&StoreConfig::Redis { url: testkit::redis_url(), prefix: prefix.into(), options: Default::default() }).await.expect("store");
    gateway::team::relay_keys::create(store.as_ref(), &gateway::team::accounts::Actor::cli(), "bench", "bench").await.expect("key").text.expose().to_string()
}

fn create_body(i: usize) -> Value {
    json!({"model": "google/imagen4-fast", "input": {"prompt": format!("bench task {i}")}})
}

async fn relay_overhead(out: &mut String) {
    // kie-sim without its limits, so the direct column measures the simulator, not its 429s.
    let settings = kie_sim::Settings { rate_limit: u32::MAX, record_info_per_sec: u32::MAX, ..Default::default() };
    let (sim, _s) = start_sim(settings).await;
    let prefix = format!("{}:", testkit::unique("bench-relay"));
    // The rate guard at KIE's default: relayed tasks queue, as they would in production.
    let console = start_console(&sim, &prefix, 20).await;
    let key = relay_key(&prefix).await;
    let http = reqwest::Client::builder().pool_max_idle_per_host(512).build().expect("client");

    // Task ids to read: one created directly, one through the relay.
    let direct_id: Value = http.post(format!("{sim}/api/v1/jobs/createTask")).bearer_auth(KEY).json(&create_body(0)).send().await.expect("c").json().await.expect("j");
    let direct_id = direct_id["data"]["taskId"].as_str().expect("id").to_string();
    let relay_id: Value = http.post(format!("{console}/kie/api/v1/jobs/createTask")).bearer_auth(&key).json(&create_body(0)).send().await.expect("c").json().await.expect("j");
    let relay_id = relay_id["data"]["taskId"].as_str().expect("id").to_string();

    let runs: &[(usize, usize)] = if support::smoke() { &[(1, 20), (8, 5)] } else { &[(1, 1000), (200, 25)] };
    out.push_str("| call | clients | requests | direct p50 ms | relay p50 ms | added p50 ms | direct p99 ms | relay p99 ms | added p99 ms | direct req/s | relay req/s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for &(clients, each) in runs {
        for call in ["createTask", "recordInfo"] {
            let mut cols = Vec::new();
            for (base, auth, id) in [(sim.clone(), KEY.to_string(), direct_id.clone()), (format!("{console}/kie"), key.clone(), relay_id.clone())] {
                let http = http.clone();
                let stats = load(clients, each, move |i| {
                    let (http, base, auth, id) = (http.clone(), base.clone(), auth.clone(), id.clone());
                    async move {
                        let r = if call == "createTask" {
                            http.post(format!("{base}/api/v1/jobs/createTask")).bearer_auth(auth).json(&create_body(i)).send().await
                        } else {
                            http.get(format!("{base}/api/v1/jobs/recordInfo")).query(&[("taskId", id)]).bearer_auth(auth).send().await
                        };
                        let r = r.expect("request");
                        assert_eq!(r.status(), 200, "{call}");
                        let _ = r.bytes().await;
                    }
                })
                .await;
                cols.push(stats);
            }
            let (d, r) = (&cols[0], &cols[1]);
            assert!(d.per_sec > 0.0 && r.per_sec > 0.0 && r.p50 > Duration::ZERO, "{call}: no figures");
            let added = |a: Duration, b: Duration| if b > a { ms(b - a) } else { format!("−{}", ms(a - b)) };
            out.push_str(&format!(
                "| {call} | {clients} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} |\n",
                clients * each,
                ms(d.p50),
                ms(r.p50),
                added(d.p50, r.p50),
                ms(d.p99),
                ms(r.p99),
                added(d.p99, r.p99),
                d.per_sec,
                r.per_sec
            ));
            eprintln!("{call} x{clients} done");
        }
    }
}

async fn callback_to_browser(out: &mut String) {
    // Tasks end at once at the simulator and it sends no callback: the benchmark sends it.
    let settings = kie_sim::Settings { rate_limit: u32::MAX, record_info_per_sec: u32::MAX, schedule: kie_sim::Schedule { waiting_ms: 0, queuing_ms: 0, generating_ms: 0 }, ..Default::default() };
    let (sim_base, sim) = start_sim(settings).await;
    sim.world().faults.drop_callback = true;
    let prefix = format!("{}:", testkit::unique("bench-cb"));
    let console = start_console(&sim_base, &prefix, 100_000).await;
    let key = relay_key(&prefix).await;
    // The live stream is for signed-in people.
    let http = support::admin_client(&console, &prefix).await;
    let (sizes, samples): (&[usize], usize) = if support::smoke() { (&[1, 10], 5) } else { (&[1, 1000], 150) };

    out.push_str("\n| SSE connections open | samples | p50 ms | p99 ms | max ms |\n|---:|---:|---:|---:|---:|\n");
    let mut extra: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    // Open browsers are people: a session holds at most `PER_SESSION` live streams, so the
    // other connections are spread over as many signed-in admins as that takes.
    let mut people: Vec<reqwest::Client> = Vec::new();
    for &connections in sizes {
        while extra.len() + 1 < connections {
            if extra.len() % server::live::PER_SESSION == 0 {
                people.push(support::admin_client(&console, &prefix).await);
            }
            let mut c = SseClient::open(people.last().expect("a person"), &console, None).await;
            extra.push(tokio::spawn(async move { while c.next(Duration::from_secs(3600)).await.is_some() {} }));
        }
        // The measured stream: someone of its own.
        let watcher = support::admin_client(&console, &prefix).await;
        let mut sse = SseClient::open(&watcher, &console, None).await;
        let mut lat = Vec::new();
        for i in 0..samples {
            let created: Value = http.post(format!("{console}/kie/api/v1/jobs/createTask")).bearer_auth(&key).json(&create_body(i)).send().await.expect("c").json().await.expect("j");
            let id = created["data"]["taskId"].as_str().expect("id").to_string();
            // Wait until KIE (the simulator) has the task.
            let kie_id = loop {
                let e = sse.next(Duration::from_secs(10)).await.expect("event");
                if e.data["id"] == id.as_str() && e.data["kie_task_id"].is_string() {
                    break e.data["kie_task_id"].as_str().unwrap_or_default().to_string();
                }
            };
            let (url, body) = {
                let mut w = sim.world();
                let url = w.tasks.get(&kie_id).and_then(|t| t.callback_url.clone()).expect("callback url");
                (url, json!({"code": 200, "msg": "Playground task completed successfully.", "data": w.record_json(&kie_id).expect("record")}))
            };
            let sent = Instant::now();
            let post = tokio::spawn({
                let http = http.clone();
                async move { http.post(url).json(&body).send().await.expect("callback").json::<Value>().await.expect("json") }
            });
            let arrived = loop {
                let e = sse.next(Duration::from_secs(10)).await.expect("event");
                if e.data["id"] == id.as_str() && e.data["state"] == "success" {
                    break sent.elapsed();
                }
            };
            let answer = post.await.expect("post");
            // KIE's callbacks follow its task rate (at most 2 a second per account); pacing them
            // keeps confirmations inside the shared 10-per-second recordInfo window, whose waits
            // would otherwise be measured instead of the path.
            tokio::time::sleep(Duration::from_millis(150)).await;
            // Count only the callbacks that made the change (the poller may win a race).
            if answer["msg"] == "applied" {
                lat.push(arrived);
            }
        }
        lat.sort();
        assert!(!lat.is_empty(), "no callback made the change with {connections} connections");
        out.push_str(&format!("| {connections} | {} | {} | {} | {} |\n", lat.len(), ms(pct(&lat, 0.5)), ms(pct(&lat, 0.99)), ms(*lat.last().expect("samples"))));
        eprintln!("callback → SSE with {connections} connections done");
    }
    for h in extra {
        h.abort();
    }
}

#[tokio::main]
async fn main() {
    let files = testkit::raise_fd_limit();
    assert!(files >= 4096, "the open-file limit ({files}) is too low for 1,000 SSE connections; raise it (ulimit -Hn)");
    let mut out = String::new();
    out.push_str("### Relay overhead (Redis store)\n\n");
    relay_overhead(&mut out).await;
    out.push_str("\n### Callback → browser (SSE)\n");
    callback_to_browser(&mut out).await;
    println!("{out}");
}
