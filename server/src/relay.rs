//! The KIE-compatible relay API under `/kie`: an existing KIE client works by changing its base
//! URL to `https://<console>/kie` and its key to a relay key. Answers are KIE's envelope, with
//! an HTTP status that mirrors the body code. Thin: authenticate, parse, call the lifecycle.
//!
//! - `POST /kie/api/v1/jobs/createTask` — recorded and queued; answers at once with the
//!   Control Room's task id (the dispatcher sends it when the rate guard allows).
//! - `GET /kie/api/v1/jobs/recordInfo?taskId=` — from the store, never an upstream call;
//!   KIE's own task id is accepted too. A key sees only its project's tasks. A task still
//!   waiting for the rate guard also carries `queuePosition` and `etaSeconds` (every family).
//! - The model-specific families, at KIE's own paths and in their own shapes, with the same
//!   keys, cost rules, rate guard and callbacks: Veo (`/kie/api/v1/veo/generate`,
//!   `/kie/api/v1/veo/record-info`), Suno (`/kie/api/v1/generate`, `…/generate/record-info`),
//!   Runway (`/kie/api/v1/runway/generate`, `…/runway/record-detail`), 4o Image
//!   (`/kie/api/v1/gpt4o-image/…`), Flux Kontext (`/kie/api/v1/flux/kontext/…`) and Midjourney
//!   (`/kie/api/v1/mj/generate`, `…/mj/record-info`; the kind of task is its `taskType`) and
//!   Runway Aleph (`/kie/api/v1/aleph/generate`, `…/aleph/record-info`) and Luma's modify
//!   (`/kie/api/v1/modify/generate`, `…/modify/record-info`), and Suno's jobs on a track
//!   (WAV, vocal separation, music video). A request the family would refuse is refused here
//!   with 422 and never sent. A family's models with paths of their own have KIE's paths too:
//!   its follow-ups on a result (Midjourney's `…/mj/generateUpscale`, `…/generateVary`,
//!   `…/generateVideoExtend`, the extends), whose `taskId` (or Suno's `audioId`) is the relay's
//!   id of what they act on while KIE is sent its own
//!   ([`gateway::tasks::lifecycle::follow_up`]), and its other creates (Suno's
//!   `…/generate/upload-cover`, `…/add-vocals`, `…/add-instrumental`). Any create may carry
//!   `X-Control-Room-Send-By` (a UTC time or a wait such as `15m`): not sent by then, the task
//!   ends `expired` ("deadline passed in the queue") and nothing is charged; and
//!   `X-Control-Room-Priority: high|normal|low`, its place among the key's own queued tasks;
//!   and `X-Control-Room-Batch: <name>`, the named batch it joins (its progress, bulk retry
//!   and cancel, and zip of results go by that name; see `gateway::tasks::batch`).
//! - `POST /kie/<model>/v1/chat/completions` — a language model, relayed byte for byte and
//!   streamed as it arrives ([`crate::chat`]).
//! - `POST /kie/claude/v1/messages` — Claude's Messages API (Anthropic's shape), the same way;
//!   the key may come as `x-api-key`, as Anthropic's clients send it.
//! - `POST /kie/api/v1/responses`, `POST /kie/codex/v1/responses` and
//!   `POST /kie/grok/v1/responses` — OpenAI's Responses API
//!   as KIE serves it, each model at the path KIE serves it at (the catalog's `path`), the same
//!   way; counted at what KIE says it charged (`credits_consumed`).
//! - `GET /kie/api/v1/chat/credit` — the account's balance, from KIE.
//! - KIE's upload calls (`/kie/api/file-stream-upload`, `…/file-base64-upload`,
//!   `…/file-url-upload`), relayed to KIE's upload host ([`crate::relay_uploads`]).
//! - In any create's URL field, a Library asset may be named (`control-room://library/<task>/<n>`
//!   or this console's Library link): KIE is sent a URL it can fetch instead
//!   ([`gateway::library::inputs`]).
//! - `GET /kie/openapi.json` — this API described (OpenAPI 3.1), for anyone; `GET /kie/docs`
//!   the same as a page.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;

