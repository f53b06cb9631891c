//! The KIE Control Room server: axum + leptos_axum around the gateway core.
//!
//! Map of the crate:
//! - [`config`] — flags and environment, validated up front; secrets held in [`config::Secret`].
//! - [`edge`] — what is accepted from the network before a handler runs: connections, body
//!   sizes and deadlines, the client's address behind trusted proxies.
//! - [`error`] — [`error::Refusal`], every handler's one error type (KIE's envelope on the
//!   relay, plain text elsewhere), and [`error::RelayCaller`], the relay's extractor for who asks.
//! - [`health`] — `/healthz` and `/readyz`.
//! - [`open_store`] — Redis when `REDIS_URL` is set, else the embedded store under `DATA_DIR`.
//! - [`simulator`] — `--simulate`: kie-sim in process, on a free loopback port.
//! - [`relay`] — the KIE-compatible relay API under `/kie` (relay keys), described in
//!   `openapi.json`.
//! - [`relay_docs`] — `GET /kie/docs`, the relay's OpenAPI document as a page.
//! - [`metrics`] — `GET /metrics` (Prometheus / OpenMetrics, `METRICS_TOKEN`) and the relay's
//!   request counter.
//! - [`callbacks`] — `POST /callbacks/kie/{token}`, KIE's callbacks.
//! - [`library`] — `GET /library/{task}/{n}`: a result's Library copy (signed in, or a signed
//!   link), with ranges, `ETag` and long caching; [`open_library`] builds it from the config.
//! - [`receipts`] — `GET /receipts.json` and `/receipts.csv`: a project's receipt.
//! - [`spend`] — `GET /spend.svg` and `/spend.csv`: spend by day, model, project or owner.
//! - [`live`] — `GET /events`, live task events (SSE) with resume.
//! - [`auth`] — who is asking: the session guard on every route, cross-site refusal,
//!   sign-in and sign-out forms, the audit log's CSV export.
//! - [`admin`] — `control-room key|budget|user …` commands: their grammar and what they do.
//! - [`Upstream`] — where KIE calls go (KIE, the simulator, or nowhere).
//! - [`router`] — every route: health, the Leptos page and server functions, static files;
//!   a span per request with its `X-Request-Id`.
//! - [`run`] — serve on a given listener until `shutdown` resolves (tests use port 0).
//!
//! Handlers stay thin: parse, call the gateway core, map its typed error to a status.

pub mod admin;
pub(crate) mod assets;
pub mod auth;
pub(crate) mod callbacks;
pub(crate) mod chat;
pub mod config;
pub mod edge;
pub(crate) mod error;
pub(crate) mod health;
pub(crate) mod library;
pub mod live;
pub(crate) mod metrics;
pub(crate) mod panels;
pub(crate) mod receipts;
pub mod relay;
pub(crate) mod relay_docs;
pub(crate) mod simulator;
pub(crate) mod spend;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::{get, post};
use leptos::config::{Env, LeptosOptions};
use leptos_axum::{LeptosRoutes, generate_route_list};
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use axum::http::{HeaderValue, header};
use tower_http::CompressionLevel;
use tower_http::compression::CompressionLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::LatencyUnit;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use app::api::ConsoleContext;
use app::view::{KeyView, Upstream as UpstreamView};
use config::{Config, StoreConfig, redis_display};
use gateway::money::catalog::Catalog;
use gateway::tasks::events::EventHub;
use gateway::kie::{ClientOptions, KieClient};
use gateway::metrics::Metrics;
use gateway::library::{Library, LibraryConfig, Sources};
use gateway::{EmbeddedStore, Lifecycle, LifecycleOptions, RedisStore, Secret, Store};
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

    /// A client for this upstream with the given request timeout and attempts for reads.
    pub fn client(&self, timeout: Duration, attempts: u32, metrics: &Arc<Metrics>) -> Option<KieClient> {
        let (base, key) = self.endpoint()?;
        let opts = ClientOptions { timeout, connect_timeout: timeout.min(Duration::from_secs(5)), attempts, metrics: Some(metrics.clone()), ..Default::default() };
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
    pub lifecycle: Lifecycle,
    pub hub: EventHub,
    /// For the relay's credit call (`None`: not configured).
    pub kie: Option<KieClient>,
    /// Turns `true` when the server begins to shut down: endless responses (live events) end
    /// then, so a graceful shutdown does not wait on open browsers.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Relay keys checked on this instance (revocations heard from every instance).
    pub keys: Arc<gateway::team::relay_keys::KeyCache>,
    /// Sessions and the origin check.
    pub auth: auth::AuthConfig,
    /// `METRICS_TOKEN`.
    pub metrics_access: config::MetricsAccess,
    /// The Library (`None`: `LIBRARY_URL=off`).
    pub library: Option<Library>,
    /// Who holds how many live streams here.
    pub live: Arc<live::LiveSlots>,
}

