//! The status strip, always at the top of the page: the connection and the balance (with its
//! runway), tasks in flight, the queue and the rate guard's fill, spend against the day cap,
//! and the alerts — each a link to the panel it comes from. Rendered on the server from the
//! same records as those panels, and reloaded as tasks move and every 5 s.

use leptos::prelude::*;

use super::PanelId;
use crate::api::{budget_status, library_status, load_console_status, throttle_status};
use crate::view::{BudgetView, ConsoleStatus, LibraryView, ThrottleView};

/// One figure of the strip: a link to its panel.
fn item(href: &'static str, label: &'static str, testid: &'static str, value: AnyView, class: &'static str) -> impl IntoView + use<> {
    view! {
        <a class=format!("strip-item {class}") href=href data-testid=testid>
            <span class="strip-label">{label}</span>
            <span class="strip-value">{value}</span>
        </a>
    }
}

fn text(s: impl Into<String>) -> AnyView {
    let s: String = s.into();
    s.into_any()
}

fn connection(s: &Result<ConsoleStatus, ServerFnError>) -> impl IntoView + use<> {
    let ok = s.as_ref().ok();
    let balance = ok.and_then(|s| s.gateway.as_ref()).and_then(|g| g.balance.clone());
    let runway = ok.and_then(|s| s.runway_days.map(|d| (d, d < s.runway_alert_days as f64)));
    let store = ok.and_then(|s| match (&s.store.failing_over, s.store.reachable) {
        (true, _) => Some("store failing over"),
        (false, false) => Some("store unreachable"),
        _ => None,
    });
    let value = view! {
        {crate::upstream_badge(ok)}
        {balance.map(|b| view! { " "<strong data-testid="strip-balance">{super::grouped(&b)}</strong>{format!(" cr ({})", super::dollars(&b).unwrap_or_default())} })}
        {runway.map(|(d, short)| view! { <span class=if short { "error" } else { "muted" } title="Runway at the last 7 days' burn">{format!(" · {}", super::runway(d))}</span> })}
        {store.map(|s| view! { <span class="error" data-testid="strip-store">{format!(" · {s}")}</span> })}
    };
    item("#gateway", "Connection · balance", "strip-connection", value.into_any(), "")
}

fn queue(t: &Result<ThrottleView, ServerFnError>) -> impl IntoView + use<> {
    let value = match t {
        Ok(t) => {
            let fill = t.rules.iter().filter(|r| r.limit > 0).map(|r| r.used.max(0) * 100 / r.limit).max().unwrap_or(0).min(100);
            let owners = match t.by_owner.len() {
                0 | 1 => String::new(),
                n => format!(" ({n} owners)"),
            };
            let paused = match (t.pauses.iter().any(|(p, _)| p.is_none()), t.pauses.len()) {
                (true, _) => "PAUSED · ".to_string(),
                (false, 0) => String::new(),
                (false, n) => format!("{n} paused · "),
            };
            text(format!("{paused}{} queued{owners} · guard {fill} %", t.depth + t.paused))
        }
        Err(_) => text("unavailable"),
    };
    let class = match t {
        Ok(t) if !t.pauses.is_empty() => "bad",
        Ok(t) if t.cooldown_ms.is_some() => "warn",
        _ => "",
    };
    item("#throttle", "Queue · rate guard", "strip-queue", value, class)
}

/// The fullest per-day cap: what today's spend stands against.
fn spend(b: &Result<BudgetView, ServerFnError>) -> impl IntoView + use<> {
    let day = b.as_ref().ok().and_then(|b| b.meters.iter().filter(|m| m.label.contains("24 h")).max_by_key(|m| m.percent).cloned());
    let (value, class) = match (b, day) {
        (Err(_), _) => (text("unavailable"), ""),
        (Ok(_), None) => (text("no day cap set"), "muted"),
        (Ok(_), Some(m)) => (text(format!("{} of {} · {} %", m.used, m.cap, m.percent)), if m.percent >= 100 { "bad" } else if m.percent >= 80 { "warn" } else { "" }),
    };
    item("#budget", "Spend 24 h · day cap", "strip-spend", value, class)
}

/// Budget alerts of the last 24 hours, tasks to review, and the Library's problem or quota.
fn alerts(s: &Result<ConsoleStatus, ServerFnError>, b: &Result<BudgetView, ServerFnError>, l: &Result<LibraryView, ServerFnError>) -> impl IntoView + use<> {
    let now = l.as_ref().map_or(0, |l| l.now_ms);
    let budget = b.as_ref().map_or(0, |b| b.alerts.iter().filter(|(at, _)| now.saturating_sub(*at) < 86_400_000).count());
    let review = s.as_ref().ok().and_then(|s| s.ledger.as_ref()).map_or(0, |l| l.to_review);
    let library = l.as_ref().ok().filter(|l| l.problem.is_some() || l.quota_percent().is_some_and(|p| p >= 80)).is_some();
    let mut parts = Vec::new();
    if budget > 0 {
        parts.push(format!("{budget} budget"));
    }
    if review > 0 {
        parts.push(format!("{review} to review"));
    }
    if library {
        parts.push("Library".to_string());
    }
    let href = if budget > 0 { "#budget" } else if review > 0 { "#failures" } else { "#retention" };
    let (value, class) = if parts.is_empty() { ("none".to_string(), "muted") } else { (parts.join(" · "), "warn") };
    item(href, "Alerts", "strip-alerts", text(value), class)
}

pub async fn render() -> AnyView {
    let (status, throttle, budget, library) = futures::join!(load_console_status(), throttle_status(), budget_status(), library_status());
    let in_flight = status.as_ref().ok().and_then(|s| s.ledger.as_ref()).map(|l| l.in_flight);
    view! {
        <nav class="status-strip" id=PanelId::Status.slug() data-src=PanelId::Status.slug() data-refresh="rows ended tick5" aria-label="Status">
            {connection(&status)}
            {item("#monitor", "In flight", "strip-in-flight", text(in_flight.map_or("—".to_string(), |n| n.to_string())), "")}
            {queue(&throttle)}
            {spend(&budget)}
            {alerts(&status, &budget, &library)}
        </nav>
    }
    .into_any()
}
