//! The Task Monitor, the composer and the Error Review: list, submit, draft, re-run, retry,
//! cancel and review tasks.

use leptos::prelude::*;

use crate::view::{Submitted, TaskList};
#[cfg(feature = "ssr")]
use crate::api::context::{Role, refuse, signed_in, store_error};

/// Most rows one call returns.
pub const MAX_ROWS: usize = 100;

#[cfg(feature = "ssr")]
mod server_side {
    use super::*;
    use crate::api::context::ConsoleContext;
    use crate::view::TaskRow;
    use gateway::tasks::lifecycle::SubmitError;
    use gateway::tasks::task::{TaskQuery, TaskState};
    use gateway::tasks::visible;
    use gateway::team::membership::Membership;

    /// A page of the tasks `membership` sees, as the Monitor shows them.
    pub async fn list(ctx: &ConsoleContext, membership: &Membership, query: TaskQuery) -> Result<TaskList, ServerFnError> {
        let page = visible::list(ctx.store.as_ref(), membership, &query).await.map_err(store_error)?;
        let newest_queued = page.tasks.iter().filter(|t| t.state == TaskState::Queued).map(|t| t.updated_ms).max();
        let deadlines: Vec<(String, u64)> = page.tasks.iter().filter(|t| t.state == TaskState::Queued).filter_map(|t| Some((t.id.clone(), t.send_by_ms?))).collect();
        let total = gateway::Credits(page.tasks.iter().map(|t| t.actual_cost.unwrap_or(t.estimated_cost).0).sum());
        // Every model on the page (a queued task reaches KIE while it is shown).
        let mut models: Vec<String> = page.tasks.iter().filter(|t| !t.state.is_terminal()).map(|t| t.model.clone()).collect();
        models.sort();
        models.dedup();
        let typical = gateway::tasks::typical::read(ctx.store.as_ref(), &models).await.map_err(store_error)?;
        let mut rows: Vec<TaskRow> = page.tasks.into_iter().map(TaskRow::from).collect();
        if let Some(as_of) = newest_queued {
            let queue = ctx.lifecycle.queue_as_of(as_of).await.map_err(store_error)?;
            for w in &queue.waiting {
                if let Some(r) = rows.iter_mut().find(|r| r.id == w.id) {
                    r.queue = Some(format!("#{} in the rate guard's queue · ≈ {} s", w.position, w.eta_ms.div_ceil(1000)));
                }
            }
            // Held by a pause: no place until it is resumed, and the row says who holds it.
            for r in rows.iter_mut().filter(|r| r.state == "queued") {
                if let Some(why) = queue.pauses.why(&r.project) {
                    r.queue = Some(why);
                }
            }
            for (id, at) in deadlines {
                if let Some(r) = rows.iter_mut().find(|r| r.id == id) {
                    let by = format!("send by {} or it ends", gateway::team::audit::utc(at));
                    r.queue = Some(match r.queue.take() {
                        Some(q) => format!("{q} · {by}"),
                        None => by,
                    });
                }
            }
        }
        let counts = visible::count(ctx.store.as_ref(), membership, &query).await.map_err(store_error)?;
        Ok(TaskList {
            rows,
            next: page.next,
            typical,
            total: format!("{total} credits (${:.2})", total.usd()),
            matches: counts.as_ref().map(|c| c.matching(&query)),
            states: counts.map(|c| c.0.iter().filter(|(_, n)| *n > 0).map(|(s, n)| format!("{} {n}", crate::view::state_said(s.as_str()))).collect::<Vec<_>>().join(" · ")).filter(|t| !t.is_empty()).map(|t| format!("By state: {t}")),
        })
    }

    /// The message a person sees for a refused submission, with KIE's matching status (422 bad
    /// input, 402 over budget, …) instead of a bare 500.
    pub fn submit_error(e: SubmitError) -> ServerFnError {
        refuse(e.code(), e.public_message())
    }

