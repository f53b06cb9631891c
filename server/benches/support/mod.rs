//! What the server's benchmarks share: a Control Room on a free loopback port, on the Redis at
//! `REDIS_URL`, in front of a kie-sim.

use server::config::{Config, KeySource, Secret, StoreConfig};
use std::net::SocketAddr;
use std::time::Duration;

pub const KEY: &str = "bench-upstream-key";

/// Starts a console in this process with these rate guard rules and margin; its base URL once
/// it answers.
pub async fn console(sim: &str, prefix: &str, rate_guard: Vec<gateway::rate_guard::LimitRule>, rate_margin: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let cfg = Config {
        site_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        site_root: "target/site".into(),
        kie_base_url: sim.parse().expect("url"),
        public_url: Some(base.parse().expect("url")),
        store: StoreConfig::Redis { url: testkit::redis_url(), prefix: prefix.into() },
        kie_key: Some((Secret::new(KEY), KeySource::Environment)),
        webhook_hmac_key: None,
        simulate: false,
        rate_guard,
        rate_margin,
        alert_webhook: None,
        // Tests' receivers listen on loopback.
        outbound: gateway::outbound::OutboundPolicy::parse("127.0.0.1").expect("allow"),
        redis_allow_ephemeral: false,
        give_up_after: Duration::from_secs(3600),
        task_retention: None,
        sessions: gateway::sessions::SessionPolicy::default(),
    };
    tokio::spawn(server::run(listener, cfg, std::future::pending()));
    let http = reqwest::Client::new();
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    base
}
