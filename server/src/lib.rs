//! The KIE Control Room server: axum + leptos_axum around the gateway core.
//!
//! Map of the crate:
//! - [`config`] — flags and environment, validated up front; secrets held in [`config::Secret`].
//! - [`edge`] — what is accepted from the network before a handler runs: connections, body
//!   sizes and deadlines, the client's address behind trusted proxies.
//! - [`error`] — [`error::Refusal`], every handler's one error type (KIE's envelope on the
//!   relay, plain text elsewhere), and [`error::RelayCaller`], the relay's extractor for who asks.
//! - [`health`] — `/healthz` and `/readyz`.
//! - [`stores`] — [`open_store`]: Redis when `REDIS_URL` is set, else the embedded store under
//!   `DATA_DIR`; Redis's persistence policy (AOF, `noeviction`) checked at start.
//! - [`simulator`] — `--simulate`: kie-sim in process, on a free loopback port.
//! - [`relay`] — the KIE-compatible relay API under `/kie` (relay keys), described in
//!   `openapi.json`.
//! - [`mcp`] — the Model Context Protocol server for agents at `/mcp` (relay keys), and
//!   `control-room mcp`, the same on standard input and output.
//! - [`relay_docs`] — `GET /kie/docs`, the relay's OpenAPI document as a page.
//! - [`metrics`] — `GET /metrics` (Prometheus / OpenMetrics, `METRICS_TOKEN`) and the relay's
//!   request counter.
//! - [`callbacks`] — `POST /callbacks/kie/{token}`, KIE's callbacks.
//! - [`library`] — `GET /library/{task}/{n}`: a result's Library copy (signed in, or a signed
//!   link), with ranges, `ETag` and long caching; [`open_library`] builds it from the config.
//! - [`batches`] — `GET /batches/{name}/zip`: a batch's Library copies as one streamed zip.
//! - [`receipts`] — `GET /receipts.json` and `/receipts.csv`: a project's receipt.
//! - [`spend`] — `GET /spend.svg` and `/spend.csv`: spend by day, model, project or owner.
//! - [`live`] — `GET /events`, live task events (SSE) with resume.
//! - [`auth`] — who is asking: the session guard on every route, cross-site refusal,
//!   sign-in and sign-out forms, the audit log's CSV export.
//! - [`enrol`] — `/auth/enrol`: setting up two-step sign-in before a first session, when the
//!   team requires it.
//! - [`single_sign_on`] — `/auth/oidc/start` and `/callback`: sign-in through the team's
//!   OpenID provider (code flow, PKCE, the ID token checked), the core deciding who enters.
//! - [`share`] — `/share/{token}`: a share link's page, one project's Library for someone
//!   without an account; [`plain_page`] — the script-free pages' frame.
//! - [`admin`] — `control-room key|budget|user …` commands: their grammar and what they do.
//! - [`upstream`] — [`Upstream`]: where KIE calls go (KIE, the simulator, or nowhere).
//! - [`routes`] — [`router`]: every route (health, the Leptos page and server functions,
//!   static files) behind one stack of layers; a span per request with its `X-Request-Id`.
//! - [`startup`] — [`run`]: build everything from the configuration, serve on a given listener
//!   until `shutdown` resolves (tests use port 0), then drain and stop the workers.
//! - [`AppState`] — what every handler can extract; [`ServerError`] — why it could not start.
//!
//! Handlers stay thin: parse, call the gateway core, map its typed error to a status.

pub mod admin;
pub(crate) mod assets;
pub mod auth;
pub(crate) mod batches;
pub(crate) mod callbacks;
pub(crate) mod chat;
pub mod config;
pub mod edge;
pub(crate) mod enrol;
pub(crate) mod plain_page;
pub(crate) mod share;
pub mod single_sign_on;
pub(crate) mod error;
pub(crate) mod health;
pub(crate) mod library;
pub mod live;
pub mod mcp;
pub(crate) mod metrics;
pub(crate) mod panels;
pub(crate) mod receipts;
pub mod relay;
pub(crate) mod relay_docs;
pub mod relay_uploads;
pub(crate) mod routes;
pub(crate) mod simulator;
pub(crate) mod spend;
pub(crate) mod startup;
pub(crate) mod stores;
pub(crate) mod upstream;

pub use routes::{leptos_options, router};
pub use startup::{SHUTDOWN_GRACE, console_context, load_catalog, open_library, run};
pub use stores::open_store;
pub use upstream::Upstream;

use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use std::sync::Arc;

use gateway::kie::KieClient;
use gateway::library::Library;
use gateway::tasks::events::EventHub;
use gateway::{Lifecycle, Store};

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

/// The state every axum handler can extract: one shared [`AppParts`], so the clone each
/// extractor takes is a reference count, not a copy of its strings (a relay call takes
/// several).
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl AppState {
    pub fn new(parts: AppParts) -> AppState {
        AppState(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;
    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// Leptos's server functions and SSR read their options from the state.
impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> LeptosOptions {
        state.leptos_options.clone()
    }
}

/// What [`AppState`] holds.
pub struct AppParts {
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
    /// The relay's OpenAPI document for this catalog ([`relay::document`]), made once.
    pub relay_doc: axum::body::Bytes,
    /// The team's identity provider (`None`: single sign-on is not configured).
    pub single_sign_on: Option<Arc<single_sign_on::SingleSignOn>>,
    /// `UPLOAD_MAX_MB`: the largest file the relay's upload calls take, in bytes.
    pub upload_max_bytes: u64,
    /// `RELAY_UPLOAD_GB_PER_DAY`: what one relay key may upload in 24 hours, in bytes.
    pub relay_upload_bytes_per_day: Option<u64>,
}
