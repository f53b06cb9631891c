//! 10 · Monitor — every task of the team, newest first.

use leptos::prelude::*;

use super::Panel;
use crate::api::list_tasks;
use crate::view::TaskRow;

/// Rows per page in the monitor.
const PAGE: usize = 25;

#[component]
pub fn MonitorPanel() -> impl IntoView {
    let tasks = Resource::new(|| (), |_| list_tasks(None, None, PAGE));
    let count = move || {
        tasks.get().map(|r| match r {
            Ok(l) if l.next.is_some() => format!("{}+ tasks", l.rows.len()),
            Ok(l) => format!("{} tasks", l.rows.len()),
            Err(_) => "unavailable".to_string(),
        })
    };
    view! {
        <Panel number="10" kicker="Monitor" title="Task Monitor" class="wide"
            badge=view! { <Suspense fallback=|| super::badge("wait", "Loading")><span class="badge badge-info" data-testid="monitor-count">{count}</span></Suspense> }>
            <Suspense fallback=|| view! { <p class="muted">"Loading tasks…"</p> }>
                {move || tasks.get().map(|r| match r {
                    Ok(l) if l.rows.is_empty() => view! { <p class="empty" data-testid="monitor-empty">"No tasks on record yet."</p> }.into_any(),
                    Ok(l) => task_table(l.rows).into_any(),
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                })}
            </Suspense>
        </Panel>
    }
}

/// A table of task rows (shared with the Error Review).
pub fn task_table(rows: Vec<TaskRow>) -> impl IntoView {
    view! {
        <table class="tasks">
            <thead><tr><th>"Task"</th><th>"Model"</th><th>"Project"</th><th>"Owner"</th><th>"State"</th><th>"Cost (cr)"</th></tr></thead>
            <tbody>
                {rows.into_iter().map(|t| view! {
                    <tr>
                        <td><code>{t.id}</code></td>
                        <td>{t.model}</td>
                        <td>{t.project}</td>
                        <td>{t.owner}</td>
                        <td><span class=format!("state state-{}", t.state)>{t.state.clone()}</span></td>
                        <td>{t.actual_credits.unwrap_or_else(|| format!("~{}", t.estimated_credits))}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}
