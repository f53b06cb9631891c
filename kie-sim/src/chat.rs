//! KIE's language models: `POST /<model>/v1/chat/completions`, OpenAI's shape (and Claude's
//! Messages API, `POST /claude/v1/messages`, Anthropic's shape: [`messages`]; the Responses
//! API, `POST /api/v1/responses`, OpenAI's Responses shape: [`responses`]), answered at
//! once or streamed as Server-Sent Events (`data: {chunk}` lines, `data: [DONE]` last), as
//! `KIE-API.md` describes. Usage (`prompt_tokens`, `completion_tokens`, `total_tokens`) comes
//! with the answer, or in the last chunk, except from `gemini-2.5-flash`, which reports none.
//! Each key may make `chat_requests_per_min` calls and spend `chat_tokens_per_min` tokens a
//! minute; past either it answers HTTP 429 with `Retry-After`. A streamed answer whose reader
//! goes away stops there, and the log says so ("cancelled after N chunks").
//!
//! The answer stops at the smaller of `max_tokens` and `max_completion_tokens` (each token a
//! word); `Settings::chat_answer_tokens` makes a model write long answers, and
//! `chat_first_byte_ms` makes it slow to start. Each admitted call is logged with the tokens
//! it generates (`"plain usage P+C"`, `"stream usage P+C"`), what KIE would bill, whether or
//! not the caller stays to read it.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

use crate::Sim;
use crate::kie_api::{authorise, kie};

/// The chat models served, and whether each reports usage.
pub const MODELS: [(&str, bool); 6] = [("gemini-3-pro", true), ("gemini-3.1-pro", true), ("gemini-3-flash", true), ("gemini-2.5-pro", true), ("gemini-2.5-flash", false), ("gpt-5-2", true)];
/// The Claude models the Messages API serves (each reports usage).
pub const CLAUDE: [&str; 4] = ["claude-sonnet-4-5", "claude-haiku-4-5", "claude-sonnet-5", "claude-opus-5"];
/// The models the Responses API serves (each reports usage and what it charged).
pub const RESPONSES: [(&str, &str); 6] = [
    ("gpt-5.1-codex", "/api/v1/responses"),
    ("gpt-5-4", "/codex/v1/responses"),
    ("gpt-5-6-sol", "/codex/v1/responses"),
    ("gpt-5-6-terra", "/codex/v1/responses"),
    ("gpt-5-6-luna", "/codex/v1/responses"),
    ("grok-4-5", "/grok/v1/responses"),
];
/// What a Responses call charges a token, in credits.
const RESPONSES_CREDITS_PER_TOKEN: f64 = 0.0001;

/// About four characters a token, as the answer's usage counts them.
fn tokens(text: &str) -> u32 {
    (text.chars().count() as u32).div_ceil(4).max(1)
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join(" "),
        _ => String::new(),
    }
}

/// What the model answers: a rewrite of the last user message, word by word (or `long` words),
/// stopped at `max_tokens`.
fn answer(messages: &[Value], max_tokens: Option<u64>, long: Option<u32>) -> Vec<String> {
    let last = messages.iter().rev().find(|m| m["role"] == "user").map(|m| text_of(&m["content"])).unwrap_or_default();
    let mut words: Vec<String> = match long {
        Some(n) => (0..n).map(|i| format!("w{i} ")).collect(),
        None => format!("Draft: {} — cinematic, golden light, slow push-in.", last.trim()).split_whitespace().map(|w| format!("{w} ")).collect(),
    };
    if let Some(max) = max_tokens {
        words.truncate(max.max(1) as usize);
    }
    words
}

/// What an admitted call writes, and how it is paced.
struct Admitted {
    words: Vec<String>,
    chunk_ms: u64,
    first_byte_ms: u64,
}

