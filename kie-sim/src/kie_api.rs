//! KIE's own paths, answering with KIE's JSON as its docs show it: createTask, recordInfo,
//! chat/credit, common/download-url, and the result files themselves.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

use crate::Sim;
use crate::prices;
use crate::world::World;

/// Longest prompt accepted (KIE's models cap prompts in the low thousands of characters).
const MAX_PROMPT: usize = 5_000;

/// KIE's envelope with a body code; HTTP status mirrors the code unless the run says to wrap
/// errors in 200.
pub(crate) fn kie(code: i64, msg: &str, data: Option<Value>, as_200: bool) -> Response {
    let status = if as_200 || code == 200 { StatusCode::OK } else { StatusCode::from_u16(code as u16).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR) };
    let mut body = json!({ "code": code, "msg": msg });
    if let Some(d) = data {
        body["data"] = d;
    }
    (status, Json(body)).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ").map(|k| k.trim().to_string())
}

/// Applies the run's `slow_ms`, then checks the key. `Err` is the 401 to send.
pub(crate) async fn authorise(sim: &Sim, headers: &HeaderMap, path: &str) -> Result<(String, bool), Response> {
    let (slow, as_200) = {
        let w = sim.world();
        (w.faults.slow_ms, w.faults.errors_as_http_200)
    };
    if slow > 0 {
        tokio::time::sleep(Duration::from_millis(slow)).await;
    }
    let key = bearer(headers).unwrap_or_default();
    let mut w = sim.world();
    w.settle_due();
    if !w.accounts.contains_key(&key) {
        w.record("AUTH", path, 401, None, None);
        return Err(kie(401, "You do not have access permissions", None, as_200));
    }
    Ok((key, as_200))
}

pub async fn create_task(State(sim): State<Sim>, headers: HeaderMap, body: Bytes) -> Response {
    const PATH: &str = "/api/v1/jobs/createTask";
    let (key, as_200) = match authorise(&sim, &headers, PATH).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let mut w = sim.world();
    let refuse = |w: &mut World, code: i64, msg: &str| {
        w.record("POST", PATH, code, None, Some(msg.to_string()));
        kie(code, msg, None, as_200)
    };
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return refuse(&mut w, 422, "Request body must be a JSON object"),
    };
    let Some(model_id) = req.get("model").and_then(Value::as_str) else { return refuse(&mut w, 422, "model is required") };
    let Some(model) = prices::find(model_id) else { return refuse(&mut w, 404, "The model name you specified is not supported") };
    let input = req.get("input").cloned().unwrap_or(Value::Null);
    if !input.is_object() {
        return refuse(&mut w, 422, "input must be an object");
    }
    match input.get("prompt") {
        Some(Value::String(p)) if p.chars().count() > MAX_PROMPT => return refuse(&mut w, 422, "prompt is too long (max 5000 characters)"),
        Some(Value::String(_)) | None => {}
        Some(_) => return refuse(&mut w, 422, "prompt must be a string"),
    }
    if model.needs_image && input.get("image_urls").or_else(|| input.get("image_url")).or_else(|| input.get("image")).is_none() {
        return refuse(&mut w, 422, "image_urls is required for this model");
    }
    let callback_url = match req.get("callBackUrl") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) if u.starts_with("http://") || u.starts_with("https://") => Some(u.clone()),
        Some(_) => return refuse(&mut w, 422, "callBackUrl must be an http(s) URL"),
    };
    let percent = f64::from(w.faults.charge_percent.unwrap_or(100));
    let new = NewTask {
        path: PATH,
        model: model_id.to_string(),
        kind: model.kind,
        price_milli: (prices::price(model, &input) * 10.0 * percent).round() as i64,
        prompt: input.get("prompt").and_then(Value::as_str).unwrap_or("").to_string(),
        param: req.to_string(),
        callback_url,
        family: "market",
        results: 1,
        id: None,
        answer: None,
    };
    admit(&sim, w, key, as_200, new)
}

/// A create request that passed its family's checks.
pub(crate) struct NewTask {
    pub path: &'static str,
    pub model: String,
    pub kind: crate::media::MediaKind,
    /// What it costs, after any `charge_percent` fault.
    pub price_milli: i64,
    pub prompt: String,
    /// The request as sent, echoed in `param` / `paramJson`.
    pub param: String,
    pub callback_url: Option<String>,
    pub family: &'static str,
    /// How many result files it makes (Suno: two songs).
    pub results: usize,
    /// Its id, when the API fixes it (an upgrade of a parent's video); else a new one.
    pub id: Option<String>,
    /// The create's answer `data`, when the API answers other than `{taskId}`.
    pub answer: Option<Value>,
}

