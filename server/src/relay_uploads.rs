//! KIE's upload calls through the relay, for relay keys, answered with KIE's answer (its
//! `data.downloadUrl` is usable as any model's input):
//!
//! - `POST /kie/api/file-stream-upload` — multipart (`file`, `uploadPath`, `fileName`),
//!   streamed to KIE as it arrives;
//! - `POST /kie/api/file-base64-upload` — JSON (`base64Data`, `uploadPath`, `fileName`);
//! - `POST /kie/api/file-url-upload` — JSON (`fileUrl`, `uploadPath`, `fileName`): KIE fetches
//!   `fileUrl`, so it must pass the outbound policy as any URL a user aims does (no private
//!   targets: KIE must not be made to probe a network, and the console's own address is no
//!   way around it).
//!
//! Bounded by `UPLOAD_MAX_MB` (a base64 body by a third more) and, per key, by
//! `RELAY_UPLOAD_GB_PER_DAY` over 24 hours ([`gateway::team::upload_allowance`]; 429 past
//! it); sent to KIE's upload host (`KIE_UPLOAD_BASE_URL`). Uploads cost no credits and no
//! rate slot.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use serde_json::Value;

use crate::AppState;
use crate::error::{Refusal, RelayCaller};
use crate::relay::kie_answer;

/// The relay's paths of KIE's upload calls, with KIE's own.
pub const PATHS: [(&str, &str); 3] = [
    ("/kie/api/file-stream-upload", gateway::kie::UPLOAD_PATHS[0]),
    ("/kie/api/file-base64-upload", gateway::kie::UPLOAD_PATHS[1]),
    ("/kie/api/file-url-upload", gateway::kie::UPLOAD_PATHS[2]),
];
/// Room for a multipart body's boundaries and small fields, or a JSON body's other fields.
const OVERHEAD: u64 = 64 << 10;
/// Longest `fileUrl` taken.
const MAX_FILE_URL: usize = 2048;

pub fn routes() -> axum::Router<AppState> {
    let mut router = axum::Router::new();
    for (ours, theirs) in PATHS {
        router = router.route(ours, axum::routing::post(move |state, caller, headers, body| upload(theirs, state, caller, headers, body)));
    }
    router
}

/// The largest body `kie_path` takes under `UPLOAD_MAX_MB`.
fn body_limit(kie_path: &str, max_file: u64) -> u64 {
    match kie_path {
        p if p == gateway::kie::UPLOAD_PATHS[0] => max_file + OVERHEAD,
        p if p == gateway::kie::UPLOAD_PATHS[1] => max_file.div_ceil(3) * 4 + OVERHEAD,
        _ => OVERHEAD,
    }
}

async fn upload(kie_path: &'static str, State(state): State<AppState>, RelayCaller(key): RelayCaller, headers: HeaderMap, body: Body) -> Result<Response, Refusal> {
    let Some(kie) = &state.kie else { return Err(Refusal::kie(503, "Not configured: the Control Room has no KIE key")) };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let multipart = kie_path == gateway::kie::UPLOAD_PATHS[0];
    let wanted = if multipart { "multipart/form-data" } else { "application/json" };
    if !content_type.trim_start().to_ascii_lowercase().starts_with(wanted) {
        return Err(Refusal::kie(415, format!("Content-Type must be {wanted}")));
    }
    let limit = body_limit(kie_path, state.upload_max_bytes);
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let too_large = || Refusal::kie(413, format!("The upload is larger than this console takes (UPLOAD_MAX_MB = {} MiB per file)", state.upload_max_bytes >> 20));
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let limited = http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    // Set when a streamed body runs past the limit (the upload then fails midway).
    let overran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // What a streamed body has passed on so far.
    let streamed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (sent, size) = if multipart {
        let (seen, counted) = (overran.clone(), streamed.clone());
        let chunks = futures::StreamExt::inspect(http_body_util::BodyDataStream::new(limited), move |chunk| match chunk {
            Ok(bytes) => {
                counted.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) if e.is::<http_body_util::LengthLimitError>() => seen.store(true, std::sync::atomic::Ordering::Relaxed),
            Err(_) => {}
        });
        // Its declared length, else the most it may be.
        (reqwest::Body::wrap_stream(chunks), declared.unwrap_or(limit))
    } else {
        let bytes = http_body_util::BodyExt::collect(limited).await.map_err(|e| if e.is::<http_body_util::LengthLimitError>() { too_large() } else { Refusal::kie(400, format!("The request body could not be read: {e}")) })?.to_bytes();
        let req: Value = serde_json::from_slice(&bytes).map_err(|e| Refusal::kie(400, format!("The request body is not valid JSON: {e}")))?;
        if !req.is_object() {
            return Err(Refusal::kie(422, "The request body must be a JSON object"));
        }
        if kie_path == gateway::kie::UPLOAD_PATHS[2] {
            let url = match req.get("fileUrl") {
                Some(Value::String(u)) if !u.trim().is_empty() && u.len() <= MAX_FILE_URL => u.trim(),
                _ => return Err(Refusal::kie(422, format!("fileUrl is required: an http(s) URL of at most {MAX_FILE_URL} characters"))),
            };
            state.lifecycle.outbound().check(url).await.map_err(|e| Refusal::kie(422, format!("fileUrl refused: {e}")))?;
        }
        let size = bytes.len() as u64;
        (reqwest::Body::from(bytes), size)
    };
    // Counted against the key's day before anything is sent.
    let store = state.lifecycle.store();
    let claim = gateway::team::upload_allowance::claim(store.as_ref(), &key.id, size, state.relay_upload_bytes_per_day).await.map_err(|e| match e {
        gateway::team::upload_allowance::AllowanceError::Spent { retry_after, .. } => Refusal::kie(429, e.to_string()).retry_after(Some(retry_after)),
        gateway::team::upload_allowance::AllowanceError::Store(e) => crate::relay::store_down("relay: the upload allowance could not be read", &e),
    })?;
    // As long as its client may take to send it (the edge's deadline for an upload's body).
    let answer = kie.upload_as_sent(kie_path, &content_type, sent, crate::edge::limits::UPLOAD_DEADLINE).await;
    if let Some(claim) = claim {
        // What went to KIE, or nothing when it did not take it.
        let went = match &answer {
            Ok(_) if multipart => streamed.load(std::sync::atomic::Ordering::Relaxed),
            Ok(_) => size,
            Err(_) => 0,
        };
        if let Err(e) = claim.settle(store.as_ref(), went).await {
            tracing::warn!(error = %e, key = %key.id, "relay: an upload's claim could not be settled; it lapses in a day");
        }
    }
    let data = answer.map_err(|e| {
        if overran.load(std::sync::atomic::Ordering::Relaxed) {
            return too_large();
        }
        tracing::warn!(error = %e, key = %key.id, path = kie_path, "relay: an upload to KIE did not succeed");
        Refusal::kie(e.http_status(), format!("KIE's upload did not succeed: {e}"))
    })?;
    tracing::info!(key = %key.id, path = kie_path, "relay: a file uploaded to KIE");
    Ok(kie_answer(200, "File uploaded successfully", data))
}
