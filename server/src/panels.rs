//! One server-rendered panel at a time, for the live console (see `app::enhance`):
//!
//! - `GET /panel/<slug>?<filter>`: the panel as the page renders it, with the filter form's
//!   values (a search, an open model page…).
//! - `POST /panel/<slug>` (a form, URL-encoded): the change the form asks for, through the same
//!   server functions the API serves (and their role checks), then the panel with the outcome
//!   at its top. `X-Refresh` names the other panels the change moved. A refusal keeps its
//!   status (401, 403, 400…). A post from a browser without WASM gets the panel on a page of
//!   its own, with a link back.
//!
//! - `GET /tasks/<id>` (or `/tasks?task=<id>`): a task's story ([`PanelId::Story`]) on a page of its own.
//!
//! All need a session (the guard answers 401 without one; a page without one is sent to sign in). Queries and forms are bounded:
//! at most 32 fields of at most 5,000 characters, 64 KiB in all.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::Extension;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use leptos::prelude::*;
use leptos::reactive::computed::ScopedFuture;
use leptos::reactive::owner::Owner;

use crate::AppState;
use crate::error::Refusal;
use app::api::ConsoleContext;
use app::panels::{Fields, MAX_FIELDS, PanelId};

/// Largest form a panel takes.
const MAX_FORM_BYTES: usize = 64 * 1024;
/// Longest value of one field.
const MAX_VALUE_CHARS: usize = 5_000;
/// Largest form of panel 06, whose batch form carries a batch's rows.
const MAX_BATCH_FORM_BYTES: usize = 512 * 1024;
/// Longest batch's rows (one field of panel 06's batch form).
const MAX_ROWS_CHARS: usize = 400_000;

pub fn routes(console: ConsoleContext) -> Router<AppState> {
    Router::new().route("/panel/{slug}", get(show).post(change)).route("/tasks/{id}", get(story)).route("/tasks", get(story_asked)).layer(Extension(console))
}

/// URL-encoded pairs, within the bounds.
fn fields(encoded: &[u8]) -> Result<Fields, Refusal> {
    let mut out = Fields::new();
    for (k, v) in url::form_urlencoded::parse(encoded) {
        if out.len() == MAX_FIELDS {
            return Err(Refusal::plain(StatusCode::BAD_REQUEST, "Too many fields: a panel takes at most 32."));
        }
        let most = if k == "rows" { MAX_ROWS_CHARS } else { MAX_VALUE_CHARS };
        if v.chars().count() > most || k.len() > 64 {
            return Err(Refusal::plain(StatusCode::BAD_REQUEST, "A field is too long: names up to 64 characters, values up to 5,000 (a batch's rows up to 400,000)."));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

fn panel(slug: &str) -> Result<PanelId, Refusal> {
    PanelId::from_slug(slug).ok_or_else(|| Refusal::plain(StatusCode::NOT_FOUND, "No such panel."))
}

async fn show(Extension(console): Extension<ConsoleContext>, Path(slug): Path<String>, req: Request) -> Result<Rendered, Refusal> {
    let id = panel(&slug)?;
    let query = fields(req.uri().query().unwrap_or_default().as_bytes())?;
    let (parts, _) = req.into_parts();
    Ok(render(console, parts, id, query, false).await)
}

async fn change(State(state): State<AppState>, Extension(console): Extension<ConsoleContext>, Path(slug): Path<String>, req: Request) -> Result<Response, Refusal> {
    let id = panel(&slug)?;
    let fragment = req.headers().contains_key("x-fragment");
    let (parts, body) = req.into_parts();
    let most = if id == PanelId::Throttle { MAX_BATCH_FORM_BYTES } else { MAX_FORM_BYTES };
    let bytes = axum::body::to_bytes(body, most).await.map_err(|_| Refusal::plain(StatusCode::PAYLOAD_TOO_LARGE, format!("The form is larger than {} KiB.", most >> 10)))?;
    let form = fields(&bytes)?;
    let rendered = render(console, parts, id, form, true).await;
    if fragment {
        return Ok(rendered.into_response());
    }
    // Without WASM: the panel on a page of its own.
    Ok(own_page(&state, rendered, &format!("{}#{slug}", id.page())))
}

/// `GET /tasks/<id>`: a task's story (by the Control Room's id or KIE's) on a page of its own.
async fn story(State(state): State<AppState>, Extension(console): Extension<ConsoleContext>, Path(id): Path<String>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let rendered = render(console, parts, PanelId::Story, vec![("task".into(), id)], false).await;
    own_page(&state, rendered, "/#monitor")
}

/// `GET /tasks?task=<id>`: the same page, as the Monitor's Story buttons open it without WASM.
async fn story_asked(State(state): State<AppState>, Extension(console): Extension<ConsoleContext>, req: Request) -> Result<Response, Refusal> {
    let query = fields(req.uri().query().unwrap_or_default().as_bytes())?;
    let (parts, _) = req.into_parts();
    let rendered = render(console, parts, PanelId::Story, query, false).await;
    Ok(own_page(&state, rendered, "/#monitor"))
}

/// A rendered panel on a page of its own, with a link `back` to where it sits on the console.
fn own_page(state: &AppState, rendered: Rendered, back: &str) -> Response {
    let Rendered { status, html, .. } = rendered;
    let page = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>KIE Control Room</title><link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\"><link rel=\"stylesheet\" href=\"{}\"></head><body><main class=\"grid single\">{html}</main><p class=\"foot\"><a href=\"{back}\">Back to the console</a></p></body></html>",
        app::assets::stylesheet(&state.leptos_options)
    );
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], page).into_response()
}

struct Rendered {
    status: StatusCode,
    html: String,
    also: Vec<&'static str>,
}

impl IntoResponse for Rendered {
    fn into_response(self) -> Response {
        let mut r = Response::new(Body::from(self.html));
        *r.status_mut() = self.status;
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(v) = HeaderValue::from_str(&self.also.join(",")) {
            h.insert("x-refresh", v);
        }
        r
    }
}

/// Runs the panel's change (`post`) and renders it, in a reactive owner that holds what the
/// server functions read: the console, the request (its actor) and the response options.
async fn render(console: ConsoleContext, parts: axum::http::request::Parts, id: PanelId, fields: Fields, post: bool) -> Rendered {
    let owner = Owner::new();
    let response = leptos_axum::ResponseOptions::default();
    let work = owner.with(|| {
        provide_context(console);
        provide_context(parts);
        provide_context(response.clone());
        provide_context(app::api::StatusMemo::default());
        ScopedFuture::new(async move {
            let acted = if post { app::panels::act(id, fields.clone()).await } else { None };
            let refused = post && acted.is_none();
            let also: Vec<&'static str> = acted.as_ref().map(|a| a.also.iter().map(|p| p.slug()).collect()).unwrap_or_default();
            let html = app::panels::render(id, fields, acted.map(|a| a.flash)).await.to_html();
            (html, also, refused)
        })
    });
    let (html, also, refused) = work.await;
    let status = if refused { StatusCode::METHOD_NOT_ALLOWED } else { response.0.read().map(|r| r.status).ok().flatten().unwrap_or(StatusCode::OK) };
    drop(owner);
    Rendered { status, html, also }
}
