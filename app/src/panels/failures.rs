//! 11 · Failures — failed and expired tasks to review.

use leptos::prelude::*;

use super::Panel;
use crate::api::review_tasks;

#[component]
pub fn FailuresPanel() -> impl IntoView {
    let tasks = Resource::new(|| (), |_| review_tasks());
    let badge = move || tasks.get().map(|r| r.map_or("unavailable".to_string(), |l| format!("{} to review", l.rows.len())));
    view! {
        <Panel number="11" kicker="Failures" title="Error Review"
            badge=view! { <Suspense fallback=|| super::badge("wait", "Loading")><span class="badge badge-info">{badge}</span></Suspense> }>
            <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || tasks.get().map(|r| match r {
                    Ok(l) if l.rows.is_empty() => view! { <p class="empty" data-testid="review-empty">"Nothing to review: no failed or expired tasks."</p> }.into_any(),
                    Ok(l) => view! {
                        <ul class="review">
                            {l.rows.into_iter().map(|t| view! {
                                <li>
                                    <span class="state state-fail">{t.state.clone()}</span>
                                    <code>{t.id}</code>" · "{t.model}
                                    <div class="muted">{t.fail_code.unwrap_or_default()}" "{t.fail_msg.unwrap_or_default()}</div>
                                </li>
                            }).collect_view()}
                        </ul>
                    }.into_any(),
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                })}
            </Suspense>
        </Panel>
    }
}
