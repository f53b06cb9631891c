//! The numbered panels of the Control Room, one module each, and the frame they share.
//!
//! Every panel but the Task Monitor is rendered on the server only and ships no code to the
//! browser. Each module has `render(query, flash)`: it reads what it shows (through the same
//! server functions the API serves, so the same role checks apply) and returns the whole
//! panel. The page renders it inside a `Suspense`; `GET /panel/<slug>` renders it again on its
//! own, and the live console ([`crate::live::Console`]) swaps it in when a live event names one
//! of its triggers (`data-refresh`) or its filter form changes (`form[data-filter]`). A panel
//! with changes to make also has `act(form)`: `POST /panel/<slug>` runs it and answers the
//! panel with the outcome at its top (the `flash`). So a new panel costs the bundle nothing.
//!
//! The Task Monitor and its composer ([`monitor`], [`composer`]) are an island: they hold
//! state in the browser (live rows, filters, the form being written).

pub(crate) mod audit;
pub(crate) mod batches;
pub(crate) mod budget;
pub(crate) mod composer;
pub(crate) mod delivery;
pub(crate) mod failures;
pub(crate) mod gateway;
pub(crate) mod ledger;
pub(crate) mod market;
pub(crate) mod monitor;
pub(crate) mod pinned;
pub(crate) mod retention;
/// Where "Use as input" opens the composer (also where a desk upload lands).
pub use retention::use_as_input;
pub(crate) mod rules;
pub(crate) mod secret;
pub(crate) mod status;
pub(crate) mod story;
pub(crate) mod team;
pub(crate) mod throttle;
pub(crate) mod two_step;

use leptos::prelude::*;

/// A panel's filter values or a form's fields, as the browser sent them (bounded by the
/// server: at most [`MAX_FIELDS`] pairs).
pub type Fields = Vec<(String, String)>;

/// Most pairs one query or form may carry.
pub const MAX_FIELDS: usize = 32;

/// The value of `name` in `f`, trimmed; `None` if absent or blank.
pub fn field<'a>(f: &'a Fields, name: &str) -> Option<&'a str> {
    f.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).filter(|v| !v.is_empty())
}

/// [`field`], owned.
pub fn field_owned(f: &Fields, name: &str) -> Option<String> {
    field(f, name).map(str::to_string)
}

/// The server-rendered panels, by the slug of their URL (`/panel/<slug>`, `/#<slug>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanelId {
    Status,
    Gateway,
    Secret,
    Market,
    Pinned,
    Budget,
    /// The cost rules themselves (on the settings page; [`PanelId::Budget`] shows their meters).
    Rules,
    Throttle,
    Retention,
    Delivery,
    Ledger,
    Failures,
    Team,
    /// Two-step sign-in of the signed-in person (on the settings page).
    TwoStep,
    Audit,
    /// One task's story (`/tasks/<id>`): not on the page, opened from a task.
    Story,
}

impl PanelId {
    pub const ALL: [PanelId; 16] = [
        PanelId::Status,
        PanelId::Gateway,
        PanelId::Secret,
        PanelId::Market,
        PanelId::Pinned,
        PanelId::Budget,
        PanelId::Rules,
        PanelId::Throttle,
        PanelId::Retention,
        PanelId::Delivery,
        PanelId::Ledger,
        PanelId::Failures,
        PanelId::Team,
        PanelId::TwoStep,
        PanelId::Audit,
        PanelId::Story,
    ];

