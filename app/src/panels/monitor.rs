//! 10 · Monitor — every task of the team, newest first, filtered and paged, updated live from
//! the event stream (no reload): state, progress, age, cost, and the result when done.
//! The composer above the table submits new tasks.

use leptos::either::{Either, EitherOf4};
use leptos::prelude::*;

use super::composer::Composer;
use crate::api::{TaskFilter, cancel_task, list_tasks, rerun_draft};
use crate::live::live;
use crate::view::{ModelOption, STATE_WORDS, TaskList, TaskRow, state_said};

/// Rows per page in the monitor.
pub const PAGE: usize = 25;

/// Whether a live row belongs in the listing under `f` (a search is the server's to read: while
/// one is on, only the rows it listed are followed live — see `rows` in [`TaskMonitor`]).
fn passes(f: &TaskFilter, r: &TaskRow) -> bool {
    let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w.trim().is_empty() || w.trim() == have);
    eq(&f.state, &r.state) && eq(&f.model, &r.model) && eq(&f.project, &r.project) && eq(&f.owner, &r.owner)
}

/// The Monitor's filter from a page's query (`?q=kite&state=fail`): blank fields are absent.
pub fn filter_of(query: &leptos_router::params::ParamsMap) -> TaskFilter {
    let mut f = TaskFilter::default();
    for (name, field) in f.fields() {
        *field = query.get(name).map(|v| v.trim().chars().take(200).collect::<String>()).filter(|v| !v.is_empty());
    }
    f
}

/// Writes `f` into the page's URL (no reload, no history entry), so the view can be
/// bookmarked and shared.
fn show_in_url(f: &TaskFilter) {
    #[cfg(feature = "hydrate")]
    {
        let Ok(params) = web_sys::UrlSearchParams::new() else { return };
        for (name, value) in f.clone().fields() {
            if let Some(v) = value {
                params.append(name, v);
            }
        }
        let search: String = params.to_string().into();
        let url = if search.is_empty() { "/#monitor".to_string() } else { format!("/?{search}#monitor") };
        if let Ok(h) = window().history() {
            let _ = h.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&url));
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = f;
}

/// The first page of tasks as the [`TaskMonitor`] takes it: the JSON of the server's read.
/// The island decodes it from bytes, as it does the server functions' answers and the live
/// rows, so the bundle carries one decoder of task rows (a prop decoded as a `TaskList` would
/// add a second, ~4 KB compressed).
pub fn first_page(read: &Result<TaskList, String>) -> String {
    serde_json::to_string(read).unwrap_or_else(|e| format!("{{\"Err\":{:?}}}", e.to_string()))
}