    /// Most composer fields a submission may carry, and their JSON's size.
    const MAX_FIELDS: usize = 32;
    const MAX_FIELDS_BYTES: usize = 16 * 1024;

    /// The composer's `fields` (a JSON object of strings) into `input`, each checked and
    /// typed by the model's catalog entry; a field the model does not take is refused.
    pub fn model_fields(m: &gateway::money::catalog::Model, raw: &str, input: &mut serde_json::Map<String, serde_json::Value>) -> Result<(), ServerFnError> {
        let bad = |msg: String| refuse(422, msg);
        if raw.len() > MAX_FIELDS_BYTES {
            return Err(bad(format!("fields are {} bytes; the limit is {MAX_FIELDS_BYTES}", raw.len())));
        }
        let given: serde_json::Map<String, serde_json::Value> = serde_json::from_str(raw).map_err(|_| bad("fields must be a JSON object of strings".into()))?;
        if given.len() > MAX_FIELDS {
            return Err(bad(format!("at most {MAX_FIELDS} fields")));
        }
        for (name, value) in given {
            let field = m.fields.iter().find(|f| f.name == name).ok_or_else(|| bad(format!("{} takes no field {}", m.id, name.chars().take(64).collect::<String>())))?;
            let text = value.as_str().ok_or_else(|| bad(format!("{name} must be given as text")))?;
            if let Some(v) = field.value(text).map_err(bad)? {
                input.insert(name, v);
            }
        }
        Ok(())
    }

    /// An ended task's inputs as the composer enters them.
    pub fn draft(catalog: &gateway::money::catalog::Catalog, t: gateway::TaskRecord) -> crate::view::Draft {
        let entry = catalog.get(&t.model);
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(a) => a.first().and_then(|u| u.as_str()).unwrap_or_default().to_string(),
            other => other.to_string(),
        };
        let get = |k: &str| t.input.get(k).filter(|v| !v.is_null()).map(text);
        let fields = entry
            .map(|m| m.fields.iter().filter_map(|f| t.input.get(&f.name).filter(|v| !v.is_null()).map(|v| (f.name.clone(), text(v)))).collect())
            .unwrap_or_default();
        crate::view::Draft {
            of: t.id.clone(),
            model: t.model.clone(),
            project: t.project.clone(),
            prompt: get("prompt").unwrap_or_default(),
            choice: entry.and_then(|m| m.price.priced_by()).and_then(get),
            mode: get("mode"),
            image_url: get("image_urls"),
            fields,
        }
    }

    /// Queued tasks that tried and wait (backed off, or in doubt), labelled for the review.
    /// Tasks KIE charged more than a per-job cap allows (their alerts name them).
    pub async fn over_cap(ctx: &ConsoleContext, membership: &Membership) -> Result<Vec<TaskRow>, ServerFnError> {
        let mut rows = Vec::new();
        for alert in gateway::money::budget::alerts(ctx.store.as_ref()).await.map_err(store_error)? {
            let Some(task) = alert.task.as_ref().filter(|id| !rows.iter().any(|r: &TaskRow| &r.id == *id)) else { continue };
            if let Some(t) = ctx.store.task_get(task).await.map_err(store_error)?.filter(|t| membership.sees(&t.project)) {
                let mut row = TaskRow::from(t);
                row.fail_class = Some("Cost over the per-job cap".into());
                row.fail_msg = Some(alert.message());
                rows.push(row);
            }
        }
        Ok(rows)
    }

    /// The newest failures still to review.
    pub async fn to_review(ctx: &ConsoleContext, membership: &Membership) -> Result<Vec<TaskRow>, ServerFnError> {
        let q = TaskQuery { mark: Some(gateway::tasks::task::Mark::ToReview), limit: MAX_ROWS, ..Default::default() };
        Ok(list(ctx, membership, q).await?.rows)
    }

    pub async fn stuck(ctx: &ConsoleContext, membership: &Membership) -> Result<Vec<TaskRow>, ServerFnError> {
        let q = TaskQuery { state: Some(TaskState::Queued), limit: MAX_ROWS, ..Default::default() };
        let page = visible::list(ctx.store.as_ref(), membership, &q).await.map_err(store_error)?;
        Ok(page
            .tasks
            .into_iter()
            .filter(|t| t.dispatch.attempts > 0 && t.note.is_some())
            .map(|t| {
                use gateway::tasks::task::HeldBack;
                // A record from before the reason was kept: in doubt is still told by its state.
                let held = t.dispatch.held_back.unwrap_or(if t.in_doubt() { HeldBack::InDoubt } else { HeldBack::UpstreamError });
                let label = held.label();
                let mut row = TaskRow::from(t);
                row.fail_class = Some(label.into());
                row
            })
            .collect())
    }

    pub fn parse_state(s: &str) -> Result<TaskState, ServerFnError> {
        TaskState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| ServerFnError::new(format!("unknown task state {s:?}")))
    }
}

