//! Server functions of the Retention panel (07) and its Library listing. Thin: read the
//! Library's state and copies from the core, map them to view types.

use leptos::prelude::*;

use crate::view::{LibraryItem, LibraryView};
#[cfg(feature = "ssr")]
use crate::api::context::{Role, refuse, signed_in, store_error};

/// How many tasks' copies the listing shows.
#[cfg(feature = "ssr")]
const LISTED: usize = 48;

/// The retention guard's state (viewer and above).
#[server(endpoint = "library_status")]
pub async fn library_status() -> Result<LibraryView, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Viewer)?;
    let Some(lib) = &ctx.library else { return Ok(LibraryView::default()) };
    let s = lib.status().await.map_err(store_error)?;
    let now_ms = gateway::store::now_ms();
    let arriving = s
        .arriving
        .iter()
        .filter(|a| actor.membership.sees(&a.project))
        .map(|a| crate::view::ArrivingFile { task_id: a.task.clone(), file: a.file.clone(), project: a.project.clone(), by: a.by.clone(), progress: crate::view::arriving(&a.arrival, now_ms) })
        .collect();
    let terms = ctx.lifecycle.options().archive.unwrap_or_default();
    const DAY: u64 = 24 * 3600 * 1000;
    Ok(LibraryView {
        url: Some(s.url),
        problem: s.problem,
        retention_days: terms.retention_ms / DAY,
        buffer_days: terms.buffer_ms / DAY,
        assets: s.assets,
        bytes: s.bytes,
        quota_bytes: s.quota_bytes,
        pending_tasks: s.pending_tasks,
        pending_assets: s.pending_assets,
        overdue: s.overdue,
        nearest_deadline_ms: s.nearest_deadline_ms,
        lost_tasks: s.lost_tasks,
        failing: s.failing,
        last_error: s.last_error,
        capped: s.capped,
        now_ms,
        arriving,
    })
}

/// How many copies the composer's picker offers.
#[cfg(feature = "ssr")]
const PICKED: usize = 12;

/// The newest copies in the Library, of one project or all (viewer and above).
#[server(endpoint = "library_items")]
pub async fn library_items(project: String) -> Result<Vec<LibraryItem>, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Viewer)?;
    let Some(lib) = &ctx.library else { return Ok(Vec::new()) };
    let project = Some(project.trim()).filter(|p| !p.is_empty());
    if project.is_some_and(|p| !gateway::tasks::task::valid_name(p)) {
        return Err(refuse(422, format!("A project name is {}.", gateway::tasks::task::NAME_RULE)));
    }
    let page = lib.list(&actor.membership, project, None, LISTED).await.map_err(store_error)?;
    Ok(items_of(page.tasks, &ctx))
}

/// The newest copies a new task can take as its input (images, tracks, clips), for the
/// composer's picker: at most [`PICKED`], read from as many tasks (viewer and above; none
/// without a Library).
#[server(endpoint = "library_inputs")]
pub async fn library_inputs() -> Result<Vec<LibraryItem>, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Viewer)?;
    let Some(lib) = &ctx.library else { return Ok(Vec::new()) };
    let page = lib.list(&actor.membership, None, None, PICKED).await.map_err(store_error)?;
    let mut items = items_of(page.tasks, &ctx);
    items.retain(|i| crate::panels::retention::usable_as_input(&i.content_type));
    items.truncate(PICKED);
    Ok(items)
}

/// The archived copies of `tasks`, each with its path and a signed link.
#[cfg(feature = "ssr")]
fn items_of(tasks: Vec<gateway::TaskRecord>, ctx: &crate::api::context::ConsoleContext) -> Vec<LibraryItem> {
    use gateway::library::asset::AssetState;
    let signer = ctx.lifecycle.options().library_links.clone();
    let now_s = gateway::store::now_ms() / 1000;
    let mut items = Vec::new();
    for t in tasks {
        let Some(a) = &t.archive else { continue };
        for (n, x) in a.assets.iter().enumerate().filter(|(_, x)| x.state == AssetState::Archived) {
            let path = gateway::library::links::unsigned_path(&t.id, n);
            let (link, link_expires_s) = match &signer {
                Some(s) => (s.link(&t.id, n, now_s), s.expiry(now_s)),
                None => (path.clone(), 0),
            };
            items.push(LibraryItem {
                task_id: t.id.clone(),
                index: n,
                model: t.model.clone(),
                project: t.project.clone(),
                owner: t.owner.clone(),
                content_type: x.content_type.clone().unwrap_or_default(),
                bytes: x.bytes.unwrap_or(0),
                sha256: x.sha256.clone().unwrap_or_default(),
                archived_ms: x.archived_ms.unwrap_or(0),
                path,
                link,
                link_expires_s,
            });
        }
    }
    items
}

