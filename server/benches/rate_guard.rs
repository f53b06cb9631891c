//! The rate guard's proof: a backlog submitted to three Control Room instances on one Redis,
//! drained against kie-sim with KIE's strict limit (20 new tasks in any 10 s, the 21st
//! rejected with 429), in real time.
//!
//! `cargo bench -p server --bench rate_guard` (about 8.5 minutes for the default 1,000 tasks;
//! `BENCH_TASKS=200` for a quicker look, `RATE_MARGIN_MS` to try another safety margin;
//! `BENCH_SMOKE=1` submits 12 and checks it runs).
//! Everything runs in this process on this machine's loopback, against a private
//! `redis-server` with its append-only file on (or `TEST_REDIS_URL`). Reads kie-sim's own request log and prints Markdown
//! for `docs/benchmarks.md`:
//! - `429`s kie-sim answered (the goal: 0);
//! - the most admissions kie-sim saw in any 10 s window (at most 20);
//! - utilisation: the ideal drain time of N tasks at 20 per 10 s, (N/20 − 1) × 10 s, over the
//!   measured time from the first admission to the last (the goal: at least 99 %).

mod support;

use std::time::{Duration, Instant};
use support::KEY;
const LIMIT: usize = 20;
const WINDOW_MS: u64 = 10_000;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() {
    testkit::raise_fd_limit();
    // Smoke: one window's worth, to prove it runs (no 429, all admitted); the utilisation
    // figure needs the full backlog.
    let tasks = env_num("BENCH_TASKS", if support::smoke() { 12 } else { 1000 }) as usize;
    let margin = Duration::from_millis(env_num("RATE_MARGIN_MS", 50));
    let settings = kie_sim::Settings { schedule: kie_sim::Schedule { waiting_ms: 100, queuing_ms: 100, generating_ms: 300 }, ..Default::default() };
    let sim = kie_sim::Sim::new(settings);
    sim.add_account(KEY, 1e12, None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let sim_base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(sim.clone().serve(listener, std::future::pending()));

    let prefix = format!("{}:", testkit::unique("guardbench"));
    let mut bases = Vec::new();
    for _ in 0..3 {
        bases.push(support::console(&sim_base, &prefix, vec![gateway::tasks::rate_guard::KIE_DEFAULT], margin).await);
    }
    eprintln!("submitting {tasks} tasks to 3 instances (margin {} ms)…", margin.as_millis());
    let mut clients = Vec::new();
    for base in &bases {
        clients.push(support::admin_client(base, &prefix).await);
    }
    let submitted = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..tasks {
        let (http, base) = (clients[i % 3].clone(), bases[i % 3].clone());
        set.spawn(async move {
            let body = format!("model=nano-banana-2&project=backlog&prompt=backlog+{i}");
            let r = http.post(format!("{base}/api/submit_task")).header("content-type", "application/x-www-form-urlencoded").body(body).send().await.expect("submit");
            assert!(r.status().is_success(), "submission {i}: {}", r.status());
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("submission");
    }
    eprintln!("backlog of {tasks} recorded in {:.1} s; draining…", submitted.elapsed().as_secs_f64());
    let deadline = Instant::now() + Duration::from_millis((tasks as u64 / LIMIT as u64 + 5) * WINDOW_MS * 2);
    let admitted_ms = loop {
        let admitted: Vec<u64> = sim.world().log.iter().filter(|e| e.path.ends_with("createTask") && e.code == 200).map(|e| e.at_ms).collect();
        if admitted.len() >= tasks || Instant::now() > deadline {
            break admitted;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    if std::env::var("BENCH_TRACE").is_ok() {
        let t0 = admitted_ms.first().copied().unwrap_or(0);
        eprintln!("admissions (ms after the first): {:?}", admitted_ms.iter().map(|t| t - t0).collect::<Vec<_>>());
    }
    let log = sim.world().log.clone();
    let rejected = log.iter().filter(|e| e.path.ends_with("createTask") && e.code == 429).count();
    let mut most = 0;
    let mut j = 0;
    for i in 0..admitted_ms.len() {
        while admitted_ms[i] - admitted_ms[j] >= WINDOW_MS {
            j += 1;
        }
        most = most.max(i - j + 1);
    }
    let span_ms = admitted_ms.last().copied().unwrap_or(0).saturating_sub(admitted_ms.first().copied().unwrap_or(0));
    let ideal_ms = (tasks as f64 / LIMIT as f64 - 1.0) * WINDOW_MS as f64;
    let utilisation = ideal_ms / span_ms.max(1) as f64 * 100.0;
    let achieved = admitted_ms.len() as f64 / ((span_ms + WINDOW_MS) as f64 / 1000.0);
    assert_eq!(rejected, 0, "kie-sim answered 429");
    assert_eq!(admitted_ms.len(), tasks, "every task was admitted");
    assert!(most <= LIMIT, "{most} admissions in one 10 s window");
    println!("| tasks | instances | margin | admitted | 429s | most in any 10 s | first → last admission | achieved rate | utilisation |");
    println!("|---|---|---|---|---|---|---|---|---|");
    // Utilisation means something only past one window's worth of tasks.
    let utilisation = if tasks > LIMIT { format!("{utilisation:.2} %") } else { "n/a (one window)".into() };
    println!(
        "| {tasks} | 3 | {} ms | {} | {rejected} | {most} | {:.1} s (ideal {:.0} s) | {achieved:.3}/s | {utilisation} |",
        margin.as_millis(),
        admitted_ms.len(),
        span_ms as f64 / 1000.0,
        ideal_ms.max(0.0) / 1000.0
    );
}
