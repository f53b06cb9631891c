//! The KIE Control Room's UI, compiled twice: to the server (`ssr`, renders HTML and runs the
//! server functions) and to WASM (`hydrate`, takes over that HTML in the browser).
//!
//! Map of the crate:
//! - [`view`] — plain serde view types shared by both sides (nothing secret in them).
//! - [`api`] — server functions; on the server they read the [`api::ConsoleContext`] the
//!   server provides and call the gateway core.
//! - [`live`] — the live event stream (`/events`, an `EventSource` in the browser) that
//!   every panel reads through context.
//! - [`panels`] — one module per numbered panel of the Control Room (01 Gateway … 11 Failures,
//!   then the admins' 12 Team and 13 Audit) plus the shared panel frame.
//! - [`signin`] — the sign-in page (a plain form: it works before the WASM loads).
//! - [`shell`] / [`App`] — the HTML document and the page: header, status strip, panel grid.

pub mod api;
pub mod live;
pub mod panels;
pub mod signin;
pub mod view;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::StaticSegment;
use leptos_router::components::{Route, Router, Routes};

use crate::view::{ConsoleStatus, Me, Upstream};

/// The console status, shared by every panel through context.
pub type StatusResource = Resource<Result<ConsoleStatus, ServerFnError>>;
/// The signed-in person, shared through context: panels show what their role allows.
pub type MeResource = Resource<Result<Me, ServerFnError>>;

/// The signed-in person's resource (read it inside a `Suspense`).
pub fn me() -> MeResource {
    expect_context::<MeResource>()
}

/// Renders `allowed` if the signed-in person passes `test`, else `other`. Rendered in the
/// browser only, once the page has hydrated: what a role may see is then built fresh instead
/// of hydrated (panels with their own resources and forms, mounted inside a resolved Suspense,
/// did not hydrate in order). The server checks every call anyway; this only hides controls.
pub fn when_role<A: IntoView + 'static, B: IntoView + 'static>(
    test: fn(&Me) -> bool,
    allowed: impl Fn() -> A + Send + Sync + 'static,
    other: impl Fn() -> B + Send + Sync + 'static,
) -> impl IntoView {
    let me = me();
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    move || {
        hydrated.get().then(|| me.get()).flatten().map(|r| if r.as_ref().is_ok_and(test) { allowed().into_any() } else { other().into_any() })
    }
}

/// The HTML document the server sends.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="dark"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="leptos" href="/pkg/control-room.css"/>
        <Title text="KIE Control Room"/>
        <Router>
            <Routes fallback=|| view! { <p class="not-found">"Page not found."</p> }>
                <Route path=StaticSegment("") view=ControlRoom/>
                <Route path=StaticSegment("signin") view=signin::SignIn/>
            </Routes>
        </Router>
    }
}

/// The Control Room page: the header, then the eleven numbered panels.
#[component]
fn ControlRoom() -> impl IntoView {
    let live = live::Live::new();
    provide_context(live);
    // The status (ledger meters included) reloads when a task ends.
    let status: StatusResource = Resource::new(move || live.ended.get(), |_| api::load_console_status());
    provide_context(status);
    let me: MeResource = Resource::new(|| (), |_| api::whoami());
    provide_context(me);
    panels::market::Market::provide();

    // Hydration marker for the end-to-end suite: effects run only in the browser, after
    // hydration has attached every handler.
    Effect::new(move |_| {
        live::start(live);
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });

    view! {
        <header class="masthead">
            <div class="brand">
                <span class="brand-mark">"BROAD|CAST"</span>
                <span class="brand-sub">"Video Creation Studio"</span>
            </div>
            <div class="crumb">"Control Room · Generation Gateway"</div>
            <Suspense fallback=|| ()>
                {move || me.get().and_then(Result::ok).map(user_bar)}
            </Suspense>
            <div class="title-row">
                <h1>"KIE Control Room"</h1>
                <Suspense fallback=|| view! { <span class="badge badge-wait">"Checking"</span> }>
                    {move || status.get().map(|s| upstream_badge(s.ok().as_ref()))}
                </Suspense>
            </div>
            <p class="tagline">
                "The generation gateway, run like an operations console — connection, keys, models, budgets, tasks, and receipts in one accountable surface."
            </p>
            <Suspense fallback=|| ()>
                {move || status.get().and_then(Result::ok).and_then(|s| simulator_banner(&s))}
            </Suspense>
        </header>
        <main class="grid">
            <panels::gateway::GatewayPanel/>
            <panels::secret::SecretPanel/>
            <panels::market::MarketPanel/>
            <panels::pinned::PinnedPanel/>
            <panels::budget::BudgetPanel/>
            <panels::throttle::ThrottlePanel/>
            <panels::retention::RetentionPanel/>
            <panels::delivery::DeliveryPanel/>
            <panels::ledger::LedgerPanel/>
            <panels::monitor::MonitorPanel/>
            <panels::failures::FailuresPanel/>
            {when_role(Me::is_admin, || view! { <panels::team::TeamPanel/><panels::audit::AuditPanel/> }, || ())}
        </main>
        <footer class="foot">"KIE Control Room · keys stay on the server · every number here comes from a record or an upstream answer"</footer>
    }
}

/// Who is signed in, their role, and the sign-out forms (plain posts: they work without WASM).
fn user_bar(me: Me) -> impl IntoView {
    let role = me.role.clone();
    view! {
        <div class="user-bar" data-testid="user-bar" data-role=role>
            <span class="user-name">{me.name}</span>
            <span class="muted">" · "{me.email}" · "</span>
            <span class="badge badge-off" data-testid="user-role">{me.role}</span>
            <form method="post" action="/auth/signout" class="inline"><button type="submit" class="link" data-testid="sign-out">"Sign out"</button></form>
            <form method="post" action="/auth/signout-all" class="inline"><button type="submit" class="link" data-testid="sign-out-all">"Sign out everywhere"</button></form>
        </div>
    }
}

/// The connection badge: what the upstream is, never a guess.
pub fn upstream_badge(status: Option<&ConsoleStatus>) -> impl IntoView + use<> {
    let probe_ok = status.and_then(|s| s.gateway.as_ref()).map(|g| g.error.is_none());
    let (class, text) = match (status.map(|s| &s.upstream), probe_ok) {
        (None, _) => ("badge badge-bad", "Unavailable"),
        (Some(Upstream::NotConfigured), _) => ("badge badge-off", "Not configured"),
        (Some(Upstream::Simulator { .. }), _) => ("badge badge-sim", "Simulator"),
        (Some(Upstream::Kie { .. }), Some(true)) => ("badge badge-ok", "Connected"),
        (Some(Upstream::Kie { .. }), Some(false)) => ("badge badge-bad", "Not connected"),
        (Some(Upstream::Kie { .. }), None) => ("badge badge-wait", "Checking"),
    };
    view! { <span class=class data-testid="connection-badge">{text}</span> }
}

fn simulator_banner(s: &ConsoleStatus) -> Option<impl IntoView + use<>> {
    matches!(s.upstream, Upstream::Simulator { .. }).then(|| {
        view! {
            <div class="sim-banner" role="status">
                "Simulator — requests go to the bundled KIE simulator, not to KIE. Nothing here costs money."
            </div>
        }
    })
}
