//! The MCP server's tools and resources. Each is thin: who asks (the relay key [`super::admit`]
//! put on the request), parse, one call into the gateway core, and its answer as JSON text an
//! agent can read. A refusal — a cost rule, the queue, a bad input — is a tool error (not a
//! protocol error) whose text says what refused it and what is left, so the agent can adapt;
//! nothing is sent to KIE then. A key sees its own project only: another project's task reads
//! like a missing one.

use base64::Engine;
use futures::StreamExt;
use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::*;
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Caller;
use crate::AppState;
use gateway::Credits;
use gateway::library::asset::AssetState;
use gateway::money::budget::{self, Standing};
use gateway::tasks::events::Feed;
use gateway::tasks::lifecycle::{SubmitError, Submission, deadline};
use gateway::tasks::task::{Mark, TaskQuery};
use gateway::team::accounts::{Actor, Role};
use gateway::team::relay_keys::RelayKey;
use gateway::{TaskRecord, TaskState};

/// Longest `wait`.
const MAX_WAIT: Duration = Duration::from_secs(600);
/// A `wait` with no timeout given.
const DEFAULT_WAIT: Duration = Duration::from_secs(120);
/// After a task succeeded, how long `wait` waits for its Library copy (so its answer carries
/// links the team keeps, not KIE's, which lapse).
const LIBRARY_GRACE: Duration = Duration::from_secs(30);
/// A waiting tool reads the record again at least this often (events can be missed).
const REREAD: Duration = Duration::from_secs(5);
/// Images at most this large are also returned as MCP image content by `get_asset`.
const INLINE_IMAGE: u64 = 512 << 10;
/// Library files at most this large are returned whole by `resources/read`.
const INLINE_RESOURCE: u64 = 4 << 20;
/// Most rows `library_search` answers with.
const MAX_SEARCH: usize = 50;
/// Most tasks one session watches for `resources/subscribe`.
const MAX_SUBSCRIPTIONS: usize = 32;
/// Resource URIs.
const CATALOG: &str = "control-room://catalog";
const RECENT: &str = "control-room://tasks/recent";
const TASK: &str = "control-room://task/";
const LIBRARY: &str = "control-room://library/";

/// One MCP session's server: the console's state, the tools, the tasks it watches.
#[derive(Clone)]
pub struct ControlRoomMcp {
    state: AppState,
    tool_router: ToolRouter<ControlRoomMcp>,
    watching: Arc<Mutex<HashMap<String, tokio::task::AbortHandle>>>,
}

impl Drop for ControlRoomMcp {
    fn drop(&mut self) {
        // The last clone (the session) ends: its watchers end with it.
        if Arc::strong_count(&self.watching) == 1 {
            for (_, w) in self.watching.lock().unwrap_or_else(|e| e.into_inner()).drain() {
                w.abort();
            }
        }
    }
}

#[derive(Deserialize, JsonSchema)]
pub struct ListModelsArgs {
    /// Only this category: video, image, audio or language. All when absent.
    pub category: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
pub struct EstimateArgs {
    /// A model id from list_models.
    pub model: String,
    /// The model's input, as generate takes it (for a language model: {"messages": [...], "max_tokens": n}).
    pub input: Value,
}

#[derive(Deserialize, JsonSchema)]
pub struct GenerateArgs {
    /// A model id from list_models (not a language model: use chat for those).
    pub model: String,
    /// The model's input object: its fields as list_models describes them (prompt, aspect ratio, duration …). A URL field may name a result already in the Library as control-room://library/<task id>/<n> (n counts from 0): the console sends KIE a URL it can fetch. A follow-up model (midjourney/upscale, midjourney/vary, veo3/extend… : list_models says which) acts on an earlier task: its taskId is that task's id, and its index field says which result, as KIE counts it; suno/extend names one track instead, as audioId <task id>-<n> (n from 0).
    pub input: Value,
    /// Its place among this key's queued tasks: high, normal or low.
    pub priority: Option<String>,
    /// Not sent to KIE by then, it ends expired and costs nothing: a UTC time (2026-12-04T18:00:00Z) or a wait (15m, 2h).
    pub send_by: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
pub struct TaskArgs {
    /// The task id generate answered with (cr_…).
    pub task_id: String,
}

#[derive(Deserialize, JsonSchema)]
pub struct WaitArgs {
    /// The task id generate answered with (cr_…).
    pub task_id: String,
    /// How long to wait at most, in seconds (default 120, at most 600). Still running then: its status is answered and you may wait again.
    pub timeout_seconds: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
pub struct SearchArgs {
    /// Words the prompt, model or task id starts with.
    pub text: Option<String>,
    /// Only this model.
    pub model: Option<String>,
    /// Only tasks made on or after this day (YYYY-MM-DD, UTC).
    pub since: Option<String>,
    /// Only tasks made before this day (YYYY-MM-DD, UTC).
    pub until: Option<String>,
    /// How many to answer with (default 20, at most 50).
    pub limit: Option<usize>,
}

#[derive(Deserialize, JsonSchema)]
pub struct AssetArgs {
    /// The task whose result it is.
    pub task_id: String,
    /// Which of its results (0 for the first).
    pub n: Option<usize>,
}

#[derive(Deserialize, JsonSchema)]
pub struct ChatMessage {
    /// system, user or assistant.
    pub role: String,
    pub content: String,
}

#[derive(Deserialize, JsonSchema)]
pub struct ChatArgs {
    /// A language model id from list_models (category language).
    pub model: String,
    pub messages: Vec<ChatMessage>,
    /// The answer's length limit in tokens; the console may lower it to fit the cost rules.
    pub max_tokens: Option<u32>,
}

/// A tool's answer: JSON, pretty enough to read.
fn answer(v: Value) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(serde_json::to_string_pretty(&v).unwrap_or_default())])
}

