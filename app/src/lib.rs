//! The KIE Control Room's UI, compiled twice: to the server (`ssr`, renders HTML and runs the
//! server functions) and to WASM (`hydrate`, Leptos islands: only the islands' code ships and
//! only they are hydrated in the browser).
//!
//! Map of the crate:
//! - [`view`] — plain serde view types shared by both sides (nothing secret in them).
//! - [`api`] — server functions; on the server they read the [`api::ConsoleContext`] the
//!   server provides and call the gateway core.
//! - [`live`] — the live event stream (`/events`, an `EventSource` in the browser) and the
//!   [`live::Console`] island that owns it and wraps the page.
//! - [`enhance`] — in that island: reloads the server-rendered panels on live events and
//!   sends their forms in the background.
//! - [`keys`] — in that island too: the keyboard shortcuts, and their list under "?".
//! - [`notify`] — and the browser notifications a person opts into (my tasks, cost alerts).
//! - [`panels`] — one module per numbered panel of the Control Room (01 Gateway … 11 Failures,
//!   then the admins' 12 Team and 13 Audit), the status strip, and the shared panel frame.
//!   Every panel is rendered on the server only; the Task Monitor and its composer are the
//!   one other island.
//! - [`signin`] — the sign-in page (a plain form: it loads no bundle at all).
//! - [`shell`] / [`App`] — the HTML document and the page: masthead, status strip, sections.

pub mod api;
pub(crate) mod enhance;
pub(crate) mod keys;
pub(crate) mod notify;
pub mod live;
pub mod panels;
pub(crate) mod signin;
pub use signin::SignInOptions;
pub mod view;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Title, provide_meta_context};
use leptos_router::{SsrMode, StaticSegment};
use leptos_router::components::{Route, Router, Routes};

use crate::panels::{PanelId, deferred};
use crate::view::{ConsoleStatus, Me, Upstream};

/// The HTML document the server sends. Only the console loads the bundle (the sign-in page
/// is a plain form and needs none of it); the stylesheet and the bundle have hashed names.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    let console = console_page();
    let css = assets::stylesheet(&options);
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="dark"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <link rel="stylesheet" href=css/>
                {console.then(|| view! { <AutoReload options=options.clone()/><HydrationScripts options islands=true/> })}
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// Whether this request is for a page of the console (the pages with islands: the Control
/// Room and its settings).
fn console_page() -> bool {
    #[cfg(feature = "ssr")]
    {
        use_context::<http::request::Parts>().is_none_or(|p| matches!(p.uri.path(), "/" | "/settings"))
    }
    #[cfg(not(feature = "ssr"))]
    {
        true
    }
}

/// The stylesheet's URL: `/pkg/control-room.<hash>.css` when cargo-leptos hashed the files
/// (it writes the hashes beside the server binary), else `/pkg/control-room.css`.
pub mod assets {
    use leptos::prelude::LeptosOptions;

    pub fn stylesheet(options: &LeptosOptions) -> String {
        #[cfg(feature = "ssr")]
        {
            static HREF: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            HREF.get_or_init(|| {
                let hash = options.hash_files.then(|| hash_of("css", options)).flatten();
                match hash {
                    Some(h) => format!("/{}/{}.{h}.css", options.site_pkg_dir, options.output_name),
                    None => format!("/{}/{}.css", options.site_pkg_dir, options.output_name),
                }
            })
            .clone()
        }
        #[cfg(not(feature = "ssr"))]
        {
            format!("/{}/{}.css", options.site_pkg_dir, options.output_name)
        }
    }

    /// The hash of one kind of file (`css`, `js`, `wasm`) in the hash file.
    #[cfg(feature = "ssr")]
    pub fn hash_of(kind: &str, options: &LeptosOptions) -> Option<String> {
        let dir = std::env::current_exe().ok()?.parent()?.to_path_buf();
        let text = std::fs::read_to_string(dir.join(options.hash_file.as_ref())).ok()?;
        text.lines().filter_map(|l| l.split_once(':')).find(|(k, _)| k.trim() == kind).map(|(_, h)| h.trim().to_string())
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Title text="KIE Control Room"/>
        <Router>
            <Routes fallback=|| view! { <p class="not-found">"Page not found."</p> }>
                // In order: the HTML streams top to bottom and is whole without JavaScript (no
                // placeholders swapped in by script).
                <Route path=StaticSegment("") view=ControlRoom ssr=SsrMode::InOrder/>
                <Route path=StaticSegment("settings") view=Settings ssr=SsrMode::InOrder/>
                <Route path=StaticSegment("signin") view=signin::SignIn/>
            </Routes>
        </Router>
    }
}