/// The key's chat limits: logs the call (`"plain usage P+C"`) and admits it, or `None` when
/// its requests or tokens a minute are spent (logged as a 429).
fn admit(sim: &Sim, key: &str, path: &str, stream: bool, messages: &[Value], prompt_tokens: u32, limit: Option<u64>) -> Option<Admitted> {
    let mut w = sim.world();
    let (rpm, tpm) = (w.settings.chat_requests_per_min, w.settings.chat_tokens_per_min);
    let (chunk_ms, first_byte_ms) = (w.settings.chat_chunk_ms, w.settings.chat_first_byte_ms);
    let words = answer(messages, limit, w.settings.chat_answer_tokens);
    let completion_tokens = words.len() as u32;
    let acct = w.accounts.get_mut(key)?;
    let now = Instant::now();
    while acct.chats.front().is_some_and(|(t, _)| now.duration_since(*t) >= Duration::from_secs(60)) {
        acct.chats.pop_front();
    }
    let spent: u32 = acct.chats.iter().map(|(_, n)| n).sum();
    let admitted = (acct.chats.len() as u32) < rpm && spent + prompt_tokens + completion_tokens <= tpm;
    if admitted {
        acct.chats.push_back((now, prompt_tokens + completion_tokens));
    }
    let kind = if stream { "stream" } else { "plain" };
    let detail = if admitted { format!("{kind} usage {prompt_tokens}+{completion_tokens}") } else { kind.to_string() };
    w.record("CHAT", path, if admitted { 200 } else { 429 }, None, Some(detail));
    admitted.then_some(Admitted { words, chunk_ms, first_byte_ms })
}

