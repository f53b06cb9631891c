//! Task story — one task's whole life, server-rendered: every step with its time (UTC) and
//! the instance that took it, the input as sent, what it cost and where its results are
//! kept. Opened as a drawer beside the Task Monitor (each row's Story button), on a page of
//! its own (`/tasks/<id>`, from a task's id), or as `/panel/story?task=<id>`.
//!
//! The drawer is this panel, closed (hidden, empty) until a Story button — `form=`
//! [`DRAWER_FORM`], `name=task` — submits its form: the console then reads
//! `/panel/story?task=<id>` and swaps it in, and reloads it while tasks change. Without WASM
//! the same buttons open `/tasks?task=<id>`.

use leptos::prelude::*;

use super::{Fields, Panel, PanelId, field_owned};
use crate::api::task_story;
use crate::view::{BeatRow, TaskStory};

/// The id of the drawer's form, which the Monitor's Story buttons name.
pub const DRAWER_FORM: &str = "story-drawer";

pub async fn render(query: Fields) -> AnyView {
    let Some(id) = field_owned(&query, "task") else { return closed() };
    let body = match task_story(id.clone()).await {
        Ok(s) => story(s).into_any(),
        Err(e) => super::unavailable(&e),
    };
    let close = view! { <button type="submit" form=DRAWER_FORM name="task" value="" class="small" data-testid="story-close" title="Close the story">"Close"</button> };
    view! { <Panel id=PanelId::Story badge=close class="wide" refresh="rows">{drawer_form(id)}{body}</Panel> }.into_any()
}

/// The drawer closed: on the console's page until a Story button opens it (not yet a panel:
/// no heading, nothing shown).
pub fn closed() -> AnyView {
    view! { <section class="drawer" id="story" data-src="story" hidden>{drawer_form(String::new())}</section> }.into_any()
}

/// The drawer's form: the task it shows, kept through live reloads.
fn drawer_form(task: String) -> impl IntoView {
    view! { <form id=DRAWER_FORM data-filter="" action="/tasks" method="get"><input type="hidden" name="task" value=task/></form> }
}

fn story(s: TaskStory) -> impl IntoView {
    let t = s.row;
    let cost = match (&t.actual_credits, &s.charge_basis) {
        (Some(c), Some(b)) => format!("{} charged ({b}); estimated {}", super::credits(c), super::credits(&t.estimated_credits)),
        (Some(c), None) => format!("{} charged; estimated {}", super::credits(c), super::credits(&t.estimated_credits)),
        (None, _) => format!("estimated {}, held until it ends", super::credits(&t.estimated_credits)),
    };
    let dropped = (s.dropped > 0).then(|| view! { <li class="muted small">{format!("… {} earlier steps dropped (a story keeps its first step and its latest)", s.dropped)}</li> });
    let beats = s.beats.into_iter().map(beat).collect_view();
    view! {
        <dl class="story-facts" data-testid="story-facts">
            <dt>"Task"</dt><dd><code data-testid="story-id">{t.id.clone()}</code></dd>
            <dt>"KIE's task id"</dt><dd><code data-testid="story-kie-id">{t.kie_task_id.clone().unwrap_or_else(|| "not yet".into())}</code></dd>
            <dt>"Model"</dt><dd>{t.model.clone()}</dd>
            <dt>"Project · owner"</dt><dd>{t.project.clone()}" · "{t.owner.clone()}</dd>
            <dt>"State"</dt><dd><span class=format!("state state-{}", t.state) data-testid="story-state">{crate::view::state_said(&t.state).to_string()}</span>
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
            <span class="small">{super::when(&b.at)}</span>" "
            <span class="badge badge-off small">{b.kind}</span>" "
            <span>{b.text}{times}</span>
            <span class="muted small">" · "{b.instance}</span>
        </li>
    }
}
