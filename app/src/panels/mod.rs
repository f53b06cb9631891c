//! The eleven numbered panels of the Control Room, one module each, and the frame they share.
//!
//! Panels read the console status from context ([`crate::StatusResource`]) or call their own
//! server functions. A panel whose feature has not landed yet says what it will do; it never
//! shows invented numbers.

pub mod audit;
pub mod budget;
pub mod composer;
pub mod delivery;
pub mod failures;
pub mod gateway;
pub mod ledger;
pub mod market;
pub mod monitor;
pub mod pinned;
pub mod retention;
pub mod secret;
pub mod team;
pub mod throttle;

use leptos::prelude::*;

use crate::StatusResource;
use crate::view::ConsoleStatus;

/// The frame every panel shares: number, kicker, title, a badge, and the body.
#[component]
pub fn Panel<B: IntoView + 'static>(
    /// "01" … "11".
    number: &'static str,
    /// The one-word kicker after the number ("Gateway", "Secret", …).
    kicker: &'static str,
    title: &'static str,
    badge: B,
    /// Extra CSS class, e.g. `wide`.
    #[prop(optional)]
    class: &'static str,
    children: Children,
) -> impl IntoView {
    view! {
        <section class=format!("panel {class}") data-panel=number aria-label=title>
            <header class="panel-head">
                <span class="panel-num">{number}" · "{kicker}</span>
                <h2>{title}</h2>
                <div class="panel-badge">{badge}</div>
            </header>
            <div class="panel-body">{children()}</div>
        </section>
    }
}

/// A static badge.
pub fn badge(kind: &'static str, text: impl Into<String>) -> impl IntoView {
    let text: String = text.into();
    view! { <span class=format!("badge badge-{kind}")>{text}</span> }
}

/// A server function's error as the person should read it (without the framework's prefix).
pub fn said(e: &ServerFnError) -> String {
    e.to_string().trim_start_matches("error running server function: ").to_string()
}

/// A labelled fill bar: a spend meter, a rate guard rule.
pub fn fill_bar(testid: &'static str, label: String, percent: u32, detail: String) -> impl IntoView {
    let full = percent >= 100;
    view! {
        <div class="spend" data-testid=testid data-percent=percent.to_string()>
            <div class="spend-label">{label}</div>
            <div class="bar"><span style=format!("width:{}%", percent.min(100)) class:full=full></span></div>
            <div class="muted">{detail}</div>
        </div>
    }
}

/// The shared console status resource.
pub fn status() -> StatusResource {
    expect_context::<StatusResource>()
}

/// Renders `f(status)` once the status is known: "Checking" until then, an honest error if it
/// could not be read.
pub fn with_status<V: IntoView + 'static>(f: impl Fn(&ConsoleStatus) -> V + Send + Sync + Copy + 'static) -> impl IntoView {
    let status = status();
    view! {
        <Suspense fallback=|| view! { <span class="muted">"Checking…"</span> }>
            {move || status.get().map(|r| match r {
                Ok(s) => f(&s).into_any(),
                Err(e) => view! { <span class="error">"Status unavailable: " {e.to_string()}</span> }.into_any(),
            })}
        </Suspense>
    }
}

/// The time of day of `ms` since the epoch, UTC, as `HH:MM:SS`.
pub fn clock(ms: u64) -> String {
    let s = ms / 1000 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
}