/// Opens the configured store, with a one-line error that says what to fix.
pub async fn open_store(config: &StoreConfig) -> Result<Arc<dyn Store>, ServerError> {
    match config {
        StoreConfig::Redis { url, prefix } => Ok(Arc::new(connect_redis(url, prefix).await?)),
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

async fn connect_redis(url: &str, prefix: &str) -> Result<RedisStore, ServerError> {
    RedisStore::connect(url, prefix).await.map_err(|e| ServerError::Store(format!("cannot use Redis at {}: {e}", redis_display(url))))
}

/// Redis is the system of record: a server that keeps nothing on disk, or that deletes keys
/// when full (`maxmemory-policy` other than `noeviction`), is refused (unless
/// `REDIS_ALLOW_EPHEMERAL`); one with snapshots only is warned about.
async fn check_redis_persistence(config: &Config) -> Result<(), ServerError> {
    let StoreConfig::Redis { url, prefix } = &config.store else { return Ok(()) };
    let redis = connect_redis(url, prefix).await?;
    let persistence = redis.persistence().await;
    if let Some(p) = &persistence
        && p.evicts()
        && !config.redis_allow_ephemeral
    {
        return Err(ServerError::Store(format!(
            "Redis at {} runs with maxmemory-policy {}: when full it deletes keys (budgets, holds, tasks), and it is the Control Room's system of record. Set `maxmemory-policy noeviction` (CONFIG SET maxmemory-policy noeviction), or set REDIS_ALLOW_EPHEMERAL=1 to accept losing data.",
            redis_display(url),
            p.eviction
        )));
    }
    match persistence {
        Some(p) if p.aof => Ok(()),
        Some(p) if p.rdb => {
            tracing::warn!("Redis at {} keeps RDB snapshots only: a crash loses what came after the last one (budgets, tasks). Set appendonly yes.", redis_display(url));
            Ok(())
        }
        Some(_) if config.redis_allow_ephemeral => {
            tracing::warn!("Redis at {} keeps nothing on disk; REDIS_ALLOW_EPHEMERAL is set, so starting anyway: a Redis restart loses every budget, task and hold.", redis_display(url));
            Ok(())
        }
        Some(_) => Err(ServerError::Store(format!(
            "Redis at {} keeps nothing on disk (appendonly no, no save points): it is the Control Room's system of record. Set `appendonly yes` (redis-server --appendonly yes, or CONFIG SET appendonly yes), or set REDIS_ALLOW_EPHEMERAL=1 to accept losing everything when it restarts.",
            redis_display(url)
        ))),
        None => {
            tracing::warn!("Redis at {} does not answer CONFIG GET: cannot check that it persists (it must run with appendonly yes).", redis_display(url));
            Ok(())
        }
    }
}

/// What the UI may know about this deployment (no secret in it).
pub fn console_context(config: &Config, upstream: &Upstream, store: Arc<dyn Store>, lifecycle: Lifecycle, library: Option<Library>) -> ConsoleContext {
    let key = match (&config.kie_key, upstream) {
        (_, Upstream::Simulator { key, .. }) => KeyView { configured: true, source: Some("simulator (generated)".into()), fingerprint: Some(key.fingerprint()) },
        (Some((secret, source)), _) => KeyView { configured: true, source: Some(source.as_str().into()), fingerprint: Some(secret.fingerprint()) },
        (None, _) => KeyView { configured: false, source: None, fingerprint: None },
    };
    let callback_base = lifecycle.options().public_base.clone();
    let probe_client = upstream.client(Duration::from_secs(5), 1, &lifecycle.options().metrics);
    ConsoleContext {
        store,
        lifecycle,
        upstream: upstream.view(),
        key,
        callback_base,
        callback_signed: config.webhook_hmac_key.is_some(),
        probe_client,
        probe_cache: Arc::default(),
        library,
        runway_alert_days: config.runway_alert_days,
        credits_expire_on: config.credits_expire_on.clone(),
    }
}

pub fn leptos_options(config: &Config) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name("control-room")
        .hash_files(assets::hashed())
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
    let panels = panels::routes(console.clone());
    let context = move || {
        leptos::prelude::provide_context(console.clone());
        leptos::prelude::provide_context(app::api::StatusMemo::default());
    };
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/callbacks/kie/{token}", post(callbacks::kie_callback))
        .route("/events", get(live::events))
        .route("/draft/{token}", get(chat::draft))
        .route("/metrics", get(metrics::metrics))
        .route("/library/{task}/{n}", get(library::asset))
        .route("/receipts.json", get(receipts::json))
        .route("/receipts.csv", get(receipts::csv))
        .route("/spend.svg", get(spend::chart))
        .route("/spend.csv", get(spend::table))
        .merge(relay::routes().route_layer(axum::middleware::from_fn_with_state(state.clone(), metrics::relay_requests)))
        .merge(auth::routes())
        .merge(panels)
        .merge(assets::routes(&state.leptos_options))
        .leptos_routes_with_context(&state, routes, context, move || app::shell(shell_options.clone()))
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(app::shell))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::guard))
        // Pages and answers no cache may keep without asking again (the bundle and the
        // Library's files set their own).
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        // Pages and panels compressed as the browser asks (the bundle is precompressed; the live
        // stream, media and everything else pass as they are).
        .layer(CompressionLayer::new().quality(CompressionLevel::Precise(4)).compress_when(assets::html_only))
        .layer(axum::middleware::from_fn(edge::limits::bound))
        .layer(TraceLayer::new_for_http().make_span_with(request_span).on_response(DefaultOnResponse::new().level(tracing::Level::INFO).latency_unit(LatencyUnit::Micros)))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// One span per request: its id (also the `X-Request-Id` answered), method and route (the
