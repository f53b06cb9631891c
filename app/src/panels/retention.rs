//! 07 · Retention — every result copied into the Library before KIE deletes it (14 days), and
//! the Library itself: copies by project with previews from the Library's copy, download and
//! signed links; an admin can delete a project's copies, shown first how many files and bytes
//! that is and confirmed by typing the project's name. Live: refetched when a task's copies
//! move (archived, expired, deleted).

use leptos::prelude::*;

use super::{Acted, Fields, Panel, PanelId, act_form, badge, field_owned};
use crate::api::{create_share_link, delete_library_project, library_items, library_project_copies, library_status, list_share_links, revoke_share_link};
use crate::view::{LibraryItem, LibraryView, ShareLinkRow, size};

/// `11 d 4 h`, `3 h`, `overdue`.
fn until(now_ms: u64, then_ms: u64) -> String {
    if then_ms <= now_ms {
        return "overdue".into();
    }
    let h = (then_ms - now_ms) / 3_600_000;
    if h >= 24 { format!("in {} d {} h", h / 24, h % 24) } else { format!("in {h} h") }
}

fn status_badge(v: &LibraryView) -> AnyView {
    match (&v.url, &v.problem, v.quota_percent()) {
        (None, _, _) => badge("off", "Off"),
        (_, Some(_), _) => badge("err", "Problem"),
        (_, _, Some(p)) if p >= 100 => badge("err", "Library full"),
        _ if v.lost_tasks > 0 => badge("warn", format!("{} expired", v.lost_tasks)),
        _ if v.pending_assets > 0 => badge("info", format!("{} archiving", v.pending_assets)),
        _ => badge("ok", "Active"),
    }
}

fn facts(v: LibraryView) -> AnyView {
    let Some(url) = v.url.clone() else {
        return view! { <p class="muted" data-testid="library-off">"The Library is off (LIBRARY_URL=off): results stay on KIE's servers and are gone after its retention."</p> }.into_any();
    };
    let plus = if v.capped { "+" } else { "" };
    let quota = v.quota_bytes.map(|q| {
        let p = v.quota_percent().unwrap_or(0);
        let class = if p >= 90 { "error" } else if p >= 80 { "warn" } else { "muted" };
        view! {
            <dt>"Quota"</dt>
            <dd class=class data-testid="library-quota">{format!("{} of {} ({p} %)", size(v.bytes.max(0) as u64), size(q))}
                {(p >= 80).then(|| view! { <div class="small">{if p >= 100 { "Full: nothing more is archived until the quota is raised (LIBRARY_MAX_GB) or a project's copies are deleted." } else { "Nearly full: raise LIBRARY_MAX_GB or delete a project's copies." }}</div> })}
            </dd>
        }
    });
    view! {
        {v.problem.clone().map(|p| view! { <p class="error" data-testid="library-problem">{p}</p> })}
        <dl class="kv" data-testid="library-status">
            <dt>"Library"</dt><dd><code>{url}</code></dd>
            <dt>"Retention"</dt><dd>{format!("KIE deletes after {} days; copies due {} days before", v.retention_days, v.buffer_days)}</dd>
            <dt>"In Library"</dt><dd data-testid="library-archived">{format!("{} assets · {}", v.assets, size(v.bytes.max(0) as u64))}</dd>
            <dt>"Archiving"</dt><dd data-testid="library-pending">{format!("{}{plus} assets of {}{plus} tasks", v.pending_assets, v.pending_tasks)}
                {(v.overdue > 0).then(|| view! { <span class="error">{format!(" · {} past the deadline", v.overdue)}</span> })}</dd>
            {(!v.arriving.is_empty()).then(|| view! {
                <dt>"From desks"</dt>
                <dd data-testid="library-arriving">{v.arriving.iter().map(|a| view! {
                    <div data-task=a.task_id.clone()>{format!("{} ({}, {}): {}", a.file, a.project, a.by, a.progress)}</div>
                }).collect_view()}</dd>
            })}
            <dt>"Nearest deadline"</dt><dd>{v.nearest_deadline_ms.map_or("none pending".to_string(), |d| until(v.now_ms, d))}</dd>
            <dt>"Result expired"</dt><dd data-testid="library-lost">{format!("{}{plus} tasks", v.lost_tasks)}</dd>
            {quota}
        </dl>
        {v.last_error.clone().map(|e| view! { <p class="warn small" data-testid="library-last-error">{format!("{} retrying · last: {e}", v.failing)}</p> })}
    }
    .into_any()
}