use crate::AppState;
use gateway::tasks::lifecycle::{Submission, deadline};
use gateway::kie::{Family, Verb};
use gateway::money::catalog::ChatApi;
use gateway::tasks::relay::{envelope, status_data};
use crate::error::{RelayCaller, Refusal, Shape};

/// Every relay path `openapi.json` describes (and `/kie/docs`, its page): each family's create
/// and status paths under `/kie`, the credit call and the description itself.
pub fn paths() -> Vec<String> {
    let mut out: Vec<String> = Family::ALL.iter().flat_map(|f| [format!("/kie{}", f.adapter().create_path()), format!("/kie{}", f.adapter().status_path())]).collect();
    out.extend(Family::ALL.iter().flat_map(|f| f.adapter().own_paths().iter().map(|(_, path)| format!("/kie{path}"))));
    out.extend([CHAT.to_string(), CREDIT.to_string(), OPENAPI.to_string(), LYRICS.to_string()]);
    out.extend(in_body().map(|(_, at)| format!("/kie{at}")));
    out.extend(crate::relay_uploads::PATHS.iter().map(|(ours, _)| ours.to_string()));
    // An upgrade is asked for and answered at one path.
    out.sort_unstable();
    out.dedup();
    out
}
const CREDIT: &str = "/kie/api/v1/chat/credit";
const CHAT: &str = "/kie/{model}/v1/chat/completions";
const OPENAPI: &str = "/kie/openapi.json";
const LYRICS: &str = "/kie/api/v1/generate/get-timestamped-lyrics";
/// A create's deadline: not sent by then, the task ends `expired` and nothing is charged.
const SEND_BY: &str = "x-control-room-send-by";
/// A create's priority among its key's queued tasks: `high`, `normal` or `low`.
const PRIORITY: &str = "x-control-room-priority";
/// A relay task's batch (see the module doc).
const BATCH: &str = "x-control-room-batch";

/// The relay's OpenAPI 3.1 description as written (checked against [`paths`]); what
/// [`OPENAPI`] serves is [`document`], which adds this console's catalog to it.
pub const OPENAPI_DOC: &str = include_str!("openapi.json");

/// The document [`OPENAPI`] serves: [`OPENAPI_DOC`] with what depends on this console's
/// catalog written in — the Market jobs API's body as one schema per model (its id and its
/// input, [`gateway::money::catalog::Model::input_schema`]) and the chat path's model as one
/// of the catalog's language models — so a client, or a fuzzer, knows exactly what is taken.
pub fn document(catalog: &gateway::money::catalog::Catalog) -> String {
    let Ok(mut doc) = serde_json::from_str::<Value>(OPENAPI_DOC) else { return OPENAPI_DOC.to_string() };
    // Where a POST path's parts are in the document (a JSON pointer: `~` and `/` escaped).
    let post = |path: &str, part: &str| format!("/paths/{}/post/{part}", path.replace('~', "~0").replace('/', "~1"));
    let body = |path: &str| post(path, "requestBody/content/application~1json/schema");
    let create = |family: Family| format!("/kie{}", family.adapter().create_path());
    let models = catalog.models().iter().filter(|m| m.family == Family::Market);
    let (chat, tasks): (Vec<_>, Vec<_>) = models.partition(|m| m.is_chat());
    let chat_models: Vec<Value> = chat.iter().filter(|m| m.api == ChatApi::Completions).map(|m| Value::from(m.id.as_str())).collect();
    if let Some(body) = doc.pointer_mut(&body(&create(Family::Market))) {
        let callback = body["properties"]["callBackUrl"].clone();
        let one_of: Vec<Value> = tasks
            .iter()
            .map(|m| serde_json::json!({"type": "object", "required": ["model", "input"], "properties": {"model": {"const": m.id, "description": m.purpose}, "input": m.input_schema(), "callBackUrl": callback}}))
            .collect();
        *body = serde_json::json!({"description": "One of the catalog's models (the Market panel) with its input, as KIE takes it", "oneOf": one_of});
    }
    if let Some(model) = doc.pointer_mut(&post(CHAT, "parameters/0/schema")) {
        model["enum"] = chat_models.into();
    }
    // An API that names the model in the body: the models served at each of its paths.
    for (api, at) in in_body() {
        let served: Vec<Value> = chat.iter().filter(|m| m.api == api && m.chat_path() == at).map(|m| Value::from(m.id.as_str())).collect();
        if let Some(model) = doc.pointer_mut(&format!("{}/properties/model", body(&format!("/kie{at}")))) {
            model["enum"] = served.into();
        }
    }
    // Fields the relay refuses whatever their value: on a family's body, an input that
    // multiplies the cost and that the body does not name; on a chat call, one it cannot price.
    let refused_names = |body: &mut Value, names: &[&str]| {
        let named = |n: &&str| body["properties"].get(*n).is_some();
        let refused: Vec<&str> = names.iter().filter(|n| !named(n)).copied().collect();
        body["propertyNames"] = serde_json::json!({"not": {"enum": refused}});
    };
    for family in Family::ALL.into_iter().filter(|f| *f != Family::Market) {
        if let Some(body) = doc.pointer_mut(&body(&create(family))) {
            refused_names(body, &gateway::money::catalog::MULTIPLIERS);
        }
    }
    for (path, api) in std::iter::once((CHAT.to_string(), ChatApi::Completions)).chain(in_body().map(|(api, at)| (format!("/kie{at}"), api))) {
        if let Some(body) = doc.pointer_mut(&body(&path)) {
            refused_names(body, &gateway::chat::refused_in(api));
        }
    }
    doc.to_string()
}