/// The part of every family's create that KIE shares: injected faults, the account's
/// 20-per-10 s window (across families), the balance, the task and its callback.
pub(crate) fn admit(sim: &Sim, mut w: std::sync::MutexGuard<'_, World>, key: String, as_200: bool, new: NewTask) -> Response {
    let refuse = |w: &mut World, code: i64, msg: &str| {
        w.record("POST", new.path, code, None, Some(msg.to_string()));
        kie(code, msg, None, as_200)
    };
    // Injected upstream errors (500, 455…) for the next N creates.
    if let Some(code) = w.faults.create_error_code.filter(|_| w.faults.create_error_count > 0) {
        w.faults.create_error_count -= 1;
        let msg = match code {
            433 => "Sub-key usage exceeded its limit",
            455 => "Service unavailable: maintenance",
            501 => "Generation failed",
            505 => "This feature is disabled",
            _ => "Internal server error",
        };
        return refuse(&mut w, code, msg);
    }
    let (limit, span) = (w.settings.rate_limit, Duration::from_millis(w.settings.rate_window_ms));
    let price_milli = new.price_milli;
    let Some(acct) = w.accounts.get_mut(&key) else { return refuse(&mut w, 401, "You do not have access permissions") };
    if !World::admit(&mut acct.creates, limit, span) {
        return refuse(&mut w, 429, "Too many requests: at most 20 new generation requests per 10 seconds; this one was rejected");
    }
    if acct.balance_milli < price_milli {
        // Not a generation: give the rate slot back.
        acct.creates.pop_back();
        return refuse(&mut w, 402, "Insufficient credits");
    }
    acct.balance_milli -= price_milli;

    w.next_task += 1;
    let now = w.clock.now_ms();
    let slug = new.model.rsplit('/').next().unwrap_or(&new.model).replace(['.', ' '], "-");
    let id = new.id.clone().unwrap_or_else(|| format!("task_{slug}_{now}{:05}", w.next_task % 100_000));
    let faults = World::task_fault_for(&w, &id);
    let fail = if faults.fail_generation || new.prompt.contains("sim:fail") {
        Some(("500".to_string(), "Internal error during generation".to_string()))
    } else if new.prompt.contains("sim:policy") {
        Some(("400".to_string(), "Your prompt was flagged by the content policy".to_string()))
    } else {
        None
    };
    let task = crate::world::Task {
        id: id.clone(),
        key,
        model: new.model,
        kind: new.kind,
        param: new.param,
        callback_url: new.callback_url.clone(),
        created_ms: now,
        price_milli,
        fail,
        seed: w.next_task.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        settled: false,
        family: new.family,
        results: new.results,
        status_calls: Default::default(),
    };
    if new.callback_url.is_some() {
        let due = w.completion_ms(&task);
        w.due.push(std::cmp::Reverse((due, id.clone())));
    }
    w.insert_task(task);
    if w.faults.gateway_error_count > 0 {
        // The task exists and is charged; only the answer is lost behind a failing gateway.
        w.faults.gateway_error_count -= 1;
        w.record("POST", new.path, 502, Some(id.clone()), Some("fault: bare 502 after creating".into()));
        drop(w);
        sim.wake_dispatcher();
        return (axum::http::StatusCode::BAD_GATEWAY, "<html><body>502 Bad Gateway</body></html>").into_response();
    }
    w.record("POST", new.path, 200, Some(id.clone()), None);
    drop(w);
    sim.wake_dispatcher();
    let data = match new.answer {
        Some(data) => data,
        None if new.family == "market" => json!({ "taskId": id, "recordId": id }),
        None => json!({ "taskId": id }),
    };
    kie(200, "success", Some(data), false)
}