    /// Its slug and heading, in one place: a new panel is a variant, a line here, its arm in
    /// [`render`] (and [`act`] if it has forms), and its module.
    fn spec(self) -> (&'static str, Heading) {
        match self {
            PanelId::Status => ("status", Heading { number: "", kicker: "Status", title: "Status" }),
            PanelId::Gateway => ("gateway", Heading { number: "01", kicker: "Gateway", title: "Connection Status" }),
            PanelId::Secret => ("secret", Heading { number: "02", kicker: "Secret", title: "API Key Vault" }),
            PanelId::Market => ("market", Heading { number: "03", kicker: "Market", title: "Model Market" }),
            PanelId::Pinned => ("pinned", Heading { number: "04", kicker: "Pinned", title: "Favorite Models" }),
            PanelId::Budget => ("budget", Heading { number: "05", kicker: "Budget", title: "Spend Against Caps" }),
            PanelId::Rules => ("rules", Heading { number: "", kicker: "Settings · Budget", title: "Cost Rules" }),
            PanelId::Throttle => ("throttle", Heading { number: "06", kicker: "Throttle", title: "Rate Guard" }),
            PanelId::Retention => ("retention", Heading { number: "07", kicker: "Retention", title: "Library" }),
            PanelId::Delivery => ("delivery", Heading { number: "08", kicker: "Delivery", title: "Callback / Webhook Manager" }),
            PanelId::Ledger => ("ledger", Heading { number: "09", kicker: "Receipts", title: "Ledger" }),
            PanelId::Failures => ("failures", Heading { number: "11", kicker: "Failures", title: "Error Review" }),
            PanelId::Team => ("people", Heading { number: "12", kicker: "Team", title: "People and Roles" }),
            PanelId::TwoStep => ("two-step", Heading { number: "", kicker: "Settings · You", title: "Two-Step Sign-In" }),
            PanelId::Audit => ("audit", Heading { number: "13", kicker: "Audit", title: "Audit Log" }),
            PanelId::Story => ("story", Heading { number: "", kicker: "Task", title: "Task Story" }),
        }
    }

    /// Its URL's last part (`/panel/<slug>`, `/#<slug>`).
    pub fn slug(self) -> &'static str {
        self.spec().0
    }

    /// Its number, kicker and title.
    pub fn heading(self) -> Heading {
        self.spec().1
    }

    /// The page it is on: the settings page for what is set once (the key vault, the cost
    /// rules, callbacks), else the Control Room.
    pub fn page(self) -> &'static str {
        match self {
            PanelId::Secret | PanelId::Rules | PanelId::Delivery | PanelId::TwoStep => "/settings",
            _ => "/",
        }
    }

    pub fn from_slug(slug: &str) -> Option<PanelId> {
        PanelId::ALL.into_iter().find(|p| p.slug() == slug)
    }
}

/// What the frame shows of a panel: "09 · Ledger", then its title (the status strip has no
/// number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heading {
    pub number: &'static str,
    pub kicker: &'static str,
    pub title: &'static str,
}

/// What a panel's `act` answers: the outcome to show at its top, and the other panels the
/// change moves (the browser reloads them too).
pub struct Acted {
    pub flash: AnyView,
    pub also: &'static [PanelId],
}

impl Acted {
    fn new(flash: AnyView) -> Acted {
        Acted { flash, also: &[] }
    }

    /// The outcome of a server function: `ok(value)` on success, its error otherwise.
    fn of<T>(r: Result<T, ServerFnError>, ok: impl FnOnce(T) -> AnyView, testid: &'static str) -> Acted {
        Acted::new(match r {
            Ok(v) => ok(v),
            Err(e) => view! { <p class="error" role="alert" data-testid=testid>{said(&e)}</p> }.into_any(),
        })
    }

    fn also(mut self, also: &'static [PanelId]) -> Acted {
        self.also = also;
        self
    }
}

/// Renders panel `id` with the browser's `query` and, after a change, its outcome.
pub async fn render(id: PanelId, query: Fields, flash: Option<AnyView>) -> AnyView {
    match id {
        PanelId::Status => status::render().await,
        PanelId::Gateway => gateway::render().await,
        PanelId::Secret => secret::render(flash).await,
        PanelId::Market => market::render(query, flash).await,
        PanelId::Pinned => pinned::render().await,
        PanelId::Budget => budget::render().await,
        PanelId::Rules => rules::render(flash).await,
        PanelId::Throttle => throttle::render(flash).await,
        PanelId::Retention => retention::render(query, flash).await,
        PanelId::Delivery => delivery::render().await,
        PanelId::Ledger => ledger::render(query).await,
        PanelId::Failures => failures::render(flash).await,
        PanelId::Team => team::render(flash).await,
        PanelId::TwoStep => two_step::render(flash).await,
        PanelId::Audit => audit::render(query).await,
        PanelId::Story => story::render(query, flash).await,
    }
}

/// Runs the change a panel's form asked for (`None`: this panel has no forms).
pub async fn act(id: PanelId, form: Fields) -> Option<Acted> {
    Some(match id {
        PanelId::Secret => secret::act(form).await,
        PanelId::Market => market::act(form).await,
        PanelId::Pinned => market::act(form).await,
        PanelId::Rules => rules::act(form).await,
        PanelId::Throttle => throttle::act(form).await,
        PanelId::Retention => retention::act(form).await,
        PanelId::Failures => failures::act(form).await,
        PanelId::Team => team::act(form).await,
        PanelId::TwoStep => two_step::act(form).await,
        PanelId::Story => story::act(form).await,
        _ => return None,
    })
}

