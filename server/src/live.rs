//! `GET /events`: live task events as Server-Sent Events. Each event's id is its sequence
//! number; a browser that reconnects sends `Last-Event-ID` (or `?after=`) and is first sent
//! what it missed. Event `task` carries a task row; `reset` tells the client to reload.
//! The stream ends when the server shuts down and when its session ends (signed out here or
//! elsewhere, disabled, expired): the session is checked again every few seconds.
//!
//! Bounds: [`PER_SESSION`] streams per session and [`PER_PERSON`] per person on an instance
//! (more get 429), [`MAX_LIVE_CLIENTS`] in all; a replay on reconnect of at most
//! [`gateway::tasks::events::MAX_REPLAY_BYTES`]; and a reader too slow for the feed falls
//! behind the instance's one bounded buffer and is told to reload, so no reader holds memory
//! that grows with the feed.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use std::convert::Infallible;
use std::time::Duration;

use crate::AppState;
use crate::error::{Refusal, Shape};
use crate::auth::SessionToken;
use axum::Extension;
use gateway::tasks::events::Feed;
use gateway::team::accounts::Actor;
use gateway::team::membership::Membership;

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
/// Most live streams one session holds on an instance (a tab each).
pub const PER_SESSION: usize = 8;
/// Most live streams one person holds on an instance, over all their sessions.
pub const PER_PERSON: usize = 16;

/// Who holds how many live streams on this instance.
#[derive(Default)]
pub struct LiveSlots(std::sync::Mutex<std::collections::HashMap<String, usize>>);

/// One stream's places, given back when it ends.
pub struct Slot {
    slots: std::sync::Arc<LiveSlots>,
    keys: [String; 2],
}

impl LiveSlots {
    /// A place for a stream of `session` by `person`, if both are under their caps.
    pub fn take(self: &std::sync::Arc<Self>, session: &str, person: &str) -> Option<Slot> {
        let keys = [format!("session:{session}"), format!("person:{person}")];
        let mut held = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = |k: &str| held.get(k).copied().unwrap_or(0);
        if count(&keys[0]) >= PER_SESSION || count(&keys[1]) >= PER_PERSON {
            return None;
        }
        for k in &keys {
            *held.entry(k.clone()).or_default() += 1;
        }
        Some(Slot {
            slots: self.clone(),
            keys,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self
            .slots
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for k in &self.keys {
            if let Some(n) = held.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    held.remove(k);
                }
            }
        }
    }
}

/// Resolves once the session behind `token` no longer opens, or its person's projects
/// changed (checked every `every`; the browser reconnects under the new membership); a store
/// hiccup is not taken as a sign-out.
async fn session_ended(state: AppState, token: Option<SessionToken>, membership: Membership, every: Duration) {
    let Some(token) = token else { return std::future::pending().await };
    loop {
        tokio::time::sleep(every).await;
        match gateway::team::sessions::resolve(state.store.as_ref(), &token.0, &state.auth.policy, gateway::team::sessions::Use::Check).await {
            Ok(None) => return,
            Ok(Some(user)) if Membership::of(&user) != membership => return,
            _ => {}
        }
    }
}

pub async fn events(
    State(state): State<AppState>,
    actor: Extension<Actor>,
    token: Option<Extension<SessionToken>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, Refusal> {
    if state.hub.listeners() >= MAX_LIVE_CLIENTS {
        return Err(Refusal::plain(StatusCode::SERVICE_UNAVAILABLE, "too many live connections to this instance; retry shortly"));
    }
    let session = token.as_ref().map_or_else(String::new, |t| gateway::team::sessions::digest(&t.0.0));
    let Some(slot) = state.live.take(&session, &actor.who) else {
        let msg = format!(
            "too many live streams: at most {PER_SESSION} per session and {PER_PERSON} per person; close a tab"
        );
        return Err(Refusal::plain(StatusCode::TOO_MANY_REQUESTS, msg).retry_after(Some(Duration::from_secs(30))));
    };
    let listener = state
        .hub
        .listen(last_seen(&headers, query.as_deref()))
        .await
        .map_err(|e| Refusal::unavailable(Shape::Plain, "live events: store unavailable", &e, "live events are unavailable; the store cannot be read"))?;
    let mut stopping = state.stopping.clone();
    let every = (state.auth.policy.idle / 2).min(SESSION_RECHECK);
    let membership = actor.membership.clone();
    let ended = session_ended(state.clone(), token.map(|Extension(t)| t), membership.clone(), every);
    // The slot lives as long as the stream; a task of a project outside the person's reach
    // is never sent to them.
    let stream = futures::stream::unfold((listener, slot, membership), |(mut l, slot, membership)| async move {
        loop {
            match l.next().await? {
                Feed::Event(e) if !membership.sees(&e.task.project) => continue,
                f => return Some((Ok::<_, Infallible>(to_event(f)), (l, slot, membership))),
            }
        }
    })
    .take_until(async move {
        tokio::select! {
            _ = stopping.wait_for(|stop| *stop) => {}
            () = ended => {}
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}