/// Filters of the Task Monitor (all optional; all must match). The page's URL carries them
/// by these names (`/?q=kite&state=fail#monitor`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskFilter {
    /// Search words: each must start a word of the task's id, KIE's id, model, project,
    /// person or prompt (case-insensitive).
    #[serde(default)]
    pub q: Option<String>,
    pub state: Option<String>,
    pub model: Option<String>,
    pub project: Option<String>,
    pub owner: Option<String>,
    /// Only the asking person's own tasks (any value but blank).
    #[serde(default)]
    pub mine: Option<String>,
    /// Created on or after this UTC day (`YYYY-MM-DD`).
    #[serde(default)]
    pub from: Option<String>,
    /// Created on or before this UTC day (`YYYY-MM-DD`).
    #[serde(default)]
    pub to: Option<String>,
    /// Costing at least this many credits (KIE's charge once known, else the estimate).
    #[serde(default)]
    pub min: Option<String>,
    /// Costing at most this many credits.
    #[serde(default)]
    pub max: Option<String>,
}

impl TaskFilter {
    /// The filter's fields by their URL names.
    pub fn fields(&mut self) -> [(&'static str, &mut Option<String>); 10] {
        [
            ("q", &mut self.q),
            ("state", &mut self.state),
            ("model", &mut self.model),
            ("project", &mut self.project),
            ("owner", &mut self.owner),
            ("mine", &mut self.mine),
            ("from", &mut self.from),
            ("to", &mut self.to),
            ("min", &mut self.min),
            ("max", &mut self.max),
        ]
    }

    /// The first filter only the server can apply (a search, "mine", a time or cost range):
    /// while one is on, new tasks do not join the listing live.
    pub fn only_server_reads(&self) -> Option<&'static str> {
        [("q", &self.q), ("mine", &self.mine), ("from", &self.from), ("to", &self.to), ("min", &self.min), ("max", &self.max)].into_iter().find(|(_, v)| v.is_some()).map(|(n, _)| n)
    }
}

/// Newest tasks first, filtered; `after` continues a previous page.
#[server(endpoint = "list_tasks")]
pub async fn list_tasks(#[server(default)] filter: TaskFilter, after: Option<String>, limit: usize) -> Result<TaskList, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Viewer)?;
    let state = filter.state.as_deref().filter(|s| !s.is_empty()).map(server_side::parse_state).transpose()?;
    let text = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty() && s.len() <= 200);
    let day = |what: &str, v: Option<String>| text(v).map(|d| gateway::money::receipts::parse_day(&d).ok_or_else(|| refuse(422, format!("{what} must be a UTC day, YYYY-MM-DD (got {d:?})")))).transpose();
    let credits = |what: &str, v: Option<String>| {
        text(v).map(|c| c.parse::<f64>().ok().filter(|n| *n >= 0.0).and_then(gateway::Credits::from_decimal).ok_or_else(|| refuse(422, format!("{what} must be a number of credits, 0 or more (got {c:?})")))).transpose()
    };
    let (from, to) = (day("from", filter.from)?, day("to", filter.to)?);
    let (cost_min, cost_max) = (credits("min", filter.min)?, credits("max", filter.max)?);
    let query = gateway::tasks::task::TaskQuery {
        state,
        model: text(filter.model),
        project: text(filter.project),
        owner: if text(filter.mine).is_some() { Some(actor.who) } else { text(filter.owner) },
        text: text(filter.q),
        // `to` is a whole day: up to the next one's start.
        created_from_ms: from,
        created_before_ms: to.map(|t| t + 86_400_000),
        cost_min,
        cost_max,
        after: after.filter(|a| a.len() <= 600),
        limit: limit.clamp(1, MAX_ROWS),
        ..Default::default()
    };
    server_side::list(&ctx, &actor.membership, query).await
}

