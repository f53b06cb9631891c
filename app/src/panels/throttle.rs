//! 06 · Throttle — the rate guard: its rules and how full each is, the queue of tasks waiting
//! for it (depth; by owner: waiting, oldest, their part of the next window; the next to leave
//! and their expected wait), KIE's 429s, and the pauses on intake (producers pause a project,
//! admins the team; resumed from the same place), and bulk actions: cancel or retry every task a
//! filter selects, previewed first (how many, what they are estimated at), then run in pages
//! with a progress bar each; and batches ([`super::batches`]): submitted whole, with their
//! progress.
//! Read from the store every two seconds and whenever a task changes (rendered on the server).

use leptos::prelude::*;

use super::{Acted, Fields, Panel, PanelId, act_form, badge, field_owned, fill_bar};
use crate::api::{bulk_action, set_fair_share, set_pause, throttle_status};
use crate::view::{BulkJobView, BulkView, ThrottleView};

/// The bulk form's filter fields: (name, label, placeholder).
const BULK_FIELDS: [(&str, &str, &str); 8] = [
    ("state", "State", "queued, fail, expired"),
    ("batch", "Batch", "a batch's name"),
    ("project", "Project", ""),
    ("model", "Model", ""),
    ("owner", "Owner", "an email or key:<id>"),
    ("class", "Failure class", "rate_limited, upstream…"),
    ("since", "Since (UTC)", "2026-12-01 or 24h"),
    ("until", "Until (UTC)", "2026-12-03"),
];

/// Owners listed (most waiting first).
const OWNERS_SHOWN: usize = 12;

fn secs(ms: u64) -> String {
    format!("{} s", ms.div_ceil(1000))
}

pub async fn render(flash: Option<AnyView>) -> AnyView {
    let data = throttle_status().await;
    let me = super::me().await;
    let admin = me.as_ref().is_some_and(|m| m.is_admin());
    let producer = me.as_ref().is_some_and(|m| m.can_produce());
    let head = match &data {
        Ok(t) if t.pauses.iter().any(|(p, _)| p.is_none()) => badge("bad", "Intake paused"),
        Ok(t) if t.cooldown_ms.is_some() => badge("bad", "Cooling down after a 429"),
        Ok(t) if t.depth > 0 => badge("wait", format!("{} queued", t.depth)),
        Ok(_) => badge("ok", "Enforced"),
        Err(_) => badge("bad", "Store unreadable"),
    };
    view! {
        <Panel id=PanelId::Throttle badge=head refresh="rows ended tick2" flash=flash>
            {match data {
                Err(e) => super::unavailable(&e),
                Ok(mut t) => {
                    let batches = std::mem::take(&mut t.batches);
                    view! { {guard_view(t, producer)} {super::batches::list(batches, producer)} }.into_any()
                }
            }}
            {producer.then(|| view! {
                <details class="share">
                    <summary>"Pause intake"</summary>
                    <form class="rule-form" method="post" action=act_form(PanelId::Throttle) data-testid="pause-form">
                        <input type="hidden" name="do" value="pause"/>
                        <label>{if admin { "Project (empty: the whole team)" } else { "Project" }}<input name="project" type="text" required=!admin data-testid="pause-project"/></label>
                        <label>"Reason (shown to everyone)"<input name="reason" type="text" maxlength="200" data-testid="pause-reason"/></label>
                        <button type="submit" data-testid="pause-save">"Pause"</button>
                    </form>
                    <details class="help"><summary title="What this is and how it works">"?"</summary><p class="fine">"Queued tasks stay queued and nothing of theirs is sent to KIE until intake is resumed; new tasks queue behind them (or are refused, if the deployment says so)."</p></details>
                </details>
            })}
            {producer.then(super::batches::form)}
            {producer.then(|| view! {
                <details class="share">
                    <summary>"Bulk cancel or retry"</summary>
                    <form class="rule-form" method="post" action=act_form(PanelId::Throttle) data-testid="bulk-form">
                        <input type="hidden" name="do" value="bulk"/>
                        <label>"Action"<select name="action" data-testid="bulk-action">
                            <option value="cancel">"Cancel queued tasks"</option>
                            <option value="retry">"Retry failed or expired tasks"</option>
                        </select></label>
                        {BULK_FIELDS.into_iter().map(|(name, label, hint)| view! {
                            <label>{label}<input name=name type="text" maxlength="200" placeholder=hint data-testid=format!("bulk-{name}")/></label>
                        }).collect_view()}
                        <button type="submit" data-testid="bulk-preview">"Preview"</button>
                    </form>
                    <details class="help"><summary title="What this is and how it works">"?"</summary><p class="fine">"A preview says how many tasks the action takes and what they are estimated at; nothing is done until you run it. Each task then goes through the same checks as one Cancel or Retry (roles, cost rules, audit), in pages, and a restart picks the job up where it was."</p></details>
                </details>
            })}
            // Folded away: a share is set rarely, and the panel is read all day.
            {admin.then(|| view! {
                <details class="share">
                    <summary>"A project's fair share"</summary>
                    <form class="rule-form" method="post" action=act_form(PanelId::Throttle) data-testid="share-form">
                        <label>"Project"<input name="project" type="text" required="" data-testid="share-project"/></label>
                        <label>"Weight (sends per turn)"<input name="weight" type="number" min="1" max="100" step="1" value="1" data-testid="share-weight"/></label>
                        <label>"Max waiting per owner (empty: default)"<input name="max_queued" type="number" min="1" step="1" data-testid="share-max"/></label>
                        <label>"Its tasks' priority when they name none"<select name="priority" data-testid="share-priority">
                            {["normal", "high", "low"].into_iter().map(|p| view! { <option value=p>{p}</option> }).collect_view()}
                        </select></label>
                        <button type="submit" data-testid="share-save">"Save share"</button>
                    </form>
                </details>
            })}
            <details class="help"><summary title="What this is and how it works">"?"</summary><p class="fine">
                "One limit for every instance: at most N new tasks in any sliding window (plus the safety margin), shared through the store; the rest queue in fair order — round-robin between owners (people and relay keys), oldest first within each, a project's weight sends more per turn — and drain as the window allows."
            </p><p class="fine">
                "Backed off: KIE did not take the task (a 429, a server error, no answer), so it waits and is sent again, each time after a longer pause. In doubt: the task was on its way to KIE when an instance stopped, so no one knows whether KIE has it; it is never sent twice (that could charge twice): KIE's callback settles it, or it expires at its give-up time. Safety margin: added to every window, so instances whose clocks are a little apart never let one task too many into KIE's window."
            </p></details>
        </Panel>
    }
    .into_any()
}

