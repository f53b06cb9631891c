//! `/share/{token}`: a share link's page, for a client without an account
//! (`gateway::team::share_links`).
//!
//! - `GET`: one project's Library, newest first, 24 tasks a page (`?after=` for older ones):
//!   each result as a picture, a player or a file, with a download, all through signed Library
//!   links; the project's receipt totals when the link allows them. Plain HTML, no script,
//!   `noindex`, `Referrer-Policy: no-referrer` (the token is in the address), a Content
//!   Security Policy that allows nothing but this console's own stylesheet and media, and no
//!   link to any other route of the console.
//! - A link with a password first shows a form; `POST` checks it (wrong tries counted per
//!   link) and gives this browser a pass (cookie scoped to this link's path, 12 hours).
//!
//! An unknown, revoked or expired token is one answer: 404.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use serde::Deserialize;

use crate::AppState;
use crate::plain_page::{cookie, escape};
use gateway::library::asset::AssetState;
use gateway::team::share_links::{self, ShareError, ShareLink};

pub const PREFIX: &str = "/share/";
/// The cookie that holds a pass for a link with a password.
const PASS_COOKIE: &str = "cr_share";
/// Tasks a page shows.
const PAGE: usize = 24;

pub fn routes() -> Router<AppState> {
    Router::new().route("/share/{token}", get(show).post(unlock))
}

/// The page's headers on top of [`crate::plain_page::page`]'s.
fn guarded(mut r: Response, status: StatusCode) -> Response {
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'self'; img-src 'self'; media-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    );
    r
}

fn page(state: &AppState, status: StatusCode, title: &str, body: &str) -> Response {
    guarded(crate::plain_page::page(&state.leptos_options, title, "share", body), status)
}

fn refused(state: &AppState, e: ShareError) -> Response {
    let (status, text) = match &e {
        ShareError::NotFound => (StatusCode::NOT_FOUND, "This link does not exist or has ended. Ask whoever sent it for a new one.".to_string()),
        ShareError::Account(inner) => {
            tracing::error!(error = %inner, "a share link could not be read");
            (StatusCode::SERVICE_UNAVAILABLE, "The console cannot read its store right now; try again shortly.".to_string())
        }
        other => (StatusCode::UNPROCESSABLE_ENTITY, other.to_string()),
    };
    page(state, status, "Shared production", &format!("<h1>Shared production</h1><p class=\"error\" role=\"alert\" data-testid=\"share-error\">{}</p>", escape(&text)))
}

fn password_form(state: &AppState, token: &str, note: Option<&str>) -> Response {
    let note = note.map(|n| format!("<p class=\"error\" role=\"alert\" data-testid=\"share-error\">{}</p>", escape(n))).unwrap_or_default();
    page(state, StatusCode::OK, "Shared production", &format!(
        "<h1>Shared production</h1>{note}<p>This link has a password: ask whoever sent it.</p>\
         <form method=\"post\" action=\"{PREFIX}{token}\" class=\"signin-form\" data-testid=\"share-password-form\"><label>Password <input type=\"password\" name=\"password\" required maxlength=\"256\" autocomplete=\"off\"></label><button type=\"submit\">Open</button></form>"
    ))
}

/// A token as it may appear in a path (anything else is not one of ours).
fn plain_token(token: &str) -> Option<&str> {
    (token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit())).then_some(token)
}

#[derive(Deserialize)]
struct PageQuery {
    after: Option<String>,
}

async fn show(State(state): State<AppState>, Path(token): Path<String>, Query(q): Query<PageQuery>, headers: HeaderMap) -> Response {
    let Some(token) = plain_token(&token) else { return refused(&state, ShareError::NotFound) };
    match share_links::open(state.store.as_ref(), token, cookie(&headers, PASS_COOKIE).as_deref()).await {
        Ok(link) => library_page(&state, token, &link, q.after.filter(|a| a.len() <= 256)).await,
        Err(ShareError::PasswordNeeded) => password_form(&state, token, None),
        Err(e) => refused(&state, e),
    }
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    password: String,
}

