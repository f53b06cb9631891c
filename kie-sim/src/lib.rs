//! `kie-sim`: a faithful stand-in for KIE.ai, for tests, benchmarks, the end-to-end suite and
//! the Control Room's `--simulate` mode. It writes KIE's JSON the way KIE's docs show it and
//! shares no types with the Control Room's client, so a mistake in the client fails a test
//! instead of agreeing with itself.
//!
//! Map of the crate:
//! - [`world`] — accounts, tasks, limits, faults, the (speedable) clock, the request log.
//! - [`kie_api`] — KIE's paths: createTask, recordInfo, chat/credit, common/download-url, files.
//! - [`families`] — the model-specific APIs: Veo, Suno, Runway, 4o Image, Flux Kontext.
//! - [`uploads`] — KIE's upload API (stream, base64, URL) and the uploaded files.
//! - [`chat`] — the language models' chat completions and Claude's Messages API, plain and streamed.
//! - [`callbacks`] — callback delivery with signatures, retries and faults.
//! - [`control`] — the test control API under `/_sim/`.
//! - [`prices`] — credits per model from the seeds. [`media`] — real PNG/WAV/MP4 results.
//!
//! Behaviour, as KIE documents it: 401 for a wrong key; 402 when the balance is short;
//! 404/422 for unknown models or bad input; at most 20 new generation requests per 10 s per
//! account (the 21st gets 429 and is not queued); recordInfo at most 10/s per key; tasks move
//! waiting → queuing → generating → success | fail; failed generations are not charged;
//! media expires after 14 days (simulated). Prompts containing `sim:fail` fail generation and
//! `sim:policy` fail with a content-policy message.

pub mod callbacks;
pub mod chat;
pub mod control;
pub mod families;
pub mod kie_api;
pub mod media;
pub mod prices;
pub mod uploads;
pub mod world;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post, put};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub use world::{Faults, Schedule, Settings};

/// The simulator: cheap to clone, shared by every handler.
#[derive(Clone)]
pub struct Sim {
    world: Arc<Mutex<world::World>>,
    wake: Arc<Notify>,
}

impl Sim {
    pub fn new(settings: Settings) -> Sim {
        Sim { world: Arc::new(Mutex::new(world::World::new(settings))), wake: Arc::new(Notify::new()) }
    }

    /// The world, locked. A panic while it was held elsewhere does not poison the simulator.
    pub fn world(&self) -> MutexGuard<'_, world::World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add_account(&self, key: &str, balance: f64, hmac_key: Option<&str>) {
        self.world().accounts.insert(key.to_string(), control::account(balance, hmac_key));
    }

    fn wake_dispatcher(&self) {
        self.wake.notify_one();
    }

    async fn notified(&self) {
        self.wake.notified().await;
    }

    pub fn router(&self) -> Router {
        let mut router = Router::new();
        for fam in &families::FAMILIES {
            router = router.route(fam.status, get(move |State(sim): State<Sim>, headers, q| families::status(fam, sim, headers, q)));
            // A family that only acts on another's results is created as a follow-up, below.
            if !families::FOLLOW_UPS.iter().any(|api| api.path == fam.create) {
                router = router.route(fam.create, post(move |State(sim): State<Sim>, headers, body| families::create(fam, sim, headers, body)));
            }
        }
        for (name, path, checked_as) in families::OTHER_CREATES {
            let Some(fam) = families::family(name) else { continue };
            router = router.route(path, post(move |State(sim): State<Sim>, headers, body| families::create_at(fam, path, checked_as, sim, headers, body)));
        }
        for api in &families::FOLLOW_UPS {
            router = router.route(api.path, post(move |State(sim): State<Sim>, headers, body| families::follow_up(api, sim, headers, body)));
        }
        let [hd, uhd] = &families::UPGRADES;
        router
            .route(hd.path, get(move |State(sim): State<Sim>, headers, axum::extract::Query(q): axum::extract::Query<serde_json::Map<String, serde_json::Value>>| families::upgrade(hd, sim, headers, serde_json::Value::Object(q))))
            .route(uhd.path, post(move |State(sim): State<Sim>, headers, body: axum::body::Bytes| families::upgrade(uhd, sim, headers, serde_json::from_slice(&body).unwrap_or_default())))
            .route("/api/v1/generate/get-timestamped-lyrics", post(|State(sim): State<Sim>, headers, body| families::timestamped_lyrics(sim, headers, body)))
            .route("/api/v1/jobs/createTask", post(kie_api::create_task))
            .route("/api/v1/jobs/recordInfo", get(kie_api::record_info))
            .route("/api/v1/chat/credit", get(kie_api::credit))
            .route("/{model}/v1/chat/completions", post(chat::completions))
            .route("/claude/v1/messages", post(chat::messages))
            .route("/api/v1/responses", post(|State(sim): State<Sim>, headers, body| chat::responses("/api/v1/responses", sim, headers, body)))
            .route("/codex/v1/responses", post(|State(sim): State<Sim>, headers, body| chat::responses("/codex/v1/responses", sim, headers, body)))
            .route("/grok/v1/responses", post(|State(sim): State<Sim>, headers, body| chat::responses("/grok/v1/responses", sim, headers, body)))
            .route("/api/v1/common/download-url", post(kie_api::download_url))
            .route("/files/{task}/{name}", get(kie_api::file))
            .route("/uploads/{id}/{name}", get(uploads::file))
            .route("/_sim/accounts", post(control::put_account))
            .route("/_sim/accounts/{key}", get(control::get_account))
            .route("/_sim/accounts/{key}/balance", put(control::set_balance))
            .route("/_sim/settings", get(control::get_settings).put(control::put_settings))
            .route("/_sim/clock", post(control::clock))
            .route("/_sim/faults", put(control::put_faults))
            .route("/_sim/tasks/{id}/faults", put(control::put_task_faults))
            .route("/_sim/log", get(control::log))
            .route("/_sim/reset", post(control::reset))
            .layer(tower_http_limit())
            // Uploads take files (a base64 one a third larger).
            .merge(
                Router::new()
                    .route("/api/file-stream-upload", post(uploads::stream))
                    .route("/api/file-base64-upload", post(uploads::base64))
                    .route("/api/file-url-upload", post(uploads::url))
                    .layer(axum::extract::DefaultBodyLimit::max(uploads::MAX_UPLOAD / 3 * 4 + (1 << 20))),
            )
            .with_state(self.clone())
    }

    /// Serves on `listener` until `shutdown`; result URLs point at the listener's address.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let addr = listener.local_addr()?;
        self.world().base_url = format!("http://{addr}");
        let dispatcher = tokio::spawn(callbacks::dispatcher(self.clone()));
        let result = axum::serve(listener, self.router()).with_graceful_shutdown(shutdown).await;
        dispatcher.abort();
        result
    }
}

/// Request bodies above 1 MiB are refused before a handler reads them.
fn tower_http_limit() -> axum::extract::DefaultBodyLimit {
    axum::extract::DefaultBodyLimit::max(1 << 20)
}
