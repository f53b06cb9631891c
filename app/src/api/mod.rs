//! Server functions: thin. Each reads the [`ConsoleContext`] the server provides, calls the
//! gateway core, and maps the result to a view type. On the browser side these compile to
//! HTTP calls.
//!
//! Every server function first asks [`server_side::signed_in`] for the person and the role it
//! needs (viewer to read, producer to submit, retry and pin, admin for users, keys and rules);
//! the server's guard has already resolved the session. A refusal is a 401 or 403 with a
//! sentence, never a 500.
//!
//! Here: console status, tasks (list, submit, retry, review). [`money`]: the Market, pins and
//! cost rules. [`throttle`]: the rate guard. [`team`]: who am I, users, relay keys, the audit
//! log.

pub(crate) mod ledger;
pub(crate) mod library;
pub(crate) mod money;
pub(crate) mod team;
pub(crate) mod throttle;

pub use money::{budget_status, list_models, set_cost_rule, set_pin};
pub use team::{add_user, audit_log, create_relay_key, end_user_sessions, list_relay_keys, list_users, reset_user_password, revoke_relay_key, set_user_disabled, set_user_role, whoami};
pub use throttle::{set_fair_share, throttle_status};
pub use ledger::ledger_report;
pub use library::{delete_library_project, library_items, library_status};

use leptos::prelude::*;

use crate::view::{ConsoleStatus, Submitted, TaskList};

/// Most rows one call returns.
pub const MAX_ROWS: usize = 100;

#[cfg(feature = "ssr")]
pub(crate) mod server_side {
    use super::*;
    use crate::view::{GatewayView, KeyView, LedgerView, StoreView, TaskRow, Upstream};
    use gateway::kie::{KieClient, KieError};
    use gateway::tasks::lifecycle::SubmitError;
    use gateway::tasks::task::{TaskQuery, TaskState};
    pub use gateway::team::accounts::{Actor, Role};
    use gateway::{Credits, Lifecycle, Store};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    /// The console status read for this request, shared by every panel it renders (the
    /// server provides a new one per request).
    #[derive(Clone, Default)]
    pub struct StatusMemo(pub Arc<tokio::sync::OnceCell<ConsoleStatus>>);

    /// How long one probe answer is reused, so many open consoles do not hammer KIE.
    const PROBE_TTL: Duration = Duration::from_secs(5);

    /// What the server hands to every render and server function.
    #[derive(Clone)]
    pub struct ConsoleContext {
        pub store: Arc<dyn Store>,
        /// Submit, retry, and everything else that moves a task.
        pub lifecycle: Lifecycle,
        pub upstream: Upstream,
        pub key: KeyView,
        pub callback_base: Option<String>,
        pub callback_signed: bool,
        /// A client for the Gateway panel's probe (short timeout), when there is an upstream.
        pub probe_client: Option<KieClient>,
        pub probe_cache: Arc<Mutex<Option<(Instant, GatewayView)>>>,
        /// The Library (`None`: LIBRARY_URL=off).
        pub library: Option<gateway::library::Library>,
        /// `RUNWAY_ALERT_DAYS`.
        pub runway_alert_days: u64,
        /// `CREDITS_EXPIRE_ON` (UTC day): prepaid credits expire then.
        pub credits_expire_on: Option<String>,
    }

    impl ConsoleContext {
        /// The last probe if fresh, else a new one.
        pub async fn gateway(&self) -> Option<GatewayView> {
            let client = self.probe_client.as_ref()?;
            if let Ok(cache) = self.probe_cache.lock()
                && let Some((at, view)) = cache.as_ref()
                && at.elapsed() < PROBE_TTL
            {
                return Some(view.clone());
            }
            let probe = client.probe().await;
            let host = client.base().host_str().unwrap_or("the upstream").to_string();
            let (reachable, balance, error) = match probe.balance {
                Ok(b) => (true, Some(b.to_string()), None),
                Err(e) => {
                    tracing::warn!(error = %e, "gateway probe failed");
                    (matches!(e, KieError::Auth(_) | KieError::Maintenance(_) | KieError::Upstream { .. }), None, Some(probe_message(&e, &host)))
                }
            };
            let view = GatewayView { reachable, latency_us: probe.latency.as_micros() as u64, balance, error, checked_ms: gateway::store::now_ms() };
            if let Ok(mut cache) = self.probe_cache.lock() {
                *cache = Some((Instant::now(), view.clone()));
            }
            Some(view)
        }
    }