/// route's pattern, never the path itself: a callback's path carries its token). The actor and
/// the task are recorded on it once known.
fn request_span<B>(req: &axum::http::Request<B>) -> tracing::Span {
    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
    let route = req.extensions().get::<axum::extract::MatchedPath>().map_or("unmatched", |p| p.as_str());
    tracing::info_span!("request", request_id = %id, method = %req.method(), route = %route, actor = tracing::field::Empty, task = tracing::field::Empty)
}

/// The catalog: `CATALOG_FILE` if set, else the one compiled in.
pub fn load_catalog(file: Option<&std::path::Path>) -> Result<Catalog, ServerError> {
    match file {
        Some(path) => {
            let bad = |e: String| ServerError::Config(config::ConfigError(format!("CATALOG_FILE {}: {e}", path.display())));
            let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
            Catalog::parse(&text).map_err(bad)
        }
        None => Ok(Catalog::builtin()),
    }
}

/// The Library from `LIBRARY_*` (`None`: off). Downloads go through the outbound policy with
/// the upstream's own host admitted (the simulator serves its files there).
pub fn open_library(config: &Config, upstream: &Upstream, lifecycle: &Lifecycle) -> Result<Option<Library>, ServerError> {
    let Some(l) = &config.library else { return Ok(None) };
    let aws: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k.starts_with("AWS_")).collect();
    let objects = gateway::library::open_objects(&l.url, aws.iter().map(|(k, v)| (k.as_str(), v.as_str()))).map_err(|e| ServerError::Config(config::ConfigError(e)))?;
    let kie_base = upstream.endpoint().map(|(b, _)| b.clone());
    let policy = match &kie_base {
        Some(b) => config.outbound.clone().also_allowing(b),
        None => config.outbound.clone(),
    };
    let cfg = LibraryConfig {
        url: l.display(),
        max_asset_bytes: l.max_asset_bytes,
        quota_bytes: l.quota_bytes,
        sources: Sources::new(&l.source_hosts, kie_base.as_ref()),
        ..Default::default()
    };
    Ok(Some(Library::new(objects, cfg, lifecycle.clone(), policy)))
}

