//! The relay's language models: chat completions (`POST /kie/<model>/v1/chat/completions`),
//! Claude's Messages API (`POST /kie/claude/v1/messages`) and OpenAI's Responses API (`POST
//! /kie/api/v1/responses`, counted at what KIE says it charged), with a relay key,
//! the body KIE takes (sent with the answer's limit the core decided, and
//! `X-Control-Room-Clamped` when that is below the one asked for) and KIE's answer back, byte
//! for byte. `"stream": true` is passed on chunk by chunk as it arrives (no buffering); the
//! client going away drops the upstream request with it. Thin: authenticate, parse, admit
//! through the core (catalog, the limit and its worst case, the rate guard's chat limits, cost
//! rules: 404/422/429/402 before anything is sent, in one store round trip), relay, and end
//! the call — however the handler ends ([`Relay`]) — at what KIE's `usage` says it used, off
//! the response path.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::Value;
use std::time::Duration;

use crate::AppState;
use crate::error::{Refusal, RelayCaller, STORE_DOWN, Shape};
use gateway::Lifecycle;
use gateway::chat::usage::{answer_chars, charged_of, usage_of};
use gateway::chat::{ChatEnd, ChatError, ChatOutcome, ChatRequest, ChatTicket, StreamScan};
use gateway::money::catalog::ChatApi;

/// Longest a call may take, a stream included.
const CHAT_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest answer read whole (not streamed).
const MAX_ANSWER: usize = 8 << 20;

/// `POST /kie/<model>/v1/chat/completions`: OpenAI's shape, the model in the path.
pub async fn completions(State(state): State<AppState>, RelayCaller(key): RelayCaller, Path(model): Path<String>, body: Bytes) -> Result<Response, Refusal> {
    let req = object(&body)?;
    relay(state, key, model, ChatApi::Completions, req).await
}

/// `POST /kie<at>`, one of [`ChatApi::addresses`]: an API that names the model in the body —
/// Claude's Messages API at `/kie/claude/v1/messages` (Anthropic's shape; Anthropic's clients
/// send the key as `x-api-key`, taken like a bearer), OpenAI's Responses API as KIE serves it
/// at `/kie/api/v1/responses`, at Codex's `/kie/codex/v1/responses` and at Grok's
/// `/kie/grok/v1/responses` (the conversation as `input`). A model is called where KIE serves it; asked for at another of its API's paths,
/// the answer names the right one.
pub async fn model_in_body(api: ChatApi, at: &'static str, State(state): State<AppState>, RelayCaller(key): RelayCaller, body: Bytes) -> Result<Response, Refusal> {
    let req = object(&body)?;
    let Some(model) = req.get("model").and_then(Value::as_str).map(str::to_string) else { return Err(Refusal::kie(422, format!("model is required: one of the catalog's models served at /kie{at}"))) };
    if let Some(m) = state.lifecycle.catalog().get(&model).filter(|m| m.is_chat() && m.api == api)
        && m.chat_path() != at
    {
        return Err(Refusal::kie(404, format!("{model} is served at /kie{}, not here", m.chat_path())));
    }
    relay(state, key, model, api, req).await
}

/// The body, which must be a JSON object.
fn object(body: &[u8]) -> Result<Value, Refusal> {
    match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(Refusal::kie(422, "The request body must be a JSON object with messages")),
        Err(e) => Err(Refusal::kie(400, format!("The request body is not valid JSON: {e}"))),
    }
}

/// Admits, sends and relays one call of `model` through `api`.
async fn relay(state: AppState, key: gateway::team::relay_keys::RelayKey, model: String, api: ChatApi, req: Value) -> Result<Response, Refusal> {
    let lc = state.lifecycle.clone();
    let ticket = lc.chat_begin(ChatRequest { owner: key.owner(), project: key.project.clone(), model, api, body: req }).await.map_err(|e| {
        let wait = if let ChatError::RateLimited(wait) = e { Some(wait) } else { None };
        Refusal::kie(e.code(), e.public_message()).retry_after(wait)
    })?;
    tracing::Span::current().record("task", ticket.id.as_str());
    let clamped = ticket.clamped.clone().and_then(|c| HeaderValue::from_str(&c).ok());
    // From here the call is ended however this handler ends: dropped (the client went away)
    // before the answer is whole, it is ended as cancelled in the background.
    let mut call = Relay::new(lc, ticket);
    let upstream = send(&state, &mut call).await.map_err(|(code, msg)| Refusal::kie(code, msg))?;
    let status = StatusCode::from_u16(upstream.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = upstream.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok());
    call.first_byte = call.ticket.as_ref().map(ChatTicket::elapsed_ms);
    let streamed = call.ticket.as_ref().is_some_and(|t| t.streamed);
    let dress = |mut r: Response| {
        if let Some(t) = &content_type {
            r.headers_mut().insert(header::CONTENT_TYPE, t.clone());
        }
        if let Some(c) = &clamped {
            r.headers_mut().insert(CLAMPED, c.clone());
        }
        r
    };
    if !status.is_success() || !streamed {
        let bytes = read_whole(&mut call, upstream).await.map_err(|e| Refusal::kie(502, e))?;
        return Ok(dress((status, bytes).into_response()));
    }
    // Streamed: each chunk goes on as it comes; the scan reads usage on the way.
    let mut r = dress(Response::new(stream_through(call, upstream, Relayed::Bytes)));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(r)
}

