//! Task story — one task's whole life, server-rendered: every step with its time (UTC) and
//! the instance that took it, the input as sent, what it cost and where its results are
//! kept. Opened from a task's id in the Monitor or the Error Review (`/tasks/<id>`), or as
//! `/panel/story?task=<id>`.

use leptos::prelude::*;

use super::{Fields, Panel, PanelId, field_owned};
use crate::api::task_story;
use crate::view::{BeatRow, TaskStory};

pub async fn render(query: Fields) -> AnyView {
    let Some(id) = field_owned(&query, "task") else {
        return view! {
            <Panel id=PanelId::Story badge=super::badge("off", "No task")>
                <p class="empty">"Name a task: open its id in the Task Monitor, or go to /tasks/<id>."</p>
            </Panel>
        }
        .into_any();
    };
    let body = match task_story(id).await {
        Ok(s) => story(s).into_any(),
        Err(e) => super::unavailable(&e),
    };
    view! { <Panel id=PanelId::Story badge=super::badge("info", "Every step") class="wide">{body}</Panel> }.into_any()
}

fn story(s: TaskStory) -> impl IntoView {
    let t = s.row;
    let cost = match (&t.actual_credits, &s.charge_basis) {
        (Some(c), Some(b)) => format!("{c} credits charged ({b}); estimate {}", t.estimated_credits),
        (Some(c), None) => format!("{c} credits; estimate {}", t.estimated_credits),
        (None, _) => format!("estimate {} credits, held until it ends", t.estimated_credits),
    };
    let dropped = (s.dropped > 0).then(|| view! { <li class="muted small">{format!("… {} earlier steps dropped (a story keeps its first step and its latest)", s.dropped)}</li> });
    let beats = s.beats.into_iter().map(beat).collect_view();
    view! {
        <dl class="story-facts" data-testid="story-facts">
            <dt>"Task"</dt><dd><code data-testid="story-id">{t.id.clone()}</code></dd>
            <dt>"KIE's task id"</dt><dd><code data-testid="story-kie-id">{t.kie_task_id.clone().unwrap_or_else(|| "not yet".into())}</code></dd>
            <dt>"Model"</dt><dd>{t.model.clone()}</dd>
            <dt>"Project · owner"</dt><dd>{t.project.clone()}" · "{t.owner.clone()}</dd>
            <dt>"State"</dt><dd><span class=format!("state state-{}", t.state) data-testid="story-state">{t.state.clone()}</span>
                {t.fail_msg.clone().map(|m| view! { " "<span class="error small">{m}</span> })}</dd>
            <dt>"Cost"</dt><dd data-testid="story-cost">{cost}</dd>
            <dt>"Library"</dt><dd>
                {if t.library.is_empty() {
                    view! { <span class="muted">{t.archive.clone().unwrap_or_else(|| "nothing copied".into())}</span> }.into_any()
                } else {
                    t.library.iter().enumerate().map(|(n, href)| view! { <a href=href.clone() data-testid="story-library">{format!("Result {} ", n + 1)}</a> }).collect_view().into_any()
                }}
            </dd>
        </dl>
        <h3>"Steps"</h3>
        <ol class="story" data-testid="story-beats">{dropped}{beats}</ol>
        <details><summary>"Input as sent"</summary><pre class="small" data-testid="story-input">{s.input}</pre></details>
    }
}

fn beat(b: BeatRow) -> impl IntoView + use<> {
    let times = (b.times > 1).then(|| format!(" ×{}", b.times));
    let kind = b.kind.clone();
    view! {
        <li data-kind=kind data-testid="story-beat">
            <time datetime=b.at.clone() class="small">{b.at.replace('T', " ")}</time>" "
            <span class="badge badge-off small">{b.kind}</span>" "
            <span>{b.text}{times}</span>
            <span class="muted small">" · "{b.instance}</span>
        </li>
    }
}
