//! Helpers shared by the server's integration tests: a server on port 0, a kie-sim on port 0,
//! server functions called the way the browser calls them.
#![allow(dead_code)]

use server::config::{Config, KeySource, Secret, StoreConfig};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::oneshot;

pub const KEY: &str = "kie-test-key-7f3a9c1e5d";

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
        self.done.await.expect("server task")
    }
}

pub fn config(store: StoreConfig, key: Option<&str>) -> Config {
    Config {
        site_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        site_root: "target/site".into(),
        // Loopback only: a closed port unless a test points it at a kie-sim.
        kie_base_url: format!("http://127.0.0.1:{}", testkit::free_port()).parse().expect("url"),
        public_url: Some("https://console.example.test".parse().expect("url")),
        store,
        kie_key: key.map(|k| (Secret::new(k), KeySource::Environment)),
        webhook_hmac_key: None,
        simulate: false,
        rate_guard: vec![gateway::rate_guard::KIE_DEFAULT],
        rate_margin: Duration::from_millis(50),
        alert_webhook: None,
        give_up_after: Duration::from_secs(3600),
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

/// Serves `cfg` on `listener`; returns once the server answers.
pub async fn start_on(listener: tokio::net::TcpListener, cfg: Config) -> Running {
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = oneshot::channel::<()>();
    let done = tokio::spawn(server::run(listener, cfg, async move {
        let _ = rx.await;
    }));
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Running { base, stop: Some(tx), done }
}

pub async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.expect("GET");
    (r.status().as_u16(), r.text().await.expect("body"))
}

/// Calls a server function the way the browser does (form-encoded POST).
pub async fn server_fn(base: &str, name: &str, form: &str) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/{name}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_string())
        .send()
        .await
        .expect("POST");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}



/// Runs `control-room ARGS` against the embedded store in `data_dir`, with nothing else in its
/// environment: (exit code, stdout, stderr).
pub fn cli(data_dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_control-room"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", data_dir)
        .output()
        .expect("run control-room");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

pub fn embedded(dir: &tempfile::TempDir) -> StoreConfig {
    StoreConfig::Embedded { dir: dir.path().to_path_buf() }
}

pub fn redis_store(prefix: &str) -> StoreConfig {
    StoreConfig::Redis { url: testkit::redis_url(), prefix: prefix.to_string() }
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
