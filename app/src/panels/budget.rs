//! 05 · Budget — the spend meters of every cost rule (live: reloaded as tasks arrive and end)
//! and the 80/90/100 % alerts. Every number comes from the store's reservations. The rules
//! themselves are set on the settings page ([`super::rules`]).

use leptos::prelude::*;

use super::{Panel, PanelId, badge, fill_bar};
use crate::api::budget_status;
use crate::view::BudgetView;

pub async fn render() -> AnyView {
    let data = budget_status().await;
    let admin = super::me().await.is_some_and(|m| m.is_admin());
    view! {
        // Spend moves when a task is submitted (reserved) and when one ends (settled).
        <Panel id=PanelId::Budget badge=head(&data) refresh="ended rows">
            {match data {
                Err(e) => super::unavailable(&e),
                Ok(b) if b.rules.is_empty() => view! { <p class="empty" data-testid="budget-none">"No cost rules: nothing caps the team's spend."</p> }.into_any(),
                Ok(b) => meters_view(b).into_any(),
            }}
            <p class="small"><a href="/settings#rules" data-testid="budget-edit-link">{if admin { "Set the cost rules in Settings" } else { "The cost rules, in Settings" }}</a></p>
        </Panel>
    }
    .into_any()
}

/// The badge both cost-rule panels show: how many rules, and the fullest meter.
pub fn head(data: &Result<BudgetView, ServerFnError>) -> AnyView {
    match data {
        Ok(b) if b.rules.is_empty() => badge("off", "No rules set"),
        Ok(b) => {
            let top = b.meters.iter().map(|m| m.percent).max().unwrap_or(0);
            badge(if top >= 100 { "bad" } else if top >= 80 { "wait" } else { "ok" }, format!("{} rules · {top} % at most", b.rules.len()))
        }
        Err(_) => badge("bad", "Store unreadable"),
    }
}

fn meters_view(b: BudgetView) -> impl IntoView + use<> {
    view! {
        <div class="spend-meters">
            {b.meters.into_iter().map(|m| fill_bar("budget-meter", m.label, m.percent, format!("{} of {} · {} %", m.used, m.cap, m.percent))).collect_view()}
        </div>
        {(!b.alerts.is_empty()).then(|| view! {
            <ul class="alerts" data-testid="budget-alerts">
                {b.alerts.into_iter().take(5).map(|(at, msg)| view! { <li class="warn" data-at=at.to_string()>{msg}</li> }).collect_view()}
            </ul>
        })}
    }
}
