//! Browser notifications, opt-in per person: when one of my tasks ends or fails, and when a
//! cost rule's meter passes 80 % (a new alert in 05 Budget). The switch is the masthead's
//! "Notify me" (a form, shown once the browser proves it can notify, sent through
//! [`crate::enhance`]'s listener); the choice is kept in this browser's storage under the
//! person's email, so each person on a shared machine chooses for themselves. It runs in the
//! [`crate::live::Console`] island; on the server it does nothing.

use crate::view::TaskRow;

/// Shows the switch (in the browser).
pub fn start() {
    #[cfg(feature = "hydrate")]
    browser::start();
}

/// One of the tasks seen live has just ended.
pub fn task_ended(row: &TaskRow) {
    #[cfg(feature = "hydrate")]
    browser::task_ended(row);
    #[cfg(not(feature = "hydrate"))]
    let _ = row;
}

/// The switch was pressed: on becomes off, off asks the browser and becomes on.
#[cfg(feature = "hydrate")]
pub fn toggle() {
    browser::toggle();
}

/// Panel `slug` has just been swapped in (by [`crate::enhance`], in the browser): 05 Budget
/// may carry new alerts.
#[cfg(feature = "hydrate")]
pub fn panel_swapped(slug: &str) {
    if slug == "budget" {
        browser::new_alerts();
    }
}

#[cfg(feature = "hydrate")]
mod browser {
    use crate::view::TaskRow;
    use leptos::prelude::*;
    use std::cell::Cell;
    use wasm_bindgen::JsCast;
    use web_sys::{Element, Notification, Storage};

    thread_local! {
        /// When the page started listening (ms since the epoch): what ended or was alerted
        /// before is not news (the live stream replays some of it on connect). Read as an
        /// integer: parsing floats would cost the bundle ~13 KB.
        static STARTED: u64 = leptos::web_sys::js_sys::Date::now() as u64;
        /// The newest alert told.
        static SEEN_AT: Cell<u64> = const { Cell::new(0) };
    }

    /// This browser's storage and the key of the signed-in person's choice in it.
    fn choice() -> Option<(Storage, String)> {
        let me = document().query_selector("[data-testid=user-bar]").ok().flatten()?.get_attribute("data-email")?;
        Some((window().local_storage().ok().flatten()?, format!("notify:{me}")))
    }

    /// Whether this person asked for notifications in this browser.
    fn wanted() -> bool {
        choice().is_some_and(|(s, k)| s.get_item(&k).ok().flatten().is_some())
    }

    fn show_switch() {
        let on = wanted();
        if let Some(b) = document().query_selector("[data-testid=notify]").ok().flatten() {
            b.set_text_content(Some(if on { "Notifications on" } else { "Notify me" }));
            let _ = b.set_attribute("aria-pressed", if on { "true" } else { "false" });
            if let Some(form) = b.parent_element() {
                let _ = form.remove_attribute("hidden");
            }
        }
    }

    pub fn start() {
        // Only where the browser has notifications at all.
        if leptos::web_sys::js_sys::Reflect::has(&window(), &"Notification".into()).unwrap_or(false) {
            SEEN_AT.set(STARTED.with(|s| *s));
            show_switch();
        }
    }

    pub fn toggle() {
        let Some((store, key)) = choice() else { return };
        if wanted() {
            let _ = store.remove_item(&key);
        } else {
            let _ = Notification::request_permission();
            let _ = store.set_item(&key, "on");
        }
        show_switch();
    }

    /// Shows `text` if this person wants it (the browser shows nothing without permission).
    fn send(text: &str) {
        if wanted() {
            let _ = Notification::new(text);
        }
    }

    pub fn task_ended(row: &TaskRow) {
        let recent = row.finished_ms.is_some_and(|f| f >= STARTED.with(|s| *s));
        let mine = choice().is_some_and(|(_, k)| k.strip_prefix("notify:") == Some(row.owner.as_str()));
        if recent && mine {
            send(&format!("{} · {} · {}", if row.state == "success" { "Task done" } else { "Task failed" }, row.id, row.model));
        }
    }

    pub fn new_alerts() {
        let Ok(found) = document().query_selector_all("#budget [data-testid=budget-alerts] li[data-at]") else { return };
        let seen = SEEN_AT.get();
        for el in (0..found.length()).filter_map(|i| found.item(i)?.dyn_into::<Element>().ok()) {
            let at: u64 = el.get_attribute("data-at").and_then(|a| a.parse().ok()).unwrap_or(0);
            if at > seen {
                send(&format!("Cost rule alert · {}", el.text_content().unwrap_or_default()));
                SEEN_AT.set(SEEN_AT.get().max(at));
            }
        }
    }
}