/// Submits a task from the composer. `choice` is the value of the model's priced-by field
/// (resolution, quality or duration); `mode` is std or pro for video; `image_url` feeds models
/// that need an image; `fields` is a JSON object of the model's other fields as entered
/// (checked against the catalog); `rerun_of` links a re-run with edits to its original;
/// `send_within` is its deadline (`15m`, or a UTC time): not sent by then, it ends expired;
/// `priority` (`high`, `normal`, `low`) its place among the person's own queued tasks.
#[server(endpoint = "submit_task")]
#[allow(clippy::too_many_arguments)]
pub async fn submit_task(
    model: String,
    project: String,
    prompt: String,
    choice: Option<String>,
    mode: Option<String>,
    image_url: Option<String>,
    #[server(default)] fields: Option<String>,
    #[server(default)] rerun_of: Option<String>,
    #[server(default)] send_within: Option<String>,
    #[server(default)] priority: Option<String>,
) -> Result<Submitted, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Producer)?;
    actor.membership.admit(project.trim()).map_err(|e| refuse(403, e))?;
    let mut input = serde_json::Map::new();
    if !prompt.trim().is_empty() {
        input.insert("prompt".into(), prompt.into());
    }
    let option = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let priority = option(priority).map(|p| p.parse()).transpose().map_err(|e: String| refuse(422, e))?;
    let send_by_ms = option(send_within).map(|s| gateway::tasks::lifecycle::deadline::parse_send_by(&s, gateway::store::now_ms())).transpose().map_err(|e| refuse(422, e))?;
    let entry = ctx.lifecycle.catalog().get(&model);
    let priced_by = entry.and_then(|m| m.price.priced_by());
    if let (Some(field), Some(v)) = (priced_by, option(choice)) {
        input.insert(field.into(), v.into());
    }
    if let Some(m) = option(mode) {
        input.insert("mode".into(), m.into());
    }
    if let Some(u) = option(image_url) {
        input.insert("image_urls".into(), serde_json::json!([u]));
    }
    if let (Some(m), Some(raw)) = (entry, option(fields)) {
        server_side::model_fields(m, &raw, &mut input)?;
    }
    let rerun_of = option(rerun_of);
    if let Some(of) = &rerun_of
        && gateway::tasks::visible::find(&ctx.lifecycle, &actor.membership, of).await.map_err(store_error)?.is_none()
    {
        return Err(refuse(404, format!("No task {}.", of.chars().take(64).collect::<String>())));
    }
    let submission = gateway::tasks::lifecycle::Submission { owner: actor.who, project, model, input: input.into(), relay_callback: None, retry_of: None, rerun_of, send_by_ms, priority, sees: Some(actor.membership), ..Default::default() };
    let t = ctx.lifecycle.submit(submission).await.map_err(server_side::submit_error)?;
    Ok(Submitted { id: t.id, estimated_credits: t.estimated_cost.to_string() })
}