/// A refusal the agent can act on.
fn refused(msg: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(msg.into())])
}

/// Who asks: the relay key [`super::admit`] checked for this request.
fn caller(ctx: &RequestContext<RoleServer>) -> Result<RelayKey, ErrorData> {
    ctx.extensions
        .get::<axum::http::request::Parts>()
        .and_then(|p| p.extensions.get::<Caller>())
        .map(|c| c.0.clone())
        .ok_or_else(|| ErrorData::invalid_request("this request carries no relay key", None))
}

/// Who asks, as the audit log names them: the key's owner, from its address, via MCP.
fn actor(key: &RelayKey, ctx: &RequestContext<RoleServer>) -> Actor {
    let from = ctx.extensions.get::<axum::http::request::Parts>().and_then(|p| p.extensions.get::<crate::auth::ClientAddress>()).map_or("unknown", |a| &a.0);
    Actor { who: key.owner(), name: key.name.clone(), role: Role::Producer, from: super::via(from), membership: gateway::team::membership::Membership::Only(vec![key.project.clone()]) }
}

/// A store failure, logged here and told without its detail.
fn store_down(e: impl std::fmt::Display) -> ErrorData {
    tracing::error!(error = %e, "mcp: store failed");
    ErrorData::internal_error("The Control Room's store is unavailable; try again shortly.", None)
}

fn credits(c: Credits) -> Value {
    json!({"credits": c.as_f64(), "usd": c.dollars()})
}

fn cap_json(c: &Standing) -> Value {
    json!({"rule": c.target.label(), "kind": c.kind.name(), "cap": credits(c.cap), "used": c.used.map(credits), "left": credits(c.left()), "text": c.describe()})
}

impl ControlRoomMcp {
    pub fn new(state: AppState) -> ControlRoomMcp {
        ControlRoomMcp { state, tool_router: Self::tool_router(), watching: Arc::default() }
    }

    /// The caps that govern `key`, as lines for a refusal's text.
    async fn left_for(&self, key: &RelayKey) -> String {
        let store = self.state.store.as_ref();
        let Ok(rules) = budget::rules(store).await else { return String::new() };
        match budget::standing(store, &rules, &key.owner(), &key.project).await {
            Ok(caps) if !caps.is_empty() => format!("\nWhat this key may still spend:\n- {}", caps.iter().map(Standing::describe).collect::<Vec<_>>().join("\n- ")),
            _ => String::new(),
        }
    }

    /// Task `id` if it is of `key`'s project.
    async fn own_task(&self, key: &RelayKey, id: &str) -> Result<Option<TaskRecord>, ErrorData> {
        if id.len() > 128 {
            return Ok(None);
        }
        let t = self.state.lifecycle.find(id.trim()).await.map_err(store_down)?;
        Ok(t.filter(|t| t.project == key.project && !self.state.lifecycle.catalog().get(&t.model).is_some_and(|m| m.is_chat())))
    }