/// The page's placeholder for panel `id` while the server reads it (streamed in its place).
pub fn deferred(id: PanelId) -> impl IntoView {
    view! {
        <Suspense fallback=move || view! { <section class="panel loading" id=id.slug() data-src=id.slug()><p class="muted">"Loading…"</p></section> }>
            {Suspend::new(async move { render(id, Vec::new(), None).await })}
        </Suspense>
    }
}

/// The frame every panel shares: number, kicker and title (from `id`'s [`Heading`]), a badge,
/// and the body. `id` names it (its deep link and its URL); `refresh` lists the live events that reload it: `ended` (a
/// task ended), `rows` (a task changed), `library` (copies moved), `tick2`/`tick5` (every 2 or
/// 5 s). A reset of the live stream reloads every panel.
#[component]
pub fn Panel<B: IntoView + 'static>(
    id: PanelId,
    badge: B,
    #[prop(optional)]
    refresh: &'static str,
    /// Extra CSS class, e.g. `wide`.
    #[prop(optional)]
    class: &'static str,
    /// A change's outcome, shown first.
    #[prop(default = None)]
    flash: Option<AnyView>,
    children: Children,
) -> impl IntoView {
    let Heading { number, kicker, title } = id.heading();
    view! {
        <section class=format!("panel {class}") id=id.slug() data-panel=number data-src=id.slug() data-refresh=refresh aria-labelledby=format!("{}-title", id.slug())>
            <header class="panel-head">
                <span class="panel-num">{if number.is_empty() { kicker.to_string() } else { format!("{number} · {kicker}") }}</span>
                <h2 id=format!("{}-title", id.slug())>{title}</h2>
                <div class="panel-badge">{badge}</div>
            </header>
            <div class="panel-body">{flash.map(|f| view! { <div class="flash" data-flash="">{f}</div> })}{children()}</div>
        </section>
    }
}

/// A form that makes a change in panel `id`: posted to `/panel/<slug>` (the live console sends
/// it in the background and swaps the answer in; without WASM it is a plain post).
pub fn act_form(id: PanelId) -> String {
    format!("/panel/{}", id.slug())
}

/// How a destructive change is confirmed in [`confirm`].
pub enum Confirm<'a> {
    /// One more press of the button.
    Press,
    /// Typing this name (for the largest changes).
    Typing(&'a str),
}