/// An image, a video or an audio player for a Library copy, by its sniffed type.
pub fn library_preview(path: String, content_type: &str) -> AnyView {
    if content_type.starts_with("image/") {
        view! { <img class="thumb" src=path alt="Library copy" loading="lazy"/> }.into_any()
    } else if content_type.starts_with("video/") {
        view! { <video class="thumb" src=path controls=true preload="metadata" data-testid="library-video"></video> }.into_any()
    } else if content_type == MIDI {
        // Notes, not sound: a browser cannot play it; a DAW opens it.
        let name = format!("{}.mid", path.trim_start_matches("/library/").replace('/', "-"));
        view! { <a href=path download=name data-testid="library-midi">"MIDI file ↓"</a> }.into_any()
    } else if content_type.starts_with("audio/") {
        view! { <audio src=path controls=true preload="none"></audio> }.into_any()
    } else {
        view! { <span class="muted">{content_type.to_string()}</span> }.into_any()
    }
}

/// `<task>/<n>` (from "Use as input") as the composer's Library reference; `None` when it
/// is not one (the submission checks the asset itself).
pub fn input_reference(at: &str) -> Option<String> {
    let (task, n) = at.split_once('/')?;
    let task_ok = !task.is_empty() && task.len() <= 64 && task.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    (task_ok && n.parse::<u16>().is_ok_and(|n| n < 1000)).then(|| format!("control-room://library/{task}/{n}"))
}

/// The media a Library asset of `content_type` is the input of, beside an image: `audio` or
/// `video` (a model's URL field that takes it, [`crate::view::FieldOption::media`]).
pub fn media_of(content_type: &str) -> Option<&'static str> {
    if content_type == MIDI {
        return None;
    }
    media_named(content_type.split_once('/')?.0)
}

/// A Standard MIDI File's type (Suno's MIDI of a separation): notes, no model's input.
const MIDI: &str = "audio/midi";

/// `audio` or `video` when `name` is one of them (a `media=` parameter, a content type's kind).
pub fn media_named(name: &str) -> Option<&'static str> {
    ["audio", "video"].into_iter().find(|m| *m == name)
}

/// Whether a Library copy of `content_type` can be a new task's input: an image, a track or a
/// clip (image-to-video, a cover of a track, a clip restyled).
pub fn usable_as_input(content_type: &str) -> bool {
    content_type.starts_with("image/") || media_of(content_type).is_some()
}

/// The suggestions of the composer's URL fields: the picker's references.
pub const INPUTS_LIST: &str = "library-inputs";

/// The composer's picker, rendered on the server and placed in the composer as the Task
/// Monitor's children (no code of its own reaches the browser): the newest copies a new task
/// can take, each with its preview and *Use* (which opens the composer on a model that takes
/// it, filled in, as panel 07's *Use as input* does); their references are also the
/// suggestions of the composer's URL fields ([`INPUTS_LIST`]), chosen there without leaving
/// the form.
pub fn picker(items: Vec<LibraryItem>) -> impl IntoView {
    let options: Vec<_> = items.iter().map(|i| (format!("control-room://library/{}/{}", i.task_id, i.index), format!("{} · {} · {}", i.content_type, i.model, i.project))).collect();
    (!items.is_empty()).then(|| view! {
        <details class="picker" data-testid="library-picker">
            <summary>{format!("From the Library: the newest {}", items.len())}</summary>
            <ul class="picker-items">
                {items.into_iter().map(|i| {
                    let href = use_as_input(&i.task_id, i.index, &i.content_type);
                    view! {
                        <li data-testid="picker-item">
                            {library_preview(i.path.clone(), &i.content_type)}
                            <a href=href data-testid="picker-use" title="Open the composer on a model that takes it, with it filled in">"Use"</a>
                            <span class="muted small">{format!(" {} · {}", i.model, i.project)}</span>
                        </li>
                    }
                }).collect_view()}
            </ul>
        </details>
        <datalist id=INPUTS_LIST>
            {options.into_iter().map(|(value, label)| view! { <option value=value label=label/> }).collect_view()}
        </datalist>
    })
}

/// Where "Use as input" opens the composer with the asset `<task>/<n>` of `content_type`.
pub fn use_as_input(task: &str, n: usize, content_type: &str) -> String {
    match media_of(content_type) {
        Some(media) => format!("/?input={task}/{n}&media={media}#composer"),
        None => format!("/?input={task}/{n}#composer"),
    }
}