/// The Task Monitor with its composer: an island (hydrated in the browser), given the Market's
/// models, whether the person may submit, and the first page of tasks as the server read it
/// ([`first_page`]). It
/// reads the live rows of the [`crate::live::Console`] island it sits in; a filter, a page or a
/// reset of the live stream reads the list again (no resource and no `Suspense` in the browser:
/// the page arrives with its rows).
#[island]
pub fn TaskMonitor(models: Vec<ModelOption>, can_produce: bool, first: String, initial: TaskFilter, project: String, input: String, input_model: String, input_field: String, children: Children) -> impl IntoView {
    let live = live();
    // Opened with an input from the Library (on a phone it is otherwise folded).
    let opened = !input.is_empty();
    let first: Result<TaskList, String> = serde_json::from_slice(first.as_bytes()).unwrap_or_else(|e| Err(e.to_string()));
    let shown = initial.clone();
    let filter = RwSignal::new(initial);
    // Cursors of the pages before this one (empty: the first page, which live rows join).
    let cursors = RwSignal::new(Vec::<Option<String>>::new());
    let after = RwSignal::new(None::<String>);
    let tasks = RwSignal::new(first);
    // Each read is numbered: an answer older than the latest read is dropped.
    let reads = StoredValue::new(0u32);
    let read = move || {
        let (f, a) = (filter.get_untracked(), after.get_untracked());
        let n = reads.with_value(|n| n.wrapping_add(1));
        reads.set_value(n);
        leptos::task::spawn_local(async move {
            let answer = list_tasks(f, a, PAGE).await.map_err(|e| super::said(&e));
            if reads.get_value() == n {
                tasks.set(answer);
            }
        });
    };
    Effect::new(move |prev: Option<u64>| {
        let n = live.resets.get();
        if prev.is_some() {
            read();
        }
        n
    });
    // The clock for ages: 0 until the browser has hydrated (so server and browser agree).
    let now = RwSignal::new(0u64);
    Effect::new(move |_| {
        now.set(js_now());
        #[cfg(feature = "hydrate")]
        if let Ok(h) = set_interval_with_handle(move || now.set(js_now()), std::time::Duration::from_secs(1)) {
            on_cleanup(move || h.clear());
        }
    });

    // The listing with every live change merged in.
    let rows = move || {
        let listed = tasks.get().ok()?;
        let held = live.rows.get();
        let f = filter.get();
        let mut rows: Vec<TaskRow> = listed.rows.iter().map(|r| match held.get(&r.id) {
            Some(l) if l.version > r.version => l.clone(),
            _ => r.clone(),
        }).filter(|r| passes(&f, r)).collect();
        // New tasks join the first page live, unless a search or a range is on (the server
        // reads those).
        if after.get().is_none() && f.only_server_reads().is_none() {
            let newest = listed.rows.iter().map(|r| r.created_ms).min().unwrap_or(0);
            let fresh = held.values().filter(|l| passes(&f, l) && !listed.rows.iter().any(|r| r.id == l.id) && (l.created_ms >= newest || listed.next.is_none()));
            rows.extend(fresh.cloned());
        }
        rows.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then_with(|| b.id.cmp(&a.id)));
        Some((rows, listed.next.clone()))
    };
    // The count of matches where the store keeps it (as of the read), else what is listed.
    let count = move || {
        let counted = tasks.with(|t| t.as_ref().ok().and_then(|t| t.matches));
        rows().map(|(r, next)| match (counted, next) {
            (Some(n), _) => format!("{n} tasks"),
            (None, Some(_)) => format!("{}+ tasks", r.len()),
            (None, None) => format!("{} tasks", r.len()),
        })
    };
    let listed = move |f: fn(&TaskList) -> String| move || tasks.with(|t| t.as_ref().map(f).unwrap_or_default());
    // One handler for every filter field, by its name (the search as it is typed, the others
    // once changed): the field set (blank: cleared), back to the first page, read again.
    let changed = move |ev: leptos::ev::Event| {
        let Some(name) = event_target::<leptos::web_sys::Element>(&ev).get_attribute("name") else { return };
        if (name == "q") != (ev.type_() == "input") {
            return;
        }
        let v = if name == "mine" { if event_target_checked(&ev) { "1".into() } else { String::new() } } else { event_target_value(&ev) };
        filter.update(|f| {
            if let Some((_, field)) = f.fields().into_iter().find(|(n, _)| *n == name) {
                *field = Some(v).filter(|s| !s.trim().is_empty());
            }
        });
        filter.with_untracked(show_in_url);
        after.set(None);
        cursors.set(Vec::new());
        read();
    };
    // The filter's tasks by state, where the store counts them: "done 412 · failed 20".
    let states = move || tasks.with(|t| t.as_ref().ok().and_then(|t| t.states.clone()));
    let value = move |v: &Option<String>| v.clone().unwrap_or_default();

    // Cancel (a task still queued here): the row flips live once it ends.
    let cancel = Action::new(|id: &String| {
        let id = id.clone();
        async move { cancel_task(id).await }
    });
    // Re-run with edits: the ended task's inputs open in the composer above.
    let rerun = Action::new(|id: &String| {
        let id = id.clone();
        async move { rerun_draft(id).await }
    });
    view! {
        <section class="panel monitor" id="monitor" data-panel="10" aria-labelledby="monitor-title">
            <header class="panel-head">
                <span class="panel-num">"10 · Monitor"</span>
                <h2 id="monitor-title">"Task Monitor"</h2>
                <div class="panel-badge">
                <span class=move || if live.connected.get() { "badge badge-ok" } else { "badge badge-wait" } data-testid="live-badge">
                    {move || if live.connected.get() { "Live" } else { "Connecting" }}
                </span>
                " "
                <span class="badge badge-info" data-testid="monitor-count">{count}</span>
                " "
                <span class="badge" data-testid="monitor-total" title="The listed page's cost: charged where KIE said, else estimated">{listed(|t| t.total.clone())}</span>
                </div>
            </header>
            <div class="panel-body">
            // Behind a button on a phone (the tasks come first); always open on a wide screen.
            <details class="compose" open=opened>
                <summary data-testid="compose-open">"New task"</summary>
                <Composer rerun=rerun models=models can_produce=can_produce project=project input=input input_model=input_model input_field=input_field/>
                // The Library's picker, rendered on the server.
                {children()}
            </details>
            {move || cancel.value().get().and_then(|r| r.err()).map(|e| view! { <p class="error" data-testid="cancel-error">{super::said(&e)}</p> })}
            <div class="filters" role="group" aria-label="Filter tasks" on:input=changed on:change=changed>
                <input type="search" name="q" placeholder="Search: prompt, id, model, project, person" aria-label="Search" maxlength="200" data-testid="filter-q" value=value(&shown.q)/>
                <label class="small">"State "<select name="state" data-testid="filter-state">
                    <option value="">"any"</option>
                    {STATE_WORDS.iter().map(|(s, said)| view! { <option value=*s selected=shown.state.as_deref() == Some(*s)>{*said}</option> }).collect_view()}
                </select></label>
                <input type="search" name="model" placeholder="Model" aria-label="Model" value=value(&shown.model)/>
                <input type="search" name="project" placeholder="Project" aria-label="Project" value=value(&shown.project)/>
                <input type="search" name="owner" placeholder="Person (email or key:label)" aria-label="Person" value=value(&shown.owner)/>
                <label class="small"><input type="checkbox" name="mine" checked=shown.mine.is_some()/>" Mine"</label>
                <details class="more-filters" open=[&shown.from, &shown.to, &shown.min, &shown.max].iter().any(|v| v.is_some())>
                    <summary class="small">"Time and cost"</summary>
                    <label class="small">"From "<input type="date" name="from" value=value(&shown.from)/></label>
                    <label class="small">"to "<input type="date" name="to" value=value(&shown.to)/>" (UTC days)"</label>
                    <label class="small">"Credits "<input type="number" name="min" min="0" step="any" placeholder="min" value=value(&shown.min)/></label>
                    <label class="small">"to "<input type="number" name="max" min="0" step="any" placeholder="max" value=value(&shown.max)/></label>
                </details>
            </div>
            <p class="muted small" data-testid="monitor-facets">{states}</p>
                {move || match tasks.with(|t| t.as_ref().err().cloned()) {
                    Some(e) => Some(Either::Left(view! { <p class="error">{e}</p> })),
                    None => rows().map(|(rows, next)| view! {
                        {if rows.is_empty() {
                            let text = if filter.get() == TaskFilter::default() { "No tasks on record yet." } else { "No tasks match these filters." };
                            Either::Left(view! { <p class="empty" data-testid="monitor-empty">{text}</p> })
                        } else {
                            let typical = tasks.with(|t| t.as_ref().map(|t| t.typical.clone()).unwrap_or_default());
                            Either::Right(task_table(rows, now, typical, can_produce.then_some((cancel, rerun))))
                        }}
                        <div class="pager">
                            <button type="button" disabled=move || cursors.with(Vec::is_empty) on:click=move |_| {
                                let prev = cursors.try_update(|c| c.pop()).flatten().flatten();
                                after.set(prev);
                                read();
                            }>"← Newer"</button>
                            <button type="button" data-testid="older" disabled=next.is_none() on:click={
                                let next = next.clone();
                                move |_| {
                                    cursors.update(|c| c.push(after.get_untracked()));
                                    after.set(next.clone());
                                    read();
                                }
                            }>"Older →"</button>
                        </div>
                    }).map(Either::Right),
                }}
            </div>
        </section>
    }
}