fn guard_view(t: ThrottleView, producer: bool) -> impl IntoView + use<> {
    view! {
        {(!t.pauses.is_empty()).then(|| view! {
            <ul class="rules" data-testid="pauses">
                {t.pauses.into_iter().map(|(project, why)| view! {
                    <li class="rule warn">
                        <div class="rule-name">{project.clone().map_or_else(|| "The whole team".to_string(), |p| format!("project {p}"))}</div>
                        <div class="muted">{why}</div>
                        {producer.then(|| view! {
                            <form method="post" action=act_form(PanelId::Throttle)>
                                <input type="hidden" name="do" value="resume"/>
                                <input type="hidden" name="project" value=project.unwrap_or_default()/>
                                <button type="submit" data-testid="pause-resume">"Resume"</button>
                            </form>
                        })}
                    </li>
                }).collect_view()}
            </ul>
        })}
        {t.rules.into_iter().map(|r| {
            let pct = if r.limit > 0 { (r.used.max(0) * 100 / r.limit).min(100) as u32 } else { 0 };
            fill_bar("guard-rule", r.rule, pct, format!("{} of {} in use now", r.used, r.limit))
        }).collect_view()}
        <div class="meters">
            <div class="meter"><div class="meter-value" data-testid="queue-depth">{t.depth}</div><div class="meter-label">"Queued"</div></div>
            <div class="meter"><div class="meter-value">{secs(t.drain_ms)}</div><div class="meter-label">"To drain"</div></div>
            <div class="meter" title="KIE did not take these (a 429, a 5xx, no answer): each waits and is sent again, with a growing pause"><div class="meter-value">{t.backed_off}</div><div class="meter-label">"Backed off"</div></div>
            {(t.paused > 0).then(|| view! { <div class="meter"><div class="meter-value" data-testid="queue-paused">{t.paused}</div><div class="meter-label">"Paused"</div></div> })}
            <div class="meter"><div class="meter-value" data-testid="rate-limited">{t.rate_limited_total}</div><div class="meter-label">"429s from KIE"</div></div>
        </div>
        {(!t.next.is_empty()).then(|| view! {
            <ol class="queue" data-testid="queue-next">
                {t.next.into_iter().map(|(id, owner, eta)| view! { <li><code>{id}</code>" · "{owner}" · ≈ "{secs(eta)}</li> }).collect_view()}
            </ol>
        })}
        {(!t.by_owner.is_empty()).then(|| view! {
            <div class="table-wrap" tabindex="0" role="region" aria-label="The queue by owner">
                <table class="tasks" data-testid="queue-owners">
                    <thead><tr><th scope="col">"Owner"</th><th scope="col">"Waiting"</th><th scope="col">"Oldest"</th><th scope="col">"Next window"</th></tr></thead>
                    <tbody>
                        {t.by_owner.into_iter().take(OWNERS_SHOWN).map(|o| view! {
                            <tr><td>{o.owner}</td><td>{o.waiting}</td><td>{secs(o.oldest_age_ms)}</td><td>{o.next_window}</td></tr>
                        }).collect_view()}
                    </tbody>
                </table>
            </div>
        })}
        {t.cooldown_ms.map(|ms| view! { <p class="warn">"KIE answered 429: every instance holds off for "{secs(ms)}"."</p> })}
        {(!t.shares.is_empty()).then(|| view! {
            <ul class="rules" data-testid="shares">
                {t.shares.into_iter().map(|(project, text)| view! { <li class="rule"><div class="rule-name">"project "{project}</div><div class="muted">{text}</div></li> }).collect_view()}
            </ul>
        })}
        {(!t.bulk.is_empty()).then(|| view! {
            <ul class="rules" data-testid="bulk-jobs">{t.bulk.into_iter().map(bulk_job).collect_view()}</ul>
        })}
        <p class="muted">"Safety margin "{t.margin_ms}" ms · in doubt "{t.in_doubt}</p>
    }
}