fn item(i: LibraryItem) -> impl IntoView + use<> {
    let name = format!("{}-{}", i.task_id, i.index);
    let use_it = usable_as_input(&i.content_type).then(|| view! {
        <a href=use_as_input(&i.task_id, i.index, &i.content_type) data-testid="library-use" title="Open the composer with this as the input, on a model that takes it">"Use as input"</a>" · "
    });
    view! {
        <li class="library-item" data-task=i.task_id.clone() data-testid="library-item">
            {library_preview(i.path.clone(), &i.content_type)}
            <div>
                <code>{i.task_id.clone()}</code>" · "{i.model.clone()}" · "{i.project.clone()}
                <div class="muted small">{format!("{} · {} · sha256 {}…", i.content_type, size(i.bytes), i.sha256.chars().take(12).collect::<String>())}</div>
                {use_it}<a href=i.path.clone() download=name data-testid="library-download">"Download"</a>
                <label class="small">" Signed link "
                    <input type="text" readonly=true value=i.link.clone() size="28" aria-label="Signed link, works without signing in" data-testid="library-link"/>
                </label>
            </div>
        </li>
    }
}

pub async fn render(query: Fields, flash: Option<AnyView>) -> AnyView {
    let project = field_owned(&query, "project").unwrap_or_default();
    let status = library_status().await;
    let items = library_items(project.clone()).await;
    let me = super::me().await;
    let admin = me.as_ref().is_some_and(|m| m.is_admin());
    let producer = me.as_ref().is_some_and(|m| m.can_produce());
    let shares = if producer { Some(list_share_links().await) } else { None };
    let first_project = me.as_ref().and_then(|m| m.projects.first().cloned()).unwrap_or_else(|| if project.is_empty() { "default".into() } else { project.clone() });
    let head = status.as_ref().map_or_else(|_| badge("err", "Unavailable"), status_badge);
    view! {
        <Panel id=PanelId::Retention badge=head class="wide" refresh="library ended" flash=flash>
            {match status {
                Ok(v) => facts(v),
                Err(e) => super::unavailable(&e),
            }}
            <h3>"Library"</h3>
            <form method="get" action="/" data-filter="retention">
                <label class="small">"Project "
                    <input type="search" name="project" value=project placeholder="all projects" data-testid="library-project"/>
                </label>
            </form>
            {match items {
                Ok(list) if list.is_empty() => view! { <p class="empty" data-testid="library-empty">"No copies yet: results land here as soon as their tasks succeed."</p> }.into_any(),
                Ok(list) => view! { <ul class="library" data-testid="library-list">{list.into_iter().map(item).collect_view()}</ul> }.into_any(),
                Err(e) => super::unavailable(&e),
            }}
            {producer.then(|| desk_form(first_project))}
            {shares.map(share_links)}
            {admin.then(|| view! {
                <form class="inline" method="post" action=act_form(PanelId::Retention) data-testid="library-delete">
                    <label class="small">"Delete a project's copies "
                        <input type="text" name="project" required=true placeholder="project"/>
                    </label>
                    <button type="submit" name="do" value="review">"Review deletion…"</button>
                </form>
            })}
        </Panel>
    }
    .into_any()
}

/// "Add from your desk": a file (drop it on the field, or browse) into a project's Library;
/// the composer then opens with it as the input. A plain form the browser posts; while it is
/// sent the form is marked `sending` (by [`crate::enhance`], kept through the panel's live
/// reloads), which shows that it is under way and holds the button against a second send. How
/// much has arrived is the server's count, written on the file's record as it comes
/// ("From desks" above, and its row in the Task Monitor), so every console sees it.
fn desk_form(project: String) -> impl IntoView {
    view! {
        <details class="desk" data-testid="desk-section"><summary>"Add from your desk…"</summary>
        <form class="inline" method="post" action="/library/upload" enctype="multipart/form-data" data-plain="" data-testid="desk-upload">
            <label class="small">"Project "<input type="text" name="project" required=true maxlength="64" value=project list="my-projects"/></label>
            <label class="small">" File "<input type="file" name="file" required=true accept="image/*,video/*,audio/*" data-testid="desk-file"/></label>
            <button type="submit" data-testid="desk-submit">"Add to the Library"</button>
            <span class="sending-note small" role="status" data-testid="desk-sending"><progress></progress>" Sending the file: how much has arrived shows above and on its row in the Task Monitor; the page moves on once the Library has it."</span>
        </form>
        <p class="muted small">"An image, a video or an audio file (UPLOAD_MAX_MB at most), kept here for the team and usable as any task's input."</p>
        </details>
    }
}

