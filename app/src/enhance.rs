//! Keeps the server-rendered panels live and their forms in place, for every panel at once (so
//! a panel added later costs the bundle nothing). It runs in the [`crate::live::Console`]
//! island; on the server it does nothing.
//!
//! The contract with the HTML (see [`crate::panels::Panel`]):
//! - `section[data-src=<slug>]` is a panel the server renders at `GET /panel/<slug>`;
//!   `data-refresh` lists the live events that reload it (`ended`, `rows`, `library`,
//!   `tick2`, `tick5`); a reset of the live stream reloads them all.
//! - `form[data-filter]` inside it holds the panel's query: a change (or a pause in typing
//!   into a search box) reloads the panel with the form's values, and every live reload keeps
//!   them.
//! - any other form posts to its `action` (or its button's `formaction`): the answer is the
//!   panel again, with the outcome at its top, swapped in place; `X-Refresh` names other
//!   panels the change moved. Without WASM the same forms are plain posts.
//! - `data-autosubmit` on a list sends its form when it changes; `data-plain` on a form leaves
//!   it to the browser (a post that navigates, such as a file from the desk), marked
//!   `sending` once sent and kept as it is through the panel's live reloads.
//!
//! Reloads of one panel never pile up (one in flight, at most one more after it, and live
//! reloads at most one a second, however busy the feed), an answer
//! older than a later change is dropped, a change's outcome stays shown through live reloads,
//! and the focused field keeps its focus and caret across a swap.

use crate::live::Live;

/// Starts the reloads and the forms (in the browser; nothing on the server).
pub fn start(live: Live) {
    #[cfg(feature = "hydrate")]
    browser::start(live);
    #[cfg(not(feature = "hydrate"))]
    let _ = live;
}

#[cfg(feature = "hydrate")]
mod browser {
    use super::Live;
    use leptos::prelude::*;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;
    use std::time::Duration;
    use wasm_bindgen::JsCast;
    use web_sys::{Element, FormData, HtmlElement, HtmlFormElement, HtmlInputElement, UrlSearchParams};

    type Pairs = Vec<(String, String)>;

    /// What a reload is for.
    enum Ask {
        /// A live event: the panel with its filter form's values.
        Refresh,
        /// A filter change: these values.
        Filter(Pairs),
        /// A form's post to this action.
        Post(String, Pairs),
    }

    #[derive(Default)]
    struct PanelState {
        /// A refresh is in flight.
        busy: bool,
        /// Another was asked for meanwhile.
        again: bool,
        /// Bumped by every filter change or post: answers of an older one are dropped.
        generation: u32,
        /// Bumped by every keystroke in a search box (its reload waits for a pause).
        typed: u32,
        /// When the last live reload was sent (ms since the epoch).
        refreshed_ms: f64,
    }

    /// Live reloads of one panel start at least this far apart: a burst of events (a hundred
    /// tasks ending in a second) costs each console one reload per panel per second.
    pub const REFRESH_EVERY_MS: f64 = 1000.0;

    thread_local! {
        static PANELS: RefCell<HashMap<String, PanelState>> = RefCell::new(HashMap::new());
    }

    fn with_state<T>(slug: &str, f: impl FnOnce(&mut PanelState) -> T) -> T {
        PANELS.with(|p| f(p.borrow_mut().entry(slug.to_string()).or_default()))
    }

    pub fn start(live: Live) {
        on_change_of(move || live.ended.get(), "ended");
        on_change_of(move || live.library.get(), "library");
        on_change_of(move || live.rows.with(|r| r.values().fold(0u64, |n, t| n.wrapping_add(t.version))), "rows");
        Effect::new(move |prev: Option<u64>| {
            let n = live.resets.get();
            if prev.is_some_and(|p| p != n) {
                fire("[data-src]");
            }
            n
        });
        let seconds = Cell::new(0u32);
        let _ = set_interval_with_handle(
            move || {
                if document().hidden() {
                    return;
                }
                seconds.set(seconds.get().wrapping_add(1));
                if seconds.get() % 2 == 0 {
                    fire("[data-refresh~=\"tick2\"]");
                }
                if seconds.get() % 5 == 0 {
                    fire("[data-refresh~=\"tick5\"]");
                }
            },
            Duration::from_secs(1),
        );
        let _ = window_event_listener(leptos::ev::submit, on_submit);
        let _ = window_event_listener(leptos::ev::change, on_change);
        let _ = window_event_listener(leptos::ev::input, on_input);
    }

