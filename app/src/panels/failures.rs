//! 11 · Failures — failed and expired tasks, classified (rate limited, insufficient credits,
//! content policy, upstream error, callback lost, result expired) with KIE's failCode and
//! failMsg, when and who, and Retry (a new task linked to the old one); tasks KIE charged
//! above a per-job cap. Reloads live when a task ends.

use leptos::prelude::*;

use super::{Acted, Fields, Panel, PanelId, act_form, field_owned};
use crate::api::{retry_task, review_tasks};

pub async fn render(flash: Option<AnyView>) -> AnyView {
    let tasks = review_tasks().await;
    let can_retry = super::me().await.is_some_and(|m| m.can_produce());
    let count = tasks.as_ref().map_or("unavailable".to_string(), |l| format!("{} to review", l.rows.len()));
    let body = match tasks {
        Err(e) => super::unavailable(&e),
        Ok(l) if l.rows.is_empty() => view! { <p class="empty" data-testid="review-empty">"Nothing to review: no failed or expired tasks."</p> }.into_any(),
        Ok(l) => view! {
            <form method="post" action=act_form(PanelId::Failures)>
                <ul class="review" data-testid="review-list">
                    {l.rows.into_iter().map(|t| {
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
                                    view! { <button type="submit" name="retry" value=t.id.clone() data-testid="retry">"Retry"</button> }.into_any()
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
            </form>
        }
        .into_any(),
    };
    view! {
        <Panel id=PanelId::Failures refresh="ended" flash=flash
            badge=view! { <span class="badge badge-info" data-testid="review-count">{count}</span> }>
            {body}
        </Panel>
    }
    .into_any()
}

/// `retry=<task id>`: a new task linked to the old one (it appears in the Monitor, live).
pub async fn act(form: Fields) -> Acted {
    let id = field_owned(&form, "retry").unwrap_or_default();
    Acted::of(
        retry_task(id).await,
        |s| view! { <p class="ok" role="status" data-testid="retry-result">"Retried as "<code>{s.id}</code></p> }.into_any(),
        "retry-error",
    )
    .also(&[PanelId::Status])
}