/// The Library and a checked project name, for an admin.
#[cfg(feature = "ssr")]
fn library_of_project(project: &str) -> Result<(gateway::library::Library, gateway::team::accounts::Actor), ServerFnError> {
    let (ctx, actor) = signed_in(Role::Admin)?;
    let Some(lib) = ctx.library.clone() else { return Err(refuse(409, "The Library is off on this console (LIBRARY_URL=off).")) };
    if !gateway::tasks::task::valid_name(project) {
        return Err(refuse(422, format!("A project name is {}.", gateway::tasks::task::NAME_RULE)));
    }
    Ok((lib, actor))
}

/// What deleting a project's Library copies would delete (admin): files and bytes.
#[server(endpoint = "library_project_copies")]
pub async fn library_project_copies(project: String) -> Result<crate::view::ProjectCopies, ServerFnError> {
    let project = project.trim();
    let (lib, _) = library_of_project(project)?;
    let c = lib.project_copies(project).await.map_err(store_error)?;
    Ok(crate::view::ProjectCopies { project: project.to_string(), files: c.files, bytes: c.bytes })
}

/// Deletes every Library copy of a project (admin; audited) once `confirm` repeats the
/// project's name. Returns how many were deleted.
#[server(endpoint = "delete_library_project")]
pub async fn delete_library_project(project: String, #[server(default)] confirm: Option<String>) -> Result<usize, ServerFnError> {
    let project = project.trim();
    let (lib, actor) = library_of_project(project)?;
    if confirm.as_deref().map(str::trim) != Some(project) {
        return Err(refuse(422, format!("Type the project's name, {project}, to confirm: its copies are deleted for good.")));
    }
    lib.delete_project(&actor, project).await.map_err(|e| match e {
        gateway::library::LibraryError::Forbidden(e) => refuse(403, e.to_string()),
        gateway::library::LibraryError::Store(e) => store_error(e),
        other => refuse(503, other.to_string()),
    })
}

#[cfg(feature = "ssr")]
fn share_error(e: gateway::team::share_links::ShareError) -> ServerFnError {
    use gateway::team::share_links::ShareError;
    match e {
        ShareError::Account(a) => crate::api::team::server_side::account_error(a),
        ShareError::NotFound => refuse(404, "No such share link."),
        ShareError::Outside(why) => refuse(403, why),
        other => refuse(422, other.to_string()),
    }
}

#[cfg(feature = "ssr")]
fn share_row(l: gateway::team::share_links::ShareLink, uses: i64) -> crate::view::ShareLinkRow {
    let state = l.state(gateway::store::now_ms());
    crate::view::ShareLinkRow {
        id: l.id,
        project: l.project,
        created_by: l.created_by,
        until: gateway::money::receipts::day(l.expires_ms),
        password: l.password_hash.is_some(),
        receipts: l.receipts,
        uses,
        state: state.into(),
    }
}

/// Makes a share link to a project's Library (producers and admins; audited); its address
/// is in this answer only.
#[server(endpoint = "create_share_link")]
pub async fn create_share_link(project: String, days: u32, #[server(default)] password: String, #[server(default)] receipts: bool) -> Result<crate::view::NewShareLink, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Producer)?;
    let new = gateway::team::share_links::NewLink { project: &project, days, password: Some(password.as_str()).filter(|p| !p.is_empty()), receipts };
    let (token, link) = gateway::team::share_links::create(ctx.store.as_ref(), &actor, &new).await.map_err(share_error)?;
    let url = format!("{}/share/{}", ctx.callback_base.as_deref().unwrap_or_default(), token.expose());
    Ok(crate::view::NewShareLink { url, row: share_row(link, 0) })
}

/// Every share link, newest first (producers and admins).
#[server(endpoint = "list_share_links")]
pub async fn list_share_links() -> Result<Vec<crate::view::ShareLinkRow>, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Producer)?;
    let links = gateway::team::share_links::list(ctx.store.as_ref(), &actor).await.map_err(share_error)?;
    Ok(links.into_iter().map(|l| share_row(l.link, l.uses)).collect())
}

/// Ends a share link at once (admins, or the producer who made it; audited).
#[server(endpoint = "revoke_share_link")]
pub async fn revoke_share_link(id: String) -> Result<crate::view::ShareLinkRow, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Producer)?;
    let link = gateway::team::share_links::revoke(ctx.store.as_ref(), &actor, &id).await.map_err(share_error)?;
    Ok(share_row(link, 0))
}
