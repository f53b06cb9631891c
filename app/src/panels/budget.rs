//! 05 · Budget — cost rules per job, per rolling 24 hours and in total, for the team, a
//! project or a person; their spend meters (live: reloaded as tasks arrive and end) and the
//! 80/90/100 % alerts. Every number comes from the store's reservations.

use leptos::prelude::*;

use super::{Acted, Fields, Panel, PanelId, act_form, badge, field_owned, fill_bar};
use crate::api::{budget_status, set_cost_rule};
use crate::view::BudgetView;

/// The target's fields; the amounts' fields come with the data, one per kind of cap.
const TARGET_FIELDS: [(&str, &str); 2] = [("project", "Project (empty: every project)"), ("user", "Person, or key:<id> for a relay key (empty: everyone)")];

pub async fn render(flash: Option<AnyView>) -> AnyView {
    let data = budget_status().await;
    let admin = super::me().await.is_some_and(|m| m.is_admin());
    let head = match &data {
        Ok(b) if b.rules.is_empty() => badge("off", "No rules set"),
        Ok(b) => {
            let top = b.meters.iter().map(|m| m.percent).max().unwrap_or(0);
            badge(if top >= 100 { "bad" } else if top >= 80 { "wait" } else { "ok" }, format!("{} rules · {top} % at most", b.rules.len()))
        }
        Err(_) => badge("bad", "Store unreadable"),
    };
    let cap_fields = data.as_ref().map(|b| b.cap_fields.clone()).unwrap_or_default();
    view! {
        // Spend moves when a task is submitted (reserved) and when one ends (settled).
        <Panel id=PanelId::Budget badge=head refresh="ended rows" flash=flash>
            {match data {
                Err(e) => super::unavailable(&e),
                Ok(b) => rules_view(b).into_any(),
            }}
            {if admin {
                view! {
                    <form class="rule-form" method="post" action=act_form(PanelId::Budget) data-testid="budget-form">
                        {TARGET_FIELDS.iter().map(|(name, label)| view! {
                            <label>{*label}<input name=*name type="text" data-testid=format!("budget-{name}")/></label>
                        }).collect_view()}
                        {cap_fields.into_iter().map(|f| view! {
                            <label>{format!("{}, $", f.label)}<input name=f.name.clone() type="number" min="0.01" step="0.01" data-testid=format!("budget-{}", f.name)/></label>
                        }).collect_view()}
                        <button type="submit" data-testid="budget-save">"Save rule"</button>
                    </form>
                }.into_any()
            } else {
                view! { <p class="muted" data-testid="budget-read-only">"Only admins set cost rules."</p> }.into_any()
            }}
            <p class="fine">
                "Each submission's estimate is reserved against every rule that applies in one atomic step, across all instances; a submission that would break one is refused before it reaches KIE. When a task ends its actual cost is kept and the rest released; a failure releases all. Saving with no amounts removes the rule."
            </p>
        </Panel>
    }
    .into_any()
}

pub async fn act(form: Fields) -> Acted {
    let get = |n: &str| field_owned(&form, n);
    let amounts = form.iter().filter(|(n, _)| !TARGET_FIELDS.iter().any(|(t, _)| t == n)).cloned().collect();
    let r = set_cost_rule(get("project"), get("user"), amounts).await;
    Acted::of(r, |_| super::ok_note("budget-saved", "Rule saved.".into()), "budget-error").also(&[PanelId::Status])
}

fn rules_view(b: BudgetView) -> impl IntoView + use<> {
    let dash = |v: Option<String>| v.unwrap_or_else(|| "—".into());
    view! {
        <ul class="rules" data-testid="budget-rules">
            {b.rules.into_iter().map(|r| view! {
                <li class="rule">
                    <div class="rule-name">{r.label}</div>
                    <div class="muted">{r.caps.into_iter().map(|(kind, cap)| format!("{kind} {}", dash(cap))).collect::<Vec<_>>().join(" · ")}</div>
                </li>
            }).collect_view()}
        </ul>
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