pub async fn record_info(State(sim): State<Sim>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    const PATH: &str = "/api/v1/jobs/recordInfo";
    let (key, as_200) = match authorise(&sim, &headers, PATH).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let mut w = sim.world();
    let per_sec = w.settings.record_info_per_sec;
    let admitted = w.accounts.get_mut(&key).is_some_and(|a| World::admit(&mut a.record_infos, per_sec, Duration::from_secs(1)));
    if !admitted {
        w.record("GET", PATH, 429, None, None);
        return kie(429, "Too many requests: recordInfo allows 10 requests per second", None, as_200);
    }
    let Some(task_id) = q.get("taskId").filter(|t| !t.is_empty()).cloned() else {
        w.record("GET", PATH, 400, None, None);
        return kie(400, "taskId parameter is required", None, as_200);
    };
    let owned = w.tasks.get(&task_id).is_some_and(|t| t.key == key);
    let data = if owned { w.record_json(&task_id) } else { None };
    match data {
        Some(d) => {
            w.record("GET", PATH, 200, Some(task_id), None);
            kie(200, "success", Some(d), false)
        }
        None => {
            w.record("GET", PATH, 404, Some(task_id), None);
            kie(404, "Task not found", None, as_200)
        }
    }
}

pub async fn credit(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    const PATH: &str = "/api/v1/chat/credit";
    let (key, _) = match authorise(&sim, &headers, PATH).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let mut w = sim.world();
    let balance = w.accounts.get(&key).map_or(0, |a| a.balance_milli) as f64 / 1000.0;
    w.record("GET", PATH, 200, None, None);
    kie(200, "success", Some(json!(balance)), false)
}

pub async fn download_url(State(sim): State<Sim>, headers: HeaderMap, body: Bytes) -> Response {
    const PATH: &str = "/api/v1/common/download-url";
    let (_, as_200) = match authorise(&sim, &headers, PATH).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let mut w = sim.world();
    let url = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v.get("url").and_then(Value::as_str).map(str::to_string));
    let files = format!("{}/files/", w.base_url);
    let now = w.clock.now_ms();
    let retention = w.settings.retention_ms;
    // The task a result URL names, and whether its file still exists.
    let deleted = url.as_deref().and_then(|u| u.strip_prefix(&files)).and_then(|rest| rest.split('/').next()).and_then(|id| w.tasks.get(id)).is_some_and(|t| now > w.completion_ms(t) + retention);
    match url {
        Some(_) if deleted => {
            w.record("POST", PATH, 404, None, None);
            kie(404, "The file has expired and was deleted", None, as_200)
        }
        Some(u) if u.starts_with(&files) => {
            let expires = w.clock.now_ms() + 20 * 60 * 1000;
            w.record("POST", PATH, 200, None, None);
            kie(200, "success", Some(json!(format!("{u}?expires={expires}"))), false)
        }
        _ => {
            w.record("POST", PATH, 422, None, None);
            kie(422, "Only KIE result URLs can be turned into download links", None, as_200)
        }
    }
}

/// `GET /files/{task}/{name}`: the result, until retention runs out (then 404, like KIE).
pub async fn file(State(sim): State<Sim>, Path((task_id, name)): Path<(String, String)>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut w = sim.world();
    let now = w.clock.now_ms();
    let retention = w.settings.retention_ms;
    let state = w.state_of(&task_id, now);
    let Some(task) = w.tasks.get(&task_id) else { return StatusCode::NOT_FOUND.into_response() };
    let link_expired = match q.get("expires") {
        Some(e) => e.parse::<u64>().map_or(true, |e| now > e),
        // The result's own link, which may lapse before the file is deleted.
        None => w.settings.result_link_ms.is_some_and(|l| now > w.completion_ms(task) + l),
    };
    const PATH: &str = "/files";
    let named = (0..task.results).any(|n| name == format!("{n}.{}", task.kind.extension()));
    if state != Some("success") || !named || link_expired {
        w.record("GET", PATH, 404, Some(task_id), None);
        return StatusCode::NOT_FOUND.into_response();
    }
    if now > w.completion_ms(task) + retention {
        w.record("GET", PATH, 404, Some(task_id), None);
        return (StatusCode::NOT_FOUND, "This file has expired and was deleted").into_response();
    }
    let (kind, seed) = (task.kind, task.seed);
    w.record("GET", PATH, 200, Some(task_id), None);
    drop(w);
    ([(header::CONTENT_TYPE, kind.content_type())], crate::media::render(kind, seed)).into_response()
}

impl World {
    pub fn task_fault_for(w: &World, task_id: &str) -> crate::world::Faults {
        crate::world::Faults::merged(&w.faults, w.task_faults.get(task_id))
    }
}