/// Start-up notes: the rate guard's rules in the audit log if they changed, and how to add the
/// first admin when nobody can sign in yet.
async fn note_start(store: &dyn Store, config: &Config) {
    if let Err(e) = gateway::tasks::rate_guard::note_config(store, &config.rate_guard).await {
        tracing::warn!(error = %e, "cannot record the rate guard's rules in the audit log");
    }
    match gateway::team::accounts::any(store).await {
        Ok(false) => tracing::warn!(
            "no user can sign in yet: add the first admin with `control-room user add EMAIL --role admin` (password on standard input)"
        ),
        Ok(true) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the users"),
    }
}

/// Serves the console on `listener` until `shutdown` resolves, then drains open requests.
/// How long open connections may take to finish once shutdown has begun.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub async fn run(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServerError> {
    let catalog = Arc::new(load_catalog(config.catalog_file.as_deref())?);
    check_redis_persistence(&config).await?;
    let metrics = Arc::new(Metrics::new());
    metrics.set_runway_alert_days(config.runway_alert_days);
    metrics.know_models(catalog.models().iter().filter(|m| !m.is_chat()).map(|m| m.id.as_str()));
    let store = gateway::store::metered::Metered::wrap(open_store(&config.store).await?, metrics.clone());
    let (epoch, fresh) = gateway::store::epoch::claim(store.as_ref()).await.map_err(|e| ServerError::Store(format!("cannot read the store's epoch: {e}")))?;
    if fresh {
        tracing::info!(store = store.backend(), "a new store: its epoch is written now");
    }
    let addr = listener.local_addr()?;
    let (upstream, _simulator) = if config.simulate {
        if config.kie_key.is_some() {
            tracing::warn!("--simulate: KIE_API_KEY is ignored; requests go to the simulator");
        }
        let sim = simulator::start().await?;
        (Upstream::Simulator { base: sim.base.clone(), key: sim.key.clone() }, Some(sim))
    } else {
        (Upstream::from_config(&config), None)
    };
    // Where KIE calls back: PUBLIC_URL; with the simulator and no PUBLIC_URL, this listener
    // on loopback (the simulator runs on this machine).
    let public_base = config.public_base().or_else(|| {
        matches!(upstream, Upstream::Simulator { .. }).then(|| format!("http://127.0.0.1:{}", addr.port()))
    });
    let kie = upstream.client(Duration::from_secs(30), 3, &metrics);
    let library_links = match &config.library {
        Some(l) => Some(
            gateway::library::links::LinkSigner::load(store.as_ref(), public_base.as_deref(), l.link_ttl)
                .await
                .map_err(|e| ServerError::Store(format!("cannot read the Library's link key: {e}")))?,
        ),
        None => None,
    };
    let options = LifecycleOptions {
        public_base,
        webhook_hmac: config.webhook_hmac_key.clone(),
        give_up_after: config.give_up_after,
        rate_rules: config.rate_guard.clone(),
        chat_rules: config.chat_rate_guard.clone(),
        chat_model_rules: config.chat_model_rate_guard.clone(),
        rate_margin: config.rate_margin,
        queue_max_per_owner: config.queue_max_per_owner,
        alert_webhook: config.alert_webhook.as_ref().map(|u| u.to_string()),
        outbound: config.outbound.clone(),
        epoch: Some(epoch),
        task_retention: config.task_retention,
        metrics,
        archive: config.library.as_ref().map(|l| l.terms),
        library_links,
        receipt_sync: config.receipt_sync.clone(),
        ..Default::default()
    };
    let lifecycle = Lifecycle::new(store.clone(), kie.clone(), catalog, options);
    let library = open_library(&config, &upstream, &lifecycle)?;
    if let Some(l) = &library {
        let _ = l.check().await;
    }
    let hub = EventHub::start(store.clone()).await.map_err(|e| ServerError::Store(format!("cannot subscribe to live events: {e}")))?;
    let workers = lifecycle.spawn_workers();
    let archiver = library.as_ref().map(Library::spawn);
    let console = console_context(&config, &upstream, store.clone(), lifecycle.clone(), library.clone());
    let (stop_tx, stopping) = tokio::sync::watch::channel(false);
    let auth = auth::AuthConfig {
        policy: config.sessions,
        secure: config.https(),
        public_authority: config.public_url.as_ref().and_then(|u| u.host_str().map(|h| u.port().map_or(h.to_string(), |p| format!("{h}:{p}")))),
        trusted_proxies: Arc::new(config.trusted_proxies.clone()),
    };
    let keys = Arc::new(gateway::team::relay_keys::KeyCache::start(store.clone()));
    let state = AppState {
        leptos_options: leptos_options(&config),
        store: store.clone(),
        lifecycle,
        hub: hub.clone(),
        kie,
        stopping,
        keys: keys.clone(),
        auth,
        metrics_access: config.metrics.clone(),
        library,
        live: Arc::default(),
    };
    note_start(store.as_ref(), &config).await;
    tracing::info!(
        %addr,
        store = store.backend(),
        upstream = ?console.upstream,
        key_configured = config.kie_key.is_some(),
        callbacks = console.callback_base.is_some(),
        "KIE Control Room listening on http://{addr}"
    );
    match &config.metrics {
        config::MetricsAccess::Closed => tracing::info!("/metrics is closed: set METRICS_TOKEN to a token Prometheus sends as a bearer token (or METRICS_TOKEN=open to serve it to anyone)"),
        config::MetricsAccess::Open => tracing::info!("/metrics is open to anyone who reaches http://{addr} (METRICS_TOKEN=open)"),
        config::MetricsAccess::Token(_) => {}
    }
    if !config.outbound.is_strict() {
        tracing::info!("OUTBOUND_ALLOW is set: relay callbacks and webhooks may reach the private destinations it lists");
    }
    let limits = edge::connections::ConnectionLimits::new(config.max_connections, SHUTDOWN_GRACE);
    tracing::info!(max_connections = limits.max, "serving up to {} connections at once (MAX_CONNECTIONS)", limits.max);
    let shutdown = async move {
        shutdown.await;
        // Live streams end at once; other requests get the grace period.
        let _ = stop_tx.send(true);
    };
    edge::connections::serve(listener, router(state, console), limits, shutdown).await;
    // Let go of the store (the embedded one is a file another process may open next).
    if let Some(a) = archiver {
        // A download cut off here leaves only a temporary file: the asset stays pending.
        a.abort();
        let _ = a.await;
    }
    workers.stop().await;
    hub.stop().await;
    keys.stop_and_wait().await;
    tracing::info!("shut down cleanly");
    Ok(())
}