pub fn routes() -> axum::Router<AppState> {
    let mut router = axum::Router::new();
    for family in Family::ALL {
        let api = family.adapter();
        // An upgrade is asked for at one path, as KIE serves it.
        if let Some(verb) = api.upgrade() {
            let path = format!("/kie{}", api.create_path());
            let ask = move |state, caller, query, body| upgrade(family, state, caller, query, body);
            router = match verb {
                Verb::Get => router.route(&path, get(ask)),
                Verb::Post => router.route(&path, post(ask)),
            };
            continue;
        }
        router = router
            .route(&format!("/kie{}", api.create_path()), post(move |state, caller, headers, body| create_task(family, None, state, caller, headers, body)))
            .route(&format!("/kie{}", api.status_path()), get(move |state, caller, query| status(family, state, caller, query)));
        for (model, path) in api.own_paths() {
            router = router.route(&format!("/kie{path}"), post(move |state, caller, headers, body| create_task(family, Some(model), state, caller, headers, body)));
        }
    }
    router
        .route(CHAT, post(crate::chat::completions))
        .merge(in_body().fold(axum::Router::new(), |r, (api, at)| r.route(&format!("/kie{at}"), post(move |state, caller, body| crate::chat::model_in_body(api, at, state, caller, body)))))
        .merge(crate::relay_uploads::routes())
        .route(CREDIT, get(credit))
        .route(LYRICS, post(timestamped_lyrics))
        .route(OPENAPI, get(|State(state): State<AppState>| async move { ([(header::CONTENT_TYPE, "application/json")], state.relay_doc.clone()) }))
        .route("/kie/docs", get(crate::relay_docs::docs))
}

/// The language models' APIs that name the model in the body, each with a path KIE serves it
/// at (and the relay, under `/kie`).
fn in_body() -> impl Iterator<Item = (ChatApi, &'static str)> {
    ChatApi::ALL.into_iter().flat_map(|api| api.addresses().iter().map(move |at| (api, *at)))
}

/// A KIE envelope with a mirroring HTTP status (a success; refusals are [`Refusal::kie`]).
pub fn kie_answer(code: i64, msg: &str, data: Value) -> Response {
    let status = StatusCode::from_u16(u16::try_from(code).unwrap_or(500)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(envelope(code, msg, data))).into_response()
}

