//! 13 · Audit (admins) — the append-only record of sign-ins, user and role changes, relay key
//! changes, cost-rule and rate-guard changes and retries: who, when, from where, before →
//! after. Filter by person, action or text; page back; export what matches as CSV.

use leptos::prelude::*;

use super::{Panel, said};
use crate::api::audit_log;
use crate::api::team::AuditQuery;
use crate::view::AuditRow;

#[component]
pub fn AuditPanel() -> impl IntoView {
    let (who, action, text) = (RwSignal::new(String::new()), RwSignal::new(String::new()), RwSignal::new(String::new()));
    // The filter in force and the page's start (None: newest), changed by the form and paging.
    let applied = RwSignal::new(AuditQuery::default());
    let before = RwSignal::new(None::<u64>);
    let refresh = RwSignal::new(0u32);
    // Loaded in the browser: this panel is built there, for admins only (see `when_role`).
    let page = LocalResource::new(move || {
        refresh.track();
        audit_log(applied.get(), before.get())
    });
    let opt = |s: String| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    let on_filter = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        applied.set(AuditQuery { who: opt(who.get_untracked()), action: opt(action.get_untracked()), text: opt(text.get_untracked()) });
        before.set(None);
        refresh.update(|n| *n += 1);
    };
    let csv_href = move || {
        let q = applied.get();
        let pairs: Vec<String> = [("who", q.who), ("action", q.action), ("text", q.text)]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k}={}", query_encode(&v))))
            .collect();
        if pairs.is_empty() { "/audit.csv".to_string() } else { format!("/audit.csv?{}", pairs.join("&")) }
    };
    view! {
        <Panel number="13" kicker="Audit" title="Audit Log" badge=super::badge("off", "Append-only") class="wide">
            <form class="rule-form" on:submit=on_filter data-testid="audit-filter">
                <label>"Who "<input maxlength="200" data-testid="audit-who" prop:value=who on:input=move |ev| who.set(event_target_value(&ev))/></label>
                <label>"Action "<input maxlength="200" placeholder="sign-in, role changed…" prop:value=action on:input=move |ev| action.set(event_target_value(&ev))/></label>
                <label>"Text "<input maxlength="200" prop:value=text on:input=move |ev| text.set(event_target_value(&ev))/></label>
                <button type="submit">"Filter"</button>
                <a class="button" href=csv_href data-testid="audit-csv" download="control-room-audit.csv">"Export CSV"</a>
            </form>
            <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || page.get().map(|r| match r {
                    Ok(p) if p.rows.is_empty() => view! { <p class="empty">"No entries match."</p> }.into_any(),
                    Ok(p) => view! {
                        <table class="tasks" data-testid="audit-list">
                            <thead><tr><th>"When (UTC)"</th><th>"Who"</th><th>"From"</th><th>"Action"</th><th>"Target"</th><th>"Before → after"</th></tr></thead>
                            <tbody>{p.rows.into_iter().map(row).collect_view()}</tbody>
                        </table>
                        {p.next.map(|n| view! { <button type="button" on:click=move |_| before.set(Some(n))>"Older →"</button> })}
                    }.into_any(),
                    Err(e) => view! { <p class="error">{said(&e)}</p> }.into_any(),
                })}
            </Suspense>
        </Panel>
    }
}

fn row(e: AuditRow) -> impl IntoView {
    let change = match (&e.before, &e.after) {
        (None, None) => String::new(),
        (b, a) => format!("{} → {}", b.as_deref().unwrap_or("—"), a.as_deref().unwrap_or("—")),
    };
    let action = e.action.clone();
    view! {
        <tr data-action=action>
            <td class="small">{e.at}</td><td>{e.who}</td><td class="muted small">{e.from}</td>
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