/// The sections of the page, in order: (anchor, name). Team is shown to admins only.
const SECTIONS: [(&str, &str); 4] = [("operate", "Operate"), ("money", "Money"), ("library", "Library"), ("team", "Team")];

/// The Control Room page: the masthead, the status strip, then the numbered panels in four
/// sections (operate · money · library · team). Everything here is rendered on the server;
/// the [`live::Console`] island around it keeps it live, and the Task Monitor is an island.
/// What is set once and rarely changed (the key vault, cost rules, callbacks) is on
/// [`Settings`], not here.
#[component]
fn ControlRoom() -> impl IntoView {
    let query = leptos_router::hooks::use_query_map();
    view! {
        <live::Console>
            <a class="skip" href="#monitor">"Skip to the Task Monitor"</a>
            <Masthead here=""/>
            {deferred(PanelId::Status)}
            <main>
                <Section id="operate" name="Operate" class="operate">
                    <Suspense fallback=|| view! { <section class="panel monitor loading" id="monitor"><p class="muted">"Loading the Task Monitor…"</p></section> }>
                        {Suspend::new(async move {
                            // The Monitor's filter from the page's URL (`/?q=kite&state=fail`).
                            let initial = panels::monitor::filter_of(&query.get_untracked());
                            // Follow-ups start from a result's story, not from the composer.
                            let mut models = api::list_models().await.map(|m| m.models).unwrap_or_default();
                            models.retain(|m| !m.is_follow_up());
                            let me = panels::me().await;
                            let can_produce = me.as_ref().is_some_and(Me::can_produce);
                            // The composer starts in the person's first project (or `default`).
                            let mine = me.map(|m| m.projects).unwrap_or_default();
                            let project = mine.first().cloned().unwrap_or_else(|| "default".into());
                            // "Use as input" in the Library: `/?input=<task>/<n>`.
                            // …and what it is, when not an image: the composer opens on the first model
                            // with a URL field that takes that media, filled.
                            let input = query.get_untracked().get("input").and_then(|i| panels::retention::input_reference(&i)).unwrap_or_default();
                            let media = query.get_untracked().get("media").and_then(|m| panels::retention::media_named(&m)).unwrap_or_default();
                            let (input_model, input_field) = if input.is_empty() { Default::default() } else { panels::composer::taking(media, &models) };
                            let first = panels::monitor::first_page(&api::list_tasks(initial.clone(), None, panels::monitor::PAGE).await.map_err(|e| panels::said(&e)));
                            // The composer's picker: the newest Library copies a task can take.
                            let picked = if can_produce { api::library_inputs().await.unwrap_or_default() } else { Vec::new() };
                            view! {
                                <panels::monitor::TaskMonitor models=models can_produce=can_produce first=first initial=initial project=project input=input input_model=input_model input_field=input_field>
                                    {panels::retention::picker(picked)}
                                </panels::monitor::TaskMonitor>
                                // The projects a limited person may work in, offered by the composer's project field.
                                <datalist id="my-projects">{mine.into_iter().map(|p| view! { <option value=p/> }).collect_view()}</datalist>
                            }
                        })}
                    </Suspense>
                    <div class="side">
                        {deferred(PanelId::Failures)}
                        {deferred(PanelId::Gateway)}
                        {deferred(PanelId::Throttle)}
                        {panels::monitor::legend()}
                    </div>
                </Section>
                <Section id="money" name="Money">
                    {deferred(PanelId::Market)}
                    {deferred(PanelId::Pinned)}
                    {deferred(PanelId::Budget)}
                    {deferred(PanelId::Ledger)}
                </Section>
                <Section id="library" name="Library">
                    {deferred(PanelId::Retention)}
                </Section>
                <Suspense fallback=|| ()>
                    {Suspend::new(async move {
                        panels::me().await.filter(Me::is_admin).map(|_| view! {
                            <Section id="team" name="Team">{deferred(PanelId::Team)}{deferred(PanelId::Audit)}</Section>
                        })
                    })}
                </Suspense>
            </main>
            // A task's story, opened beside the Monitor by a row's Story button.
            <aside class="drawer-dock" aria-label="Task story">{panels::story::closed()}</aside>
            <Footer/>
        </live::Console>
    }
}

