//! 11 · Failures — the failures still to review, grouped by class (rate limited, insufficient
//! credits, content policy, upstream error, callback lost, result expired…) and model, each
//! group with its count, when they failed over 24 hours, and "Retry these" (one retry each,
//! through the same checks as one); each failure with KIE's failCode and failMsg, when, who,
//! its story, Retry and Resolved. A failure leaves the review when a retry of it succeeds or
//! someone marks it resolved. Then the tasks that wait: stuck in the queue, or charged over a
//! per-job cap. Reloads live when a task ends.

use leptos::prelude::*;

use super::{Acted, Fields, Panel, PanelId, act_form, field_owned};
use crate::api::{resolve_failure, retry_failures, retry_task, review_board};
use crate::view::{ReviewGroup, TaskRow};

pub async fn render(flash: Option<AnyView>) -> AnyView {
    let board = review_board().await;
    let can_act = super::me().await.is_some_and(|m| m.can_produce());
    let count = board.as_ref().map_or("unavailable".to_string(), |b| format!("{} to review", b.to_review));
    let body = match board {
        Err(e) => super::unavailable(&e),
        Ok(b) if b.groups.is_empty() && b.waiting.is_empty() => view! { <p class="empty" data-testid="review-empty">"Nothing to review: no failure waits for a look."</p> }.into_any(),
        Ok(b) => {
            let shown: usize = b.groups.iter().map(|g| g.rows.len()).sum();
            let more = (b.to_review > shown as u64).then(|| view! { <p class="muted small">{format!("The newest {shown} of {} are shown; resolve or retry these to see older ones.", b.to_review)}</p> });
            view! {
                <form method="post" action=act_form(PanelId::Failures)>
                    {more}
                    {b.groups.into_iter().map(|g| group(g, can_act)).collect_view()}
                    {(!b.waiting.is_empty()).then(|| view! {
                        <h3 class="small">"Waiting"</h3>
                        <ul class="review" data-testid="review-waiting">{b.waiting.into_iter().map(|t| item(t, can_act)).collect_view()}</ul>
                    })}
                </form>
            }
            .into_any()
        }
    };
    view! {
        <Panel id=PanelId::Failures refresh="ended" flash=flash
            badge=view! { <span class="badge badge-info" data-testid="review-count">{count}</span> }>
            {body}
        </Panel>
    }
    .into_any()
}

fn group(g: ReviewGroup, can_act: bool) -> impl IntoView + use<> {
    let value = format!("{}\u{1f}{}", g.class, g.model);
    let retry = (can_act && g.retryable > 0).then(|| {
        view! { <button type="submit" name="retry_group" value=value data-testid="retry-group">{format!("Retry {} ({})", g.retryable, super::credits(&g.retry_credits))}</button> }
    });
    view! {
        <details class="review-group" data-testid="review-group" data-class=g.class.clone() data-model=g.model.clone() open>
            <summary>
                <span class="state state-fail">{g.class.clone()}</span>" · "{g.model.clone()}" · "
                <strong data-testid="review-group-count">{g.rows.len()}</strong>
                " "<span class="spark" title="When they failed, one bar per hour over the last 24 hours" aria-label="failures per hour, last 24 hours">{g.spark}</span>
                " "{retry}
            </summary>
            <ul class="review" data-testid="review-list">{g.rows.into_iter().map(|t| item(t, can_act)).collect_view()}</ul>
        </details>
    }
}

fn item(t: TaskRow, can_act: bool) -> impl IntoView + use<> {
    let retryable = t.retryable();
    let when = t.finished_ms.map(|ms| format!("{} UTC · ", super::clock(ms)));
    let action = if let Some(new) = &t.retried_as {
        view! {
            <div class="muted small" data-testid="retried-as">"Retried as "<a href=format!("/tasks/{new}")><code>{new.clone()}</code></a>"; leaves the review when it succeeds"</div>
            {can_act.then(|| view! { <button type="submit" name="resolve" value=t.id.clone() data-testid="resolve" title="Take it off the review (audited)">"Resolved"</button> })}
        }
        .into_any()
    } else if retryable && can_act {
        view! {
            <button type="submit" name="retry" value=t.id.clone() data-testid="retry">"Retry"</button>
            " "<button type="submit" name="resolve" value=t.id.clone() data-testid="resolve" title="Take it off the review without retrying it (audited)">"Resolved"</button>
        }
        .into_any()
    } else if retryable {
        view! { <div class="muted small">"Producers and admins can retry it."</div> }.into_any()
    } else if t.state == "success" && t.archive.as_deref() == Some("Result expired") && can_act {
        view! { <button type="submit" name="resolve" value=t.id.clone() data-testid="resolve">"Resolved"</button> }.into_any()
    } else if t.state == "success" {
        view! { <div class="muted small">"Succeeded; KIE's charge stands and counts against the rules."</div> }.into_any()
    } else {
        view! { <div class="muted small">{t.note.clone().unwrap_or_default()}" — retried automatically"</div> }.into_any()
    };
    view! {
        <li data-task=t.id.clone()>
            <span class="state state-fail">{t.fail_class.clone().or_else(|| t.archive.clone()).unwrap_or_else(|| crate::view::state_said(&t.state).to_string())}</span>
            " "<a href=format!("/tasks/{}", t.id) data-testid="review-story"><code>{t.id.clone()}</code></a>" · "{t.model.clone()}" · "{t.owner.clone()}" · "{t.project.clone()}
            <div class="muted">
                {when}
                {t.fail_code.clone().map(|c| format!("failCode {c} · "))}
                {t.fail_msg.clone().unwrap_or_default()}
            </div>
            {action}
        </li>
    }
}

/// `retry=<task id>`: a new task linked to the old one (it appears in the Monitor, live).
/// `retry_group=<class>\u{1f}<model>`: one retry for each failure of the group not retried yet.
/// `resolve=<task id>`: taken off the review.
pub async fn act(form: Fields) -> Acted {
    if let Some(id) = field_owned(&form, "resolve") {
        return Acted::of(
            resolve_failure(id).await,
            |id| view! { <p class="ok" role="status" data-testid="resolve-result">"Resolved "<code>{id}</code>": it left the review"</p> }.into_any(),
            "resolve-error",
        )
        .also(&[PanelId::Status]);
    }
    if let Some(g) = field_owned(&form, "retry_group") {
        let (class, model) = g.split_once('\u{1f}').unwrap_or((g.as_str(), ""));
        return Acted::of(
            retry_failures(class.to_string(), model.to_string()).await,
            |r| {
                let stopped = r.stopped.map(|why| view! { <span class="error">{format!(" Stopped there: {why}")}</span> });
                view! { <p class="ok" role="status" data-testid="retry-group-result">{format!("Retried {} of {}.", r.retried.len(), r.of)}{stopped}</p> }.into_any()
            },
            "retry-group-error",
        )
        .also(&[PanelId::Status]);
    }
    let id = field_owned(&form, "retry").unwrap_or_default();
    Acted::of(
        retry_task(id).await,
        |s| view! { <p class="ok" role="status" data-testid="retry-result">"Retried as "<code>{s.id}</code></p> }.into_any(),
        "retry-error",
    )
    .also(&[PanelId::Status])
}
