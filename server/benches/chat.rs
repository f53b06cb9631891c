//! Time to first byte of a language model's answer: straight to kie-sim vs through the
//! relay, side by side in one run.
//!
//! `cargo bench -p server --bench chat` (`BENCH_SMOKE=1` for a few iterations) — a private
//! redis-server (AOF on), kie-sim and the Control Room on this machine's loopback, in this
//! process (the client too). The console runs with `RATE_GUARD_CHAT`'s three kinds of rule
//! (concurrent, requests and tokens per minute: three claims in the store per call, with limits
//! the run does not reach) and a catalog with
//! token prices and a total cost rule on the project, so each call is estimated, held to the
//! cost rules, recorded and settled as in production. kie-sim answers at once (`chat_chunk_ms` 0): what is measured is what the relay
//! adds. Prints Markdown for `docs/benchmarks.md`.

#[allow(dead_code)]
mod support;

use futures::StreamExt;
use serde_json::json;
use std::time::{Duration, Instant};

use support::KEY;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// `n` calls one after another: (time to the first body byte, time to the last), sorted.
async fn calls(http: &reqwest::Client, url: &str, key: &str, stream: bool, n: usize) -> (Vec<Duration>, Vec<Duration>) {
    let body = json!({"messages": [{"role": "user", "content": "a lighthouse at dusk"}], "stream": stream, "max_tokens": 30});
    let (mut first, mut last) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let t = Instant::now();
        let r = http.post(url).bearer_auth(key).json(&body).send().await.expect("POST");
        assert_eq!(r.status(), 200, "{url}");
        let mut chunks = r.bytes_stream();
        let mut got_first = None;
        while let Some(c) = chunks.next().await {
            c.expect("chunk");
            got_first.get_or_insert_with(|| t.elapsed());
        }
        first.push(got_first.expect("a body"));
        last.push(t.elapsed());
    }
    first.sort();
    last.sort();
    (first, last)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = if support::smoke() { 5 } else { 300 };
    let sim = kie_sim::Sim::new(kie_sim::Settings { chat_chunk_ms: 0, chat_requests_per_min: 1_000_000, chat_tokens_per_min: u32::MAX, ..Default::default() });
    sim.add_account(KEY, 1e12, None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let sim_base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(sim.clone().serve(listener, std::future::pending()));

    let dir = testkit::scratch_dir("bench-chat");
    let catalog = dir.join("models.json");
    let text = json!({"prices_taken": "bench", "models": [{"id": "gemini-3-flash", "category": "language", "provider": "Google", "purpose": "bench", "price": {"per_1m_tokens": {"input": 1000, "output": 4000}}}]});
    std::fs::write(&catalog, text.to_string()).expect("catalog");
    let prefix = format!("{}:", testkit::unique("bench-chat"));
    let base = support::console_with(&sim_base, &prefix, vec![gateway::tasks::rate_guard::KIE_DEFAULT], Duration::from_millis(50), |c| {
        c.catalog_file = Some(catalog);
        // The default kinds of rule (three claims per call), with room for the whole run.
        c.chat_rate_guard = gateway::tasks::rate_guard::parse_chat_rules("concurrent:50,requests:1000000/1m,tokens:1000000000/1m").expect("rules");
    })
    .await;
    let store = server::open_store(&server::config::StoreConfig::Redis { url: testkit::redis_url(), prefix: prefix.clone(), options: Default::default() }).await.expect("store");
    let key = gateway::team::relay_keys::create(store.as_ref(), &gateway::team::accounts::Actor::cli(), "bench", "bench").await.expect("key");
    // A studio runs with caps: a total cost rule on the project, far above what the run spends.
    let rule = gateway::money::budget::CostRule::new(gateway::money::budget::Target { project: Some("bench".into()), user: None }, [(gateway::money::budget::CapKind::Total, gateway::Credits::from_credits(1_000_000_000))]);
    gateway::money::budget::set_rule(store.as_ref(), &gateway::team::accounts::Actor::cli(), rule).await.expect("cost rule");
    let http = reqwest::Client::new();
    let direct = format!("{sim_base}/gemini-3-flash/v1/chat/completions");
    let relayed = format!("{base}/kie/gemini-3-flash/v1/chat/completions");
    // Warm both paths (connections, the cost rules in memory).
    calls(&http, &direct, KEY, true, 3).await;
    calls(&http, &relayed, key.text.expose(), true, 3).await;

    println!("| call | path | calls | TTFB p50 ms | TTFB p99 ms | whole p50 ms | whole p99 ms |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for stream in [true, false] {
        let kind = if stream { "streamed" } else { "plain" };
        let (df, dl) = calls(&http, &direct, KEY, stream, n).await;
        let (rf, rl) = calls(&http, &relayed, key.text.expose(), stream, n).await;
        for (path, first, last) in [("direct to kie-sim", &df, &dl), ("through the relay", &rf, &rl)] {
            println!("| {kind} | {path} | {n} | {} | {} | {} | {} |", ms(pct(first, 0.5)), ms(pct(first, 0.99)), ms(pct(last, 0.5)), ms(pct(last, 0.99)));
        }
        assert!(pct(&rf, 0.5) >= pct(&df, 0.5) / 10, "sane figures");
    }
    // Each call is ended just after its answer is handed over: the last ones within moments.
    let started = Instant::now();
    loop {
        let page = store.task_list(&gateway::tasks::task::TaskQuery { limit: 10, ..Default::default() }).await.expect("list");
        if page.tasks.iter().all(|t| t.chat.is_some() && t.state == gateway::TaskState::Success) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "every relayed call recorded and ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