/// The settings page (`/settings`): what is set up once and then left alone — the key vault and
/// relay keys (02), the cost rules (05), and where KIE's callbacks arrive (08). Live and
/// enhanced like the Control Room, through the same panels.
#[component]
fn Settings() -> impl IntoView {
    view! {
        <live::Console>
            <a class="skip" href="#settings">"Skip to the settings"</a>
            <Masthead here="settings"/>
            <main>
                <Section id="settings" name="Settings">
                    {deferred(PanelId::Secret)}
                    {deferred(PanelId::Rules)}
                    {deferred(PanelId::Delivery)}
                    {deferred(PanelId::TwoStep)}
                </Section>
            </main>
            <Footer/>
        </live::Console>
    }
}

/// The masthead of both pages: brand, title and connection, the sections' links (on the
/// settings page they lead back to the Control Room), who is signed in, and the simulator's
/// banner. `here`: the page's own link ("" for the Control Room).
#[component]
fn Masthead(here: &'static str) -> impl IntoView {
    let back = if here.is_empty() { "" } else { "/" };
    view! {
        <header class="masthead">
            <div class="brand">
                <span class="brand-mark">"BROAD|CAST"</span>
                <span class="brand-sub">"Video Creation Studio · Control Room · Generation Gateway"</span>
            </div>
            <div class="title-row">
                <h1>"KIE Control Room"</h1>
                <Suspense fallback=|| view! { <span class="badge badge-wait">"Checking"</span> }>
                    {Suspend::new(async move { upstream_badge(api::load_console_status().await.ok().as_ref()) })}
                </Suspense>
            </div>
            <Suspense fallback=|| ()>
                {Suspend::new(async move {
                    let admin = panels::me().await.is_some_and(|m| m.is_admin());
                    view! {
                        <nav class="sections" aria-label="Sections">
                            {SECTIONS.iter().filter(|(id, _)| admin || *id != "team").map(|(id, name)| view! { <a href=format!("{back}#{id}")>{*name}</a> }).collect_view()}
                            <a href="/settings" aria-current=(here == "settings").then_some("page") data-testid="settings-link">"Settings"</a>
                            <a href="#keys" class="keys-link" title="Keyboard shortcuts" aria-label="Keyboard shortcuts">"?"</a>
                        </nav>
                    }
                })}
            </Suspense>
            <Suspense fallback=|| ()>
                {Suspend::new(async move { panels::me().await.map(user_bar) })}
            </Suspense>
            <Suspense fallback=|| ()>
                {Suspend::new(async move { api::load_console_status().await.ok().and_then(|s| simulator_banner(&s)) })}
            </Suspense>
        </header>
    }
}

/// The foot of both pages: the keyboard shortcuts (`?`) and what the console promises.
#[component]
fn Footer() -> impl IntoView {
    view! {
        <footer class="foot">
            {keys::list()}
            <p>"KIE Control Room · keys stay on the server · every number here comes from a record or an upstream answer"</p>
        </footer>
    }
}

/// One of the page's sections (operate · money · library · team): its heading, its anchor, and
/// its panels laid out by `class` (`grid` unless told).
#[component]
fn Section(id: &'static str, name: &'static str, #[prop(default = "grid")] class: &'static str, children: Children) -> impl IntoView {
    view! {
        <section class="section" id=id aria-labelledby=format!("{id}-head")>
            <h2 class="section-head" id=format!("{id}-head")>{name}</h2>
            <div class=class>{children()}</div>
        </section>
    }
}

/// Who is signed in, their role, and the sign-out forms (plain posts: they work without WASM).
fn user_bar(me: Me) -> impl IntoView {
    let (role, email) = (me.role.clone(), me.email.clone());
    view! {
        <div class="user-bar" data-testid="user-bar" data-role=role data-email=email>
            <span class="user-name">{me.name}</span>
            <span class="muted">" · "{me.email}" · "</span>
            <span class="badge badge-off" data-testid="user-role">{me.role}</span>
            // Shown by the console once the browser proves it can notify (`crate::notify`).
            <form class="inline" data-notify="" hidden><button type="submit" class="link" data-testid="notify">"Notify me"</button></form>
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