/// Reads KIE's whole (unstreamed) answer and ends the call at what it says it used; an answer
/// cut off ends it failed, and the error says so.
async fn read_whole(call: &mut Relay, upstream: reqwest::Response) -> Result<Vec<u8>, String> {
    let status = upstream.status();
    let bytes = match read_capped(upstream, MAX_ANSWER).await {
        Ok(b) => b,
        Err(e) => {
            call.finish(failed(502, &e));
            return Err(format!("KIE's answer was cut off: {e}"));
        }
    };
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let outcome = if status.is_success() { ChatOutcome::Answered } else { ChatOutcome::Failed(status.as_u16(), String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned()) };
    (call.scan.usage, call.scan.chars, call.scan.charged) = (usage_of(&answer), answer_chars(&answer), charged_of(&answer));
    call.finish(outcome);
    Ok(bytes)
}

/// A language model's whole answer for a caller inside the console (the MCP server's chat
/// tool): admitted, sent, counted and ended exactly as a relay call is, never streamed.
/// Refused (before anything is sent) or failed: KIE's code and what to tell the caller.
pub(crate) async fn answer(state: &AppState, mut req: ChatRequest) -> Result<Value, (u16, String)> {
    if let Some(body) = req.body.as_object_mut() {
        body.insert("stream".into(), Value::Bool(false));
    }
    let lc = state.lifecycle.clone();
    let ticket = lc.chat_begin(req).await.map_err(|e| (e.code(), e.public_message()))?;
    let mut call = Relay::new(lc, ticket);
    let upstream = send(state, &mut call).await?;
    let status = upstream.status().as_u16();
    let bytes = read_whole(&mut call, upstream).await.map_err(|e| (502, e))?;
    if !(200..300).contains(&status) {
        return Err((status, format!("KIE refused the call ({status}): {}", String::from_utf8_lossy(&bytes[..bytes.len().min(300)]))));
    }
    serde_json::from_slice(&bytes).map_err(|e| (502, format!("KIE's answer is not JSON: {e}")))
}

/// Names the answer limit this console sent when it is below the one the caller asked for.
const CLAMPED: &str = "x-control-room-clamped";

/// What the client of a stream is given.
#[derive(Clone, Copy, PartialEq)]
enum Relayed {
    /// KIE's bytes, unchanged (the relay).
    Bytes,
    /// The answer's text only, as `data: "<json string>"` events and `event: done` at the end
    /// (the composer's draft).
    Text,
}

fn stream_through(relay: Relay, upstream: reqwest::Response, relayed: Relayed) -> Body {
    let chunks = futures::stream::unfold((upstream.bytes_stream(), relay, false), move |(mut upstream, mut relay, ended)| async move {
        if ended {
            return None;
        }
        match upstream.next().await {
            Some(Ok(chunk)) => {
                relay.scan.feed(&chunk);
                let out = match relayed {
                    Relayed::Bytes => chunk,
                    Relayed::Text => {
                        let text = relay.scan.take_text();
                        let mut out = if text.is_empty() { String::new() } else { format!("data: {}\n\n", Value::String(text)) };
                        if relay.scan.done {
                            out.push_str("event: done\ndata: {}\n\n");
                        }
                        Bytes::from(out)
                    }
                };
                Some((Ok::<_, std::io::Error>(out), (upstream, relay, false)))
            }
            Some(Err(e)) => {
                relay.finish(failed(502, &format!("the stream from KIE broke: {}", e.without_url())));
                let out = match relayed {
                    Relayed::Bytes => Err(std::io::Error::other("the stream from KIE broke")),
                    Relayed::Text => Ok(Bytes::from_static(b"event: failed\ndata: \"The stream from KIE broke off\"\n\n")),
                };
                Some((out, (upstream, relay, true)))
            }
            None => {
                relay.finish(ChatOutcome::Answered);
                None
            }
        }
    });
    Body::from_stream(chunks)
}

