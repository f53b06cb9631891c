//! Server functions of the Throttle panel (06): the rate guard's rules, queue and 429s, and
//! the projects' fair shares (admins set them).

use leptos::prelude::*;

use crate::view::ThrottleView;

/// How many of the next tasks to leave the panel lists.
#[cfg(feature = "ssr")]
const NEXT_SHOWN: usize = 8;

#[cfg(feature = "ssr")]
pub(crate) fn view_of(q: gateway::tasks::lifecycle::queue::QueueSnapshot, shares: Vec<gateway::tasks::fair_share::Share>, bulk: Vec<gateway::tasks::bulk::BulkJob>, batches: Vec<crate::view::BatchView>) -> ThrottleView {
    use crate::view::{GuardRuleView, OwnerQueueView};
    let team = q.pauses.team.is_some().then(|| (None, q.pauses.why("").unwrap_or_default()));
    let projects = q.pauses.projects.keys().filter_map(|p| Some((Some(p.clone()), q.pauses.why(p)?)));
    let pauses = team.into_iter().chain(projects).collect();
    ThrottleView {
        paused: q.paused,
        pauses,
        rules: q.rules.into_iter().map(|r| GuardRuleView { rule: r.rule, used: r.used, limit: r.limit }).collect(),
        margin_ms: q.margin_ms,
        depth: q.waiting.len(),
        drain_ms: q.waiting.last().map_or(0, |w| w.eta_ms),
        next: q.waiting.iter().take(NEXT_SHOWN).map(|w| (w.id.clone(), w.owner.clone(), w.eta_ms)).collect(),
        by_owner: q.by_owner.into_iter().map(|l| OwnerQueueView { owner: l.owner, waiting: l.waiting, oldest_age_ms: l.oldest_age_ms, next_window: l.next_window }).collect(),
        backed_off: q.backed_off,
        in_doubt: q.in_doubt,
        cooldown_ms: q.cooldown_ms,
        rate_limited_total: q.rate_limited_total,
        shares: shares.into_iter().map(|s| (s.project.clone(), s.text())).collect(),
        bulk: bulk.into_iter().map(Into::into).collect(),
        batches,
    }
}

/// A refused change to how the queue runs, as its status: 400, 403, or the store's.
#[cfg(feature = "ssr")]
fn setting_error(e: gateway::tasks::QueueSettingError) -> ServerFnError {
    use crate::api::context::{refuse, store_error};
    use gateway::tasks::QueueSettingError;
    match e {
        QueueSettingError::Store(e) => store_error(e),
        QueueSettingError::Forbidden(m) => refuse(403, m),
        QueueSettingError::Invalid(m) => refuse(400, m),
    }
}

/// The rate guard now.
#[server(endpoint = "throttle_status")]
pub async fn throttle_status() -> Result<ThrottleView, ServerFnError> {
    let (ctx, actor) = crate::api::context::signed_in(crate::api::context::Role::Viewer)?;
    let mut q = ctx.lifecycle.queue().await.map_err(crate::api::context::store_error)?;
    let mut shares = gateway::tasks::fair_share::shares(ctx.store.as_ref()).await.map_err(crate::api::context::store_error)?;
    let mut bulk = gateway::tasks::bulk::jobs(ctx.store.as_ref()).await.map_err(crate::api::context::store_error)?;
    let batches = crate::api::batches::batch_views(ctx.store.as_ref(), &actor.membership).await.map_err(crate::api::context::store_error)?;
    if actor.membership.is_limited() {
        // Someone limited to some projects sees the shared rate guard, their own place in
        // the queue and their projects' settings, nothing of anyone else's work.
        q.waiting.retain(|w| w.owner == actor.who);
        q.by_owner.retain(|l| l.owner == actor.who);
        q.pauses.projects.retain(|p, _| actor.sees(p));
        shares.retain(|s| actor.sees(&s.project));
        bulk.retain(|j| j.filter.project.as_deref().is_some_and(|p| actor.sees(p)));
    }
    Ok(view_of(q, shares, bulk, batches))
}