    /// A Library link an agent can open: absolute (from `PUBLIC_URL`, else the address it
    /// reached this console at).
    fn absolute(&self, link: String, ctx: &RequestContext<RoleServer>) -> String {
        if !link.starts_with('/') {
            return link;
        }
        let host = ctx.extensions.get::<axum::http::request::Parts>().and_then(|p| p.headers.get(axum::http::header::HOST)).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
        format!("http://{host}{link}")
    }

    /// A task as an agent reads it: its state, cost, failure and results (Library links when
    /// the Library holds them, else KIE's while they live).
    fn view(&self, t: &TaskRecord, ctx: &RequestContext<RoleServer>) -> Value {
        let now_s = gateway::store::now_ms() / 1000;
        let signer = self.state.lifecycle.options().library_links.as_ref();
        let library: Vec<Value> = match (signer, &t.archive) {
            (Some(signer), Some(a)) => a
                .assets
                .iter()
                .enumerate()
                .map(|(n, x)| match x.state {
                    AssetState::Archived => json!({"n": n, "state": "in the Library", "link": self.absolute(signer.link(&t.id, n, now_s), ctx), "content_type": x.content_type, "bytes": x.bytes}),
                    other => json!({"n": n, "state": other.as_str(), "kie_url": Some(&x.source).filter(|s| gateway::library::is_url(s)), "why": x.last_error}),
                })
                .collect(),
            _ => Vec::new(),
        };
        let mut v = json!({
            "task_id": t.id,
            "model": t.model,
            "state": t.state.as_str(),
            "ended": t.state.is_terminal(),
            "estimate": credits(t.estimated_cost),
            "created_ms": t.created_ms,
        });
        if let Value::Object(fields) = &mut v {
            if let Some(c) = t.actual_cost {
                fields.insert("charged".into(), credits(c));
            }
            if let Some(note) = &t.note {
                fields.insert("note".into(), note.clone().into());
            }
            if matches!(t.state, TaskState::Fail | TaskState::Expired) {
                fields.insert("failure".into(), json!({"code": t.fail_code, "message": t.fail_msg}));
            }
            if t.state == TaskState::Success {
                // KIE's URLs; a result with none (a desk file, Suno's MIDI) is in `library` once kept.
                fields.insert("results".into(), json!(t.result_urls.iter().filter(|u| gateway::library::is_url(u)).collect::<Vec<_>>()));
                fields.insert("library".into(), Value::Array(library));
            }
        }
        v
    }

    /// A queued task's place and wait, added to its answer (a wait not known is left out).
    async fn place(&self, t: &TaskRecord, v: &mut Value) {
        if t.state == TaskState::Queued
            && let Ok(Some(w)) = self.state.lifecycle.place(t).await
        {
            v["queue_position"] = w.position.into();
            v["eta_seconds"] = w.eta_ms.div_ceil(1000).into();
        }
    }

    /// Whether `wait` is done with `t`: it ended, and a success's Library copies are made (or
    /// cannot be), or the grace for them is over.
    fn settled(&self, t: &TaskRecord, ended_at: Option<Instant>) -> bool {
        if !t.state.is_terminal() {
            return false;
        }
        let copying = t.state == TaskState::Success && self.state.library.is_some() && t.archive.as_ref().is_some_and(|a| a.pending());
        !copying || ended_at.is_some_and(|at| at.elapsed() >= LIBRARY_GRACE)
    }
}

#[tool_router]
impl ControlRoomMcp {
    #[tool(description = "The models this Control Room accepts: id, category (video, image, audio, language), what each is for, its price per task or per unit in credits and USD (1 credit = $0.005), the input fields it takes and which are required. Use an id with estimate, generate or chat.")]
    async fn list_models(&self, Parameters(args): Parameters<ListModelsArgs>) -> Result<CallToolResult, ErrorData> {
        let models: Vec<Value> = self
            .state
            .lifecycle
            .catalog()
            .models()
            .iter()
            .filter(|m| args.category.as_deref().is_none_or(|c| m.category.eq_ignore_ascii_case(c.trim())))
            .map(|m| serde_json::to_value(app::api::model_option(m, false)).unwrap_or_default())
            .collect();
        Ok(answer(json!({"models": models})))
    }