/// The relay's answer to a store failure (logged, never shown).
pub(crate) fn store_down(what: &str, e: &dyn std::fmt::Display) -> Refusal {
    Refusal::unavailable(Shape::Kie, what, e, "The Control Room's store is unavailable; try again shortly")
}

/// A create call of any family: Market's `{model, input, callBackUrl}`, or a family's fields
/// sent flat with `model` (or the family's default, or its one model) and `callBackUrl`; or
/// the fields of a model at its own path (`own`: its name in the family's API).
async fn create_task(family: Family, own: Option<&'static str>, State(state): State<AppState>, RelayCaller(key): RelayCaller, headers: HeaderMap, body: Bytes) -> Result<Response, Refusal> {
    let json_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !json_type {
        return Err(Refusal::kie(415, "Content-Type must be application/json"));
    }
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return Err(Refusal::kie(422, "The request body must be a JSON object with model and input")),
        Err(e) => return Err(Refusal::kie(400, format!("The request body is not valid JSON: {e}"))),
    };
    // Where the body names its model: `model`, or the family's own field (Midjourney's `taskType`).
    let model_field = family.adapter().model_field();
    let model = match req.get(model_field) {
        _ if own.is_some() => own,
        // A family that takes no model name ignores whatever is sent as one, as KIE does.
        _ if !family.takes_model() => None,
        None | Some(Value::Null) if !family.is_market() => None,
        Some(Value::String(m)) => Some(m.as_str()),
        _ => return Err(Refusal::kie(422, format!("{model_field} is required (a string)"))),
    };
    let callback = match req.get("callBackUrl") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) if u.trim().is_empty() => None,
        Some(Value::String(u)) => Some((u.trim().to_string(), key.id.clone())),
        Some(_) => return Err(Refusal::kie(422, "callBackUrl must be a string")),
    };
    let catalog = state.lifecycle.catalog();
    let (model, input) = if family.is_market() {
        (model.unwrap_or_default().to_string(), req.get("input").cloned().unwrap_or(Value::Null))
    } else {
        let found = match own {
            Some(name) => catalog.at_own_path(family, name),
            None => catalog.by_upstream(family, model),
        };
        let Some(m) = found else {
            let (code, msg) = if model.is_none() && family.takes_model() { (422, format!("{model_field} is required")) } else { (404, "The model name you specified is not supported".to_string()) };
            return Err(Refusal::kie(code, msg));
        };
        // A model with a path of its own is created there only.
        let path = family.adapter().create_path_of(m.upstream_name());
        if own.is_none() && path != family.adapter().create_path() {
            let what = if m.follows.is_some() { "acts on an earlier task's result" } else { "has a path of its own" };
            return Err(Refusal::kie(404, format!("{} {what}: POST /kie{path}", m.upstream_name())));
        }
        // The family's fields are the body itself, less the model and the callback.
        let mut fields = req.as_object().cloned().unwrap_or_default();
        if own.is_none() {
            fields.remove(model_field);
        }
        fields.remove("callBackUrl");
        (m.id.clone(), Value::Object(fields))
    };
    if let Some(m) = catalog.get(&model)
        && m.family != family
    {
        return Err(Refusal::kie(404, format!("The model name you specified is not supported on this API: {} is on KIE's {} API, POST /kie{}", m.id, m.family.name(), m.family.adapter().create_path())));
    }
    let send_by = match headers.get(SEND_BY) {
        None => None,
        Some(v) => {
            let v = v.to_str().map_err(|_| Refusal::kie(422, format!("{SEND_BY} must be {}", deadline::SEND_BY_RULE)))?;
            Some(deadline::parse_send_by(v, gateway::store::now_ms()).map_err(|e| Refusal::kie(422, format!("{SEND_BY}: {e}")))?)
        }
    };
    let priority = match headers.get(PRIORITY) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|e| e.to_string()).and_then(str::parse).map_err(|e| Refusal::kie(422, format!("{PRIORITY}: {e}")))?),
    };
    let batch = match headers.get(BATCH) {
        None => None,
        Some(v) => {
            let name = v.to_str().map(str::trim).map_err(|_| Refusal::kie(422, format!("{BATCH} must be a batch's name")))?.to_string();
            state.lifecycle.join_open_batch(&name, &key.owner(), &key.project, &model).await.map_err(|e| Refusal::kie(e.code(), format!("{BATCH}: {}", e.public_message())))?;
            Some(name)
        }
    };
    let submission = Submission {
        owner: key.owner(),
        project: key.project.clone(),
        model,
        input,
        relay_callback: callback,
        send_by_ms: send_by,
        priority,
        batch,
        ..Default::default()
    };
    let t = state.lifecycle.submit(submission).await.map_err(|e| Refusal::kie(e.code(), e.public_message()).retry_after(e.retry_after()))?;
    tracing::Span::current().record("task", t.id.as_str());
    let data = if family.is_market() { serde_json::json!({ "taskId": t.id, "recordId": t.id }) } else { serde_json::json!({ "taskId": t.id }) };
    Ok(kie_answer(200, "success", data))
}