/// Share links: the form that makes one, and the links made so far with their uses.
fn share_links(links: Result<Vec<ShareLinkRow>, ServerFnError>) -> AnyView {
    let rows = match links {
        Ok(list) if list.is_empty() => view! { <p class="muted small">"No share links yet."</p> }.into_any(),
        Ok(list) => view! {
            <table class="compact" data-testid="share-links">
                <thead><tr><th>"Link"</th><th>"Project"</th><th>"Until"</th><th>"Uses"</th><th>"State"</th><th></th></tr></thead>
                <tbody>{list.into_iter().map(|l| {
                    let live = l.state == "live";
                    view! {
                        <tr data-share=l.id.clone()>
                            <td><code>{l.id.clone()}</code>{l.password.then_some(" · password")}{l.receipts.then_some(" · receipts")}</td>
                            <td>{l.project.clone()}</td><td>{l.until.clone()}</td><td>{l.uses}</td><td>{l.state.clone()}</td>
                            <td>{live.then(|| view! {
                                <form class="inline" method="post" action=act_form(PanelId::Retention)>
                                    <input type="hidden" name="id" value=l.id.clone()/>
                                    <button type="submit" class="link" name="do" value="share-revoke">"Revoke"</button>
                                </form>
                            })}</td>
                        </tr>
                    }
                }).collect_view()}</tbody>
            </table>
        }.into_any(),
        Err(e) => super::unavailable(&e),
    };
    view! {
        <details class="share-links" data-testid="share-section"><summary>"Share a production…"</summary>
        <p class="muted small">"A read-only page of one project's Library for a client: no account, no other page, up to 90 days, optionally with a password."</p>
        <form class="inline" method="post" action=act_form(PanelId::Retention) data-testid="share-create">
            <input type="hidden" name="do" value="share"/>
            <label class="small">"Project "<input type="text" name="project" required=true maxlength="64" data-testid="share-project"/></label>
            <label class="small">" Days "<input type="number" name="days" min="1" max="90" value="14" required=true/></label>
            <label class="small">" Password "<input type="password" name="password" minlength="10" maxlength="256" autocomplete="new-password" placeholder="optional"/></label>
            <label class="small">" "<input type="checkbox" name="receipts" value="true"/>" receipt totals"</label>
            <button type="submit" data-testid="share-create-submit">"Make link"</button>
        </form>
        {rows}
        </details>
    }
    .into_any()
}

/// `do` = review (what deleting `project`'s copies would delete, and the typed confirmation it
/// needs), delete (with `confirm` repeating the name; admins; audited), share (make a share
/// link), share-revoke, or cancel.
pub async fn act(form: Fields) -> Acted {
    let project = field_owned(&form, "project").unwrap_or_default();
    match field_owned(&form, "do").as_deref() {
        Some("share") => {
            let days = field_owned(&form, "days").and_then(|d| d.trim().parse().ok()).unwrap_or(0);
            let password = field_owned(&form, "password").unwrap_or_default();
            let receipts = field_owned(&form, "receipts").as_deref() == Some("true");
            Acted::of(create_share_link(project, days, password, receipts).await, |n| view! {
                <div class="ok" role="status" data-testid="share-made">
                    <p>{format!("Share link {} for {} until {}. Copy it now: it is not shown again.", n.row.id, n.row.project, n.row.until)}</p>
                    <input type="text" readonly=true value=n.url size="60" aria-label="The share link" data-testid="share-url"/>
                </div>
            }.into_any(), "share-error")
        }
        Some("share-revoke") => {
            let id = field_owned(&form, "id").unwrap_or_default();
            Acted::of(revoke_share_link(id).await, |l| super::ok_note("share-revoked", format!("Share link {} of {} is revoked.", l.id, l.project)), "share-error")
        }
        Some("review") => Acted::of(library_project_copies(project).await, review, "library-error"),
        Some("delete") => {
            let confirm = field_owned(&form, "confirm");
            Acted::of(delete_library_project(project, confirm).await, |n| super::ok_note("library-deleted", format!("{n} copies deleted (audited)")), "library-error")
        }
        _ => super::cancelled(),
    }
}

/// "Delete 412 files, 38.20 GB, of project teaser?" with its typed confirmation.
fn review(c: crate::view::ProjectCopies) -> AnyView {
    if c.files == 0 {
        return super::ok_note("library-nothing", format!("Project {} has no copies in the Library: nothing to delete.", c.project));
    }
    let files = if c.files == 1 { "1 file".to_string() } else { format!("{} files", c.files) };
    let question = format!("Delete {files}, {}, of project {}? They are gone for good (KIE may have deleted its own already).", size(c.bytes), c.project);
    super::confirm(PanelId::Retention, question, vec![("project", c.project.clone())], super::Confirm::Typing(&c.project), "delete", format!("Delete {files}"))
}
