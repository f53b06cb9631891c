//! Keyboard shortcuts, listed on the page under "?" ([`list`], rendered on the server):
//! `/` search, `j`/`k` the next and previous task in the Monitor, `Enter` opens the focused
//! task's story (the row's own Story button), `r` retries it when it failed, `Ctrl+Enter`
//! sends the form being written, `?` the list itself. Single keys are ignored while a field
//! has the focus, so typing is never taken (`Esc` leaves the field). They run in the
//! [`crate::live::Console`] island, on the HTML the server rendered; on the server they do
//! nothing.

use leptos::prelude::*;

/// The shortcuts: (keys, what they do).
const SHORTCUTS: [(&str, &str); 7] = [
    ("/", "search the tasks"),
    ("j / k", "next / previous task in the Monitor"),
    ("Enter", "open the task's story"),
    ("r", "retry the task, if it failed"),
    ("Ctrl + Enter", "send the form you are writing (a new task)"),
    ("?", "show or hide this list"),
    ("Esc", "leave a field"),
];

/// The list of shortcuts, at the foot of the page (`#keys`; the key `?` and the masthead's
/// "?" open it).
pub fn list() -> impl IntoView {
    view! {
        // The list has the anchor: a link to `#keys` opens the closed `details` around it.
        <details class="keys" data-testid="shortcuts">
            <summary>"Keyboard shortcuts"</summary>
            <dl class="kv" id="keys">{SHORTCUTS.iter().map(|(k, what)| view! { <dt><kbd>{*k}</kbd></dt><dd>{*what}</dd> }).collect_view()}</dl>
        </details>
    }
}

/// Listens for the shortcuts (in the browser; nothing on the server).
pub fn start() {
    #[cfg(feature = "hydrate")]
    {
        let _ = window_event_listener(leptos::ev::keydown, browser::on_key);
    }
}

#[cfg(feature = "hydrate")]
mod browser {
    use leptos::prelude::*;
    use std::cell::RefCell;
    use wasm_bindgen::JsCast;
    use web_sys::{Element, HtmlElement, HtmlFormElement, KeyboardEvent};

    pub fn on_key(ev: KeyboardEvent) {
        let key = ev.key();
        let focused = document().active_element();
        if ev.ctrl_key() || ev.meta_key() {
            // Ctrl+Enter sends the form the focused field belongs to.
            if key == "Enter"
                && let Some(form) = focused.and_then(|f| f.closest("form").ok().flatten()).and_then(|f| f.dyn_into::<HtmlFormElement>().ok())
            {
                ev.prevent_default();
                let _ = form.request_submit();
            }
            return;
        }
        if let Some(field) = focused.as_ref().filter(|f| f.matches("input,textarea,select").unwrap_or(false)) {
            // In a field every key is typing, but Esc leaves it (for j/k again).
            if key == "Escape"
                && let Some(field) = field.dyn_ref::<HtmlElement>()
            {
                let _ = field.blur();
            }
            return;
        }
        if ev.alt_key() {
            return;
        }
        // The task in hand: the focused row's, else the last one j/k went to (a live update
        // redraws the rows and takes the focus with them).
        let task = focused.as_ref().and_then(|f| f.closest("[data-task]").ok().flatten()).and_then(|r| r.get_attribute("data-task")).or_else(|| LAST.with_borrow(Clone::clone));
        match key.as_str() {
            "/" => focus("[data-testid=filter-q]"),
            "j" | "k" => step(task, key == "j"),
            "r" => {
                if let Some(id) = task {
                    click(&format!("button[name=retry][value=\"{id}\"]"));
                }
            }
            // Its summary, focused (in view) and pressed: the list opens, or closes.
            "?" => {
                focus("details.keys summary");
                click("details.keys summary");
            }
            _ => return,
        }
        ev.prevent_default();
    }

    thread_local! {
        /// The task j/k last went to.
        static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
    }

    /// Moves the focus from `task`'s row to the next (or previous) row's Story button (the
    /// first row's when no row is in hand).
    fn step(task: Option<String>, forward: bool) {
        let Ok(rows) = document().query_selector_all("#monitor tr[data-task]") else { return };
        let rows: Vec<Element> = (0..rows.length()).filter_map(|i| rows.item(i)?.dyn_into::<Element>().ok()).collect();
        let at = task.and_then(|t| rows.iter().position(|r| r.get_attribute("data-task").as_ref() == Some(&t)));
        let next = match (at, forward) {
            (None, _) => 0,
            (Some(i), true) => (i + 1).min(rows.len().saturating_sub(1)),
            (Some(i), false) => i.saturating_sub(1),
        };
        let Some(row) = rows.get(next) else { return };
        LAST.set(row.get_attribute("data-task"));
        if let Some(b) = row.query_selector("[data-testid=story-open]").ok().flatten().and_then(|b| b.dyn_into::<HtmlElement>().ok()) {
            let _ = b.focus();
        }
    }

    fn focus(selector: &str) {
        if let Some(el) = document().query_selector(selector).ok().flatten().and_then(|e| e.dyn_into::<HtmlElement>().ok()) {
            let _ = el.focus();
        }
    }

    fn click(selector: &str) {
        if let Some(el) = document().query_selector(selector).ok().flatten().and_then(|e| e.dyn_into::<HtmlElement>().ok()) {
            el.click();
        }
    }
}