/// Starts a draft of the prompt by a language model (`model`, of the Language category) for a
/// task of `for_model`: checks and estimates it, and returns a one-time token the browser
/// reads the draft from, streamed (`GET /draft/<token>`, within a minute). The call itself is
/// admitted, held to the cost rules and recorded like any chat call when it starts.
#[server(endpoint = "start_draft")]
pub async fn start_draft(model: String, project: String, prompt: String, for_model: String) -> Result<crate::view::DraftStart, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Producer)?;
    actor.membership.admit(project.trim()).map_err(|e| refuse(403, e))?;
    if prompt.chars().count() > gateway::money::catalog::MAX_PROMPT_CHARS {
        return Err(refuse(422, format!("the prompt is over {} characters", gateway::money::catalog::MAX_PROMPT_CHARS)));
    }
    let idea = if prompt.trim().is_empty() { "something striking".to_string() } else { prompt.trim().to_string() };
    let system = format!(
        "You write generation prompts for {}. Rewrite the producer's idea as one vivid prompt: subject, action, camera, light, style. Under 80 words. Answer with the prompt only.",
        for_model.chars().take(100).collect::<String>()
    );
    // Asked in the model's own API (chat completions, or Claude's Messages).
    let api = ctx.lifecycle.catalog().get(&model).map(|m| m.api).unwrap_or_default();
    let body = api.request(&model, &[("system", &system), ("user", &idea)], Some(200), true);
    let req = gateway::chat::ChatRequest { owner: actor.who, project: project.trim().to_string(), model, api, body };
    let (token, estimate) = ctx.lifecycle.start_draft(req).await.map_err(|e| refuse(e.code(), e.public_message()))?;
    Ok(crate::view::DraftStart { token, estimate: format!("estimate {} credits", estimate) })
}

/// An ended task's inputs, for the composer to open ("Re-run with edits").
#[server(endpoint = "rerun_draft")]
pub async fn rerun_draft(id: String) -> Result<crate::view::Draft, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Producer)?;
    let t = gateway::tasks::visible::find(&ctx.lifecycle, &actor.membership, id.trim()).await.map_err(store_error)?.ok_or_else(|| refuse(404, format!("No task {}.", id.trim())))?;
    if !t.state.is_terminal() {
        return Err(refuse(409, format!("{} has not ended; re-run it once it has.", t.id)));
    }
    Ok(server_side::draft(ctx.lifecycle.catalog(), t))
}

/// One task's whole story (by the Control Room's id or KIE's): its steps, input and costs.
#[server(endpoint = "task_story")]
pub async fn task_story(id: String) -> Result<crate::view::TaskStory, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Viewer)?;
    let id = id.trim();
    if id.is_empty() || id.len() > 200 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b)) {
        return Err(refuse(400, "Name a task by its id (cr_…) or KIE's task id."));
    }
    let t = gateway::tasks::visible::find(&ctx.lifecycle, &actor.membership, id).await.map_err(store_error)?.ok_or_else(|| refuse(404, format!("No task {id}.")))?;
    // The follow-ups on its results, for a producer, while KIE still has it.
    let open = actor.role.allows(Role::Producer) && t.state == gateway::TaskState::Success && t.kie_task_id.is_some() && gateway::tasks::lifecycle::follow_up::still_at_kie(&t, gateway::store::now_ms());
    let follow_ups = if open {
        let offer = |m: &gateway::money::catalog::Model| {
            let rule = m.follows.as_ref()?;
            // A track is named to KIE by KIE's id of it, which must be on record.
            let named = |n: &usize| rule.track.is_none() || t.kie_result_ids.get(*n).is_some_and(|id| !id.is_empty());
            let results: Vec<usize> = if rule.acts_on_one() { (0..t.result_urls.len()).filter(named).collect() } else { Vec::new() };
            if rule.acts_on_one() && results.is_empty() {
                return None;
            }
            Some(crate::view::FollowOffer { model: m.id.clone(), action: rule.action.clone(), results, needs_prompt: m.required.iter().any(|r| r == "prompt") })
        };
        ctx.lifecycle.catalog().follow_ups_of(&t.model).filter_map(offer).collect()
    } else {
        Vec::new()
    };
    // A Suno song's tracks: their timestamped lyrics where read, else a button while KIE has them.
    let (mut lyrics, mut lyrics_offered) = (Vec::new(), Vec::new());
    if t.family == gateway::kie::Family::Suno && t.state == gateway::TaskState::Success {
        for n in (0..t.result_urls.len()).filter(|n| t.kie_result_ids.get(*n).is_some_and(|id| !id.is_empty())) {
            match gateway::tasks::lyrics::kept(ctx.store.as_ref(), &t.id, n).await.map_err(store_error)? {
                Some(data) => lyrics.push((n, gateway::tasks::lyrics::lines(&data).into_iter().map(|(at, text)| (timestamp(at), text)).collect())),
                None if ctx.lifecycle.configured() && gateway::tasks::lifecycle::follow_up::still_at_kie(&t, gateway::store::now_ms()) => lyrics_offered.push(n),
                None => {}
            }
        }
    }
    Ok(crate::view::TaskStory { follow_ups, lyrics, lyrics_offered, ..t.into() })
}