/// The question a destructive change asks before it is made (in the panel's outcome): what it
/// will do, the fields it carries, and two buttons — `do=<action>` makes it, `do=cancel` does
/// nothing. Only the pressed button's `do` is sent, with or without WASM.
pub fn confirm(id: PanelId, question: String, carry: Vec<(&'static str, String)>, how: Confirm<'_>, action: &'static str, button: String) -> AnyView {
    let typed = match how {
        Confirm::Typing(name) => view! {
            <label class="small">{format!("Type {name} to confirm ")}<input type="text" name="confirm" required=true autocomplete="off" data-testid="confirm-typed"/></label>
        }
        .into_any(),
        Confirm::Press => view! { <input type="hidden" name="confirm" value="yes"/> }.into_any(),
    };
    view! {
        <form class="confirm" method="post" action=act_form(id) data-testid="confirm">
            <p class="warn" role="alert" data-testid="confirm-question">{question}</p>
            {carry.into_iter().map(|(name, value)| view! { <input type="hidden" name=name value=value/> }).collect_view()}
            {typed}
            " "<button type="submit" class="danger" name="do" value=action data-testid="confirm-yes">{button}</button>
            " "<button type="submit" name="do" value="cancel" formnovalidate=true data-testid="confirm-cancel">"Cancel"</button>
        </form>
    }
    .into_any()
}

/// The outcome of a Cancel on a [`confirm`] question.
pub fn cancelled() -> Acted {
    Acted::new(ok_note("cancelled", "Cancelled: nothing was changed.".into()))
}

/// A static badge.
pub fn badge(kind: &'static str, text: impl Into<String>) -> AnyView {
    let text: String = text.into();
    view! { <span class=format!("badge badge-{kind}")>{text}</span> }.into_any()
}

/// A number as the screen shows it, with thousands separators: `2000000.5` → `2,000,000.5`
/// (anything else is returned as it is).
pub fn grouped(number: &str) -> String {
    let (sign, rest) = number.strip_prefix('-').map_or(("", number), |r| ("-", r));
    let (whole, frac) = rest.split_once('.').map_or((rest, None), |(w, f)| (w, Some(f)));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || frac.is_some_and(|f| !f.bytes().all(|b| b.is_ascii_digit())) {
        return number.to_string();
    }
    let mut out = String::from(sign);
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out
}

/// Credits as every panel shows them, with their dollars beside: `9,996 credits ($49.98)`
/// (text that is not an amount is shown as it is).
pub fn credits(amount: &str) -> String {
    match dollars(amount) {
        Some(usd) => format!("{} credits ({usd})", grouped(amount)),
        None => amount.to_string(),
    }
}

/// The dollars of a credit amount written as a decimal (`None`: not one).
#[cfg(feature = "ssr")]
pub fn dollars(amount: &str) -> Option<String> {
    let c: f64 = amount.trim().parse().ok()?;
    Some(::gateway::Credits::from_decimal(c)?.dollars())
}

#[cfg(not(feature = "ssr"))]
pub fn dollars(_: &str) -> Option<String> {
    None
}

/// A runway of `days` as every panel shows it: `≈ 4.5 days`, `≈ 12 days`, then `over a year`.
pub fn runway(days: f64) -> String {
    match days {
        d if d > 365.0 => "over a year".to_string(),
        d if d >= 10.0 => format!("≈ {d:.0} days"),
        d => format!("≈ {d:.1} days"),
    }
}

/// A moment as every panel shows it, from its RFC 3339 UTC text: within the last day how long
/// ago ("4 min ago"), before that its date and time in the viewer's time zone (the `tz` cookie
/// the console sets; marked UTC until it has), and the exact UTC time on hover.
pub fn when(utc: &str) -> AnyView {
    let (shown, hover) = moment(utc);
    view! { <time datetime=utc.to_string() title=hover>{shown}</time> }.into_any()
}

/// What [`when`] shows and what it shows on hover.
#[cfg(feature = "ssr")]
fn moment(utc: &str) -> (String, String) {
    moment_at(utc, ::gateway::store::now_ms(), viewer_offset())
}

/// [`moment`] at `now`, for a viewer `offset` minutes east of UTC.
#[cfg(feature = "ssr")]
fn moment_at(utc: &str, now: u64, offset: Option<i32>) -> (String, String) {
    use ::gateway::team::audit;
    let Some(ms) = audit::utc_ms(utc) else { return (utc.to_string(), String::new()) };
    let minute = |rfc: &str| rfc[..16].replace('T', " ");
    let hover = format!("{} UTC", utc[..19].replace('T', " "));
    let shown = match now.checked_sub(ms).map(|d| d / 1000) {
        Some(0..60) => "just now".to_string(),
        Some(s @ 60..3600) => format!("{} min ago", s / 60),
        Some(s @ 3600..86_400) => format!("{} h ago", s / 3600),
        _ => match offset {
            Some(minutes) => minute(&audit::utc(ms.saturating_add_signed(i64::from(minutes) * 60_000))),
            None => format!("{} UTC", minute(utc)),
        },
    };
    (shown, hover)
}

#[cfg(not(feature = "ssr"))]
fn moment(utc: &str) -> (String, String) {
    (utc.replace('T', " "), String::new())
}

/// The viewer's time zone in minutes east of UTC, from the `tz` cookie the console sets.
#[cfg(feature = "ssr")]
fn viewer_offset() -> Option<i32> {
    let parts = use_context::<http::request::Parts>()?;
    let cookies = parts.headers.get_all(http::header::COOKIE);
    let offset = cookies.iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| c.trim().strip_prefix("tz=")?.parse::<i32>().ok());
    offset.filter(|m| (-840..=840).contains(m))
}

/// A server function's error as the person should read it (without the framework's prefix).
pub fn said(e: &ServerFnError) -> String {
    e.to_string().trim_start_matches("error running server function: ").to_string()
}

/// A success note at a panel's top.
pub fn ok_note(testid: &'static str, text: String) -> AnyView {
    view! { <p class="ok" role="status" data-testid=testid>{text}</p> }.into_any()
}

/// An error read from the store or the server, in place of a panel's body.
pub fn unavailable(e: &ServerFnError) -> AnyView {
    view! { <p class="error">{said(e)}</p> }.into_any()
}

