//! The KIE Control Room server: axum + leptos_axum around the gateway core.
//!
//! Map of the crate:
//! - [`config`] — flags and environment, validated up front; secrets held in [`config::Secret`].
//! - [`health`] — `/healthz` and `/readyz`.
//! - [`open_store`] — Redis when `REDIS_URL` is set, else the embedded store under `DATA_DIR`.
//! - [`simulator`] — `--simulate`: kie-sim in process, on a free loopback port.
//! - [`Upstream`] — where KIE calls go (KIE, the simulator, or nowhere).
//! - [`router`] — every route: health, the Leptos page and server functions, static files.
//! - [`run`] — serve on a given listener until `shutdown` resolves (tests use port 0).
//!
//! Handlers stay thin: parse, call the gateway core, map its typed error to a status.

pub mod config;
pub mod health;
pub mod simulator;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::get;
use leptos::config::{Env, LeptosOptions};
use leptos_axum::{LeptosRoutes, generate_route_list};
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

use app::api::ConsoleContext;
use app::view::{KeyView, Upstream as UpstreamView};
use config::{Config, StoreConfig, redis_display};
use gateway::kie::{ClientOptions, KieClient};
use gateway::{EmbeddedStore, RedisStore, Secret, Store};
use std::time::Duration;

/// Where KIE calls go: resolved once at start.
#[derive(Clone, Debug)]
pub enum Upstream {
    NotConfigured,
    Kie { base: url::Url, key: Secret },
    Simulator { base: url::Url, key: Secret },
}

impl Upstream {
    pub fn from_config(config: &Config) -> Upstream {
        match &config.kie_key {
            Some((key, _)) => Upstream::Kie { base: config.kie_base_url.clone(), key: key.clone() },
            None => Upstream::NotConfigured,
        }
    }

    fn endpoint(&self) -> Option<(&url::Url, &Secret)> {
        match self {
            Upstream::NotConfigured => None,
            Upstream::Kie { base, key } | Upstream::Simulator { base, key } => Some((base, key)),
        }
    }

    /// A client for this upstream with the given request timeout.
    pub fn client(&self, timeout: Duration) -> Option<KieClient> {
        let (base, key) = self.endpoint()?;
        let opts = ClientOptions { timeout, connect_timeout: timeout.min(Duration::from_secs(5)), attempts: 1, ..Default::default() };
        match KieClient::new(base.clone(), key.clone(), opts) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %e, "cannot build the KIE client");
                None
            }
        }
    }

    fn view(&self) -> UpstreamView {
        let host = |u: &url::Url| format!("{}:{}", u.host_str().unwrap_or_default(), u.port_or_known_default().unwrap_or_default());
        match self {
            Upstream::NotConfigured => UpstreamView::NotConfigured,
            Upstream::Kie { base, .. } => UpstreamView::Kie { host: base.host_str().unwrap_or_default().to_string() },
            Upstream::Simulator { base, .. } => UpstreamView::Simulator { host: host(base) },
        }
    }
}

/// Largest request body the server reads (server functions and, later, the relay API).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("{0}")]
    Store(String),
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// The state every axum handler can extract.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub store: Arc<dyn Store>,
}

/// Opens the configured store, with a one-line error that says what to fix.
pub async fn open_store(config: &StoreConfig) -> Result<Arc<dyn Store>, ServerError> {
    match config {
        StoreConfig::Redis { url, prefix } => match RedisStore::connect(url, prefix).await {
            Ok(s) => Ok(Arc::new(s)),
            Err(e) => Err(ServerError::Store(format!("cannot use Redis at {}: {e}", redis_display(url)))),
        },
        StoreConfig::Embedded { dir } => {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || EmbeddedStore::open(&dir))
                .await
                .map_err(|e| ServerError::Store(e.to_string()))?
                .map(|s| Arc::new(s) as Arc<dyn Store>)
                .map_err(|e| ServerError::Store(format!("cannot open the embedded store: {e}")))
        }
    }
}

/// What the UI may know about this deployment (no secret in it).
pub fn console_context(config: &Config, upstream: &Upstream, store: Arc<dyn Store>) -> ConsoleContext {
    let key = match (&config.kie_key, upstream) {
        (_, Upstream::Simulator { key, .. }) => KeyView { configured: true, source: Some("simulator (generated)".into()), fingerprint: Some(key.fingerprint()) },
        (Some((secret, source)), _) => KeyView { configured: true, source: Some(source.as_str().into()), fingerprint: Some(secret.fingerprint()) },
        (None, _) => KeyView { configured: false, source: None, fingerprint: None },
    };
    ConsoleContext {
        store,
        upstream: upstream.view(),
        key,
        callback_base: config.public_base(),
        callback_signed: config.webhook_hmac_key.is_some(),
        probe_client: upstream.client(Duration::from_secs(5)),
        probe_cache: Arc::default(),
    }
}

pub fn leptos_options(config: &Config) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name("control-room")
        .site_root(config.site_root.to_string_lossy().to_string())
        .site_pkg_dir("pkg")
        .site_addr(config.site_addr)
        .env(Env::PROD)
        .build()
}

/// Every route of the console.
pub fn router(state: AppState, console: ConsoleContext) -> Router {
    let routes = generate_route_list(app::App);
    let shell_options = state.leptos_options.clone();
    let context = move || leptos::prelude::provide_context(console.clone());
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .leptos_routes_with_context(&state, routes, context, move || app::shell(shell_options.clone()))
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(app::shell))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves the console on `listener` until `shutdown` resolves, then drains open requests.
pub async fn run(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServerError> {
    let store = open_store(&config.store).await?;
    let (upstream, _simulator) = if config.simulate {
        if config.kie_key.is_some() {
            tracing::warn!("--simulate: KIE_API_KEY is ignored; requests go to the simulator");
        }
        let sim = simulator::start().await?;
        (Upstream::Simulator { base: sim.base.clone(), key: sim.key.clone() }, Some(sim))
    } else {
        (Upstream::from_config(&config), None)
    };
    let console = console_context(&config, &upstream, store.clone());
    let state = AppState { leptos_options: leptos_options(&config), store: store.clone() };
    let addr = listener.local_addr()?;
    tracing::info!(
        %addr,
        store = store.backend(),
        upstream = ?console.upstream,
        key_configured = config.kie_key.is_some(),
        "KIE Control Room listening on http://{addr}"
    );
    axum::serve(listener, router(state, console)).with_graceful_shutdown(shutdown).await?;
    tracing::info!("shut down cleanly");
    Ok(())
}