/// Seconds as `m:ss.s`.
#[cfg(feature = "ssr")]
fn timestamp(secs: f64) -> String {
    let tenths = (secs.max(0.0) * 10.0).round() as u64;
    format!("{}:{:02}.{}", tenths / 600, tenths / 10 % 60, tenths % 10)
}

/// Reads the timestamped lyrics of track `n` (from 0) of the Suno song `id` from KIE and keeps
/// them with the song (see `gateway::tasks::lyrics`); its story then shows them. Returns how
/// many lines they have.
#[server(endpoint = "track_lyrics")]
pub async fn track_lyrics(id: String, n: usize) -> Result<usize, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Viewer)?;
    let t = gateway::tasks::visible::find(&ctx.lifecycle, &actor.membership, id.trim()).await.map_err(store_error)?.ok_or_else(|| refuse(404, format!("No task {}.", id.trim())))?;
    let data = gateway::tasks::lyrics::timestamped(&ctx.lifecycle, &t, n).await.map_err(|e| refuse(e.code(), e.to_string()))?;
    Ok(gateway::tasks::lyrics::lines(&data).len())
}

/// Starts follow-up `model` (an upscale…) on the task `id`, on its result `n` (from 0) when
/// the follow-up acts on one, with `prompt` when it takes one (how an extension goes on): a
/// new task in the same project, linked to it.
#[server(endpoint = "follow_up")]
pub async fn follow_up(id: String, model: String, n: Option<usize>, #[server(default)] prompt: Option<String>) -> Result<Submitted, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Producer)?;
    let parent = gateway::tasks::visible::find(&ctx.lifecycle, &actor.membership, id.trim()).await.map_err(store_error)?.ok_or_else(|| refuse(404, format!("No task {}.", id.trim())))?;
    let follow = ctx.lifecycle.catalog().get(&model).filter(|m| m.follows.is_some()).ok_or_else(|| refuse(422, format!("{} is not a follow-up in the catalog.", model.chars().take(100).collect::<String>())))?;
    actor.membership.admit(&parent.project).map_err(|e| refuse(403, e))?;
    let input = follow.follow_up_input(&parent.id, n, prompt.as_deref()).ok_or_else(|| refuse(422, "Say which result to act on."))?;
    let submission = gateway::tasks::lifecycle::Submission { owner: actor.who, project: parent.project, model, input: input.into(), sees: Some(actor.membership), ..Default::default() };
    let t = ctx.lifecycle.submit(submission).await.map_err(server_side::submit_error)?;
    Ok(Submitted { id: t.id, estimated_credits: t.estimated_cost.to_string() })
}

