//! The browser bundle under `/pkg/`: precompressed files (`.br`, `.gz`, built by
//! `cargo leptos build --release --precompress`) chosen by the request's `Accept-Encoding`,
//! and, when cargo-leptos hashed their names (`hash.txt` beside the binary), cached for a
//! year as immutable: a new build has new names. Unhashed (a dev build), or missing, they are
//! revalidated. Pages and panels (HTML) are compressed on the fly.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use leptos::config::LeptosOptions;
use tower_http::services::ServeDir;

use crate::AppState;

/// What a hashed file may be cached as.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Whether cargo-leptos hashed the bundle's names (its hash file sits beside this binary,
/// where Leptos reads it).
pub fn hashed() -> bool {
    std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.join("hash.txt"))).is_some_and(|f| f.is_file())
}

/// What [`tower_http::compression`] compresses: HTML (the page, the panels) and nothing else.
pub fn html_only(_: axum::http::StatusCode, _: axum::http::Version, headers: &axum::http::HeaderMap, _: &axum::http::Extensions) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("text/html"))
}

pub fn routes(options: &LeptosOptions) -> Router<AppState> {
    let dir = std::path::Path::new(options.site_root.as_ref()).join(options.site_pkg_dir.as_ref());
    let immutable = options.hash_files;
    Router::new().nest_service("/pkg", ServeDir::new(dir).precompressed_br().precompressed_gzip()).layer(axum::middleware::map_response(
        move |mut r: Response| async move {
            let cache = if immutable && r.status().is_success() { IMMUTABLE } else { "no-cache" };
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
            r
        },
    ))
}
