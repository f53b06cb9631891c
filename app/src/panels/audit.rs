//! 13 · Audit (admins) — the append-only record of sign-ins, user and role changes, relay key
//! changes, cost-rule and rate-guard changes and retries: who, when, from where, before →
//! after. Filter by person, action or text; page back; export what matches as CSV.

use leptos::prelude::*;

use super::{Fields, Panel, PanelId, field, field_owned};
use crate::api::audit_log;
use crate::api::team::AuditQuery;
use crate::view::AuditRow;

pub async fn render(query: Fields) -> AnyView {
    let filter = AuditQuery { who: field_owned(&query, "who"), action: field_owned(&query, "action"), text: field_owned(&query, "text") };
    let before = field(&query, "before").and_then(|b| b.parse::<u64>().ok());
    let pairs: Vec<String> = [("who", &filter.who), ("action", &filter.action), ("text", &filter.text)]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", query_encode(v))))
        .collect();
    let csv_href = if pairs.is_empty() { "/audit.csv".to_string() } else { format!("/audit.csv?{}", pairs.join("&")) };
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let (who, action, text) = (value(&filter.who), value(&filter.action), value(&filter.text));
    let page = audit_log(filter, before).await;
    view! {
        <Panel id=PanelId::Audit badge=super::badge("off", "Append-only") class="wide">
            <form method="get" action="/" data-filter="audit" data-testid="audit-filter">
                <div class="rule-form">
                    <label>"Who "<input name="who" maxlength="200" data-testid="audit-who" value=who/></label>
                    <label>"Action "<input name="action" maxlength="200" placeholder="sign-in, role changed…" value=action/></label>
                    <label>"Text "<input name="text" maxlength="200" value=text/></label>
                    <button type="submit">"Filter"</button>
                    <a class="button" href=csv_href data-testid="audit-csv" download="control-room-audit.csv">"Export CSV"</a>
                </div>
                {match page {
                    Ok(p) if p.rows.is_empty() => view! { <p class="empty">"No entries match."</p> }.into_any(),
                    Ok(p) => view! {
                        <div class="table-wrap" tabindex="0" role="region" aria-label="Audit entries">
                            <table class="tasks" data-testid="audit-list">
                                <thead><tr><th scope="col">"When"</th><th scope="col">"Who"</th><th scope="col">"From"</th><th scope="col">"Action"</th><th scope="col">"Target"</th><th scope="col">"Before → after"</th></tr></thead>
                                <tbody>{p.rows.into_iter().map(row).collect_view()}</tbody>
                            </table>
                        </div>
                        {p.next.map(|n| view! { <button type="submit" name="before" value=n.to_string()>"Older →"</button> })}
                    }.into_any(),
                    Err(e) => super::unavailable(&e),
                }}
            </form>
        </Panel>
    }
    .into_any()
}

fn row(e: AuditRow) -> impl IntoView + use<> {
    let change = match (&e.before, &e.after) {
        (None, None) => String::new(),
        (b, a) => format!("{} → {}", b.as_deref().unwrap_or("—"), a.as_deref().unwrap_or("—")),
    };
    let action = e.action.clone();
    view! {
        <tr data-action=action>
            <td class="small">{super::when(&e.at)}</td><td>{e.who}</td><td class="muted small">{e.from}</td>
            <td>{e.action}</td><td>{e.target}</td><td class="small">{change}</td>
        </tr>
    }
}

/// Percent-encodes a query value (letters, digits and `-_.~` stay).
fn query_encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}
