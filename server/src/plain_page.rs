//! Pages written without Leptos, for the routes that stand outside the console (setting up
//! two-step sign-in, a share link's page): the console's stylesheet, `noindex`, no script,
//! never cached; and the helpers they share (escaping, reading and setting their cookies).

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use leptos::config::LeptosOptions;

/// `s` safe inside HTML text and attribute values.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A whole page: `title` (escaped here) in the tab, `body` (HTML, escaped by the caller) in
/// a `<main class="{class}">` under the console's name.
pub fn page(options: &LeptosOptions, title: &str, class: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><meta name=\"robots\" content=\"noindex, nofollow\"><title>{} · KIE Control Room</title><link rel=\"stylesheet\" href=\"{}\"></head><body><main class=\"{class}\">{body}</main></body></html>",
        escape(title),
        app::assets::stylesheet(options)
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store"), (header::HeaderName::from_static("x-robots-tag"), "noindex, nofollow")], html).into_response()
}

/// The value of cookie `name` in a request (the first, if several; empty counts as none).
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|c| c.split(';')).find_map(|c| c.trim().strip_prefix(&prefix).map(str::to_string)).filter(|v| !v.is_empty() && v.len() <= 128)
}

/// A `Set-Cookie` value for a cookie that only `path` sees: `HttpOnly`, `SameSite=same_site`,
/// `Secure` when `secure`; `value` `None` clears it.
pub fn scoped_cookie(name: &str, value: Option<&str>, path: &str, max_age: std::time::Duration, same_site: &str, secure: bool) -> HeaderValue {
    let (value, age) = value.map_or(("", 0), |v| (v, max_age.as_secs()));
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{name}={value}; Path={path}; HttpOnly; SameSite={same_site}; Max-Age={age}{secure}")).unwrap_or_else(|_| HeaderValue::from_static(""))
}