/// `GET /draft/{token}`: the composer's draft, streamed as Server-Sent Events of text.
pub async fn draft(State(state): State<AppState>, Path(token): Path<String>, actor: Option<axum::Extension<gateway::team::accounts::Actor>>) -> Response {
    let event = |kind: &str, msg: &str| {
        let body = format!("event: {kind}\ndata: {}\n\n", Value::String(msg.to_string()));
        ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
    };
    let Some(axum::Extension(actor)) = actor else { return Refusal::plain(StatusCode::UNAUTHORIZED, "Sign in first.").into_response() };
    let req = match state.lifecycle.take_draft(&token, &actor.who).await {
        Ok(Some(req)) => req,
        Ok(None) => return Refusal::plain(StatusCode::NOT_FOUND, "No such draft (each draft link works once, for a minute, for the person who started it).").into_response(),
        Err(e) => return Refusal::unavailable(Shape::Plain, "draft: store read failed", &e, STORE_DOWN).into_response(),
    };
    let lc = state.lifecycle.clone();
    let ticket = match lc.chat_begin(req).await {
        Ok(t) => t,
        Err(e) => return event("failed", &e.public_message()),
    };
    let mut call = Relay::new(lc, ticket);
    let upstream = match send(&state, &mut call).await {
        Ok(r) if !r.status().is_success() => {
            let status = r.status().as_u16();
            call.finish(failed(status, "KIE refused the draft"));
            return event("failed", &format!("KIE refused the draft ({status})"));
        }
        Ok(r) => r,
        Err((_, msg)) => return event("failed", &msg),
    };
    call.first_byte = call.ticket.as_ref().map(ChatTicket::elapsed_ms);
    let mut r = Response::new(stream_through(call, upstream, Relayed::Text));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Sends an admitted call to KIE, with the body the core decided. With no key, or no answer,
/// the call is ended as failed and the status and message to tell the client are returned.
async fn send(state: &AppState, call: &mut Relay) -> Result<reqwest::Response, (u16, String)> {
    let Some(ticket) = &call.ticket else { return Err((500, "the call has ended already".into())) };
    let Some(kie) = &state.kie else {
        call.finish(failed(503, "no KIE key"));
        return Err((503, "Not configured: the Control Room has no KIE key".into()));
    };
    match kie.chat(&ticket.path, ticket.api, ticket.body.clone(), CHAT_TIMEOUT).await {
        Ok(r) => Ok(r),
        Err(e) => {
            tracing::warn!(error = %e, "chat: KIE could not be reached");
            call.finish(failed(502, &e.to_string()));
            Err((502, format!("KIE did not answer the chat call: {e}")))
        }
    }
}

fn failed(code: u16, msg: &str) -> ChatOutcome {
    ChatOutcome::Failed(code, msg.to_string())
}

/// A call from its admission to its end, ended exactly once, in the background: when KIE's
/// answer ends (or fails), or — if the client goes away first and this is dropped, before the
/// first byte or mid-stream — as cancelled, with what arrived until then (KIE's usage if it
/// came, else the whole hold): its slot is free within moments.
struct Relay {
    lc: Lifecycle,
    ticket: Option<ChatTicket>,
    scan: StreamScan,
    first_byte: Option<u64>,
}

impl Relay {
    fn new(lc: Lifecycle, ticket: ChatTicket) -> Self {
        Relay { lc, ticket: Some(ticket), scan: StreamScan::default(), first_byte: None }
    }

    fn end_of(&mut self, outcome: ChatOutcome) -> Option<(ChatTicket, ChatEnd)> {
        let ticket = self.ticket.take()?;
        Some((ticket, ChatEnd { outcome, usage: self.scan.usage, answer_chars: self.scan.chars, charged: self.scan.charged, first_byte_ms: self.first_byte }))
    }

    /// Ends the call once, in the background (off the response path).
    fn finish(&mut self, outcome: ChatOutcome) {
        if let Some((ticket, used)) = self.end_of(outcome) {
            self.lc.chat_end_later(ticket, used);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // The client read `[DONE]` and left before the stream's end was polled: answered.
        self.finish(if self.scan.done { ChatOutcome::Answered } else { ChatOutcome::Cancelled });
    }
}

async fn read_capped(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.without_url().to_string())? {
        if out.len() + chunk.len() > max {
            return Err(format!("the answer is over {max} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