    #[tool(description = "What a generation (or a chat call) would cost, in credits and USD, before anything is spent; and whether a cost rule that governs this key would refuse it now (which one, what is used and what is left). Nothing is sent or held.")]
    async fn estimate(&self, Parameters(args): Parameters<EstimateArgs>, ctx: RequestContext<RoleServer>) -> Result<CallToolResult, ErrorData> {
        let key = caller(&ctx)?;
        let lc = &self.state.lifecycle;
        if lc.catalog().get(&args.model).is_some_and(|m| m.is_chat()) {
            return Ok(match lc.chat_estimate(&key.owner(), &key.project, &args.model, &args.input).await {
                Ok(plan) => answer(json!({"model": args.model, "cost": credits(plan.estimate), "worst_case": true, "would_be_refused": false, "note": "a chat call holds its worst case (the prompt and the longest answer it is sent with) and is charged what KIE's usage says"})),
                Err(e) => refused(format!("{}{}", e.public_message(), self.left_for(&key).await)),
            });
        }
        let s = Submission { owner: key.owner(), project: key.project.clone(), model: args.model.clone(), input: args.input, ..Default::default() };
        match lc.quote(&s).await {
            Ok(q) => Ok(answer(json!({
                "model": args.model,
                "cost": credits(q.credits),
                "price_known": q.price_known,
                "would_be_refused": q.refused_by.is_some(),
                "refused_by": q.refused_by,
                "caps": q.standing.iter().map(cap_json).collect::<Vec<_>>(),
            }))),
            Err(SubmitError::Store(e)) => Err(store_down(e)),
            Err(e) => Ok(refused(e.public_message())),
        }
    }

    #[tool(description = "Starts a generation (image, video, audio) and answers at once with its task id; the Control Room sends it to KIE when the team's rate limit allows and keeps the result in its Library. Then call wait with the task id. Refused (nothing sent, nothing charged) when a cost rule, the queue or the input does not allow it; the refusal says why and what is left.")]
    async fn generate(&self, Parameters(args): Parameters<GenerateArgs>, ctx: RequestContext<RoleServer>) -> Result<CallToolResult, ErrorData> {
        let key = caller(&ctx)?;
        let priority = match args.priority.as_deref().map(str::parse) {
            None => None,
            Some(Ok(p)) => Some(p),
            Some(Err(e)) => return Ok(refused(format!("priority: {e}"))),
        };
        let send_by_ms = match args.send_by.as_deref().map(|v| deadline::parse_send_by(v, gateway::store::now_ms())) {
            None => None,
            Some(Ok(at)) => Some(at),
            Some(Err(e)) => return Ok(refused(format!("send_by: {e}"))),
        };
        let s = Submission { owner: key.owner(), project: key.project.clone(), model: args.model, input: args.input, priority, send_by_ms, ..Default::default() };
        match self.state.lifecycle.submit(s).await {
            Ok(t) => {
                tracing::info!(task = %t.id, key = %key.id, "mcp: task submitted");
                let mut v = json!({"task_id": t.id, "state": t.state.as_str(), "estimate": credits(t.estimated_cost), "next": "call wait with this task_id"});
                self.place(&t, &mut v).await;
                Ok(answer(v))
            }
            Err(e @ SubmitError::OverBudget(_)) => Ok(refused(format!("{}{}", e.public_message(), self.left_for(&key).await))),
            Err(e) => {
                let wait = e.retry_after().map(|w| format!(" Try again in {} s.", w.as_secs().max(1))).unwrap_or_default();
                Ok(refused(format!("{}{wait}", e.public_message())))
            }
        }
    }

