//! `GET /library/{task}/{n}`: asset `n` of a task from the Library.
//!
//! Who may read it: anyone signed in (viewer and above; the auth guard resolved the session),
//! or anyone holding a signed link (`?exp=…&sig=…`, see `gateway::library::links`), which the
//! guard lets through to be checked here. A tampered or expired link is refused (403).
//!
//! The answer: `Content-Type` as sniffed when archived, `Content-Length`, `ETag` (the
//! SHA-256), `Accept-Ranges: bytes` and one range per request (206 / 416), `If-None-Match`
//! (304), and long caching: the bytes under a name never change.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;

use crate::AppState;
use crate::error::{Refusal, Shape};
use gateway::library::LibraryError;
use gateway::library::links::LinkError;
use gateway::team::accounts::Actor;

#[derive(Deserialize)]
pub struct LinkQuery {
    exp: Option<u64>,
    sig: Option<String>,
}

/// One `bytes=` range of a `len`-byte object: `Ok(None)` for the whole (no header, or several
/// ranges, which this server answers in full), `Err` when it cannot be satisfied.
fn byte_range(headers: &HeaderMap, len: u64) -> Result<Option<std::ops::Range<u64>>, ()> {
    let Some(spec) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else { return Ok(None) };
    let Some(spec) = spec.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end && start < len => start..end.min(len - 1) + 1,
        (Ok(start), Err(_)) if b.is_empty() && start < len => start..len,
        (Err(_), Ok(suffix)) if a.is_empty() && suffix > 0 => len.saturating_sub(suffix)..len,
        _ => return Err(()),
    };
    Ok(Some(range))
}

pub async fn asset(
    State(state): State<AppState>,
    Path((task, n)): Path<(String, usize)>,
    Query(link): Query<LinkQuery>,
    actor: Option<Extension<Actor>>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let now_s = gateway::store::now_ms() / 1000;
    let signed_until = match (&link.exp, &link.sig, &state.lifecycle.options().library_links) {
        (Some(exp), Some(sig), Some(signer)) => match signer.verify(&task, n, *exp, sig, now_s) {
            Ok(()) => Some(*exp),
            Err(e @ (LinkError::Expired | LinkError::Invalid)) => return Err(Refusal::plain(StatusCode::FORBIDDEN, e.to_string())),
        },
        _ if actor.is_some() => None,
        (None, None, _) => return Err(Refusal::plain(StatusCode::UNAUTHORIZED, "Sign in first, or use a signed Library link (its exp and sig).")),
        _ => return Err(Refusal::plain(StatusCode::FORBIDDEN, "This Library link is not valid: it needs both exp and sig, or a signed-in session.")),
    };
    let Some(library) = &state.library else { return Err(Refusal::plain(StatusCode::NOT_FOUND, "The Library is off on this console (LIBRARY_URL=off).")) };
    let found = library.find(&task, n).await.map_err(|e| match e {
        LibraryError::NotFound => Refusal::plain(StatusCode::NOT_FOUND, "No such asset in the Library (not archived yet, deleted, or never there)."),
        e => unreadable(&e),
    })?;
    // Signed in without a signed link: only an asset of a project the person reaches (another
    // project's is, for them, not there).
    if signed_until.is_none() && actor.as_ref().is_some_and(|a| !a.sees(&found.task.project)) {
        return Err(Refusal::plain(StatusCode::NOT_FOUND, "No such asset in the Library (not archived yet, deleted, or never there)."));
    }
    let len = found.asset.bytes.unwrap_or(0);
    let etag = format!("\"{}\"", found.asset.sha256.as_deref().unwrap_or_default());
    let cache = match signed_until {
        Some(exp) => format!("public, max-age={}, immutable", exp.saturating_sub(now_s)),
        None => "private, max-age=31536000, immutable".to_string(),
    };
    let mut out = HeaderMap::new();
    let mut put = |name: header::HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            out.insert(name, v);
        }
    };
    put(header::ETAG, &etag);
    put(header::CACHE_CONTROL, &cache);
    put(header::ACCEPT_RANGES, "bytes");
    put(header::CONTENT_TYPE, found.asset.content_type.as_deref().unwrap_or("application/octet-stream"));
    put(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    put(header::CONTENT_SECURITY_POLICY, "sandbox; default-src 'none'");
    put(header::CONTENT_DISPOSITION, &format!("inline; filename=\"{}-{}\"", found.task.id, n));
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*")) {
        return Ok((StatusCode::NOT_MODIFIED, out).into_response());
    }
    let range = match byte_range(&headers, len) {
        Ok(r) => r,
        Err(()) => {
            put(header::CONTENT_RANGE, &format!("bytes */{len}"));
            return Ok((StatusCode::RANGE_NOT_SATISFIABLE, out, "The requested range is outside the asset.").into_response());
        }
    };
    let (status, length) = match &range {
        Some(r) => {
            put(header::CONTENT_RANGE, &format!("bytes {}-{}/{len}", r.start, r.end - 1));
            (StatusCode::PARTIAL_CONTENT, r.end - r.start)
        }
        None => (StatusCode::OK, len),
    };
    put(header::CONTENT_LENGTH, &length.to_string());
    match library.read(&found, range).await {
        Ok(stream) => Ok((status, out, Body::from_stream(stream)).into_response()),
        Err(LibraryError::NotFound) => Err(Refusal::plain(StatusCode::NOT_FOUND, "This asset is recorded but missing from this console's Library; an operator has been told.")),
        Err(e) => Err(unreadable(&e)),
    }
}