    /// An operator-facing sentence for a failed probe.
    fn probe_message(e: &KieError, host: &str) -> String {
        match e {
            KieError::Auth(_) => "The key was rejected (401): check KIE_API_KEY.".into(),
            KieError::Connect(_) => format!("Cannot reach {host}: the connection failed."),
            KieError::Timeout(d) => format!("{host} did not answer within {} s.", d.as_secs()),
            KieError::Maintenance(_) => "KIE is in maintenance (455).".into(),
            other => other.to_string(),
        }
    }

    /// A store failure, logged here; the person sees only that the store is unavailable.
    pub fn store_error(e: impl std::fmt::Display) -> ServerFnError {
        tracing::warn!(error = %e, "store call failed");
        ServerFnError::new("the store is unavailable; try again shortly")
    }

    pub fn context() -> Result<ConsoleContext, ServerFnError> {
        use_context::<ConsoleContext>().ok_or_else(|| ServerFnError::new("console context missing (server misconfigured)"))
    }

    /// An error with this HTTP status (instead of server functions' default 500).
    pub fn refuse(status: u16, msg: impl Into<String>) -> ServerFnError {
        if let Some(opts) = use_context::<leptos_axum::ResponseOptions>() {
            opts.set_status(http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST));
        }
        ServerFnError::new(msg.into())
    }

    /// The console and the signed-in person, if their role allows `need`: else 401 (no
    /// session) or 403 (role), each with a sentence.
    pub fn signed_in(need: Role) -> Result<(ConsoleContext, Actor), ServerFnError> {
        let ctx = context()?;
        let actor = use_context::<http::request::Parts>().and_then(|p| p.extensions.get::<Actor>().cloned());
        let Some(actor) = actor else { return Err(refuse(401, "Sign in first.")) };
        if !actor.role.allows(need) {
            return Err(refuse(403, format!("This needs the {need} role; you are signed in as {} ({}).", actor.who, actor.role)));
        }
        Ok((ctx, actor))
    }

    pub async fn status(ctx: &ConsoleContext) -> ConsoleStatus {
        let (store, ledger) = match ledger(ctx.store.as_ref()).await {
            Ok(l) => (StoreView { backend: ctx.store.backend().into(), reachable: true, error: None }, Some(l)),
            Err(e) => {
                tracing::warn!(error = %e, "console status: store unreadable");
                (StoreView { backend: ctx.store.backend().into(), reachable: false, error: Some(e.to_string()) }, None)
            }
        };
        let gateway = ctx.gateway().await;
        // The runway needs a balance KIE answered and a week's burn from the receipts.
        let balance = gateway.as_ref().and_then(|g| g.balance.as_deref()).and_then(|b| b.parse::<f64>().ok()).and_then(Credits::from_decimal);
        let runway_days = match balance {
            Some(b) => gateway::money::receipts::runway_days(ctx.store.as_ref(), b).await.unwrap_or_default(),
            None => None,
        };
        ConsoleStatus {
            upstream: ctx.upstream.clone(),
            key: ctx.key.clone(),
            gateway,
            runway_days,
            runway_alert_days: ctx.runway_alert_days,
            store,
            ledger,
            callback_base: ctx.callback_base.clone(),
            callback_signed: ctx.callback_signed,
        }
    }

    async fn ledger(store: &dyn Store) -> gateway::StoreResult<LedgerView> {
        let counts = store.task_counts().await?;
        let consumed = Credits(store.usage(&gateway::tasks::lifecycle::credits_consumed_scope()).await?);
        Ok(LedgerView {
            tasks_on_record: counts.total,
            in_flight: counts.in_flight(),
            succeeded: counts.get(TaskState::Success),
            to_review: counts.get(TaskState::Fail) + counts.get(TaskState::Expired),
            credits_consumed: consumed.to_string(),
        })
    }

    pub async fn list(ctx: &ConsoleContext, query: TaskQuery) -> Result<TaskList, ServerFnError> {
        let page = ctx.store.task_list(&query).await.map_err(store_error)?;
        let mut rows: Vec<TaskRow> = page.tasks.into_iter().map(TaskRow::from).collect();
        if rows.iter().any(|r| r.state == "queued") {
            let queue = ctx.lifecycle.queue().await.map_err(store_error)?;
            for w in queue.waiting {
                if let Some(r) = rows.iter_mut().find(|r| r.id == w.id) {
                    r.queue = Some(format!("#{} in the rate guard's queue · ≈ {} s", w.position, w.eta_ms.div_ceil(1000)));
                }
            }
        }
        Ok(TaskList { rows, next: page.next })
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
    pub async fn over_cap(ctx: &ConsoleContext) -> Result<Vec<TaskRow>, ServerFnError> {
        let mut rows = Vec::new();
        for alert in gateway::money::budget::alerts(ctx.store.as_ref()).await.map_err(store_error)? {
            let Some(task) = alert.task.as_ref().filter(|id| !rows.iter().any(|r: &TaskRow| &r.id == *id)) else { continue };
            if let Some(t) = ctx.store.task_get(task).await.map_err(store_error)? {
                let mut row = TaskRow::from(t);
                row.fail_class = Some("Cost over the per-job cap".into());
                row.fail_msg = Some(alert.message());
                rows.push(row);
            }
        }
        Ok(rows)
    }

    pub async fn stuck(ctx: &ConsoleContext) -> Result<Vec<TaskRow>, ServerFnError> {
        let q = TaskQuery { state: Some(TaskState::Queued), limit: super::MAX_ROWS, ..Default::default() };
        let page = ctx.store.task_list(&q).await.map_err(store_error)?;
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

#[cfg(feature = "ssr")]
pub use server_side::{ConsoleContext, StatusMemo};

/// Connection, key vault, store and ledger meters in one call.
#[server(endpoint = "console_status")]
pub async fn load_console_status() -> Result<ConsoleStatus, ServerFnError> {
    let (ctx, _) = server_side::signed_in(server_side::Role::Viewer)?;
    // One page render asks for it from several panels (masthead, strip, Gateway, Vault,
    // Delivery): read once per request.
    match use_context::<server_side::StatusMemo>() {
        Some(memo) => Ok(memo.0.get_or_init(|| server_side::status(&ctx)).await.clone()),
        None => Ok(server_side::status(&ctx).await),
    }
}

/// Filters of the Task Monitor (all optional; all must match).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskFilter {
    pub state: Option<String>,
    pub model: Option<String>,
    pub project: Option<String>,
    pub owner: Option<String>,
}

/// Newest tasks first, filtered; `after` continues a previous page.
#[server(endpoint = "list_tasks")]
pub async fn list_tasks(#[server(default)] filter: TaskFilter, after: Option<String>, limit: usize) -> Result<TaskList, ServerFnError> {
    let (ctx, _) = server_side::signed_in(server_side::Role::Viewer)?;
    let state = filter.state.as_deref().filter(|s| !s.is_empty()).map(server_side::parse_state).transpose()?;
    let text = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty() && s.len() <= 200);
    let query = gateway::tasks::task::TaskQuery {
        state,
        model: text(filter.model),
        project: text(filter.project),
        owner: text(filter.owner),
        after: after.filter(|a| a.len() <= 600),
        limit: limit.clamp(1, MAX_ROWS),
        ..Default::default()
    };
    server_side::list(&ctx, query).await
}

