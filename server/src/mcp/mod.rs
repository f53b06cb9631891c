//! The Model Context Protocol server for agents (Claude Desktop, Cursor, Codex, custom agents):
//! the same tasks, cost rules, fair queue and rate guard as the relay, as MCP tools and
//! resources. The protocol is the official SDK's (`rmcp`); this module only mounts it and says
//! who may use it.
//!
//! - `POST/GET/DELETE /mcp` — streamable HTTP (session ids, resumable SSE), behind
//!   [`admit`]: a relay key as `Authorization: Bearer` (401 without one), a session used only
//!   with the key that opened it, at most [`MAX_SESSIONS`] open on an instance.
//! - [`tools`] — the tools and resources, each a thin call into the gateway core.
//! - [`sessions`] — sessions kept in the store, so any instance can serve a session another
//!   one opened, and the key each session belongs to.
//! - [`bridge`] — `control-room mcp`: the same server on standard input and output, for a
//!   desktop agent, relayed to a running console's `/mcp` over HTTP.

pub mod bridge;
mod sessions;
mod tools;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use crate::AppState;
use crate::error::{Refusal, STORE_DOWN, Shape};
use gateway::team::relay_keys::{RelayKey, RelayKeyError};

/// Where the server is mounted.
pub const PATH: &str = "/mcp";
/// Most MCP sessions open on one instance; an idle one closes after [`IDLE`].
pub const MAX_SESSIONS: usize = 256;
/// How long a session stays open with nothing asked of it.
pub const IDLE: Duration = Duration::from_secs(10 * 60);
/// The header that names a session.
const SESSION: &str = "mcp-session-id";

/// Where an agent's change came from, as the audit log says it: its address, via MCP.
pub(crate) fn via(address: &str) -> String {
    format!("{address} via mcp")
}

/// Who is asking, put on the request by [`admit`] for the tools to read.
#[derive(Clone)]
pub(crate) struct Caller(pub RelayKey);

/// The `/mcp` route: the SDK's service behind [`admit`].
pub fn routes(state: &AppState) -> axum::Router<AppState> {
    // Open streams end when the server begins to stop.
    let stopping = tokio_util::sync::CancellationToken::new();
    let (mut stop, cancel) = (state.stopping.clone(), stopping.clone());
    tokio::spawn(async move {
        while !*stop.borrow_and_update() {
            if stop.changed().await.is_err() {
                break;
            }
        }
        cancel.cancel();
    });
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(IDLE);
    let sessions = Arc::new(sessions);
    let mut config = StreamableHttpServerConfig::default().with_cancellation_token(stopping).with_max_request_body_bytes(crate::edge::limits::body_limit(PATH));
    // Every request carries a relay key, which a page from another site cannot send: the
    // DNS-rebinding attack the Host check stops does not reach this server, which is served
    // under whatever name its deployment has.
    config = config.disable_allowed_hosts();
    config.session_store = Some(Arc::new(sessions::StoredSessions::new(state.store.clone())));
    let factory_state = state.clone();
    let service = StreamableHttpService::new(move || Ok(tools::ControlRoomMcp::new(factory_state.clone())), sessions.clone(), config);
    let admit_state = Admit { app: state.clone(), sessions };
    axum::Router::new().route_service(PATH, service).route_layer(axum::middleware::from_fn_with_state(admit_state, admit))
}

#[derive(Clone)]
struct Admit {
    app: AppState,
    sessions: Arc<LocalSessionManager>,
}

/// Lets a request reach the MCP server: a valid relay key, a session of that key's (else 404,
/// as for a session that ended: the client starts a new one), room for a new session.
async fn admit(State(admit): State<Admit>, mut req: Request, next: Next) -> Response {
    let state = &admit.app;
    let key = match state.keys.authenticate(crate::error::bearer(req.headers())).await {
        Ok(key) => key,
        Err(RelayKeyError::Store(e)) => return Refusal::unavailable(Shape::Plain, "mcp: cannot check a key", &e, STORE_DOWN).into_response(),
        Err(_) => {
            let mut r = Refusal::plain(StatusCode::UNAUTHORIZED, "Send a relay key as Authorization: Bearer <key> (an admin makes one in panel 12 or with control-room key create).").into_response();
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    };
    tracing::Span::current().record("actor", format!("key:{}", key.id));
    let session = req.headers().get(SESSION).and_then(|v| v.to_str().ok()).map(str::to_string);
    match &session {
        Some(id) => match sessions::key_of(state.store.as_ref(), id).await {
            Ok(Some(owner)) if owner == key.id => {}
            Ok(_) => return Refusal::plain(StatusCode::NOT_FOUND, "No such MCP session for this key: start a new one (initialize).").into_response(),
            Err(e) => return Refusal::unavailable(Shape::Plain, "mcp: cannot read a session", &e, STORE_DOWN).into_response(),
        },
        None if req.method() == axum::http::Method::POST && admit.sessions.sessions.read().await.len() >= MAX_SESSIONS => {
            let r = Refusal::plain(StatusCode::SERVICE_UNAVAILABLE, format!("This instance has {MAX_SESSIONS} MCP sessions open; close one (DELETE /mcp) or try again when an idle one has closed."));
            return r.retry_after(Some(Duration::from_secs(60))).into_response();
        }
        None => {}
    }
    let (owner, key_id) = (key.owner(), key.id.clone());
    let from = req.extensions().get::<crate::auth::ClientAddress>().map_or_else(|| "unknown".to_string(), |a| a.0.to_string());
    req.extensions_mut().insert(Caller(key));
    let answer = next.run(req).await;
    // A new session: it belongs to the key that opened it, and the audit log says who opened it.
    if session.is_none()
        && let Some(id) = answer.headers().get(SESSION).and_then(|v| v.to_str().ok())
    {
        let store = state.store.as_ref();
        let recorded = match sessions::bind(store, id, &key_id).await {
            Ok(()) => gateway::team::audit::append(store, &owner, &via(&from), "mcp session opened", &owner, None, None).await,
            Err(e) => Err(e),
        };
        if let Err(e) = recorded {
            return Refusal::unavailable(Shape::Plain, "mcp: cannot record a session", &e, STORE_DOWN).into_response();
        }
    }
    answer
}