async fn unlock(State(state): State<AppState>, Path(token): Path<String>, Form(form): Form<PasswordForm>) -> Response {
    let Some(token) = plain_token(&token) else { return refused(&state, ShareError::NotFound) };
    match share_links::unlock(state.store.as_ref(), token, &form.password).await {
        Ok(pass) => {
            let path = format!("{PREFIX}{token}");
            let mut r = Redirect::to(&path).into_response();
            r.headers_mut().insert(header::SET_COOKIE, crate::plain_page::scoped_cookie(PASS_COOKIE, Some(pass.expose()), &path, share_links::PASS_TTL, "Strict", state.auth.secure));
            guarded(r, StatusCode::SEE_OTHER)
        }
        Err(e @ (ShareError::WrongPassword | ShareError::Throttled)) => guarded(password_form(&state, token, Some(&e.to_string())), StatusCode::UNPROCESSABLE_ENTITY),
        Err(e) => refused(&state, e),
    }
}

/// The UTC day and minute of `ms` (`2026-12-05 01:56 UTC`).
fn when(ms: u64) -> String {
    let iso = gateway::team::audit::utc(ms);
    format!("{} UTC", iso.get(..16).unwrap_or(&iso).replace('T', " "))
}

async fn library_page(state: &AppState, token: &str, link: &ShareLink, after: Option<String>) -> Response {
    let project = escape(&link.project);
    let mut body = format!(
        "<header class=\"share-head\"><h1>{project}</h1><p class=\"muted\">Shared from the KIE Control Room · this link works until {}</p></header>",
        when(link.expires_ms)
    );
    if link.receipts {
        match gateway::money::receipts::project_totals(state.store.as_ref(), &link.project).await {
            Ok(t) => body.push_str(&format!(
                "<p data-testid=\"share-receipts\">{} tasks ended · {} credits charged by KIE</p>",
                t.tasks,
                t.charged
            )),
            Err(e) => return refused(state, ShareError::from(e)),
        }
    }
    let (Some(library), Some(signer)) = (&state.library, &state.lifecycle.options().library_links) else {
        body.push_str("<p>This console keeps no Library, so there is nothing to show.</p>");
        return page(state, StatusCode::OK, &link.project, &body);
    };
    let listing = match library.list(&gateway::team::membership::Membership::All, Some(&link.project), after, PAGE).await {
        Ok(l) => l,
        Err(e) => return refused(state, ShareError::from(e)),
    };
    let now_s = gateway::store::now_ms() / 1000;
    let mut items = String::new();
    for t in &listing.tasks {
        let mut media = String::new();
        for (n, a) in t.archive.iter().flat_map(|a| a.assets.iter()).enumerate().filter(|(_, a)| a.state == AssetState::Archived) {
            let src = escape(&signer.path(&t.id, n, now_s));
            let kind = a.content_type.as_deref().unwrap_or("");
            let shown = if kind.starts_with("image/") {
                format!("<img src=\"{src}\" alt=\"result {}\" loading=\"lazy\">", n + 1)
            } else if kind.starts_with("video/") {
                format!("<video src=\"{src}\" controls preload=\"metadata\"></video>")
            } else if kind.starts_with("audio/") {
                format!("<audio src=\"{src}\" controls preload=\"none\"></audio>")
            } else {
                String::new()
            };
            media.push_str(&format!("<figure>{shown}<figcaption><a href=\"{src}\" download data-testid=\"share-download\">Download result {}</a></figcaption></figure>", n + 1));
        }
        let prompt: String = t.input.get("prompt").and_then(|p| p.as_str()).unwrap_or_default().chars().take(300).collect();
        items.push_str(&format!(
            "<li class=\"share-item\" data-task=\"{}\"><p><strong>{}</strong> · {}</p><p>{}</p>{media}</li>",
            escape(&t.id),
            escape(&t.model),
            when(t.created_ms),
            escape(&prompt)
        ));
    }
    if items.is_empty() {
        body.push_str("<p data-testid=\"share-empty\">Nothing in this production's Library yet.</p>");
    } else {
        body.push_str(&format!("<ul class=\"share-list\" data-testid=\"share-list\">{items}</ul>"));
    }
    if let Some(next) = listing.next {
        let next: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
        body.push_str(&format!("<p><a href=\"{PREFIX}{token}?after={next}\" data-testid=\"share-older\">Older results</a></p>"));
    }
    page(state, StatusCode::OK, &link.project, &body)
}