/// Sets a project's fair share (admins): `weight` 1–100 sends per turn of the rotation,
/// `max_queued` (empty: `QUEUE_MAX_PER_OWNER`) tasks waiting per owner, and `priority`
/// (`high`, `normal`, `low`; empty: normal) its tasks' priority when they name none. Audited.
#[server(endpoint = "set_fair_share")]
pub async fn set_fair_share(project: String, weight: String, max_queued: Option<String>, #[server(default)] priority: Option<String>) -> Result<String, ServerFnError> {
    use crate::api::context::{Role, refuse, signed_in};
    use gateway::tasks::fair_share;
    let (ctx, actor) = signed_in(Role::Admin)?;
    let number = |name: &str, v: &str| v.trim().parse::<u32>().map_err(|_| refuse(400, format!("{name} must be a whole number")));
    let weight = number("weight", &weight)?;
    let max_queued = max_queued.filter(|m| !m.trim().is_empty()).map(|m| number("the queue quota", &m)).transpose()?;
    let priority = priority.unwrap_or_default().parse().map_err(|e: String| refuse(400, e))?;
    fair_share::set(ctx.store.as_ref(), &actor, &project, weight, max_queued, priority).await.map_err(setting_error)?;
    // Here at once; the other instances within a few seconds.
    ctx.lifecycle.queue_changed();
    Ok(project.trim().to_string())
}

/// Previews (`run` false) or starts (`run` true) a bulk action — `action` `cancel` or `retry`
/// — on the tasks the filter selects: `state`, `model`, `project`, `owner`, `class` (a failure
/// class), `batch` (a batch's name), `since` (`YYYY-MM-DD` or `24h` ago), `until` (`YYYY-MM-DD`). Producers and admins;
/// each task then goes through the same checks as one action. Audited when started.
#[allow(clippy::too_many_arguments)]
#[server(endpoint = "bulk_action")]
pub async fn bulk_action(
    action: String,
    #[server(default)] state: Option<String>,
    #[server(default)] model: Option<String>,
    #[server(default)] project: Option<String>,
    #[server(default)] owner: Option<String>,
    #[server(default)] class: Option<String>,
    #[server(default)] batch: Option<String>,
    #[server(default)] since: Option<String>,
    #[server(default)] until: Option<String>,
    #[server(default)] run: bool,
) -> Result<crate::view::BulkView, ServerFnError> {
    use crate::api::context::{Role, refuse, signed_in, store_error};
    use gateway::tasks::bulk::{self, BulkError, FilterWords};
    let (ctx, actor) = signed_in(Role::Producer)?;
    let fail = |e: BulkError| match e {
        BulkError::Store(e) => store_error(e),
        e => refuse(e.code(), e.to_string()),
    };
    let action = action.parse::<bulk::BulkAction>().map_err(|e| refuse(422, e))?;
    let words = FilterWords { state: state.as_deref(), model: model.as_deref(), project: project.as_deref(), owner: owner.as_deref(), class: class.as_deref(), batch: batch.as_deref(), since: since.as_deref(), until: until.as_deref() };
    let filter = bulk::BulkFilter::from_words(&words, gateway::store::now_ms()).map_err(fail)?;
    filter.within(&actor.membership).map_err(fail)?;
    let what = filter.describe();
    let (preview, job) = if run {
        let job = bulk::start(ctx.store.as_ref(), action, filter, &actor).await.map_err(fail)?;
        ctx.lifecycle.bulk_started();
        (job.preview.clone(), Some(job.into()))
    } else {
        (bulk::preview(ctx.store.as_ref(), action, &filter).await.map_err(fail)?, None)
    };
    Ok(crate::view::BulkView { action: action.as_str().into(), what, count: preview.count, estimate: preview.estimate.to_string(), more: preview.more, job })
}

/// Pauses or resumes intake: the team's (`project` empty; admins) or one project's (admins
/// and producers). While paused, nothing of its queued tasks is sent. Audited. Returns what
/// was done, in a sentence.
#[server(endpoint = "set_pause")]
pub async fn set_pause(project: Option<String>, paused: bool, reason: Option<String>) -> Result<String, ServerFnError> {
    use crate::api::context::{Role, signed_in};
    use gateway::tasks::pause;
    let project = project.filter(|p| !p.trim().is_empty());
    let (ctx, actor) = signed_in(if project.is_some() { Role::Producer } else { Role::Admin })?;
    let changed = pause::set(ctx.store.as_ref(), &actor, project.as_deref(), paused, reason.as_deref()).await.map_err(setting_error)?;
    ctx.lifecycle.queue_changed();
    let what = project.map_or("The team's intake".to_string(), |p| format!("Project {}'s intake", p.trim()));
    Ok(match (paused, changed) {
        (true, true) => format!("{what} is paused: nothing of it is sent until it is resumed."),
        (true, false) => format!("{what} was already paused."),
        (false, true) => format!("{what} is resumed."),
        (false, false) => format!("{what} was not paused."),
    })
}
