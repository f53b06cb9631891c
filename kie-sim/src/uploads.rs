//! KIE's upload API (on KIE's upload host; here, the simulator's own): a file sent as
//! multipart (`/api/file-stream-upload`), as base64 (`/api/file-base64-upload`) or as a URL
//! KIE fetches (`/api/file-url-upload`), answered with `data.downloadUrl`, where the file is
//! served until it is deleted ([`UPLOAD_LIFE_MS`] of simulated time).
//!
//! Bounded: each file at most [`MAX_UPLOAD`], the newest [`KEPT`] files kept.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use crate::Sim;
use crate::kie_api::{authorise, kie};

/// How long an upload is served, in simulated ms (KIE's pages say 24 hours to 3 days: the
/// shortest).
pub const UPLOAD_LIFE_MS: u64 = 24 * 3_600 * 1_000;
/// Largest file taken.
pub const MAX_UPLOAD: usize = 100 << 20;
/// Files kept (the oldest forgotten past it).
const KEPT: usize = 64;

/// One uploaded file.
#[derive(Debug, Clone)]
pub struct Upload {
    pub name: String,
    pub content_type: String,
    pub bytes: Bytes,
    pub at_ms: u64,
}

/// What a call sent: the file's name, where it goes, and its bytes (or why not).
struct Sent {
    name: String,
    path: String,
    content_type: String,
    bytes: Bytes,
}

/// A file name as KIE keeps it: its last path segment, of safe characters.
fn clean(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let s: String = last.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')).take(100).collect();
    if s.is_empty() { "file".into() } else { s }
}

/// Stores a file and answers as KIE does.
fn keep(sim: &Sim, path: &'static str, sent: Sent) -> Response {
    let mut w = sim.world();
    w.next_upload += 1;
    let id = format!("up{:06}", w.next_upload);
    let name = clean(&sent.name);
    let url = format!("{}/uploads/{id}/{name}", w.base_url);
    let size = sent.bytes.len();
    let at_ms = w.clock.now_ms();
    w.upload_order.push_back(id.clone());
    if w.upload_order.len() > KEPT
        && let Some(old) = w.upload_order.pop_front()
    {
        w.uploads.remove(&old);
    }
    w.uploads.insert(id, Upload { name: name.clone(), content_type: sent.content_type.clone(), bytes: sent.bytes, at_ms });
    w.record("POST", path, 200, None, Some(format!("{size} bytes")));
    let data = json!({
        "fileName": name,
        "filePath": format!("{}/{name}", sent.path.trim_matches('/')),
        "downloadUrl": url,
        "fileSize": size,
        "mimeType": sent.content_type,
        "uploadedAt": at_ms,
    });
    kie(200, "File uploaded successfully", Some(data), false)
}

fn refuse(sim: &Sim, path: &str, code: i64, msg: &str, as_200: bool) -> Response {
    sim.world().record("POST", path, code, None, Some(msg.to_string()));
    kie(code, msg, None, as_200)
}

/// `POST /api/file-stream-upload`: multipart `file`, `uploadPath`, `fileName`.
pub async fn stream(State(sim): State<Sim>, headers: HeaderMap, mut form: Multipart) -> Response {
    const PATH: &str = "/api/file-stream-upload";
    let as_200 = match authorise(&sim, &headers, PATH).await {
        Ok((_, a)) => a,
        Err(r) => return r,
    };
    let (mut file, mut path, mut name) = (None, None, None);
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return refuse(&sim, PATH, 400, &format!("The multipart body could not be read: {e}"), as_200),
        };
        match field.name().unwrap_or_default() {
            "file" => {
                let given = (field.file_name().map(str::to_string), field.content_type().map(str::to_string));
                match field.bytes().await {
                    Ok(b) if b.len() <= MAX_UPLOAD => file = Some((b, given)),
                    Ok(_) => return refuse(&sim, PATH, 413, "The file is too large", as_200),
                    Err(e) => return refuse(&sim, PATH, 400, &format!("The file could not be read: {e}"), as_200),
                }
            }
            "uploadPath" => path = field.text().await.ok(),
            "fileName" => name = field.text().await.ok(),
            _ => {}
        }
    }
    let Some((bytes, (file_name, content_type))) = file else { return refuse(&sim, PATH, 400, "file is required", as_200) };
    let Some(path) = path.filter(|p| !p.trim().is_empty()) else { return refuse(&sim, PATH, 400, "uploadPath is required", as_200) };
    let name = name.filter(|n| !n.trim().is_empty()).or(file_name).unwrap_or_else(|| "file".into());
    keep(&sim, PATH, Sent { name, path, content_type: content_type.unwrap_or_else(|| "application/octet-stream".into()), bytes })
}