/// A status call of any family (Market's `recordInfo`), answered from the record in the
/// family's shape. A task of another family reads like a missing one.
async fn status(family: Family, State(state): State<AppState>, RelayCaller(key): RelayCaller, RawQuery(query): RawQuery) -> Result<Response, Refusal> {
    let task_id = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "taskId")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.trim().is_empty());
    let task_id = match task_id {
        Some(t) if t.len() <= 128 => t,
        None => return Err(Refusal::kie(400, "taskId parameter is required")),
        Some(_) => return Err(Refusal::kie(422, "taskId is too long")),
    };
    match state.lifecycle.find(task_id.trim()).await.map_err(|e| store_down("relay: recordInfo store read failed", &e))? {
        // Another project's task reads exactly like a missing one.
        Some(t) if t.project == key.project && t.family == family => {
            let model = state.lifecycle.catalog().get(&t.model).map_or(t.model.as_str(), |m| m.upstream_name()).to_string();
            let content = state.lifecycle.written_content(&t).await;
            let mut data = status_data(&t, &model, state.lifecycle.options().library_links.as_ref(), content);
            // Still here, waiting for the rate guard: where it stands, beside KIE's shape.
            if t.state == gateway::TaskState::Queued
                && let Some(w) = state.lifecycle.place(&t).await.map_err(|e| store_down("relay: the queue could not be read", &e))?
                && let Some(fields) = data.as_object_mut()
            {
                fields.insert("queuePosition".into(), w.position.into());
                fields.insert("etaSeconds".into(), w.eta_ms.div_ceil(1000).into());
            }
            Ok(kie_answer(200, "success", data))
        }
        _ => Err(Refusal::kie(404, "No task with this taskId")),
    }
}

