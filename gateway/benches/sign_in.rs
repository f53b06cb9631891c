//! Sign-in cost: what argon2id (19 MiB, 2 passes) costs per sign-in, and how many sign-ins per
//! second one instance completes when many arrive at once (at most 4 hashes run together).
//!
//!     cargo bench -p gateway --bench sign_in        # BENCH_SMOKE=1: a few, to prove it runs
//!
//! On the embedded store in a temporary directory, so the figures are the hashing and the
//! store's few writes, not a network. Output: Markdown lines for docs/benchmarks.md.

use gateway::team::accounts::{self, Actor, Role};
use gateway::team::sessions::{self, SessionPolicy};
use gateway::{EmbeddedStore, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    // BENCH_SMOKE=1: a few sign-ins, to prove it runs.
    let smoke = std::env::var("BENCH_SMOKE").is_ok_and(|v| !v.is_empty() && v != "0");
    let (hash_runs, levels): (usize, &[usize]) = if smoke { (3, &[1, 4]) } else { (20, &[1, 4, 64]) };
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).expect("store"));
    let password = "a long bench password";
    let mut hashes = Vec::new();
    for _ in 0..hash_runs {
        let t = Instant::now();
        accounts::hash_password(password).await.expect("hash");
        hashes.push(t.elapsed());
    }
    println!("| argon2id hash, one at a time | p50 {:.1} ms | p99 {:.1} ms |", pct(hashes.clone(), 0.5).as_secs_f64() * 1e3, pct(hashes, 0.99).as_secs_f64() * 1e3);
    for i in 0..64 {
        accounts::add(store.as_ref(), &Actor::cli(), &format!("u{i}@bench.test"), "", Role::Producer, password).await.expect("add");
    }
    let policy = SessionPolicy::default();
    for &concurrency in levels {
        let start = Instant::now();
        let mut handles = Vec::new();
        for i in 0..concurrency {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                for round in 0..if smoke { 2 } else { (64 / concurrency).max(2) } {
                    let t = Instant::now();
                    // Each from its own address, so the per-address limit is not what is measured.
                    let from = format!("10.0.{i}.{round}");
                    sessions::sign_in(store.as_ref(), &format!("u{i}@bench.test"), password, "", &from, None, &policy).await.expect("sign in");
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for h in handles {
            lat.extend(h.await.expect("join"));
        }
        let n = lat.len();
        assert!(n > 0 && lat.iter().all(|d| *d > Duration::ZERO), "no sign-ins measured");
        println!(
            "| {concurrency} signing in at once | {:.1} sign-ins/s | p50 {:.1} ms | p99 {:.1} ms |",
            n as f64 / start.elapsed().as_secs_f64(),
            pct(lat.clone(), 0.5).as_secs_f64() * 1e3,
            pct(lat, 0.99).as_secs_f64() * 1e3
        );
    }
}