/// Submits a task from the composer. `choice` is the value of the model's priced-by field
/// (resolution, quality or duration); `mode` is std or pro for video; `image_url` feeds models
/// that need an image; `fields` is a JSON object of the model's other fields as entered
/// (checked against the catalog); `rerun_of` links a re-run with edits to its original.
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
) -> Result<Submitted, ServerFnError> {
    let (ctx, actor) = server_side::signed_in(server_side::Role::Producer)?;
    let mut input = serde_json::Map::new();
    if !prompt.trim().is_empty() {
        input.insert("prompt".into(), prompt.into());
    }
    let option = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
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
    let submission = gateway::tasks::lifecycle::Submission { owner: actor.who, project, model, input: input.into(), relay_callback: None, retry_of: None, rerun_of: option(rerun_of) };
    let t = ctx.lifecycle.submit(submission).await.map_err(server_side::submit_error)?;
    Ok(Submitted { id: t.id, estimated_credits: t.estimated_cost.to_string() })
}

/// Starts a draft of the prompt by a language model (`model`, of the Language category) for a
/// task of `for_model`: checks and estimates it, and returns a one-time token the browser
/// reads the draft from, streamed (`GET /draft/<token>`, within a minute). The call itself is
/// admitted, held to the cost rules and recorded like any chat call when it starts.
#[server(endpoint = "start_draft")]
pub async fn start_draft(model: String, project: String, prompt: String, for_model: String) -> Result<crate::view::DraftStart, ServerFnError> {
    let (ctx, actor) = server_side::signed_in(server_side::Role::Producer)?;
    if prompt.chars().count() > gateway::money::catalog::MAX_PROMPT_CHARS {
        return Err(server_side::refuse(422, format!("the prompt is over {} characters", gateway::money::catalog::MAX_PROMPT_CHARS)));
    }
    let idea = if prompt.trim().is_empty() { "something striking".to_string() } else { prompt.trim().to_string() };
    let system = format!(
        "You write generation prompts for {}. Rewrite the producer's idea as one vivid prompt: subject, action, camera, light, style. Under 80 words. Answer with the prompt only.",
        for_model.chars().take(100).collect::<String>()
    );
    let body = serde_json::json!({ "messages": [{ "role": "system", "content": system }, { "role": "user", "content": idea }], "stream": true, "max_tokens": 200 });
    let req = gateway::chat::ChatRequest { owner: actor.who, project: project.trim().to_string(), model, body };
    let (token, estimate) = ctx.lifecycle.start_draft(req).await.map_err(|e| server_side::refuse(e.code(), e.public_message()))?;
    Ok(crate::view::DraftStart { token, estimate: format!("estimate {} credits", estimate) })
}

