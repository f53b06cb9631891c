//! Settings · Cost rules — the caps per job, per rolling 24 hours and in total, for the team, a
//! project or a person: listed, added, edited and deleted (admins; deleting asks first). Their
//! meters are on the Control Room ([`super::budget`]).

use leptos::prelude::*;

use super::{Acted, Fields, Panel, PanelId, act_form, field_owned};
use crate::api::{budget_status, delete_cost_rule, set_cost_rule};
use crate::view::{CapField, RuleView};

/// The target's fields; the amounts' fields come with the data, one per kind of cap.
const TARGET_FIELDS: [(&str, &str); 2] = [("project", "Project (empty: every project)"), ("user", "Person, or key:<id> for a relay key (empty: everyone)")];

pub async fn render(flash: Option<AnyView>) -> AnyView {
    let data = budget_status().await;
    let admin = super::me().await.is_some_and(|m| m.is_admin());
    let head = super::budget::head(&data);
    let cap_fields = data.as_ref().map(|b| b.cap_fields.clone()).unwrap_or_default();
    let editable = admin.then(|| cap_fields.clone());
    view! {
        <Panel id=PanelId::Rules badge=head refresh="ended" flash=flash>
            {match data {
                Err(e) => super::unavailable(&e),
                Ok(b) if b.rules.is_empty() => view! { <p class="empty">"No cost rules yet."</p> }.into_any(),
                Ok(b) => list(b.rules, editable).into_any(),
            }}
            {if admin {
                view! {
                    <form class="rule-form" method="post" action=act_form(PanelId::Rules) data-testid="budget-form">
                        {TARGET_FIELDS.iter().map(|(name, label)| view! {
                            <label>{*label}<input name=*name type="text" data-testid=format!("budget-{name}")/></label>
                        }).collect_view()}
                        {amount_fields(&cap_fields, &[])}
                        <button type="submit" name="do" value="save" data-testid="budget-save">"Save rule"</button>
                    </form>
                }.into_any()
            } else {
                view! { <p class="muted" data-testid="budget-read-only">"Only admins set cost rules."</p> }.into_any()
            }}
            <details class="help"><summary title="What this is and how it works">"?"</summary><p class="fine">
                "Each submission's estimate is reserved against every rule that applies in one atomic step, across all instances; a submission that would break one is refused before it reaches KIE. When a task ends its actual cost is kept and the rest released; a failure releases all. A blank amount is no cap of that kind; a rule needs one at least, and Delete removes it."
            </p></details>
        </Panel>
    }
    .into_any()
}

/// The amount fields, one per kind of cap, filled with `amounts` (`per_day` → dollars).
fn amount_fields(fields: &[CapField], amounts: &[(String, String)]) -> impl IntoView + use<> {
    fields
        .iter()
        .map(|f| {
            let value = amounts.iter().find(|(n, _)| *n == f.name).map(|(_, v)| v.clone()).unwrap_or_default();
            view! { <label>{format!("{}, $", f.label)}<input name=f.name.clone() type="number" min="0.01" step="0.01" value=value data-testid=format!("budget-{}", f.name)/></label> }
        })
        .collect_view()
}

/// `do` = save (the default), delete-ask (what Delete will remove, to confirm), delete (once
/// confirmed) or cancel.
pub async fn act(form: Fields) -> Acted {
    let get = |n: &str| field_owned(&form, n);
    let r = match get("do").as_deref() {
        Some("delete-ask") => {
            let question = format!("Delete the cost rule for {}? Spending there is no longer held to it.", get("label").unwrap_or_else(|| "this target".into()));
            let carry = TARGET_FIELDS.iter().filter_map(|(n, _)| Some((*n, get(n)?))).collect();
            return Acted::new(super::confirm(PanelId::Rules, question, carry, super::Confirm::Press, "delete", "Delete rule".into()));
        }
        Some("delete") if get("confirm").as_deref() == Some("yes") => delete_cost_rule(get("project"), get("user")).await.map(|_| "Rule deleted."),
        Some("delete") | Some("cancel") => return super::cancelled(),
        _ => {
            let amounts = form.iter().filter(|(n, _)| !TARGET_FIELDS.iter().any(|(t, _)| t == n) && n != "do").cloned().collect();
            set_cost_rule(get("project"), get("user"), amounts).await.map(|_| "Rule saved.")
        }
    };
    Acted::of(r, |msg| super::ok_note("budget-saved", msg.into()), "budget-error").also(&[PanelId::Status, PanelId::Budget])
}

/// A rule's Edit (its amounts, filled in) and Delete (asks first), for admins.
fn rule_actions(r: &RuleView, fields: &[CapField]) -> impl IntoView + use<> {
    let target = TARGET_FIELDS.map(|(n, _)| (n, if n == "project" { r.project.clone() } else { r.user.clone() }.unwrap_or_default()));
    let hidden = move || target.clone().into_iter().map(|(n, v)| view! { <input type="hidden" name=n value=v/> }).collect_view();
    view! {
        <details class="rule-edit">
            <summary class="small">"Edit"</summary>
            <form class="rule-form" method="post" action=act_form(PanelId::Rules) data-testid="budget-edit">
                {hidden()}
                {amount_fields(fields, &r.amounts)}
                <button type="submit" name="do" value="save">"Save changes"</button>
            </form>
        </details>
        <form class="inline" method="post" action=act_form(PanelId::Rules)>
            {hidden()}
            <input type="hidden" name="label" value=r.label.clone()/>
            <button type="submit" class="link" name="do" value="delete-ask" data-testid="budget-delete">"Delete…"</button>
        </form>
    }
}

fn list(rules: Vec<RuleView>, editable: Option<Vec<CapField>>) -> impl IntoView + use<> {
    let dash = |v: Option<String>| v.unwrap_or_else(|| "—".into());
    view! {
        <ul class="rules" data-testid="budget-rules">
            {rules.into_iter().map(|r| view! {
                <li class="rule">
                    <div class="rule-name">{r.label.clone()}</div>
                    <div class="muted">{r.caps.iter().map(|(kind, cap)| format!("{kind} {}", dash(cap.clone()))).collect::<Vec<_>>().join(" · ")}</div>
                    {editable.as_ref().map(|f| rule_actions(&r, f))}
                </li>
            }).collect_view()}
        </ul>
    }
}
