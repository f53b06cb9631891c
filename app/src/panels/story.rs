//! Task story — one task's whole life, server-rendered: every step with its time (UTC) and
//! the instance that took it, the input as sent, what it cost and where its results are
//! kept. Opened as a drawer beside the Task Monitor (each row's Story button), on a page of
//! its own (`/tasks/<id>`, from a task's id), or as `/panel/story?task=<id>`.
//!
//! The drawer is this panel, closed (hidden, empty) until a Story button — `form=`
//! [`DRAWER_FORM`], `name=task` — submits its form: the console then reads
//! `/panel/story?task=<id>` and swaps it in, and reloads it while tasks change. Without WASM
//! the same buttons open `/tasks?task=<id>`.
//!
//! A task that succeeded offers the catalog's follow-ups on its results (Midjourney's Upscale
//! and Vary on each image of a grid): each button starts one, a new task linked to this one,
//! and the story says which task it follows. A Suno song's tracks offer their timestamped
//! lyrics: read from KIE once, then shown here line by line with when each is sung.

use leptos::prelude::*;

use super::{Acted, Fields, Panel, PanelId, act_form, field_owned};
use crate::api::{follow_up, task_story, track_lyrics};
use crate::view::{BeatRow, FollowOffer, TaskStory};

/// The id of the drawer's form, which the Monitor's Story buttons name.
pub const DRAWER_FORM: &str = "story-drawer";

pub async fn render(query: Fields, flash: Option<AnyView>) -> AnyView {
    let Some(id) = field_owned(&query, "task") else { return closed() };
    let body = match task_story(id.clone()).await {
        Ok(s) => story(s).into_any(),
        Err(e) => super::unavailable(&e),
    };
    let close = view! { <button type="submit" form=DRAWER_FORM name="task" value="" class="small" data-testid="story-close" title="Close the story">"Close"</button> };
    view! { <Panel id=PanelId::Story badge=close class="wide" refresh="rows" flash=flash>{drawer_form(id)}{body}</Panel> }.into_any()
}

/// A follow-up started from the story (`follow` = `<model>` or `<model>/<result>`, on the
/// task `task`): its new task's id, or why not; or a track's lyrics read (`lyrics` = the
/// track, from 0), which the story then shows.
pub async fn act(form: Fields) -> Acted {
    let task = field_owned(&form, "task").unwrap_or_default();
    if let Some(n) = field_owned(&form, "lyrics").and_then(|n| n.parse::<usize>().ok()) {
        return Acted::of(
            track_lyrics(task, n).await,
            move |lines| view! { <p class="ok" role="status" data-testid="lyrics-result">{format!("Track {}: {lines} lines of timestamped lyrics, below", n + 1)}</p> }.into_any(),
            "lyrics-error",
        );
    }
    let asked = field_owned(&form, "follow").unwrap_or_default();
    let (model, n) = match asked.rsplit_once('/').map(|(m, n)| (m, n.parse::<usize>())) {
        Some((m, Ok(n))) => (m.to_string(), Some(n)),
        _ => (asked, None),
    };
    Acted::of(
        follow_up(task, model, n, field_owned(&form, "prompt")).await,
        |s| view! { <p class="ok" role="status" data-testid="follow-up-result">"Started "<a href=format!("/tasks/{}", s.id) data-testid="follow-up-task"><code>{s.id.clone()}</code></a>{format!(", estimated {} credits; the Monitor follows it", s.estimated_credits)}</p> }.into_any(),
        "follow-up-error",
    )
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
    let follows = s.follows.map(|(parent, n)| view! {
        <dt>"Follows"</dt><dd data-testid="story-follows"><a href=format!("/tasks/{parent}")><code>{parent.clone()}</code></a>{n.map(|n| format!(", result {}", n + 1))}</dd>
    });
    let follow_ups = (!s.follow_ups.is_empty()).then(|| follow_ups(&t.id, s.follow_ups));
    let lyrics = (!s.lyrics.is_empty() || !s.lyrics_offered.is_empty()).then(|| lyrics(&t.id, s.lyrics, s.lyrics_offered));
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
            {follows}
            {follow_ups}
            {lyrics}
        </dl>
        <h3>"Steps"</h3>
        <ol class="story" data-testid="story-beats">{dropped}{beats}</ol>
        <details><summary>"Input as sent"</summary><pre class="small" data-testid="story-input">{s.input}</pre></details>
    }
}

/// The follow-ups on the task's results, each a button that starts one (a form posted to
/// this panel: no script needed).
fn follow_ups(task: &str, offers: Vec<FollowOffer>) -> impl IntoView + use<> {
    let prompt = offers.iter().any(|o| o.needs_prompt).then(|| {
        let which: Vec<String> = offers.iter().filter(|o| o.needs_prompt).map(|o| o.action.clone()).collect();
        view! { <input type="text" name="prompt" maxlength="5000" class="small" data-testid="follow-up-prompt" aria-label="Prompt for a follow-up" placeholder=format!("How it goes on ({})", which.join(", "))/>" " }
    });
    let buttons = offers.into_iter().flat_map(|o| {
        let whole = o.results.is_empty().then_some(None);
        let each = o.results.into_iter().map(Some);
        whole.into_iter().chain(each).map(move |n| {
            let (value, words) = match n {
                Some(n) => (format!("{}/{n}", o.model), format!("{} {}", o.action, n + 1)),
                None => (o.model.clone(), o.action.clone()),
            };
            view! { <button type="submit" name="follow" value=value class="small" data-testid="follow-up" title=format!("{} (a new task, linked to this one)", o.model)>{words}</button>" " }
        }).collect::<Vec<_>>()
    });
    view! {
        <dt>"Follow-ups"</dt>
        <dd><form method="post" action=act_form(PanelId::Story) data-testid="follow-ups">
            <input type="hidden" name="task" value=task.to_string()/>
            {prompt}
            {buttons.collect_view()}
        </form></dd>
    }
}

/// A Suno song's timestamped lyrics, track by track: those read, and a button for each track
/// whose lyrics can still be read from KIE (a form posted to this panel).
fn lyrics(task: &str, read: Vec<(usize, Vec<(String, String)>)>, offered: Vec<usize>) -> impl IntoView + use<> {
    let buttons = (!offered.is_empty()).then(|| view! {
        <form method="post" action=act_form(PanelId::Story) data-testid="lyrics-form">
            <input type="hidden" name="task" value=task.to_string()/>
            {offered.into_iter().map(|n| view! { <button type="submit" name="lyrics" value=n.to_string() class="small" data-testid="lyrics-read" title="Read this track's words and when each is sung from KIE (no credits)">{format!("Lyrics {}", n + 1)}</button>" " }).collect_view()}
        </form>
    });
    let tracks = read.into_iter().map(|(n, lines)| {
        let empty = lines.is_empty().then(|| view! { <li class="muted">"No words (an instrumental)"</li> });
        view! {
            <details open=true data-testid="lyrics-track"><summary>{format!("Track {}", n + 1)}</summary>
                <ol class="lyrics small">{empty}{lines.into_iter().map(|(at, text)| view! { <li><span class="muted">{at}</span>" "{text}</li> }).collect_view()}</ol>
            </details>
        }
    });
    view! { <dt>"Lyrics"</dt><dd>{buttons}{tracks.collect_view()}</dd> }
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
