//! Server functions of the Throttle panel (06): the rate guard's rules, queue and 429s, and
//! the projects' fair shares (admins set them).

use leptos::prelude::*;

use crate::view::ThrottleView;

/// How many of the next tasks to leave the panel lists.
#[cfg(feature = "ssr")]
const NEXT_SHOWN: usize = 8;

#[cfg(feature = "ssr")]
pub(crate) fn view_of(q: gateway::tasks::lifecycle::queue::QueueSnapshot, shares: Vec<gateway::tasks::fair_share::Share>) -> ThrottleView {
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
    let (ctx, _) = crate::api::context::signed_in(crate::api::context::Role::Viewer)?;
    let q = ctx.lifecycle.queue().await.map_err(crate::api::context::store_error)?;
    let shares = gateway::tasks::fair_share::shares(ctx.store.as_ref()).await.map_err(crate::api::context::store_error)?;
    Ok(view_of(q, shares))
}

/// Sets a project's fair share (admins): `weight` 1–100 sends per turn of the rotation, and
/// `max_queued` (empty: `QUEUE_MAX_PER_OWNER`) tasks waiting per owner. Audited.
#[server(endpoint = "set_fair_share")]
pub async fn set_fair_share(project: String, weight: String, max_queued: Option<String>) -> Result<String, ServerFnError> {
    use crate::api::context::{Role, refuse, signed_in};
    use gateway::tasks::fair_share;
    let (ctx, actor) = signed_in(Role::Admin)?;
    let number = |name: &str, v: &str| v.trim().parse::<u32>().map_err(|_| refuse(400, format!("{name} must be a whole number")));
    let weight = number("weight", &weight)?;
    let max_queued = max_queued.filter(|m| !m.trim().is_empty()).map(|m| number("the queue quota", &m)).transpose()?;
    fair_share::set(ctx.store.as_ref(), &actor, &project, weight, max_queued).await.map_err(setting_error)?;
    // Here at once; the other instances within a few seconds.
    ctx.lifecycle.queue_changed();
    Ok(project.trim().to_string())
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