/// What a desk upload's form may add to its file's bytes (the project field, the parts'
/// headers and boundaries) before its announced length says the file is over the limit.
const FORM_AROUND_FILE: u64 = 64 << 10;

/// `POST /library/upload` (multipart: `project`, then `file`; panel 07's "Add from your
/// desk"): a producer's file kept in the Library ([`gateway::library::desk`]), bounded by
/// `UPLOAD_MAX_MB` and `LIBRARY_MAX_ASSET_MB`; then the composer opens with it as the input.
pub async fn upload(State(state): State<AppState>, actor: Option<Extension<Actor>>, headers: HeaderMap, mut form: axum::extract::Multipart) -> Result<Response, Refusal> {
    let Some(Extension(actor)) = actor else { return Err(Refusal::plain(StatusCode::UNAUTHORIZED, "Sign in first: adding a file needs a session.")) };
    let Some(library) = &state.library else { return Err(Refusal::plain(StatusCode::NOT_FOUND, "The Library is off on this console (LIBRARY_URL=off).")) };
    let max = state.upload_max_bytes.min(library.config().max_asset_bytes);
    // The form's length as the browser announced it: its progress is shown against it, and
    // one plainly over the limit is refused before a byte of it is read.
    let expected = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if expected.is_some_and(|n| n > max.saturating_add(FORM_AROUND_FILE)) {
        return Err(Refusal::plain(StatusCode::PAYLOAD_TOO_LARGE, format!("The file is larger than this console takes ({} MiB). Nothing was kept.", max >> 20)));
    }
    let unreadable = |e: axum::extract::multipart::MultipartError| Refusal::plain(StatusCode::BAD_REQUEST, format!("The form could not be read: {e}"));
    let mut project = None;
    while let Some(field) = form.next_field().await.map_err(unreadable)? {
        match field.name() {
            Some("project") => project = Some(field.text().await.map_err(unreadable)?),
            Some("file") => {
                let Some(project) = project.take() else { return Err(Refusal::plain(StatusCode::UNPROCESSABLE_ENTITY, "Name the project before the file.")) };
                let name = field.file_name().unwrap_or("file").to_string();
                let chunks = futures::StreamExt::map(field, |c| c.map_err(|e| format!("the upload broke off: {e}")));
                let kept = library.keep_from_desk(&actor, project.trim(), &name, chunks, max, expected).await.map_err(|e| {
                    Refusal::plain(StatusCode::from_u16(e.code()).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY), format!("{e}. Nothing was kept."))
                })?;
                tracing::Span::current().record("task", kept.id.as_str());
                let sniffed = kept.archive.as_ref().and_then(|a| a.assets.first()).and_then(|a| a.content_type.clone()).unwrap_or_default();
                return Ok(axum::response::Redirect::to(&app::panels::use_as_input(&kept.id, 0, &sniffed)).into_response());
            }
            _ => {}
        }
    }
    Err(Refusal::plain(StatusCode::UNPROCESSABLE_ENTITY, "Choose a file to add."))
}

fn unreadable(e: &LibraryError) -> Refusal {
    Refusal::unavailable(Shape::Plain, "library: cannot read an asset", e, "The Library cannot be read right now; try again shortly.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(v: &str, len: u64) -> Result<Option<std::ops::Range<u64>>, ()> {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
        byte_range(&h, len)
    }

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(range("bytes=0-9", 100), Ok(Some(0..10)));
        assert_eq!(range("bytes=90-200", 100), Ok(Some(90..100)));
        assert_eq!(range("bytes=50-", 100), Ok(Some(50..100)));
        assert_eq!(range("bytes=-10", 100), Ok(Some(90..100)));
        assert_eq!(range("bytes=-500", 100), Ok(Some(0..100)));
        assert_eq!(range("bytes=0-1,5-6", 100), Ok(None), "several ranges: the whole");
        assert_eq!(range("items=0-1", 100), Ok(None));
        for bad in ["bytes=100-", "bytes=5-2", "bytes=-0", "bytes=x-y", "bytes=200-300"] {
            assert_eq!(range(bad, 100), Err(()), "{bad}");
        }
    }
}