/// An ended task's inputs, for the composer to open ("Re-run with edits").
#[server(endpoint = "rerun_draft")]
pub async fn rerun_draft(id: String) -> Result<crate::view::Draft, ServerFnError> {
    let (ctx, _) = server_side::signed_in(server_side::Role::Producer)?;
    let t = ctx.lifecycle.find(id.trim()).await.map_err(server_side::store_error)?.ok_or_else(|| server_side::refuse(404, format!("No task {}.", id.trim())))?;
    if !t.state.is_terminal() {
        return Err(server_side::refuse(409, format!("{} has not ended; re-run it once it has.", t.id)));
    }
    Ok(server_side::draft(ctx.lifecycle.catalog(), t))
}

/// Re-submits a failed or expired task as a new task linked to it, owned by the person.
#[server(endpoint = "retry_task")]
pub async fn retry_task(id: String) -> Result<Submitted, ServerFnError> {
    let (ctx, actor) = server_side::signed_in(server_side::Role::Producer)?;
    let t = ctx.lifecycle.retry(id.trim(), &actor).await.map_err(server_side::submit_error)?;
    Ok(Submitted { id: t.id, estimated_credits: t.estimated_cost.to_string() })
}

/// Cancels a task still queued here (before it reached KIE): its owner, or an admin.
#[server(endpoint = "cancel_task")]
pub async fn cancel_task(id: String) -> Result<String, ServerFnError> {
    let (ctx, actor) = server_side::signed_in(server_side::Role::Producer)?;
    match ctx.lifecycle.cancel(id.trim(), &actor).await {
        Ok(t) => Ok(t.id),
        Err(gateway::tasks::lifecycle::cancel::CancelError::Store(e)) => Err(server_side::store_error(e)),
        Err(e) => Err(server_side::refuse(e.code(), e.to_string())),
    }
}

/// The Error Review: failed and expired tasks, and queued ones that are stuck (backed off
/// after a 429/455/5xx, or in doubt), newest first.
#[server(endpoint = "review_tasks")]
pub async fn review_tasks() -> Result<TaskList, ServerFnError> {
    let (ctx, _) = server_side::signed_in(server_side::Role::Viewer)?;
    let mut rows = Vec::new();
    for state in [gateway::TaskState::Fail, gateway::TaskState::Expired] {
        let q = gateway::tasks::task::TaskQuery { state: Some(state), limit: MAX_ROWS, ..Default::default() };
        rows.extend(server_side::list(&ctx, q).await?.rows);
    }
    // Succeeded, but a result was gone before the Library had it: Result expired.
    let lost = gateway::tasks::task::TaskQuery { mark: Some(gateway::tasks::task::Mark::ResultLost), limit: MAX_ROWS, ..Default::default() };
    rows.extend(server_side::list(&ctx, lost).await?.rows);
    rows.extend(server_side::stuck(&ctx).await?);
    rows.extend(server_side::over_cap(&ctx).await?);
    rows.sort_by_key(|r| std::cmp::Reverse(r.created_ms));
    rows.truncate(MAX_ROWS);
    Ok(TaskList { rows, next: None })
}
