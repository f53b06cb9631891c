//! How fast kie-sim answers createTask on loopback (it must never be a benchmark's bottleneck).
//!
//!     cargo bench -p kie-sim --bench create        # BENCH_SMOKE=1: a tenth of a second per row
//!
//! The rate limit is lifted and the balance made ample, so every request does the full work
//! (auth, validation, pricing, task record, log entry). 1 and 64 concurrent clients, 3 s each.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let sim = kie_sim::Sim::new(kie_sim::Settings { rate_limit: u32::MAX, ..Default::default() });
    sim.add_account("bench", 1e12, None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/api/v1/jobs/createTask", listener.local_addr().expect("addr"));
    tokio::spawn(sim.clone().serve(listener, std::future::pending()));
    let body = serde_json::json!({"model": "google/imagen4", "input": {"prompt": "a lighthouse at dusk"}}).to_string();
    // BENCH_SMOKE=1: a tenth of a second per row, to prove it runs.
    let smoke = std::env::var("BENCH_SMOKE").is_ok_and(|v| !v.is_empty() && v != "0");
    let run_for = if smoke { Duration::from_millis(100) } else { Duration::from_secs(3) };
    println!("| clients | createTask/s | p50 | p99 |");
    println!("|---:|---:|---:|---:|");
    for clients in [1usize, 64] {
        let http = reqwest::Client::builder().pool_max_idle_per_host(clients).build().expect("client");
        let done = Arc::new(AtomicU64::new(0));
        let end = Instant::now() + run_for;
        let start = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..clients {
            let (http, url, body, done) = (http.clone(), url.clone(), body.clone(), done.clone());
            workers.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < end {
                    let t = Instant::now();
                    let r = http.post(&url).bearer_auth("bench").header("content-type", "application/json").body(body.clone()).send().await.expect("send");
                    assert!(r.status().is_success());
                    let _ = r.bytes().await;
                    lat.push(t.elapsed());
                    done.fetch_add(1, Ordering::Relaxed);
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for w in workers {
            lat.extend(w.await.expect("worker"));
        }
        lat.sort();
        let rate = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
        assert!(rate > 0.0 && !lat.is_empty(), "no createTask measured");
        let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
        println!("| {clients} | {rate:.0} | {:.2?} | {:.2?} |", p(0.5), p(0.99));
    }
}