    #[tool(description = "Waits until a task ends (or timeout_seconds pass), sending progress notifications as its state changes; answers with its status. A finished task's answer carries its results as Library links the team keeps (KIE deletes its own after 14 days).")]
    async fn wait(&self, Parameters(args): Parameters<WaitArgs>, ctx: RequestContext<RoleServer>) -> Result<CallToolResult, ErrorData> {
        let key = caller(&ctx)?;
        let timeout = args.timeout_seconds.map_or(DEFAULT_WAIT, Duration::from_secs).min(MAX_WAIT);
        let until = tokio::time::Instant::now() + timeout;
        // Listening before the first read: no change falls between the two.
        let mut feed = self.state.hub.listen(None).await.map_err(store_down)?;
        let Some(mut t) = self.own_task(&key, &args.task_id).await? else { return Ok(refused(format!("No task {} in project {}.", args.task_id, key.project))) };
        let progress = ctx.meta.get_progress_token();
        let (mut told, mut ended_at) = (None, None);
        loop {
            if ended_at.is_none() && t.state.is_terminal() {
                ended_at = Some(Instant::now());
            }
            let copying = t.archive.as_ref().is_some_and(|a| a.pending());
            if told != Some((t.state, copying)) {
                told = Some((t.state, copying));
                if let Some(token) = &progress {
                    let step = step_of(t.state);
                    let msg = match (t.state, copying) {
                        (TaskState::Success, true) => format!("{}: success; copying its results to the Library", t.id),
                        (s, _) => format!("{}: {}", t.id, t.note.clone().filter(|_| !s.is_terminal()).unwrap_or_else(|| s.as_str().to_string())),
                    };
                    let _ = ctx.peer.notify_progress(ProgressNotificationParam::new(token.clone(), step).with_total(STEPS).with_message(msg)).await;
                }
            }
            if self.settled(&t, ended_at) {
                break;
            }
            let grace = ended_at.map(|at| tokio::time::Instant::from_std(at + LIBRARY_GRACE));
            let changed = tokio::select! {
                item = feed.next() => match item {
                    Some(Feed::Event(e)) if e.task.id == t.id => { t = e.task.clone(); false }
                    Some(Feed::Event(_)) => continue,
                    Some(Feed::Reset) | None => true,
                },
                () = tokio::time::sleep_until(until) => break,
                () = tokio::time::sleep_until(grace.unwrap_or(until)), if grace.is_some() => true,
                () = tokio::time::sleep(REREAD) => true,
                () = ctx.ct.cancelled() => return Err(ErrorData::internal_error("cancelled", None)),
            };
            if changed {
                t = self.own_task(&key, &t.id).await?.unwrap_or(t);
            }
        }
        let mut v = self.view(&t, &ctx);
        if !t.state.is_terminal() {
            v["still_running"] = true.into();
            v["next"] = "call wait again with this task_id".into();
        }
        Ok(answer(v))
    }

    #[tool(description = "A task's status now: its state, estimate and charge, failure, results and Library links.")]
    async fn status(&self, Parameters(args): Parameters<TaskArgs>, ctx: RequestContext<RoleServer>) -> Result<CallToolResult, ErrorData> {
        let key = caller(&ctx)?;
        Ok(match self.own_task(&key, &args.task_id).await? {
            Some(t) => {
                let mut v = self.view(&t, &ctx);
                self.place(&t, &mut v).await;
                answer(v)
            }
            None => refused(format!("No task {} in project {}.", args.task_id, key.project)),
        })
    }

