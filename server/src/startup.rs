//! Start and stop: [`run`] builds everything from the configuration (catalog, store and its
//! epoch, upstream, lifecycle and its workers, the Library, live events, relay keys), serves
//! until told to stop, then drains and lets go in order.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

use app::api::ConsoleContext;
use app::view::KeyView;
use gateway::library::{Library, LibraryConfig, Sources};
use gateway::metrics::Metrics;
use gateway::money::catalog::Catalog;
use gateway::tasks::events::EventHub;
use gateway::{Lifecycle, LifecycleOptions, Store};

use crate::config::{self, Config};
use crate::routes::{leptos_options, router};
use crate::stores::open_checked;
use crate::upstream::Upstream;
use crate::{AppParts, AppState, ServerError, auth, edge, simulator};

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
        sign_in: app::SignInOptions {
            provider: config.single_sign_on.as_ref().map(|s| s.provider_name.clone()),
            passwords: config.sessions.passwords == gateway::team::sessions::PasswordSignIn::Everyone,
        },
    }
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
    let metrics = Arc::new(Metrics::new());
    metrics.set_runway_alert_days(config.runway_alert_days);
    metrics.know_models(catalog.models().iter().filter(|m| !m.is_chat()).map(|m| m.id.as_str()));
    let store = gateway::store::metered::Metered::wrap(open_checked(&config).await?, metrics.clone());
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
    let kie = upstream.client(Duration::from_secs(30), 3, &metrics).map(|c| match (&config.kie_upload_base_url, &upstream) {
        (Some(u), Upstream::Kie { .. }) => c.with_upload_base(u.clone()),
        _ => c,
    });
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
        paused_intake: config.queue_paused_intake,
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
    let workers = lifecycle.spawn_workers(library.as_ref());
    let console = console_context(&config, &upstream, store.clone(), lifecycle.clone(), library.clone());
    let (stop_tx, stopping) = tokio::sync::watch::channel(false);
    let auth = auth::AuthConfig {
        policy: config.sessions,
        secure: config.https(),
        public_authority: config.public_url.as_ref().and_then(|u| u.host_str().map(|h| u.port().map_or(h.to_string(), |p| format!("{h}:{p}")))),
        trusted_proxies: Arc::new(config.trusted_proxies.clone()),
    };
    let keys = Arc::new(gateway::team::relay_keys::KeyCache::start(store.clone()));
    let single_sign_on = config
        .single_sign_on
        .clone()
        .map(|s| crate::single_sign_on::SingleSignOn::new(s).map(Arc::new))
        .transpose()
        .map_err(|e| ServerError::Config(config::ConfigError(e)))?;
    let state = AppState::new(AppParts {
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
        relay_doc: crate::relay::document(console.lifecycle.catalog()).into(),
        single_sign_on,
        upload_max_bytes: config.upload_max_bytes,
        relay_upload_bytes_per_day: config.relay_upload_bytes_per_day,
    });
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
    workers.stop().await;
    hub.stop().await;
    keys.stop_and_wait().await;
    tracing::info!("shut down cleanly");
    Ok(())
}