fn bulk_job(j: BulkJobView) -> impl IntoView + use<> {
    let label = format!("{} · {} ({}) · by {} at {}", j.id, j.action, j.what, j.by, j.started.replace('T', " "));
    let mut detail = format!("{} done, {} refused of {} · {}", j.done, j.refused, j.of, j.state);
    if let Some(why) = &j.reason {
        detail += &format!(" · {why}");
    }
    view! { <li data-testid="bulk-job" data-state=j.state.clone()>{fill_bar("bulk-progress", label, j.percent, detail)}</li> }
}

/// A bulk action's preview, with the form that runs it (the same fields), or the job started.
fn bulk_outcome(b: BulkView, form: Fields) -> AnyView {
    let verb = if b.action == "cancel" { "Cancel" } else { "Retry" };
    let more = if b.more { " (more match: the oldest are taken)" } else { "" };
    let sentence = format!("{verb} {} tasks ({}): estimated {}{more}.", b.count, b.what, super::credits(&b.estimate));
    match b.job {
        Some(j) => view! { <p class="ok" role="status" data-testid="bulk-started">{format!("Started {}: {sentence}", j.id)}</p> }.into_any(),
        None => view! {
            <form method="post" action=act_form(PanelId::Throttle) class="ok" data-testid="bulk-preview-result">
                <span data-testid="bulk-preview-text">{sentence}</span>" "
                {form.into_iter().filter(|(k, _)| k != "run").map(|(k, v)| view! { <input type="hidden" name=k value=v/> }).collect_view()}
                <input type="hidden" name="run" value="1"/>
                {(b.count > 0).then(|| view! { <button type="submit" data-testid="bulk-run">{format!("{verb} {}", b.count)}</button> })}
            </form>
        }
        .into_any(),
    }
}

/// Saves a project's fair share (admins), or pauses or resumes intake (the server functions
/// check who may).
pub async fn act(form: Fields) -> Acted {
    let get = |n: &str| field_owned(&form, n);
    if get("do").as_deref() == Some("batch") {
        return super::batches::act(form).await;
    }
    if get("do").as_deref() == Some("bulk") {
        let run = get("run").as_deref() == Some("1");
        let r = bulk_action(get("action").unwrap_or_default(), get("state"), get("model"), get("project"), get("owner"), get("class"), get("batch"), get("since"), get("until"), run).await;
        let echo = form.clone();
        return Acted::of(r, move |b| bulk_outcome(b, echo), "bulk-error").also(&[PanelId::Status]);
    }
    let r = match get("do").as_deref() {
        Some(op @ ("pause" | "resume")) => set_pause(get("project"), op == "pause", get("reason")).await,
        _ => set_fair_share(get("project").unwrap_or_default(), get("weight").unwrap_or_else(|| "1".into()), get("max_queued"), get("priority")).await.map(|p| format!("Share saved for project {p}.")),
    };
    Acted::of(r, |msg| super::ok_note("throttle-done", msg), "throttle-error").also(&[PanelId::Status])
}