    #[tool(description = "Searches this key's project's Library (results the team keeps), newest first: by words of the prompt, the model, and the day made. Answers each task with its prompt and its files' links.")]
    async fn library_search(&self, Parameters(args): Parameters<SearchArgs>, ctx: RequestContext<RoleServer>) -> Result<CallToolResult, ErrorData> {
        let key = caller(&ctx)?;
        let day = |what: &str, v: &Option<String>| match v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => gateway::money::receipts::parse_day(v).map(Some).ok_or_else(|| format!("{what} must be a day as YYYY-MM-DD, got {v:?}")),
        };
        let (since, until) = match (day("since", &args.since), day("until", &args.until)) {
            (Ok(s), Ok(u)) => (s, u),
            (Err(e), _) | (_, Err(e)) => return Ok(refused(e)),
        };
        let q = TaskQuery {
            mark: Some(Mark::InLibrary),
            project: Some(key.project.clone()),
            model: args.model.filter(|m| !m.trim().is_empty()),
            text: args.text.filter(|t| !t.trim().is_empty()),
            created_from_ms: since,
            created_before_ms: until,
            limit: args.limit.unwrap_or(20).clamp(1, MAX_SEARCH),
            ..Default::default()
        };
        let page = self.state.store.task_list(&q).await.map_err(store_down)?;
        let rows: Vec<Value> = page
            .tasks
            .iter()
            .map(|t| {
                let mut v = self.view(t, &ctx);
                v["prompt"] = t.input.get("prompt").cloned().unwrap_or(Value::Null);
                v
            })
            .collect();
        Ok(answer(json!({"project": key.project, "tasks": rows, "more": page.next.is_some()})))
    }

    #[tool(description = "One result file from the Library: a signed link anyone can open until it expires, its type and size; a small image is also returned as image content.")]
    async fn get_asset(&self, Parameters(args): Parameters<AssetArgs>, ctx: RequestContext<RoleServer>) -> Result<CallToolResult, ErrorData> {
        let key = caller(&ctx)?;
        let n = args.n.unwrap_or(0);
        let (Some(library), Some(signer)) = (&self.state.library, self.state.lifecycle.options().library_links.as_ref()) else {
            return Ok(refused("This Control Room keeps no Library (LIBRARY_URL=off): use the task's results from status while KIE keeps them."));
        };
        let found = match library.find(&args.task_id, n).await {
            Ok(f) if f.task.project == key.project => f,
            Ok(_) | Err(gateway::library::LibraryError::NotFound) => return Ok(refused(format!("Task {} has no file {n} in the Library of project {} (yet: a result is copied within moments of its task's end).", args.task_id, key.project))),
            Err(e) => return Err(store_down(e)),
        };
        let link = self.absolute(signer.link(&found.task.id, n, gateway::store::now_ms() / 1000), &ctx);
        let content_type = found.asset.content_type.clone().unwrap_or_else(|| "application/octet-stream".into());
        let bytes = found.asset.bytes.unwrap_or(0);
        let mut content = vec![ContentBlock::text(serde_json::to_string_pretty(&json!({"task_id": found.task.id, "n": n, "link": link, "content_type": content_type, "bytes": bytes, "sha256": found.asset.sha256, "link_valid_seconds": signer.ttl().as_secs()})).unwrap_or_default())];
        if content_type.starts_with("image/") && bytes <= INLINE_IMAGE {
            let data = read_all(library, &found, INLINE_IMAGE).await.map_err(store_down)?;
            content.push(ContentBlock::image(base64::engine::general_purpose::STANDARD.encode(data), content_type));
        }
        Ok(CallToolResult::success(content))
    }

    #[tool(description = "What this key may still spend: every cost rule that governs it (per job, per rolling 24 h, in total), what is used and what is left, in credits and USD.")]
    async fn budget(&self, ctx: RequestContext<RoleServer>) -> Result<CallToolResult, ErrorData> {
        let key = caller(&ctx)?;
        let store = self.state.store.as_ref();
        let rules = budget::rules(store).await.map_err(store_down)?;
        let caps = budget::standing(store, &rules, &key.owner(), &key.project).await.map_err(store_down)?;
        let note = if caps.is_empty() { "No cost rule governs this key: only KIE's balance limits it." } else { "A generation is refused when its estimate does not fit every cap here." };
        Ok(answer(json!({"key": key.name, "project": key.project, "caps": caps.iter().map(cap_json).collect::<Vec<_>>(), "note": note})))
    }

    #[tool(description = "Asks a language model (category language in list_models) and answers with its reply and the tokens it used; held and charged under the same cost rules and rate limits as every other call.")]
    async fn chat(&self, Parameters(args): Parameters<ChatArgs>, ctx: RequestContext<RoleServer>) -> Result<CallToolResult, ErrorData> {
        let key = caller(&ctx)?;
        // Asked in the model's own API (chat completions, or Claude's Messages).
        let api = self.state.lifecycle.catalog().get(&args.model).map(|m| m.api).unwrap_or_default();
        let turns: Vec<(&str, &str)> = args.messages.iter().map(|m| (m.role.as_str(), m.content.as_str())).collect();
        let body = api.request(&args.model, &turns, args.max_tokens.map(u64::from), false);
        let req = gateway::chat::ChatRequest { owner: key.owner(), project: key.project.clone(), model: args.model, api, body };
        Ok(match crate::chat::answer(&self.state, req).await {
            Ok(a) => {
                let text = api.answer_text(&a);
                CallToolResult::success(vec![ContentBlock::text(text), ContentBlock::text(json!({"usage": a.get("usage")}).to_string())])
            }
            Err((402, msg)) => refused(format!("{msg}{}", self.left_for(&key).await)),
            Err((_, msg)) => refused(msg),
        })
    }

    #[tool(description = "Cancels a task of this key's that is still waiting in the Control Room's queue (nothing is charged). A task already sent to KIE cannot be cancelled: KIE has no cancel.")]
    async fn cancel(&self, Parameters(args): Parameters<TaskArgs>, ctx: RequestContext<RoleServer>) -> Result<CallToolResult, ErrorData> {
        let key = caller(&ctx)?;
        if self.own_task(&key, &args.task_id).await?.is_none() {
            return Ok(refused(format!("No task {} in project {}.", args.task_id, key.project)));
        }
        let by = actor(&key, &ctx);
        Ok(match self.state.lifecycle.cancel(args.task_id.trim(), &by).await {
            Ok(t) => answer(self.view(&t, &ctx)),
            Err(gateway::tasks::lifecycle::cancel::CancelError::Store(e)) => return Err(store_down(e)),
            Err(e) => refused(e.to_string()),
        })
    }
}