/// Re-submits a failed or expired task as a new task linked to it, owned by the person.
#[server(endpoint = "retry_task")]
pub async fn retry_task(id: String) -> Result<Submitted, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Producer)?;
    let t = ctx.lifecycle.retry(id.trim(), &actor).await.map_err(server_side::submit_error)?;
    Ok(Submitted { id: t.id, estimated_credits: t.estimated_cost.to_string() })
}

/// Panel 11: the failures to review grouped by class and model, with how many there are in
/// all, and the tasks that wait.
#[server(endpoint = "review_board")]
pub async fn review_board() -> Result<crate::view::ReviewBoard, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Viewer)?;
    let rows = server_side::to_review(&ctx, &actor.membership).await?;
    // A person limited to some projects is told of theirs only (the rows, at most a page).
    let to_review = if actor.membership.is_limited() { rows.len() as u64 } else { ctx.store.task_counts().await.map_err(store_error)?.to_review };
    let mut waiting = server_side::stuck(&ctx, &actor.membership).await?;
    waiting.extend(server_side::over_cap(&ctx, &actor.membership).await?);
    Ok(crate::view::ReviewBoard::group(to_review, rows, waiting, gateway::store::now_ms()))
}

/// Marks a failure resolved: it leaves the Error Review (audited). Producers and admins.
#[server(endpoint = "resolve_failure")]
pub async fn resolve_failure(id: String) -> Result<String, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Producer)?;
    match ctx.lifecycle.resolve(id.trim(), &actor).await {
        Ok(t) => Ok(t.id),
        Err(gateway::tasks::lifecycle::review::ReviewError::Store(e)) => Err(store_error(e)),
        Err(e) => Err(refuse(e.code(), e.to_string())),
    }
}

/// Retries one Error Review group — the failures to review of fail class `class` (its label,
/// as the review shows it) and `model` — each once: a failure already retried is left to its
/// retry. Each goes through the same checks as one retry; the first refusal stops the rest.
#[server(endpoint = "retry_failures")]
pub async fn retry_failures(class: String, model: String) -> Result<crate::view::RetriedGroup, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Producer)?;
    let ids: Vec<String> = server_side::to_review(&ctx, &actor.membership)
        .await?
        .into_iter()
        .filter(|r| r.retryable() && r.model == model.trim() && r.fail_class.as_deref() == Some(class.trim()))
        .map(|r| r.id)
        .collect();
    if ids.is_empty() {
        return Err(refuse(409, format!("Nothing in {} · {} is left to retry: each was retried already, or resolved.", class.trim(), model.trim())));
    }
    let done = ctx.lifecycle.retry_many(&ids, &actor).await;
    Ok(crate::view::RetriedGroup { retried: done.retried.into_iter().map(|(_, t)| t.id).collect(), of: ids.len(), stopped: done.stopped.map(|e| e.public_message()) })
}

/// Cancels a task still queued here (before it reached KIE): its owner, or an admin.
#[server(endpoint = "cancel_task")]
pub async fn cancel_task(id: String) -> Result<String, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Producer)?;
    match ctx.lifecycle.cancel(id.trim(), &actor).await {
        Ok(t) => Ok(t.id),
        Err(gateway::tasks::lifecycle::cancel::CancelError::Store(e)) => Err(store_error(e)),
        Err(e) => Err(refuse(e.code(), e.to_string())),
    }
}

/// The Error Review: failures still to review (failed, expired, or a result gone before the
/// Library had it; not resolved), and queued tasks that are stuck (backed off after a
/// 429/455/5xx, or in doubt), newest first.
#[server(endpoint = "review_tasks")]
pub async fn review_tasks() -> Result<TaskList, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Viewer)?;
    let mut rows = server_side::to_review(&ctx, &actor.membership).await?;
    rows.extend(server_side::stuck(&ctx, &actor.membership).await?);
    rows.extend(server_side::over_cap(&ctx, &actor.membership).await?);
    rows.sort_by_key(|r| std::cmp::Reverse(r.created_ms));
    rows.truncate(MAX_ROWS);
    Ok(TaskList { rows, next: None, ..Default::default() })
}
