//! 05 · Budget — cost rules per job, per rolling 24 hours and in total, for the team, a
//! project or a person; their spend meters (live: reloaded as tasks arrive and end) and the
//! 80/90/100 % alerts. Every number comes from the store's reservations.

use leptos::prelude::*;

use super::{Panel, badge, fill_bar};
use crate::api::{budget_status, set_cost_rule};
use crate::live::live;
use crate::view::BudgetView;

#[derive(Clone)]
struct RuleForm {
    project: String,
    user: String,
    per_job: String,
    per_day: String,
    total: String,
}

#[component]
pub fn BudgetPanel() -> impl IntoView {
    let live = live();
    let save = Action::new(|f: &RuleForm| {
        let f = f.clone();
        let opt = |s: String| Some(s).filter(|s| !s.trim().is_empty());
        async move { set_cost_rule(opt(f.project), opt(f.user), opt(f.per_job), opt(f.per_day), opt(f.total)).await }
    });
    // Spend moves when a task is submitted (reserved) and when one ends (settled).
    let data = Resource::new(move || (live.ended.get(), live.rows.with(|r| r.len()), save.version().get()), |_| budget_status());
    let fields: [(RwSignal<String>, &str, &str, &str); 5] = [
        (RwSignal::new(String::new()), "project", "Project (empty: every project)", "text"),
        (RwSignal::new(String::new()), "user", "Person (empty: everyone)", "text"),
        (RwSignal::new(String::new()), "per_job", "Max spend / job, $", "number"),
        (RwSignal::new(String::new()), "per_day", "Max spend / day, $", "number"),
        (RwSignal::new(String::new()), "total", "Max spend / project, $", "number"),
    ];
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let v = |i: usize| fields[i].0.get_untracked();
        save.dispatch(RuleForm { project: v(0), user: v(1), per_job: v(2), per_day: v(3), total: v(4) });
    };
    let head = move || match data.get() {
        Some(Ok(b)) if b.rules.is_empty() => badge("off", "No rules set").into_any(),
        Some(Ok(b)) => {
            let top = b.meters.iter().map(|m| m.percent).max().unwrap_or(0);
            badge(if top >= 100 { "bad" } else if top >= 80 { "wait" } else { "ok" }, format!("{} rules · {top} % at most", b.rules.len())).into_any()
        }
        Some(Err(_)) => badge("bad", "Store unreadable").into_any(),
        None => badge("wait", "Loading").into_any(),
    };
    view! {
        <Panel number="05" kicker="Budget" title="Cost Rules" badge=view! { <Suspense fallback=|| ()>{head}</Suspense> }>
            <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || data.get().map(|r| match r {
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                    Ok(b) => rules_view(b).into_any(),
                })}
            </Suspense>
            {crate::when_role(crate::view::Me::is_admin, move || view! {
            <form class="rule-form" on:submit=on_submit data-testid="budget-form">
                {fields.iter().map(|(sig, name, label, kind)| {
                    let sig = *sig;
                    view! {
                        <label>{*label}
                            <input name=*name type=*kind min="0.01" step="0.01" data-testid=format!("budget-{name}")
                                prop:value=sig on:input=move |ev| sig.set(event_target_value(&ev))/>
                        </label>
                    }
                }).collect_view()}
                <button type="submit" data-testid="budget-save" disabled=move || save.pending().get()>"Save rule"</button>
                {move || save.value().get().map(|r| match r {
                    Ok(_) => view! { <p class="ok">"Rule saved."</p> }.into_any(),
                    Err(e) => view! { <p class="error" data-testid="budget-error">{super::said(&e)}</p> }.into_any(),
                })}
            </form>
            }, || view! { <p class="muted" data-testid="budget-read-only">"Only admins set cost rules."</p> })}
            <p class="fine">
                "Each submission's estimate is reserved against every rule that applies in one atomic step, across all instances; a submission that would break one is refused before it reaches KIE. When a task ends its actual cost is kept and the rest released; a failure releases all. Saving with no amounts removes the rule."
            </p>
        </Panel>
    }
}

fn rules_view(b: BudgetView) -> impl IntoView {
    let dash = |v: Option<String>| v.unwrap_or_else(|| "—".into());
    view! {
        <ul class="rules" data-testid="budget-rules">
            {b.rules.into_iter().map(|r| view! {
                <li class="rule">
                    <div class="rule-name">{r.label}</div>
                    <div class="muted">"per job "{dash(r.per_job)}" · per day "{dash(r.per_day)}" · total "{dash(r.total)}</div>
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