/// Milliseconds since the epoch in the browser; 0 on the server.
fn js_now() -> u64 {
    #[cfg(feature = "hydrate")]
    {
        js_sys_now()
    }
    #[cfg(not(feature = "hydrate"))]
    {
        0
    }
}

#[cfg(feature = "hydrate")]
fn js_sys_now() -> u64 {
    leptos::web_sys::js_sys::Date::now() as u64
}

/// "12 s", "4 min", "3 h".
fn age(now: u64, then: u64) -> String {
    if now == 0 || then == 0 {
        return "—".into();
    }
    span(now.saturating_sub(then))
}

/// A duration in words: "12 s", "4 min", "3 h".
fn span(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        _ => format!("{} h", s / 3600),
    }
}

/// `ms`'s time of day in UTC, "HH:MM:SS".
fn utc_clock(ms: u64) -> String {
    let s = ms / 1000 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// `ms`'s time of day in the viewer's time zone once the browser has hydrated (`now` > 0),
/// in UTC before (so server and browser render the same first).
fn local_clock(now: u64, ms: u64) -> String {
    #[cfg(feature = "hydrate")]
    if now > 0 {
        return leptos::web_sys::js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64)).to_locale_time_string("default").into();
    }
    let _ = now;
    utc_clock(ms)
}