/// `events` (each one SSE block's text) sent one at a time, the first after `first_byte_ms`,
/// the rest `chunk_ms` apart; a reader that goes away stops the stream (and is logged).
fn event_stream(sim: &Sim, path: String, events: Vec<String>, first_byte_ms: u64, chunk_ms: u64) -> Response {
    let total = events.len();
    let guard = Sent { sim: sim.clone(), path, sent: 0, total };
    let stream = futures::stream::unfold((events.into_iter(), guard, true), move |(mut events, mut guard, first)| async move {
        let event = events.next()?;
        // No wait at all for 0 (a timer of 0 ms still waits for the timer's next millisecond).
        let wait = if first { first_byte_ms } else { chunk_ms };
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        guard.sent += 1;
        Some((Ok::<_, std::io::Error>(Bytes::from(event)), (events, guard, false)))
    });
    ([(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], Body::from_stream(stream)).into_response()
}

pub async fn completions(State(sim): State<Sim>, Path(model): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let path = format!("/{model}/v1/chat/completions");
    let (key, _) = match authorise(&sim, &headers, "/chat/completions").await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let Some(&(_, reports_usage)) = MODELS.iter().find(|(m, _)| *m == model) else {
        sim.world().record("CHAT", &path, 404, None, None);
        return kie(404, "The model name you specified is not supported", None, false);
    };
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return kie(422, "The request body must be a JSON object", None, false),
    };
    let Some(messages) = req.get("messages").and_then(Value::as_array).filter(|m| !m.is_empty()) else {
        sim.world().record("CHAT", &path, 422, None, None);
        return kie(422, "messages is required", None, false);
    };
    let prompt_tokens: u32 = messages.iter().map(|m| tokens(&text_of(&m["content"]))).sum();
    let limit = ["max_tokens", "max_completion_tokens"].iter().filter_map(|f| req.get(*f).and_then(Value::as_u64)).min();
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let Some(Admitted { words, chunk_ms, first_byte_ms }) = admit(&sim, &key, &path, stream, messages, prompt_tokens, limit) else {
        let body = json!({ "error": { "message": "Rate limit reached for requests or tokens per minute", "type": "rate_limit_error", "code": 429 } });
        return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "10")], axum::Json(body)).into_response();
    };
    let completion_tokens = words.len() as u32;
    let id = format!("chatcmpl-{:016x}", fastrand::u64(..));
    let created = crate::world::epoch_ms() / 1000;
    let usage = json!({ "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens });
    if !stream {
        if first_byte_ms > 0 {
            tokio::time::sleep(Duration::from_millis(first_byte_ms)).await;
        }
        let mut body = json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": words.concat().trim_end() }, "finish_reason": "stop" }],
        });
        if reports_usage {
            body["usage"] = usage;
        }
        return axum::Json(body).into_response();
    }
    let chunk = |delta: Value, finish: Value| json!({ "id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] });
    let mut events: Vec<Value> = vec![chunk(json!({ "role": "assistant" }), Value::Null)];
    events.extend(words.iter().map(|w| chunk(json!({ "content": w }), Value::Null)));
    let mut last = chunk(json!({}), json!("stop"));
    if reports_usage {
        last["usage"] = usage;
    }
    events.push(last);
    let mut blocks: Vec<String> = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    blocks.push("data: [DONE]\n\n".into());
    event_stream(&sim, path, blocks, first_byte_ms, chunk_ms)
}

/// Claude's Messages API: `POST /claude/v1/messages`, Anthropic's shape — the model in the
/// body, `max_tokens` required, `system` apart from the messages; usage as `input_tokens` /
/// `output_tokens`; streamed as Anthropic's named events. Errors are Anthropic's
/// (`{"type": "error", "error": {"type", "message"}}`).
pub async fn messages(State(sim): State<Sim>, headers: HeaderMap, body: Bytes) -> Response {
    let path = "/claude/v1/messages".to_string();
    let (key, _) = match authorise(&sim, &headers, "/claude/v1/messages").await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let error = |status: StatusCode, kind: &str, message: &str| (status, axum::Json(json!({ "type": "error", "error": { "type": kind, "message": message } }))).into_response();
    let Ok(req) = serde_json::from_slice::<Value>(&body) else { return error(StatusCode::BAD_REQUEST, "invalid_request_error", "The request body is not valid JSON") };
    let model = req.get("model").and_then(Value::as_str).unwrap_or_default().to_string();
    if !CLAUDE.contains(&model.as_str()) {
        sim.world().record("CHAT", &path, 404, None, None);
        return error(StatusCode::NOT_FOUND, "not_found_error", &format!("model: {model}"));
    }
    let Some(messages) = req.get("messages").and_then(Value::as_array).filter(|m| !m.is_empty()) else {
        sim.world().record("CHAT", &path, 400, None, None);
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "messages: at least one message is required");
    };
    let Some(limit) = req.get("max_tokens").and_then(Value::as_u64).filter(|n| *n >= 1) else {
        sim.world().record("CHAT", &path, 400, None, None);
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "max_tokens: Field required");
    };
    let system = req.get("system").map_or(0, |s| tokens(&text_of(s)));
    let prompt_tokens: u32 = system + messages.iter().map(|m| tokens(&text_of(&m["content"]))).sum::<u32>();
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let Some(Admitted { words, chunk_ms, first_byte_ms }) = admit(&sim, &key, &path, stream, messages, prompt_tokens, Some(limit)) else {
        return error(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", "Rate limit reached for requests or tokens per minute");
    };
    let output_tokens = words.len() as u32;
    let id = format!("msg_{:016x}", fastrand::u64(..));
    let stop = if output_tokens as u64 >= limit { "max_tokens" } else { "end_turn" };
    if !stream {
        if first_byte_ms > 0 {
            tokio::time::sleep(Duration::from_millis(first_byte_ms)).await;
        }
        return axum::Json(json!({
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": [{ "type": "text", "text": words.concat().trim_end() }],
            "stop_reason": stop, "stop_sequence": null,
            "usage": { "input_tokens": prompt_tokens, "output_tokens": output_tokens },
        }))
        .into_response();
    }
    let event = |kind: &str, data: Value| format!("event: {kind}\ndata: {data}\n\n");
    let mut events = vec![
        event("message_start", json!({ "type": "message_start", "message": { "id": id, "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": { "input_tokens": prompt_tokens, "output_tokens": 1 } } })),
        event("content_block_start", json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } })),
    ];
    events.extend(words.iter().map(|w| event("content_block_delta", json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": w } }))));
    events.push(event("content_block_stop", json!({ "type": "content_block_stop", "index": 0 })));
    events.push(event("message_delta", json!({ "type": "message_delta", "delta": { "stop_reason": stop, "stop_sequence": null }, "usage": { "output_tokens": output_tokens } })));
    events.push(event("message_stop", json!({ "type": "message_stop" })));
    event_stream(&sim, path, events, first_byte_ms, chunk_ms)
}

/// The Responses API: `POST /api/v1/responses`, as KIE's Codex page gives it, `POST
/// /codex/v1/responses`, where public clients of KIE call its GPT-5.4 and later, and `POST
/// /grok/v1/responses`, Grok's (each model at its own path, [`RESPONSES`]) — the model in
/// the body, the conversation as `input` (one text, or a list of turns), `instructions`, the
/// answer's limit `max_output_tokens`; the answer's `output` (a reasoning item, then the
/// message), `usage` (`input_tokens`, `output_tokens`) and what it charged,
/// `credits_consumed`; streamed as `response.output_text.delta` events, then
/// `response.completed` with the usage and the charge, then `data: [DONE]`. Errors are KIE's
/// envelope.
pub async fn responses(at: &'static str, sim: Sim, headers: HeaderMap, body: Bytes) -> Response {
    let path = at.to_string();
    let (key, _) = match authorise(&sim, &headers, at).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let Ok(req) = serde_json::from_slice::<Value>(&body) else { return kie(400, "The request body is not valid JSON", None, false) };
    let model = req.get("model").and_then(Value::as_str).unwrap_or_default().to_string();
    if !RESPONSES.contains(&(model.as_str(), at)) {
        sim.world().record("CHAT", &path, 404, None, None);
        return kie(404, "The model name you specified is not supported", None, false);
    }
    let turns = match req.get("input") {
        Some(Value::String(s)) if !s.trim().is_empty() => vec![json!({ "role": "user", "content": s })],
        Some(Value::Array(t)) if !t.is_empty() => t.clone(),
        _ => {
            sim.world().record("CHAT", &path, 422, None, None);
            return kie(422, "input is required", None, false);
        }
    };
    let instructions = req.get("instructions").map_or(0, |s| tokens(&text_of(s)));
    let prompt_tokens: u32 = instructions + turns.iter().map(|m| tokens(&text_of(&m["content"]))).sum::<u32>();
    let limit = req.get("max_output_tokens").and_then(Value::as_u64);
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let Some(Admitted { words, chunk_ms, first_byte_ms }) = admit(&sim, &key, &path, stream, &turns, prompt_tokens, limit) else {
        let mut r = kie(429, "Rate limit reached for requests or tokens per minute", None, false);
        r.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static("10"));
        return r;
    };
    let output_tokens = words.len() as u32;
    let usage = json!({ "input_tokens": prompt_tokens, "output_tokens": output_tokens, "total_tokens": prompt_tokens + output_tokens });
    let credits = ((f64::from(prompt_tokens + output_tokens) * RESPONSES_CREDITS_PER_TOKEN * 100.0).round() / 100.0).max(0.01);
    let id = format!("resp_{:016x}", fastrand::u64(..));
    if !stream {
        if first_byte_ms > 0 {
            tokio::time::sleep(Duration::from_millis(first_byte_ms)).await;
        }
        return axum::Json(json!({
            "id": id, "object": "response", "model": model, "status": "completed",
            "output": [
                { "type": "reasoning", "id": format!("rs_{id}"), "summary": [] },
                { "type": "message", "role": "assistant", "id": format!("msg_{id}"), "status": "completed", "content": [{ "type": "output_text", "text": words.concat().trim_end(), "annotations": [] }] },
            ],
            "usage": usage, "credits_consumed": credits,
        }))
        .into_response();
    }
    let event = |kind: &str, data: Value| format!("event: {kind}\ndata: {data}\n\n");
    let mut events: Vec<String> = words
        .iter()
        .enumerate()
        .map(|(n, w)| event("response.output_text.delta", json!({ "type": "response.output_text.delta", "content_index": 0, "delta": w, "item_id": format!("msg_{id}"), "output_index": 1, "sequence_number": n + 1 })))
        .collect();
    events.push(event("response.completed", json!({ "type": "response.completed", "sequence_number": words.len() + 1, "credits_consumed": credits, "response": { "id": id, "object": "response", "model": model, "status": "completed", "usage": usage } })));
    events.push("data: [DONE]\n\n".into());
    event_stream(&sim, path, events, first_byte_ms, chunk_ms)
}

/// Counts a stream's events; logs one that stopped before its end (its reader went away).
struct Sent {
    sim: Sim,
    path: String,
    sent: usize,
    total: usize,
}

impl Drop for Sent {
    fn drop(&mut self) {
        let detail = if self.sent < self.total { format!("cancelled after {} chunks", self.sent) } else { "stream done".into() };
        self.sim.world().record("CHAT", &self.path, 0, None, Some(detail));
    }
}