/// Veo's 1080p (`GET /kie/api/v1/veo/get-1080p-video?taskId=&index=`) and 4K (`POST
/// /kie/api/v1/veo/get-4k-video {taskId, index, callBackUrl}`) of a video, by the relay's task
/// ids, asked as KIE is asked: the first ask starts the upgrade as a follow-up task
/// ([`gateway::tasks::lifecycle::upgrade`]); each ask after answers it — KIE's answer with the
/// file once it is in, else 422 "… is processing" (as KIE says while it makes one). The 4K's
/// first answer is KIE's `{taskId, resultUrls: null}`, its callback KIE's 4K callback.
async fn upgrade(family: Family, State(state): State<AppState>, RelayCaller(key): RelayCaller, RawQuery(query): RawQuery, body: Bytes) -> Result<Response, Refusal> {
    use gateway::tasks::lifecycle::upgrade::{Asked, UpgradeAsk, index_of};
    let fields: serde_json::Map<String, Value> = if body.is_empty() {
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).map(|(k, v)| (k.into_owned(), Value::String(v.into_owned()))).collect()
    } else {
        match serde_json::from_slice(&body) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(Refusal::kie(422, "The request body must be a JSON object with taskId")),
            Err(e) => return Err(Refusal::kie(400, format!("The request body is not valid JSON: {e}"))),
        }
    };
    let parent = match fields.get("taskId").and_then(Value::as_str).map(str::trim) {
        Some(t) if !t.is_empty() && t.len() <= 128 => t.to_string(),
        Some(t) if !t.is_empty() => return Err(Refusal::kie(422, "taskId is too long")),
        _ => return Err(Refusal::kie(400, "taskId parameter is required")),
    };
    let index = index_of(fields.get("index")).map_err(|e| Refusal::kie(422, e))?;
    let relay_callback = match fields.get("callBackUrl") {
        Some(Value::String(u)) if !u.trim().is_empty() => Some((u.trim().to_string(), key.id.clone())),
        None | Some(Value::Null | Value::String(_)) => None,
        Some(_) => return Err(Refusal::kie(422, "callBackUrl must be a string")),
    };
    let ask = UpgradeAsk { family, parent, index, owner: key.owner(), project: key.project.clone(), relay_callback };
    let asked = state.lifecycle.ask_upgrade(ask).await.map_err(|e| Refusal::kie(e.code(), e.public_message()).retry_after(e.retry_after()))?;
    let answered = |t: &gateway::TaskRecord| status_data(t, "", state.lifecycle.options().library_links.as_ref(), None);
    match asked {
        Asked::Made(t) => Ok(kie_answer(200, "success", answered(&t))),
        // KIE answers a POSTed upgrade (4K) it starts with the parent's id and no files yet.
        Asked::Started(t) if family.adapter().upgrade() == Some(Verb::Post) => {
            tracing::Span::current().record("task", t.id.as_str());
            Ok(kie_answer(200, "success", answered(&t)))
        }
        Asked::Started(_) | Asked::Making(_) => Err(Refusal::kie(422, "The upgrade is processing; ask again in 30 seconds")),
    }
}

/// `POST /kie/api/v1/generate/get-timestamped-lyrics` (`{taskId, audioId}`, the relay's ids):
/// a Suno track's lyrics with when each word is sung, in KIE's `data`, read once and kept
/// ([`gateway::tasks::lyrics`]).
async fn timestamped_lyrics(State(state): State<AppState>, RelayCaller(key): RelayCaller, body: Bytes) -> Result<Response, Refusal> {
    let req: Value = serde_json::from_slice(&body).map_err(|e| Refusal::kie(400, format!("The request body is not valid JSON: {e}")))?;
    let (task, n) = gateway::tasks::lifecycle::follow_up::track_named("audioId", req.get("audioId")).map_err(|e| Refusal::kie(422, e))?;
    let found = state.lifecycle.find(task).await.map_err(|e| store_down("relay: lyrics store read failed", &e))?;
    // Another project's task reads exactly like a missing one.
    let Some(t) = found.filter(|t| t.project == key.project) else { return Err(Refusal::kie(404, "No task with this audioId")) };
    if let Some(named) = req.get("taskId").filter(|v| !v.is_null())
        && named.as_str().is_none_or(|n| n != t.id && Some(n) != t.kie_task_id.as_deref())
    {
        return Err(Refusal::kie(422, format!("taskId is not the task of audioId ({})", t.id)));
    }
    let data = gateway::tasks::lyrics::timestamped(&state.lifecycle, &t, n).await.map_err(|e| Refusal::kie(e.code(), e.to_string()))?;
    Ok(kie_answer(200, "success", data))
}

async fn credit(State(state): State<AppState>, _: RelayCaller) -> Result<Response, Refusal> {
    let Some(client) = &state.kie else { return Err(Refusal::kie(503, "Not configured: the Control Room has no KIE key")) };
    let balance = client.credit().await.map_err(|e| {
        tracing::warn!(error = %e, "relay: credit call failed");
        Refusal::kie(e.code().map_or(502, |c| u16::try_from(c).unwrap_or(502)), format!("KIE did not answer the credit call: {e}"))
    })?;
    Ok(kie_answer(200, "success", serde_json::json!(balance.as_f64())))
}