/// [`preview`] of `src`, its kind told by `named`'s extension (a Library copy is served from
/// a path without one; KIE's URL of the same result has it).
pub fn preview_from(url: String, named: &str) -> impl IntoView + use<> {
    let lower = named.to_ascii_lowercase();
    let path = lower.split('?').next().unwrap_or_default().to_string();
    let href = url.clone();
    if [".png", ".jpg", ".jpeg", ".webp", ".gif"].iter().any(|e| path.ends_with(e)) {
        EitherOf4::A(view! { <a href=href target="_blank" rel="noopener"><img class="thumb" src=url alt="result" loading="lazy"/></a> })
    } else if [".mp4", ".webm", ".mov"].iter().any(|e| path.ends_with(e)) {
        EitherOf4::B(view! { <video class="thumb" src=url controls=true preload="metadata"></video> })
    } else if [".wav", ".mp3", ".ogg", ".m4a"].iter().any(|e| path.ends_with(e)) {
        EitherOf4::C(view! { <audio src=url controls=true preload="none"></audio> })
    } else {
        EitherOf4::D(view! { <a href=href target="_blank" rel="noopener">"result"</a> })
    }
}

/// The states' legend beside the Monitor: each one's words and what it means, and how an
/// estimate differs from a charge (rendered on the server only).
pub fn legend() -> impl IntoView {
    view! {
        <details class="legend" data-testid="state-legend">
            <summary>"What the states and costs mean"</summary>
            <dl class="kv">
                {STATE_WORDS.iter().zip(crate::view::STATE_MEANINGS).map(|((name, said), meaning)| view! {
                    <dt class=format!("state state-{name}")>{*said}</dt><dd>{meaning}</dd>
                }).collect_view()}
            </dl>
            <p class="fine">"Cost: "<strong>"~4"</strong>" (marked est.) is the estimate, reserved against the cost rules when the task is submitted; a plain "<strong>"4"</strong>" (marked charged) is what KIE charged once it ended, and the rest of the reservation is released. Dollars are at KIE's rate, 200 credits = $1."</p>
        </details>
    }
}

