//! `GET /events`: live task events as Server-Sent Events. Each event's id is its sequence
//! number; a browser that reconnects sends `Last-Event-ID` (or `?after=`) and is first sent
//! what it missed. Event `task` carries a task row; `reset` tells the client to reload.
//! The stream ends when the server shuts down and when its session ends (signed out here or
//! elsewhere, disabled, expired): the session is checked again every few seconds.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use std::convert::Infallible;
use std::time::Duration;

use crate::AppState;
use crate::auth::SessionToken;
use axum::Extension;
use gateway::tasks::events::Feed;

fn last_seen(headers: &HeaderMap, query: Option<&str>) -> Option<u64> {
    let from_header = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    from_header.or_else(|| {
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).find(|(k, _)| k == "after").and_then(|(_, v)| v.parse().ok())
    })
}

fn to_event(feed: Feed) -> Event {
    match feed {
        Feed::Event(e) => {
            let data = e.rendered.get_or_init(|| serde_json::to_string(&app::view::TaskRow::from(e.task.clone())).unwrap_or_default());
            Event::default().id(e.seq.to_string()).event("task").data(data.as_str())
        }
        Feed::Reset => Event::default().event("reset").data("reload"),
    }
}

/// How often an open stream checks that its session still holds (at most).
const SESSION_RECHECK: Duration = Duration::from_secs(10);

/// Most live connections one instance serves; more get 503 (and the browser retries).
pub const MAX_LIVE_CLIENTS: usize = 10_000;

/// Resolves once the session behind `token` no longer opens (checked every `every`); a store
/// hiccup is not taken as a sign-out.
async fn session_ended(state: AppState, token: Option<SessionToken>, every: Duration) {
    let Some(token) = token else { return std::future::pending().await };
    loop {
        tokio::time::sleep(every).await;
        if let Ok(None) = gateway::team::sessions::resolve(state.store.as_ref(), &token.0, &state.auth.policy, gateway::team::sessions::Use::Check).await {
            return;
        }
    }
}

pub async fn events(State(state): State<AppState>, token: Option<Extension<SessionToken>>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    if state.hub.listeners() >= MAX_LIVE_CLIENTS {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many live connections to this instance; retry shortly").into_response();
    }
    let listener = match state.hub.listen(last_seen(&headers, query.as_deref())).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "live events: store unavailable");
            return (StatusCode::SERVICE_UNAVAILABLE, "live events are unavailable; the store cannot be read").into_response();
        }
    };
    let mut stopping = state.stopping.clone();
    let every = (state.auth.policy.idle / 2).min(SESSION_RECHECK);
    let ended = session_ended(state.clone(), token.map(|Extension(t)| t), every);
    let stream = futures::stream::unfold(listener, |mut l| async move { l.next().await.map(|f| (Ok::<_, Infallible>(to_event(f)), l)) })
        .take_until(async move {
            tokio::select! {
                _ = stopping.wait_for(|stop| *stop) => {}
                () = ended => {}
            }
        });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}