/// The steps `wait` reports progress in.
const STEPS: f64 = 4.0;

fn step_of(s: TaskState) -> f64 {
    match s {
        TaskState::Queued => 0.0,
        TaskState::Submitted | TaskState::Waiting | TaskState::Queuing => 1.0,
        TaskState::Generating => 2.0,
        TaskState::Success | TaskState::Fail | TaskState::Expired => 4.0,
    }
}

/// A Library file's bytes, at most `max`.
async fn read_all(library: &gateway::library::Library, found: &gateway::library::Found, max: u64) -> Result<Vec<u8>, String> {
    let mut stream = library.read(found, None).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        if (out.len() + chunk.len()) as u64 > max {
            return Err(format!("the file is over {max} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for ControlRoomMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_resources().enable_resources_subscribe().build())
            .with_server_info(Implementation::new("kie-control-room", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "The KIE Control Room: image, video, audio and language models through one team's KIE account, inside the team's budgets and rate limit. \
                 Typical use: list_models, estimate, generate (answers a task id at once), wait (until it ends, with progress), then get_asset or library_search for the results the team keeps. \
                 budget says what this key may still spend. A refusal says what refused it and what is left; nothing is sent to KIE or charged then.",
            )
    }

    async fn list_resources(&self, _: Option<PaginatedRequestParams>, ctx: RequestContext<RoleServer>) -> Result<ListResourcesResult, ErrorData> {
        let key = caller(&ctx)?;
        let mut resources = vec![
            Resource::new(CATALOG, "catalog").with_description("The models, their prices and inputs").with_mime_type("application/json"),
            Resource::new(RECENT, "recent tasks").with_description(format!("The newest tasks of project {}", key.project)).with_mime_type("application/json"),
        ];
        let q = TaskQuery { mark: Some(Mark::InLibrary), project: Some(key.project.clone()), limit: 20, ..Default::default() };
        let page = self.state.store.task_list(&q).await.map_err(store_down)?;
        for t in &page.tasks {
            for (n, x) in t.archive.iter().flat_map(|a| a.assets.iter().enumerate()).filter(|(_, x)| x.state == AssetState::Archived) {
                let mut r = Resource::new(format!("{LIBRARY}{}/{n}", t.id), format!("{} result {n}", t.id)).with_description(format!("{} — {}", t.model, t.input.get("prompt").and_then(Value::as_str).unwrap_or_default().chars().take(80).collect::<String>()));
                if let Some(ct) = &x.content_type {
                    r = r.with_mime_type(ct.clone());
                }
                if let Some(b) = x.bytes {
                    r = r.with_size(b);
                }
                resources.push(r);
            }
        }
        Ok(ListResourcesResult { resources, ..Default::default() })
    }

    async fn list_resource_templates(&self, _: Option<PaginatedRequestParams>, _: RequestContext<RoleServer>) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult {
            resource_templates: vec![
                ResourceTemplate::new(format!("{TASK}{{task_id}}"), "task").with_description("A task's status; subscribe to be told when it ends").with_mime_type("application/json"),
                ResourceTemplate::new(format!("{LIBRARY}{{task_id}}/{{n}}"), "library file").with_description("A result file the Library keeps"),
            ],
            ..Default::default()
        })
    }

    async fn read_resource(&self, request: ReadResourceRequestParams, ctx: RequestContext<RoleServer>) -> Result<ReadResourceResponse, ErrorData> {
        let key = caller(&ctx)?;
        let uri = request.uri.clone();
        let json_text = |v: Value| ResourceContents::text(serde_json::to_string_pretty(&v).unwrap_or_default(), uri.clone()).with_mime_type("application/json");
        let contents = if uri == CATALOG {
            let models: Vec<Value> = self.state.lifecycle.catalog().models().iter().map(|m| serde_json::to_value(app::api::model_option(m, false)).unwrap_or_default()).collect();
            json_text(json!({"models": models}))
        } else if uri == RECENT {
            let q = TaskQuery { project: Some(key.project.clone()), limit: 50, ..Default::default() };
            let page = self.state.store.task_list(&q).await.map_err(store_down)?;
            let rows: Vec<Value> = page.tasks.iter().filter(|t| !self.state.lifecycle.catalog().get(&t.model).is_some_and(|m| m.is_chat())).map(|t| self.view(t, &ctx)).collect();
            json_text(json!({"project": key.project, "tasks": rows}))
        } else if let Some(id) = uri.strip_prefix(TASK) {
            match self.own_task(&key, id).await? {
                Some(t) => json_text(self.view(&t, &ctx)),
                None => return Err(ErrorData::resource_not_found(format!("No task {id} in project {}.", key.project), None)),
            }
        } else if let Some((id, n)) = uri.strip_prefix(LIBRARY).and_then(|rest| rest.split_once('/')) {
            let missing = || ErrorData::resource_not_found(format!("No Library file {uri} in project {}.", key.project), None);
            let (Some(library), Ok(n)) = (&self.state.library, n.parse::<usize>()) else { return Err(missing()) };
            let found = match library.find(id, n).await {
                Ok(f) if f.task.project == key.project => f,
                Ok(_) | Err(gateway::library::LibraryError::NotFound) => return Err(missing()),
                Err(e) => return Err(store_down(e)),
            };
            let mime = found.asset.content_type.clone().unwrap_or_else(|| "application/octet-stream".into());
            if found.asset.bytes.unwrap_or(u64::MAX) > INLINE_RESOURCE {
                return Err(ErrorData::invalid_request(format!("{uri} is over {} MiB: use get_asset for a link to it", INLINE_RESOURCE >> 20), None));
            }
            let data = read_all(library, &found, INLINE_RESOURCE).await.map_err(store_down)?;
            ResourceContents::blob(base64::engine::general_purpose::STANDARD.encode(data), uri.clone()).with_mime_type(mime)
        } else {
            return Err(ErrorData::resource_not_found(format!("No resource {uri}: see resources/list and the templates."), None));
        };
        Ok(ReadResourceResult::new(vec![contents]).into())
    }

    async fn subscribe(&self, request: SubscribeRequestParams, ctx: RequestContext<RoleServer>) -> Result<(), ErrorData> {
        let key = caller(&ctx)?;
        let uri = request.uri;
        let Some(id) = uri.strip_prefix(TASK) else { return Err(ErrorData::invalid_params(format!("Only tasks can be subscribed to ({TASK}<task_id>), not {uri}."), None)) };
        if self.own_task(&key, id).await?.is_none() {
            return Err(ErrorData::resource_not_found(format!("No task {id} in project {}.", key.project), None));
        }
        let mut watching = self.watching.lock().unwrap_or_else(|e| e.into_inner());
        watching.retain(|_, w| !w.is_finished());
        if watching.contains_key(&uri) {
            return Ok(());
        }
        if watching.len() >= MAX_SUBSCRIPTIONS {
            return Err(ErrorData::invalid_request(format!("This session already watches {MAX_SUBSCRIPTIONS} tasks; unsubscribe from one first."), None));
        }
        let (hub, lifecycle, peer, id, told) = (self.state.hub.clone(), self.state.lifecycle.clone(), ctx.peer.clone(), id.to_string(), uri.clone());
        let watcher = tokio::spawn(async move {
            let Ok(mut feed) = hub.listen(None).await else { return };
            loop {
                match lifecycle.find(&id).await {
                    Ok(Some(t)) if t.state.is_terminal() => break,
                    Ok(None) => return,
                    _ => {}
                }
                // Until an event of this task, a reset, or a while: then read it again.
                let _ = tokio::time::timeout(REREAD * 6, async {
                    while let Some(item) = feed.next().await {
                        if !matches!(&item, Feed::Event(e) if e.task.id != id) {
                            break;
                        }
                    }
                })
                .await;
            }
            let _ = peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(told)).await;
        });
        watching.insert(uri, watcher.abort_handle());
        Ok(())
    }

    async fn unsubscribe(&self, request: UnsubscribeRequestParams, _: RequestContext<RoleServer>) -> Result<(), ErrorData> {
        if let Some(w) = self.watching.lock().unwrap_or_else(|e| e.into_inner()).remove(&request.uri) {
            w.abort();
        }
        Ok(())
    }
}