/// A table of task rows.
/// `actions`: offer Cancel on tasks still queued here and "Re-run with edits" on ended ones
/// (the server checks who may).
/// `typical`: how long each model typically takes at KIE (ms), set against a task there.
pub fn task_table(rows: Vec<TaskRow>, now: RwSignal<u64>, typical: Vec<(String, u64)>, actions: Option<(Action<String, Result<String, ServerFnError>>, super::composer::Rerun)>) -> impl IntoView {
    view! {
        <div class="table-wrap" tabindex="0" role="region" aria-label="Tasks"><table class="tasks" data-testid="task-table">
            <thead><tr><th>"Task"</th><th>"Model"</th><th>"Project"</th><th>"Owner"</th><th>"State"</th><th>"Started"</th><th>"Cost (cr)"</th><th>"Result"</th></tr></thead>
            <tbody>
                {rows.into_iter().map(|t| {
                    let (created, since, finished) = (t.created_ms, t.state_since_ms, t.finished_ms);
                    // At KIE (sent, not ended): set against the model's typical time.
                    let usual = typical.iter().find(|(m, _)| *m == t.model && !t.terminal && t.kie_task_id.is_some()).map(|(_, ms)| format!("typically {}", span(*ms)));
                    let step = t.step();
                    // The Library's copy once it exists (it outlives KIE's), else KIE's URL.
                    let kie = t.result_urls.first().cloned().unwrap_or_default();
                    let result = (t.state == "success").then(|| t.library.first().cloned().or_else(|| t.result_urls.first().cloned())).flatten();
                    let archive = t.archive.clone();
                    view! {
                        <tr data-task=t.id.clone() data-state=t.state.clone()>
                            <td><a href=format!("/tasks/{}", t.id) target="_blank" data-testid="task-story" title="Its whole story on a page of its own"><code>{t.id.clone()}</code></a>
                                " "<button type="submit" form=super::story::DRAWER_FORM name="task" value=t.id.clone() class="small" data-testid="story-open" title="Its whole story, beside the list">"Story"</button>
                                {t.prompt.clone().map(|p| view! { <div class="muted small">{p}</div> })}
                                {t.retry_of.clone().map(|r| view! { <div class="muted small">"retry of "{r}</div> })}
                                {t.rerun_of.clone().map(|r| view! { <div class="muted small" data-testid="rerun-of">"re-run of "{r}</div> })}
                                {t.kie_task_id.clone().map(|k| view! { <div class="muted small">"KIE "<code class="copy" title="KIE's task id: click to select it" data-testid="task-kie-id">{k}</code></div> })}
                            </td>
                            <td>{t.model.clone()}{t.chat.clone().map(|c| view! { <div class="muted small" data-testid="task-chat">{c}</div> })}</td>
                            <td>{t.project.clone()}</td>
                            <td>{t.owner.clone()}</td>
                            <td>
                                <span class=format!("state state-{}", t.state) data-testid="task-state">{state_said(&t.state).to_string()}</span>
                                <progress max="6" value=step.to_string() aria-label=format!("Progress of {}", t.id)></progress>
                                {(!t.terminal).then(|| view! { <div class="muted small" data-testid="task-in-state">"for "{move || age(now.get(), since)}{usual.map(|u| format!(" · {u}"))}</div> })}
                                {t.note.clone().map(|n| view! { <div class="muted small">{n}</div> })}
                                {t.queue.clone().map(|q| view! { <div class="muted small" data-testid="task-queue">{q}</div> })}
                                {t.fail_msg.clone().map(|m| view! { <div class="error small">{m}</div> })}
                                {actions.filter(|_| t.terminal && t.chat.is_none()).map(|(_, r)| {
                                    let id = t.id.clone();
                                    view! { <button type="button" class="small" data-testid="rerun" title="Open this task in the composer with its inputs, to change and submit"
                                        on:click=move |_| { r.dispatch(id.clone()); }>"Re-run with edits"</button> }
                                })}
                                {actions.map(|(c, _)| c).filter(|_| t.state == "queued").map(|a| {
                                    let id = t.id.clone();
                                    view! { <button type="button" class="small" data-testid="cancel" title="Cancel before it reaches KIE (KIE has no cancel once it has the task)"
                                        disabled=move || a.pending().get() on:click=move |_| { a.dispatch(id.clone()); }>"Cancel"</button> }
                                })}
                            </td>
                            <td><time title=format!("{} UTC", utc_clock(created)) data-testid="task-started">{move || local_clock(now.get(), created)}</time>
                                <div class="muted small">{move || match finished {
                                    Some(f) => format!("ended {}", local_clock(now.get(), f)),
                                    None => format!("{} ago", age(now.get(), created)),
                                }}</div>
                            </td>
                            <td title=if t.actual_credits.is_some() { "charged by KIE" } else { "estimate" }><span data-testid="task-cost">{t.actual_credits.clone().unwrap_or_else(|| format!("~{}", t.estimated_credits))}</span>
                                <div class="muted small" data-testid="task-usd">{t.usd.clone()}{if t.actual_credits.is_some() { " charged" } else { " est." }}</div>
                            </td>
                            <td>{result.map(|src| preview_from(src, &kie))}
                                {archive.map(|a| {
                                    let class = if a == "In Library" { "ok small" } else if a == "Result expired" { "error small" } else { "muted small" };
                                    view! { <div class=class data-testid="task-archive">{a}</div> }
                                })}
                            </td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table></div>
    }
}
