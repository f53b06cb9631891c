//! The live feed: one `EventSource` per page (gloo-net, in the browser only) on `/events`,
//! owned by the [`Console`] island that wraps the page. The Task Monitor island inside it reads
//! it through context ([`Live`]) and merges the latest row of each task; the server-rendered
//! panels are reloaded by [`crate::enhance`] when an event names one of their triggers.
//!
//! The browser's `EventSource` reconnects by itself and sends `Last-Event-ID`, so the server
//! replays what was missed; if the connection is closed for good, the feed reopens it with
//! `?after=<last id>`. A `reset` event (a gap too long to replay) makes the panels reload.

use leptos::prelude::*;
use std::collections::HashMap;

use crate::view::TaskRow;

/// The shared live state.
#[derive(Clone, Copy)]
pub struct Live {
    /// The newest row of every task seen live, by task id.
    pub rows: RwSignal<HashMap<String, TaskRow>>,
    /// Bumped on every `reset`: reload lists.
    pub resets: RwSignal<u64>,
    /// Bumped whenever a task reaches a terminal state.
    pub ended: RwSignal<u64>,
    /// Bumped whenever a task's Library copies move (archived, expired, deleted).
    pub library: RwSignal<u64>,
    /// Whether the stream is open.
    pub connected: RwSignal<bool>,
}

impl Live {
    pub fn new() -> Live {
        Live { rows: RwSignal::new(HashMap::new()), resets: RwSignal::new(0), ended: RwSignal::new(0), library: RwSignal::new(0), connected: RwSignal::new(false) }
    }

    /// Takes one task row from the stream (ignoring one older than what is held).
    pub fn take(&self, row: TaskRow) {
        let ended = row.terminal;
        let mut newer = false;
        let mut copies_moved = false;
        self.rows.update(|rows| match rows.get(&row.id) {
            Some(held) if held.version >= row.version => {}
            held => {
                newer = true;
                if ended {
                    crate::notify::task_ended(&row);
                }
                copies_moved = held.map_or(row.archive.is_some(), |h| h.archive != row.archive || h.library != row.library);
                rows.insert(row.id.clone(), row);
            }
        });
        if newer && ended {
            self.ended.update(|n| *n += 1);
        }
        if copies_moved {
            self.library.update(|n| *n += 1);
        }
    }

    pub fn reset(&self) {
        self.rows.update(HashMap::clear);
        self.resets.update(|n| *n += 1);
    }
}

impl Default for Live {
    fn default() -> Self {
        Live::new()
    }
}

pub fn live() -> Live {
    expect_context::<Live>()
}

/// The page's outer island: owns the live feed, provides it to the islands inside, and runs
/// the panels' reloads and forms ([`crate::enhance`]). Its children (every panel) are rendered
/// on the server.
#[island]
pub fn Console(children: Children) -> impl IntoView {
    let live = Live::new();
    provide_context(live);
    // Effects run only in the browser. The islands inside this one hydrate after it, one
    // microtask apart; the feed starts on the next task, once they all have, so that no live
    // value changes under a view still being hydrated. The end-to-end suite waits for the
    // marker.
    let owner = Owner::current();
    Effect::new(move |_| {
        let owner = owner.clone();
        set_timeout(
            move || {
                let go = || {
                    start(live);
                    crate::enhance::start(live);
                    crate::keys::start();
                    crate::notify::start();
                };
                match &owner {
                    Some(o) => o.with(go),
                    None => go(),
                }
                if let Some(body) = document().body() {
                    let _ = body.set_attribute("data-hydrated", "true");
                }
            },
            std::time::Duration::ZERO,
        );
    });
    children()
}

/// Starts the feed (in the browser; nothing on the server).
pub fn start(live: Live) {
    #[cfg(feature = "hydrate")]
    leptos::task::spawn_local(browser::run(live));
    #[cfg(not(feature = "hydrate"))]
    let _ = live;
}

#[cfg(feature = "hydrate")]
pub(crate) mod browser {
    use super::*;
    use futures::StreamExt;
    use gloo_net::eventsource::futures::EventSource;

    pub async fn run(live: Live) {
        // The viewer's time zone (minutes east of UTC), for the times the server writes.
        let east = -(leptos::web_sys::js_sys::Date::new_0().get_timezone_offset() as i32);
        let cookie = format!("tz={east}; path=/; max-age=31536000; samesite=lax");
        let _ = leptos::web_sys::js_sys::Reflect::set(&document(), &"cookie".into(), &cookie.into());
        let mut last: Option<u64> = None;
        loop {
            let url = match last {
                Some(n) => format!("/events?after={n}"),
                None => "/events".to_string(),
            };
            if let Ok(mut es) = EventSource::new(&url)
                && let (Ok(tasks), Ok(resets)) = (es.subscribe("task"), es.subscribe("reset"))
            {
                live.connected.set(true);
                let mut merged = futures::stream::select(tasks, resets);
                while let Some(item) = merged.next().await {
                    let Ok((kind, msg)) = item else { break };
                    if let Ok(id) = msg.last_event_id().parse::<u64>() {
                        last = Some(last.map_or(id, |l| l.max(id)));
                    }
                    match kind.as_str() {
                        "reset" => live.reset(),
                        _ => {
                            // Read from bytes, as the server functions' answers are: one decoder of rows in the bundle.
                            if let Some(row) = msg.data().as_string().and_then(|d| serde_json::from_slice::<TaskRow>(d.as_bytes()).ok()) {
                                live.take(row);
                            }
                        }
                    }
                }
                es.close();
            }
            live.connected.set(false);
            sleep_ms(2000).await;
        }
    }

    /// Waits `ms` (Leptos' `set_timeout` and a oneshot channel).
    pub(crate) async fn sleep_ms(ms: u64) {
        let (tx, rx) = futures::channel::oneshot::channel::<()>();
        set_timeout(move || { let _ = tx.send(()); }, std::time::Duration::from_millis(ms));
        let _ = rx.await;
    }
}
