//! 01 · Gateway — connection status and the ledger meters (reloaded as tasks move).

use leptos::prelude::*;

use super::{Panel, PanelId};
use crate::view::{ConsoleStatus, Upstream};

pub async fn render() -> AnyView {
    let status = crate::api::load_console_status().await;
    let badge = match &status {
        Ok(s) => crate::upstream_badge(Some(s)).into_any(),
        Err(_) => crate::upstream_badge(None).into_any(),
    };
    let body = match status {
        Err(e) => super::unavailable(&e),
        Ok(s) => view! {
            {connection(&s)}
            <div class="meters-head">
                <span>"Ledger meters"</span>
                <span class="muted">{meters_note(&s)}</span>
            </div>
            {meters(&s)}
        }
        .into_any(),
    };
    view! {
        <Panel id=PanelId::Gateway badge=badge refresh="ended rows tick5">
            {body}
            <details class="help"><summary title="What this is and how it works">"?"</summary><p class="fine">
                "Meters read the Control Room's own task records; latency and balance come from the upstream's own answer to chat/credit, re-checked every 5 s at most — nothing is shown until it answers."
            </p></details>
        </Panel>
    }
    .into_any()
}

fn connection(s: &ConsoleStatus) -> impl IntoView + use<> {
    let (headline, detail) = match (&s.upstream, &s.gateway) {
        (Upstream::NotConfigured, _) => (
            "Not configured".to_string(),
            "No KIE_API_KEY is set on the server. Set it in the server's environment (or run with --simulate) and restart.".to_string(),
        ),
        (Upstream::Kie { host } | Upstream::Simulator { host }, None) => (host.clone(), "No probe answer yet.".to_string()),
        (up, Some(g)) => {
            let name = match up {
                Upstream::Simulator { host } => format!("KIE simulator · {host}"),
                Upstream::Kie { host } => format!("KIE.ai Generation Gateway · {host}"),
                Upstream::NotConfigured => String::new(),
            };
            match (&g.balance, &g.error) {
                (Some(_), _) => (name, format!("Answered chat/credit in {:.1} ms.", g.latency_us as f64 / 1000.0)),
                (None, Some(e)) => (name, e.clone()),
                (None, None) => (name, "No balance in the answer.".to_string()),
            }
        }
    };
    let balance = s.gateway.as_ref().and_then(|g| g.balance.clone());
    let store = if s.store.reachable {
        format!("Store: {} · reachable", s.store.backend)
    } else {
        format!("Store: {} · unreachable — {}", s.store.backend, s.store.error.clone().unwrap_or_default())
    };
    let failed = s.gateway.as_ref().is_some_and(|g| g.error.is_some());
    view! {
        <div class="connection">
            <div class="conn-title" data-testid="connection-title">{headline}</div>
            <p class=if failed { "conn-detail bad" } else { "conn-detail" } data-testid="connection-detail">{detail}</p>
            {balance.map(|b| view! {
                <p class="conn-balance"><span class="muted">"Credit balance "</span><strong data-testid="credit-balance">{super::grouped(&b)}</strong><span class="muted">{format!(" credits ({})", super::dollars(&b).unwrap_or_default())}</span></p>
            })}
            {s.runway_days.map(|d| {
                let short = d < s.runway_alert_days as f64;
                let text = format!("{} of runway at the last 7 days' burn", super::runway(d));
                view! { <p class=if short { "conn-runway bad" } else { "conn-runway muted" } data-testid="gateway-runway">{text}{short.then_some(" — top up")}</p> }
            })}
            <p class=if s.store.reachable { "conn-store ok" } else { "conn-store bad" }>{store}</p>
        </div>
    }
}

fn meters_note(s: &ConsoleStatus) -> &'static str {
    match (&s.upstream, &s.ledger) {
        (_, None) => "store unreadable",
        (Upstream::NotConfigured, _) => "0 while disconnected",
        (Upstream::Simulator { .. }, _) => "from task records · simulator",
        _ => "from task records",
    }
}

fn meters(s: &ConsoleStatus) -> impl IntoView + use<> {
    let Some(l) = s.ledger.clone() else {
        return view! { <p class="error">"The store could not be read, so no meters are shown."</p> }.into_any();
    };
    let meter = |value: String, label: &'static str, sub: String| {
        view! {
            <div class="meter">
                <div class="meter-value">{value}</div>
                <div class="meter-label">{label}</div>
                <div class="meter-sub">{sub}</div>
            </div>
        }
    };
    let unless = |nonzero: bool, empty: &str| if nonzero { String::new() } else { empty.to_string() };
    let spent = if l.credits_consumed == "0" { "no usage yet".to_string() } else { super::dollars(&l.credits_consumed).unwrap_or_default() };
    view! {
        <div class="meters" data-testid="ledger-meters">
            {meter(super::grouped(&l.tasks_on_record.to_string()), "Tasks on record", unless(l.tasks_on_record > 0, "none yet"))}
            {meter(super::grouped(&l.credits_consumed), "Credits consumed", spent)}
            {meter(l.in_flight.to_string(), "In flight", unless(l.in_flight > 0, "nothing running"))}
        </div>
    }
    .into_any()
}
