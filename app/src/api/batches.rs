//! Server functions of batches (shown in panel 06): submit one whole (previewed first), and
//! where each stands.

use leptos::prelude::*;

use crate::view::BatchSubmitted;

/// Batches the panel shows (the newest).
#[cfg(feature = "ssr")]
const BATCHES_SHOWN: usize = 8;

#[cfg(feature = "ssr")]
fn credits_and_usd(c: gateway::Credits) -> String {
    format!("{c} credits (${:.2})", c.usd())
}

/// The newest batches, each counted by state from the store's indexes.
#[cfg(feature = "ssr")]
pub(crate) async fn batch_views(store: &dyn gateway::Store, membership: &gateway::team::membership::Membership) -> Result<Vec<crate::view::BatchView>, gateway::StoreError> {
    use gateway::tasks::batch::{self, BatchState};
    use gateway::TaskState;
    let listed = batch::list(store).await?.batches.into_iter().filter(|b| membership.sees(&b.project)).take(BATCHES_SHOWN);
    let mut out = Vec::new();
    for b in listed {
        let p = batch::progress(store, b).await?;
        let b = &p.batch;
        out.push(crate::view::BatchView {
            name: b.name.clone(),
            project: b.project.clone(),
            model: b.model.clone(),
            owner: b.owner.clone(),
            state: serde_json::to_value(b.state).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
            why: b.why.clone(),
            line: p.line(),
            percent: (p.ended() * 100).checked_div(p.total).unwrap_or(0) as u32,
            failed: p.count(TaskState::Fail) + p.count(TaskState::Expired),
            queued: p.count(TaskState::Queued),
            estimate: if b.state == BatchState::Open { String::new() } else { credits_and_usd(b.estimate) },
            created: gateway::team::audit::utc(b.created_ms),
        });
    }
    Ok(out)
}

/// Previews (`run` false) or submits (`run` true) a batch named `name`: `rows` are one prompt
/// a line (`format` `prompts`) or a CSV with a header of the model's fields (`csv`), each
/// taken `variants` times (1–10), of `model` in `project`, with `priority`. Submitted whole or
/// not at all: a cost rule or the queue quota that would refuse any of it refuses all of it.
/// Producers and admins.
#[allow(clippy::too_many_arguments)]
#[server(endpoint = "submit_batch")]
pub async fn submit_batch(
    name: String,
    project: String,
    model: String,
    rows: String,
    #[server(default)] format: Option<String>,
    #[server(default)] variants: Option<String>,
    #[server(default)] priority: Option<String>,
    #[server(default)] run: bool,
) -> Result<BatchSubmitted, ServerFnError> {
    use crate::api::context::{Role, refuse, signed_in};
    use gateway::tasks::lifecycle::batch::BatchRequest;
    let (ctx, actor) = signed_in(Role::Producer)?;
    actor.membership.admit(project.trim()).map_err(|e| refuse(403, e))?;
    let format = format.unwrap_or_default().parse().map_err(|e: String| refuse(422, e))?;
    let variants = match variants.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => 1,
        Some(v) => v.parse::<u32>().map_err(|_| refuse(422, "variants must be a whole number, 1–10"))?,
    };
    let priority = match priority.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
        None => None,
        Some(p) => Some(p.parse().map_err(|e: String| refuse(422, e))?),
    };
    let request = BatchRequest { name: name.trim().to_string(), owner: actor.who.clone(), project: project.trim().to_string(), model: model.trim().to_string(), format, rows, variants, priority, ..Default::default() };
    let fail = |e: gateway::tasks::lifecycle::SubmitError| refuse(e.code(), e.public_message());
    if !run {
        let (tasks, estimate) = ctx.lifecycle.plan_batch(&request).map_err(fail)?;
        return Ok(BatchSubmitted { name: request.name, tasks: tasks.len(), estimate: credits_and_usd(estimate), admitted: false });
    }
    let b = ctx.lifecycle.submit_batch(request).await.map_err(fail)?;
    Ok(BatchSubmitted { name: b.name, tasks: b.tasks as usize, estimate: credits_and_usd(b.estimate), admitted: true })
}
