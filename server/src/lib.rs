//! The KIE Control Room server: axum + leptos_axum around the gateway core.
//!
//! Map of the crate:
//! - [`config`] — flags and environment, validated up front; secrets held in [`config::Secret`].
//! - [`health`] — `/healthz` and `/readyz`.
//! - [`open_store`] — Redis when `REDIS_URL` is set, else the embedded store under `DATA_DIR`.
//! - [`router`] — every route: health, the Leptos page and server functions, static files.
//! - [`run`] — serve on a given listener until `shutdown` resolves (tests use port 0).
//!
//! Handlers stay thin: parse, call the gateway core, map its typed error to a status.

pub mod config;
pub mod health;

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
use app::view::{KeyView, Upstream};
use config::{Config, StoreConfig, redis_display};
use gateway::{EmbeddedStore, RedisStore, Store};

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
pub fn console_context(config: &Config, store: Arc<dyn Store>) -> ConsoleContext {
    let upstream = match &config.kie_key {
        None => Upstream::NotConfigured,
        Some(_) => Upstream::Kie { host: config.kie_base_url.host_str().unwrap_or_default().to_string() },
    };
    let key = match &config.kie_key {
        Some((secret, source)) => KeyView { configured: true, source: Some(source.as_str().into()), fingerprint: Some(secret.fingerprint()) },
        None => KeyView { configured: false, source: None, fingerprint: None },
    };
    ConsoleContext {
        store,
        upstream,
        key,
        callback_base: config.public_base(),
        callback_signed: config.webhook_hmac_key.is_some(),
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
    let console = console_context(&config, store.clone());
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
