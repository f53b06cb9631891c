//! What the server's benchmarks share: a Control Room on a free loopback port, on a private
//! `redis-server` (AOF on; `TEST_REDIS_URL` to use another), in front of a kie-sim; a signed-in client for it; the smoke mode.
#![allow(dead_code)]

use server::config::{Config, KeySource, Secret, StoreConfig};
use std::net::SocketAddr;
use std::time::Duration;

pub const KEY: &str = "bench-upstream-key";

/// Starts a console in this process with these rate guard rules and margin; its base URL once
/// it answers.
pub async fn console(sim: &str, prefix: &str, rate_guard: Vec<gateway::tasks::rate_guard::LimitRule>, rate_margin: Duration) -> String {
    console_with(sim, prefix, rate_guard, rate_margin, |_| {}).await
}

/// The benchmarks' configuration: `store`, KIE at `kie_base` with [`KEY`], this console at
/// `public`.
pub fn config(store: StoreConfig, kie_base: &str, public: &str, rate_guard: Vec<gateway::tasks::rate_guard::LimitRule>, rate_margin: Duration) -> Config {
    Config {
        site_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        site_root: "target/site".into(),
        kie_base_url: kie_base.parse().expect("url"),
        kie_upload_base_url: None,
        upload_max_bytes: 100 << 20,
        relay_upload_bytes_per_day: None,
        public_url: Some(public.parse().expect("url")),
        store,
        kie_key: Some((Secret::new(KEY), KeySource::Environment)),
        webhook_hmac_key: None,
        simulate: false,
        rate_guard,
        chat_rate_guard: gateway::tasks::rate_guard::parse_chat_rules(gateway::tasks::rate_guard::CHAT_DEFAULT).expect("rules"),
        chat_model_rate_guard: Vec::new(),
        catalog_file: None,
        rate_margin,
        // The benchmarks send thousands of tasks from one key: no queue quota, so every
        // answer measured is a task recorded, not a 429.
        queue_max_per_owner: 0,
        queue_paused_intake: Default::default(),
        alert_webhook: None,
        // Tests' receivers listen on loopback.
        outbound: gateway::outbound::OutboundPolicy::parse("127.0.0.1").expect("allow"),
        redis_allow_ephemeral: false,
        redis_assume_persistent: false,
        give_up_after: Duration::from_secs(3600),
        task_retention: None,
        sessions: gateway::team::sessions::SessionPolicy::default(),
        metrics: server::config::MetricsAccess::Open,
        max_connections: 0,
        trusted_proxies: Default::default(),
        library: None,
        receipt_sync: None,
        runway_alert_days: 7,
        credits_expire_on: None,
        single_sign_on: None,
    }
}

/// [`console`], with the configuration changed by `change` first.
pub async fn console_with(sim: &str, prefix: &str, rate_guard: Vec<gateway::tasks::rate_guard::LimitRule>, rate_margin: Duration, change: impl FnOnce(&mut Config)) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let mut cfg = config(StoreConfig::Redis { url: testkit::redis_url(), prefix: prefix.into(), options: Default::default() }, sim, &base, rate_guard, rate_margin);
    change(&mut cfg);
    tokio::spawn(server::run(listener, cfg, std::future::pending()));
    answers(&base).await;
    base
}

/// Returns once the console at `base` answers `/healthz`.
pub async fn answers(base: &str) {
    let http = reqwest::Client::new();
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `BENCH_SMOKE=1`: a few iterations only, so the test command proves every benchmark still
/// runs and its figures are sane (full runs stay on demand).
pub fn smoke() -> bool {
    std::env::var("BENCH_SMOKE").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The password of the benchmarks' admins.
pub const ADMIN_PASSWORD: &str = "bench password, long enough";

/// A client signed in to the console at `base` as a new admin (added to its store under
/// `prefix`), sending the console's origin like a browser, so that server functions and the
/// live stream answer it.
pub async fn admin_client(base: &str, prefix: &str) -> reqwest::Client {
    use gateway::team::accounts::{self, Actor, Role};
    let store = server::open_store(&StoreConfig::Redis { url: testkit::redis_url(), prefix: prefix.into(), options: Default::default() }).await.expect("store");
    let email = format!("{}@bench.test", testkit::unique("admin"));
    accounts::add(store.as_ref(), &Actor::cli(), &email, "", Role::Admin, ADMIN_PASSWORD).await.expect("add the bench admin");
    signed_in(base, &email).await
}

/// A client signed in to the console at `base` as `email` (with [`ADMIN_PASSWORD`]).
pub async fn signed_in(base: &str, email: &str) -> reqwest::Client {
    let plain = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let r = plain.post(format!("{base}/auth/signin")).header("origin", base).form(&[("email", email), ("password", ADMIN_PASSWORD), ("next", "/")]).send().await.expect("sign in");
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.split(';').next().filter(|kv| kv.starts_with(&format!("{}=", server::auth::COOKIE))).map(str::to_string))
        .unwrap_or_else(|| panic!("the bench admin could not sign in: {:?}", r.headers().get("location")));
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("cookie", cookie.parse().expect("cookie"));
    headers.insert("origin", base.parse().expect("origin"));
    reqwest::Client::builder().default_headers(headers).pool_max_idle_per_host(2048).build().expect("client")
}
