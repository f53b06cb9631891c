//! 11 · Failures — failed and expired tasks, classified (rate limited, insufficient credits,
//! content policy, upstream error, callback lost, result expired) with KIE's failCode and
//! failMsg, when and who, and Retry (a new task linked to the old one); tasks KIE charged
//! above a per-job cap. Reloads live when a task ends.

use leptos::prelude::*;

use super::Panel;
use crate::api::{retry_task, review_tasks};
use crate::live::live;

#[component]
pub fn FailuresPanel() -> impl IntoView {
    let live = live();
    let tasks = Resource::new(move || (live.ended.get(), live.resets.get()), |_| review_tasks());
    let me = crate::me();
    let retry = Action::new(|id: &String| {
        let id = id.clone();
        async move { retry_task(id).await }
    });
    let badge = move || tasks.get().map(|r| r.map_or("unavailable".to_string(), |l| format!("{} to review", l.rows.len())));
    view! {
        <Panel number="11" kicker="Failures" title="Error Review"
            badge=view! { <Suspense fallback=|| super::badge("wait", "Loading")><span class="badge badge-info" data-testid="review-count">{badge}</span></Suspense> }>
            {move || retry.value().get().map(|r| match r {
                Ok(s) => view! { <p class="ok" data-testid="retry-result">"Retried as "<code>{s.id}</code></p> }.into_any(),
                Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
            })}
            <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || { let me = me.get(); tasks.get().map(|r| match r {
                    Ok(l) if l.rows.is_empty() => view! { <p class="empty" data-testid="review-empty">"Nothing to review: no failed or expired tasks."</p> }.into_any(),
                    Ok(l) => { let can_retry = me.clone().and_then(Result::ok).is_some_and(|m| m.can_produce()); view! {
                        <ul class="review" data-testid="review-list">
                            {l.rows.into_iter().map(|t| {
                                let id = t.id.clone();
                                let retryable = t.state == "fail" || t.state == "expired";
                                view! {
                                    <li data-task=t.id.clone()>
                                        <span class="state state-fail">{t.fail_class.clone().unwrap_or_else(|| t.state.clone())}</span>
                                        " "<code>{t.id.clone()}</code>" · "{t.model.clone()}" · "{t.owner.clone()}" · "{t.project.clone()}
                                        <div class="muted">
                                            {t.fail_code.clone().map(|c| format!("failCode {c} · "))}
                                            {t.fail_msg.clone().unwrap_or_default()}
                                        </div>
                                        {if retryable && can_retry {
                                            view! { <button type="button" data-testid="retry" disabled=move || retry.pending().get()
                                                on:click=move |_| { retry.dispatch(id.clone()); }>"Retry"</button> }.into_any()
                                        } else if retryable {
                                            view! { <div class="muted small">"Producers and admins can retry it."</div> }.into_any()
                                        } else if t.state == "success" {
                                            view! { <div class="muted small">"Succeeded; KIE's charge stands and counts against the rules."</div> }.into_any()
                                        } else {
                                            view! { <div class="muted small">{t.note.clone().unwrap_or_default()}" — retried automatically"</div> }.into_any()
                                        }}
                                    </li>
                                }
                            }).collect_view()}
                        </ul>
                    }.into_any() }
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                }) }}
            </Suspense>
        </Panel>
    }
}