/// The base64 and URL calls' start: the key, then the JSON body with `uploadPath` required;
/// (the body, `uploadPath`, whether errors are wrapped in 200) or the answer to send.
async fn json_call(sim: &Sim, headers: &HeaderMap, path: &'static str, body: &[u8]) -> Result<(Value, String, bool), Response> {
    let (_, as_200) = authorise(sim, headers, path).await?;
    let v: Value = serde_json::from_slice(body).map_err(|_| refuse(sim, path, 400, "The request body must be JSON", as_200))?;
    let upload_path = v.get("uploadPath").and_then(Value::as_str).filter(|p| !p.trim().is_empty()).map(str::to_string);
    let upload_path = upload_path.ok_or_else(|| refuse(sim, path, 400, "uploadPath is required", as_200))?;
    Ok((v, upload_path, as_200))
}

/// `POST /api/file-base64-upload`: `base64Data` (plain, or a `data:<type>;base64,` URL),
/// `uploadPath`, `fileName`.
pub async fn base64(State(sim): State<Sim>, headers: HeaderMap, body: Bytes) -> Response {
    const PATH: &str = "/api/file-base64-upload";
    let (v, path, as_200) = match json_call(&sim, &headers, PATH, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(data) = v.get("base64Data").and_then(Value::as_str) else { return refuse(&sim, PATH, 400, "base64Data is required", as_200) };
    let (content_type, data) = match data.strip_prefix("data:").and_then(|d| d.split_once(";base64,")) {
        Some((t, d)) => (t.to_string(), d),
        None => ("application/octet-stream".to_string(), data),
    };
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(data.trim()) else { return refuse(&sim, PATH, 400, "base64Data is not valid base64", as_200) };
    let name = v.get("fileName").and_then(Value::as_str).unwrap_or("file").to_string();
    keep(&sim, PATH, Sent { name, path, content_type, bytes: bytes.into() })
}

/// `POST /api/file-url-upload`: `fileUrl` (fetched by the simulator, as KIE would),
/// `uploadPath`, `fileName`.
pub async fn url(State(sim): State<Sim>, headers: HeaderMap, body: Bytes) -> Response {
    const PATH: &str = "/api/file-url-upload";
    let (v, path, as_200) = match json_call(&sim, &headers, PATH, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(url) = v.get("fileUrl").and_then(Value::as_str).map(str::to_string) else { return refuse(&sim, PATH, 400, "fileUrl is required", as_200) };
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).redirect(reqwest::redirect::Policy::none()).build();
    let fetched = match client {
        Ok(c) => c.get(&url).send().await,
        Err(e) => return refuse(&sim, PATH, 500, &format!("cannot fetch: {e}"), as_200),
    };
    let resp = match fetched {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => return refuse(&sim, PATH, 400, &format!("fileUrl answered HTTP {}", r.status().as_u16()), as_200),
        Err(_) => return refuse(&sim, PATH, 400, "fileUrl could not be fetched", as_200),
    };
    let content_type = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/octet-stream").to_string();
    if resp.content_length().is_some_and(|n| n > MAX_UPLOAD as u64) {
        return refuse(&sim, PATH, 413, "The file is too large", as_200);
    }
    let Ok(bytes) = resp.bytes().await else { return refuse(&sim, PATH, 400, "fileUrl could not be read", as_200) };
    let name = v.get("fileName").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| url.rsplit('/').next().unwrap_or("file").to_string());
    keep(&sim, PATH, Sent { name, path, content_type, bytes })
}

/// `GET /uploads/{id}/{name}`: an uploaded file, until it is deleted.
pub async fn file(State(sim): State<Sim>, Path((id, name)): Path<(String, String)>) -> Response {
    let mut w = sim.world();
    let now = w.clock.now_ms();
    let found = w.uploads.get(&id).filter(|u| u.name == name && now <= u.at_ms + UPLOAD_LIFE_MS).cloned();
    w.record("GET", "/uploads", if found.is_some() { 200 } else { 404 }, None, Some(id));
    drop(w);
    match found {
        Some(u) => ([(header::CONTENT_TYPE, u.content_type)], u.bytes).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({"code": 404, "msg": "File not found or expired"}))).into_response(),
    }
}