    /// Reloads the panels whose triggers include `event` whenever `read`'s value changes.
    fn on_change_of<T: PartialEq + 'static>(read: impl Fn() -> T + 'static, event: &'static str) {
        Effect::new(move |prev: Option<T>| {
            let now = read();
            if prev.is_some_and(|p| p != now) {
                fire(&format!("[data-refresh~=\"{event}\"]"));
            }
            now
        });
    }

    /// Refreshes every panel matching `selector`.
    fn fire(selector: &str) {
        let Ok(found) = document().query_selector_all(selector) else { return };
        for i in 0..found.length() {
            if let Some(slug) = found.item(i).and_then(|n| n.dyn_into::<Element>().ok()).and_then(|e| e.get_attribute("data-src")) {
                leptos::task::spawn_local(load(slug, Ask::Refresh));
            }
        }
    }

    fn on_submit(ev: web_sys::SubmitEvent) {
        let Some(form) = ev.target().and_then(|t| t.dyn_into::<HtmlFormElement>().ok()) else { return };
        // The notifications' switch is a form too (one listener for both).
        if form.get_attribute("data-notify").is_some() {
            ev.prevent_default();
            crate::notify::toggle();
            return;
        }
        // A form that navigates (a file sent from the desk) is the browser's to post; marked
        // `sending` until the page moves on.
        if form.has_attribute("data-plain") {
            let _ = form.class_list().add_1("sending");
            return;
        }
        let Some(slug) = panel_of(&form) else { return };
        ev.prevent_default();
        let submitter = ev.submitter();
        let attr = |name: &str| submitter.as_ref().and_then(|s| s.get_attribute(name)).or_else(|| form.get_attribute(name.trim_start_matches("form")));
        let pairs = form_pairs(&form, submitter.as_ref());
        let ask = if attr("formmethod").is_some_and(|m| m.eq_ignore_ascii_case("post")) {
            Ask::Post(attr("formaction").unwrap_or_else(|| format!("/panel/{slug}")), pairs)
        } else {
            Ask::Filter(pairs)
        };
        leptos::task::spawn_local(load(slug, ask));
    }

    fn on_change(ev: web_sys::Event) {
        let Some(target) = ev.target().and_then(|t| t.dyn_into::<Element>().ok()) else { return };
        let form = form_of(&target);
        let filter = target.closest("form[data-filter]").ok().flatten().is_some();
        if (target.has_attribute("data-autosubmit") || filter)
            && let Some(form) = form
        {
            let _ = form.request_submit();
        }
    }

    fn on_input(ev: web_sys::Event) {
        let Some(target) = ev.target().and_then(|t| t.dyn_into::<HtmlInputElement>().ok()) else { return };
        if target.type_() != "search" {
            return;
        }
        let Some(form) = target.closest("form[data-filter]").ok().flatten().and_then(|f| f.dyn_into::<HtmlFormElement>().ok()) else { return };
        let Some(slug) = panel_of(&form) else { return };
        let mark = with_state(&slug, |s| {
            s.typed = s.typed.wrapping_add(1);
            s.typed
        });
        set_timeout(
            move || {
                if with_state(&slug, |s| s.typed) == mark
                    && let Some(form) = document().get_element_by_id(&slug).and_then(|p| p.query_selector("form[data-filter]").ok().flatten()).and_then(|f| f.dyn_into::<HtmlFormElement>().ok())
                {
                    let _ = form.request_submit();
                }
            },
            Duration::from_millis(300),
        );
    }

    /// The slug of the panel `el` is in.
    fn panel_of(el: &Element) -> Option<String> {
        el.closest("[data-src]").ok().flatten()?.get_attribute("data-src")
    }

    /// The form a control belongs to (its `form` attribute, else the form around it).
    fn form_of(el: &Element) -> Option<HtmlFormElement> {
        let by_attr = el.get_attribute("form").and_then(|id| document().get_element_by_id(&id));
        by_attr.or_else(|| el.closest("form").ok().flatten())?.dyn_into::<HtmlFormElement>().ok()
    }

    /// A form's fields, with the pressed button's name and value replacing any field of that name.
    fn form_pairs(form: &HtmlFormElement, submitter: Option<&HtmlElement>) -> Pairs {
        let mut pairs = Pairs::new();
        if let Ok(data) = FormData::new_with_form(form)
            && let Ok(Some(entries)) = web_sys::js_sys::try_iter(&data)
        {
            for entry in entries.flatten() {
                let entry: web_sys::js_sys::Array = entry.unchecked_into();
                if let (Some(k), Some(v)) = (entry.get(0).as_string(), entry.get(1).as_string()) {
                    pairs.push((k, v));
                }
            }
        }
        if let Some(name) = submitter.and_then(|s| s.get_attribute("name")) {
            pairs.retain(|(k, _)| *k != name);
            pairs.push((name, submitter.and_then(|s| s.get_attribute("value")).unwrap_or_default()));
        }
        pairs
    }

    /// The values of the panel's filter forms.
    fn filter_pairs(panel: &Element) -> Pairs {
        let Ok(forms) = panel.query_selector_all("form[data-filter]") else { return Pairs::new() };
        (0..forms.length()).filter_map(|i| forms.item(i)?.dyn_into::<HtmlFormElement>().ok()).flat_map(|f| form_pairs(&f, None)).collect()
    }

    fn encode(pairs: &Pairs) -> String {
        let Ok(params) = UrlSearchParams::new() else { return String::new() };
        for (k, v) in pairs {
            params.append(k, v);
        }
        String::from(params.to_string())
    }

    async fn load(slug: String, ask: Ask) {
        let generation = match ask {
            Ask::Refresh => {
                let already = with_state(&slug, |s| std::mem::replace(&mut s.busy, true).then(|| s.again = true).is_some());
                if already {
                    return;
                }
                with_state(&slug, |s| s.generation)
            }
            _ => with_state(&slug, |s| {
                s.generation = s.generation.wrapping_add(1);
                s.generation
            }),
        };
        let refresh = matches!(ask, Ask::Refresh);
        loop {
            if refresh {
                let wait = with_state(&slug, |s| s.refreshed_ms + REFRESH_EVERY_MS - web_sys::js_sys::Date::now());
                if wait > 0.0 {
                    crate::live::browser::sleep_ms(wait.ceil() as u64).await;
                }
                with_state(&slug, |s| s.refreshed_ms = web_sys::js_sys::Date::now());
            }
            let Some(panel) = document().get_element_by_id(&slug) else { break };
            let request = match &ask {
                Ask::Refresh => gloo_net::http::Request::get(&format!("/panel/{slug}?{}", encode(&filter_pairs(&panel)))).build(),
                Ask::Filter(pairs) => gloo_net::http::Request::get(&format!("/panel/{slug}?{}", encode(pairs))).build(),
                Ask::Post(action, pairs) => {
                    gloo_net::http::Request::post(action).header("Content-Type", "application/x-www-form-urlencoded").header("X-Fragment", "1").body(encode(pairs))
                }
            };
            let Ok(answer) = (match request {
                Ok(r) => r.send().await,
                Err(e) => Err(e),
            }) else {
                break;
            };
            if answer.status() == 401 {
                // The session ended: the page takes the person to sign in again.
                let _ = window().location().reload();
                break;
            }
            let also = answer.headers().get("x-refresh").unwrap_or_default();
            let Ok(html) = answer.text().await else { break };
            if with_state(&slug, |s| s.generation) == generation && html.trim_start().starts_with('<') {
                swap(&slug, &html, refresh);
            }
            // Asked for again meanwhile: once more, after the pause.
            if refresh && with_state(&slug, |s| std::mem::take(&mut s.again)) {
                continue;
            }
            for other in also.split(',').map(str::trim).filter(|s| !s.is_empty() && *s != slug) {
                leptos::task::spawn_local(load(other.to_string(), Ask::Refresh));
            }
            break;
        }
        if refresh {
            with_state(&slug, |s| s.busy = false);
        }
    }

    /// Puts the panel's new HTML in place of the old, keeping a shown outcome (on a live
    /// reload), a form being sent, and the focused field's focus and caret.
    fn swap(slug: &str, html: &str, keep_flash: bool) {
        let Some(old) = document().get_element_by_id(slug) else { return };
        let focused = document().active_element().filter(|a| old.contains(Some(a))).and_then(|a| {
            let caret = a.dyn_ref::<HtmlInputElement>().and_then(|i| i.selection_start().ok().flatten());
            a.get_attribute("name").map(|n| (n, caret))
        });
        let flash = keep_flash.then(|| old.query_selector("[data-flash]").ok().flatten()).flatten();
        // A file on its way (a form the browser is posting) keeps its form as it is.
        let sending = old.query_selector("form.sending").ok().flatten();
        old.set_outer_html(html);
        crate::notify::panel_swapped(slug);
        let Some(new) = document().get_element_by_id(slug) else { return };
        if let Some(form) = sending
            && let Some(fresh) = new.query_selector("form[data-plain]").ok().flatten()
        {
            let _ = fresh.replace_with_with_node_1(&form);
        }
        if let Some(flash) = flash
            && new.query_selector("[data-flash]").ok().flatten().is_none()
            && let Some(body) = new.query_selector(".panel-body").ok().flatten()
        {
            let _ = body.prepend_with_node_1(&flash);
        }
        if let Some((name, caret)) = focused
            && let Some(el) = new.query_selector(&format!("[name=\"{name}\"]")).ok().flatten()
            && let Some(el) = el.dyn_ref::<HtmlElement>()
        {
            let _ = el.focus();
            if let (Some(input), Some(at)) = (el.dyn_ref::<HtmlInputElement>(), caret) {
                let _ = input.set_selection_range(at, at);
            }
        }
    }
}