/// A labelled fill bar: a spend meter, a rate guard rule.
pub fn fill_bar(testid: &'static str, label: String, percent: u32, detail: String) -> impl IntoView {
    let full = percent >= 100;
    view! {
        <div class="spend" data-testid=testid data-percent=percent.to_string()>
            <div class="spend-label">{label}</div>
            <div class="bar" role="meter" aria-valuemin="0" aria-valuemax="100" aria-valuenow=percent.min(100).to_string() aria-label="fill"><span style=format!("width:{}%", percent.min(100)) class:full=full></span></div>
            <div class="muted">{detail}</div>
        </div>
    }
}

/// The time of day of `ms` since the epoch, UTC, as `HH:MM:SS`.
pub fn clock(ms: u64) -> String {
    let s = ms / 1000 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
}

/// The signed-in person (`None`: not signed in, or the store failed).
pub async fn me() -> Option<crate::view::Me> {
    crate::api::whoami().await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_thousands_separators() {
        for (n, shown) in [("0", "0"), ("999", "999"), ("1000", "1,000"), ("2000000", "2,000,000"), ("-12345.678", "-12,345.678"), ("72.62", "72.62"), ("n/a", "n/a"), ("1e9", "1e9"), ("", "")] {
            assert_eq!(grouped(n), shown, "{n}");
        }
    }

    #[test]
    fn a_runway_is_in_days_up_to_a_year() {
        assert_eq!(runway(4.54), "≈ 4.5 days");
        assert_eq!(runway(12.4), "≈ 12 days");
        assert_eq!(runway(17_493.0), "over a year");
    }

    #[cfg(feature = "ssr")]
    #[test]
    fn credits_come_with_their_dollars() {
        assert_eq!(credits("9996"), "9,996 credits ($49.98)");
        assert_eq!(credits("4"), "4 credits ($0.020)");
        assert_eq!(credits("n/a"), "n/a");
    }

    #[cfg(feature = "ssr")]
    #[test]
    fn a_moment_is_how_long_ago_within_a_day_else_the_viewers_date_and_time() {
        let at = "2026-12-02T10:31:05Z";
        let ms = ::gateway::team::audit::utc_ms(at).expect("a time");
        let hover = "2026-12-02 10:31:05 UTC".to_string();
        for (after_s, offset, shown) in [
            (30, None, "just now"),
            (5 * 60 + 10, Some(60), "5 min ago"),
            (3 * 3600, None, "3 h ago"),
            (2 * 86_400, None, "2026-12-02 10:31 UTC"),
            (2 * 86_400, Some(60), "2026-12-02 11:31"),
            (2 * 86_400, Some(-600), "2026-12-02 00:31"),
        ] {
            assert_eq!(moment_at(at, ms + after_s * 1000, offset), (shown.to_string(), hover.clone()), "{after_s} s later at {offset:?}");
        }
        assert_eq!(moment_at("yesterday", ms, None), ("yesterday".to_string(), String::new()), "an unreadable time is shown as it is");
    }

    #[test]
    fn every_panel_has_its_own_slug_and_number() {
        let (mut slugs, mut numbers) = (std::collections::HashSet::new(), std::collections::HashSet::new());
        for id in PanelId::ALL {
            assert_eq!(PanelId::from_slug(id.slug()), Some(id), "{id:?} is found by its slug");
            assert!(slugs.insert(id.slug()), "{id:?}: slug {} used twice", id.slug());
            let h = id.heading();
            assert!(!h.title.is_empty() && !h.kicker.is_empty(), "{id:?} is titled");
            if !h.number.is_empty() {
                assert!(h.number.len() == 2 && h.number.bytes().all(|b| b.is_ascii_digit()), "{id:?}: number {:?}", h.number);
                assert!(numbers.insert(h.number), "{id:?}: number {} used twice", h.number);
            }
        }
        assert_eq!(PanelId::from_slug("no-such-panel"), None);
    }

    #[test]
    fn a_field_is_trimmed_and_blank_is_absent() {
        let f: Fields = vec![("a".into(), "  x ".into()), ("b".into(), "   ".into()), ("a".into(), "second".into())];
        assert_eq!(field(&f, "a"), Some("x"), "the first, trimmed");
        assert_eq!(field(&f, "b"), None, "blank");
        assert_eq!(field_owned(&f, "c"), None, "absent");
    }

    #[test]
    fn the_clock_is_utc_time_of_day() {
        assert_eq!(clock(0), "00:00:00");
        assert_eq!(clock(86_400_000 * 3 + 3_723_999), "01:02:03");
    }
}

