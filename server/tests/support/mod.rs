//! Helpers shared by the server's integration tests: a server on port 0, a kie-sim on port 0,
//! server functions called the way the browser calls them.
#![allow(dead_code)]

use server::config::{Config, KeySource, Secret, StoreConfig};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::oneshot;

pub const KEY: &str = "kie-test-key-7f3a9c1e5d";

/// The longest any test request may take: a console that stops answering fails the test at the
/// request that waited, instead of hanging the run.
pub const REQUEST_LIMIT: Duration = Duration::from_secs(60);

/// How long a server may take to shut down before the test fails.
pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(30);

/// A client builder with [`REQUEST_LIMIT`]: every test client starts from it.
pub fn http_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().timeout(REQUEST_LIMIT)
}

/// A client with [`REQUEST_LIMIT`] that follows redirects.
pub fn http() -> reqwest::Client {
    http_builder().build().expect("client")
}

pub struct Running {
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<Result<(), server::ServerError>>,
}

impl Running {
    pub async fn shutdown(mut self) -> Result<(), server::ServerError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(SHUTDOWN_LIMIT, self.done)
            .await
            .unwrap_or_else(|_| panic!("the server did not shut down within {SHUTDOWN_LIMIT:?}"))
            .expect("server task")
    }
}

pub fn config(store: StoreConfig, key: Option<&str>) -> Config {
    Config {
        site_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        site_root: "target/site".into(),
        // Loopback only: a closed port unless a test points it at a kie-sim.
        kie_base_url: format!("http://127.0.0.1:{}", testkit::free_port()).parse().expect("url"),
        kie_upload_base_url: None,
        upload_max_bytes: 100 << 20,
        relay_upload_bytes_per_day: None,
        public_url: Some("https://console.example.test".parse().expect("url")),
        store,
        kie_key: key.map(|k| (Secret::new(k), KeySource::Environment)),
        webhook_hmac_key: None,
        simulate: false,
        rate_guard: vec![gateway::tasks::rate_guard::KIE_DEFAULT],
        chat_rate_guard: gateway::tasks::rate_guard::parse_chat_rules(gateway::tasks::rate_guard::CHAT_DEFAULT).expect("rules"),
        chat_model_rate_guard: Vec::new(),
        catalog_file: None,
        rate_margin: Duration::from_millis(50),
        queue_max_per_owner: gateway::tasks::lifecycle::quota::DEFAULT_QUEUE_MAX_PER_OWNER,
        queue_paused_intake: Default::default(),
        alert_webhook: None,
        // Tests' receivers listen on loopback.
        outbound: gateway::outbound::OutboundPolicy::parse("127.0.0.1").expect("allow"),
        redis_allow_ephemeral: false,
        redis_assume_persistent: false,
        give_up_after: Duration::from_secs(3600),
        task_retention: None,
        sessions: gateway::team::sessions::SessionPolicy::default(),
        // The tests scrape /metrics as an operator who opened it would.
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

/// Library settings with a folder of its own under the scratch directory.
pub fn library(label: &str) -> server::config::LibrarySettings {
    server::config::LibrarySettings {
        url: url::Url::from_directory_path(testkit::scratch_dir(label)).expect("url"),
        terms: Default::default(),
        max_asset_bytes: 64 << 20,
        quota_bytes: None,
        link_ttl: Duration::from_secs(24 * 3600),
        source_hosts: gateway::library::KIE_RESULT_HOSTS.into(),
    }
}

/// A listener on a free loopback port and its base URL (to know the address before start).
pub async fn bind() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    (listener, base)
}

pub async fn start(cfg: Config) -> Running {
    let (listener, _) = bind().await;
    start_on(listener, cfg).await
}

/// Serves `cfg` on `listener` (with the test users in its store); returns once it answers.
pub async fn start_on(listener: tokio::net::TcpListener, cfg: Config) -> Running {
    seed_users(&cfg.store).await;
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    // A port can come back for a later server: its sessions are not this one's.
    SESSIONS.lock().await.retain(|(origin, _), _| *origin != origin_of(&base));
    let (tx, rx) = oneshot::channel::<()>();
    let done = tokio::spawn(server::run(listener, cfg, async move {
        let _ = rx.await;
    }));
    let client = http();
    for _ in 0..200 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Running { base, stop: Some(tx), done }
}

/// A console on a Redis prefix of its own that sends to the simulator (run with `settings`),
/// keeps results in a Library named after `label` and has its own address as `PUBLIC_URL`:
/// the server, a handle on its store, and the simulator (keep it alive).
pub async fn start_with_library(label: &str, settings: kie_sim::Settings) -> (Running, std::sync::Arc<dyn gateway::Store>, kie_sim::Sim) {
    let (sim_base, sim) = start_sim_with(settings, KEY, 10_000.0, None).await;
    let store_cfg = redis_store(&format!("{}:", testkit::unique(label)));
    let (listener, base) = bind().await;
    let mut cfg = config(store_cfg.clone(), Some(KEY));
    cfg.kie_base_url = sim_base.parse().expect("url");
    cfg.public_url = Some(base.parse().expect("url"));
    cfg.library = Some(library(label));
    let running = start_on(listener, cfg).await;
    let store = server::open_store(&store_cfg).await.expect("store");
    (running, store, sim)
}

/// Waits until `check` holds, polling every 100 ms; fails the test after `secs`.
pub async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, secs: u64, mut check: impl FnMut() -> F) {
    let start = std::time::Instant::now();
    while !check().await {
        assert!(start.elapsed() < Duration::from_secs(secs), "{what} did not happen within {secs} s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A form body from pairs.
pub fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// The test users, one per role, all with [`PASSWORD`].
pub const ADMIN: &str = "admin@studio.test";
pub const PRODUCER: &str = "producer@studio.test";
pub const VIEWER: &str = "viewer@studio.test";
pub const PASSWORD: &str = "correct horse battery staple";

/// Adds the test users to the store if they are not there yet (before a server holds it).
pub async fn seed_users(store: &StoreConfig) {
    use gateway::team::accounts::{self, Actor, Role};
    let s = server::open_store(store).await.expect("open store to seed users");
    for (email, role) in [(ADMIN, Role::Admin), (PRODUCER, Role::Producer), (VIEWER, Role::Viewer)] {
        if accounts::get(s.as_ref(), email).await.expect("read users").is_none() {
            match accounts::add(s.as_ref(), &Actor::cli(), email, "", role, PASSWORD).await {
                Ok(_) | Err(accounts::AccountError::Exists(_)) => {}
                Err(e) => panic!("seed {email}: {e}"),
            }
        }
    }
}

/// The scheme, host and port of a URL (the console's origin).
pub fn origin_of(url: &str) -> String {
    let u = url::Url::parse(url).expect("url");
    format!("{}://{}:{}", u.scheme(), u.host_str().expect("host"), u.port_or_known_default().expect("port"))
}

pub fn no_redirects() -> reqwest::Client {
    http_builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

/// Signs in through the form; `Ok(token)` from the session cookie, `Err(location)` when the
/// server sent the browser back to the sign-in page instead.
pub async fn sign_in(base: &str, email: &str, password: &str) -> Result<String, String> {
    let r = post_form(base, "/auth/signin", None, &[("email", email), ("password", password), ("next", "/")]).await;
    assert_eq!(r.status().as_u16(), 303, "sign-in answers with a redirect");
    let location = r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let token = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix(&format!("{}=", server::auth::COOKIE)).map(|rest| rest.split(';').next().unwrap_or_default().to_string()))
        .filter(|t| !t.is_empty());
    token.ok_or(location)
}

/// A KIE-style JSON POST with a bearer key (to KIE's paths on kie-sim or the relay): the
/// answer's envelope.
pub async fn post_kie(url: &str, key: &str, body: &serde_json::Value) -> serde_json::Value {
    http().post(url).bearer_auth(key).json(body).send().await.expect("POST").json().await.expect("json")
}

/// A browser-style form POST to `path` (from this console's origin, with `token`'s session if
/// given), redirects not followed.
pub async fn post_form(base: &str, path: &str, token: Option<&str>, pairs: &[(&str, &str)]) -> reqwest::Response {
    let mut req = no_redirects().post(format!("{base}{path}")).header("origin", base).form(pairs);
    if let Some(t) = token {
        req = req.header("cookie", cookie(t));
    }
    req.send().await.expect("POST")
}

static SESSIONS: std::sync::LazyLock<tokio::sync::Mutex<std::collections::HashMap<(String, String), String>>> = std::sync::LazyLock::new(Default::default);

/// A session of `email` on the console at `base` (signed in once, then reused by every
/// caller; concurrent callers wait for the one sign-in).
pub async fn session(base: &str, email: &str) -> String {
    let key = (origin_of(base), email.to_string());
    let mut sessions = SESSIONS.lock().await;
    if let Some(t) = sessions.get(&key) {
        return t.clone();
    }
    let token = sign_in(base, email, PASSWORD).await.unwrap_or_else(|loc| panic!("{email} could not sign in at {base}: sent to {loc}"));
    sessions.insert(key, token.clone());
    token
}

pub fn cookie(token: &str) -> String {
    format!("{}={token}", server::auth::COOKIE)
}

/// A client that sends `email`'s session and this console's origin with every request.
pub async fn client_as(base: &str, email: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("cookie", cookie(&session(base, email).await).parse().expect("cookie"));
    headers.insert("origin", origin_of(base).parse().expect("origin"));
    http_builder().default_headers(headers).redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

/// GET as the admin: (status, body).
pub async fn get(url: &str) -> (u16, String) {
    let r = client_as(&origin_of(url), ADMIN).await.get(url).send().await.expect("GET");
    (r.status().as_u16(), r.text().await.expect("body"))
}

/// GET with no session: (status, body).
pub async fn get_anon(url: &str) -> (u16, String) {
    let r = no_redirects().get(url).send().await.expect("GET");
    (r.status().as_u16(), r.text().await.expect("body"))
}

/// Calls a server function as the admin, the way the browser does (form-encoded POST).
pub async fn server_fn(base: &str, name: &str, form: &str) -> (u16, serde_json::Value) {
    let token = session(base, ADMIN).await;
    server_fn_as(base, Some(&token), name, form).await
}

/// Calls a server function with this session token (or none), from this console's origin.
pub async fn server_fn_as(base: &str, token: Option<&str>, name: &str, form: &str) -> (u16, serde_json::Value) {
    let mut req = no_redirects()
        .post(format!("{base}/api/{name}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", origin_of(base))
        .body(form.to_string());
    if let Some(t) = token {
        req = req.header("cookie", cookie(t));
    }
    let r = req.send().await.expect("POST");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

/// Runs `control-room ARGS` against the embedded store in `data_dir`, with nothing else in its
/// environment: (exit code, stdout, stderr).
pub fn cli(data_dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    cli_with_input(data_dir, args, "")
}

/// [`cli`] with `input` on standard input (a password).
pub fn cli_with_input(data_dir: &std::path::Path, args: &[&str], input: &str) -> (Option<i32>, String, String) {
    cli_with(data_dir, args, input, &[])
}

/// [`cli_with_input`] with more environment variables.
pub fn cli_with(data_dir: &std::path::Path, args: &[&str], input: &str, env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_control-room"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", data_dir)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run control-room");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).expect("stdin");
    }
    let out = child.wait_with_output().expect("control-room output");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

pub fn embedded(dir: &tempfile::TempDir) -> StoreConfig {
    StoreConfig::Embedded { dir: dir.path().to_path_buf() }
}

pub fn redis_store(prefix: &str) -> StoreConfig {
    StoreConfig::Redis { url: testkit::redis_url(), prefix: prefix.to_string(), options: Default::default() }
}

/// A kie-sim on a free loopback port with one account; its base URL.
pub async fn start_sim(account_key: &str, balance: f64) -> String {
    start_sim_with(kie_sim::Settings::default(), account_key, balance, None).await.0
}

/// A kie-sim with these settings and an account (optionally signing callbacks).
pub async fn start_sim_with(settings: kie_sim::Settings, account_key: &str, balance: f64, hmac: Option<&str>) -> (String, kie_sim::Sim) {
    let sim = kie_sim::Sim::new(settings);
    sim.add_account(account_key, balance, hmac);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(sim.clone().serve(listener, std::future::pending()));
    (base, sim)
}

/// A receiver for the relay's callbacks: (headers, body) of each.
pub async fn callback_sink() -> (String, tokio::sync::mpsc::UnboundedReceiver<(axum::http::HeaderMap, serde_json::Value)>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, axum::Json(body): axum::Json<serde_json::Value>| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((headers, body));
                "ok"
            }
        }),
    );
    let (listener, base) = bind().await;
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("{base}/hook"), rx)
}

/// Submits an image task through the relay until it answers: a 503 (a store outage or a
/// failover: nothing recorded) is tried again, as a client would; one that says the task may
/// still run is an answer too (not resubmitted). `(code, task id)`; gives up after 60 s.
pub async fn submit_until_answered(base: &str, key: &str, prompt: &str) -> (u16, Option<String>) {
    let url = format!("{base}/kie/api/v1/jobs/createTask");
    let body = serde_json::json!({"model": "google/imagen4-fast", "input": {"prompt": prompt}});
    let start = std::time::Instant::now();
    loop {
        if let Ok(r) = http().post(&url).bearer_auth(key).json(&body).timeout(Duration::from_secs(20)).send().await {
            let env: serde_json::Value = r.json().await.unwrap_or_default();
            let code = env["code"].as_u64().unwrap_or(0) as u16;
            if code == 503 && env["msg"].as_str().is_some_and(|m| m.contains("may still run")) {
                return (code, None);
            }
            if code != 503 && code != 0 {
                return (code, env["data"]["taskId"].as_str().map(str::to_string));
            }
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{prompt}: the relay never answered");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}
