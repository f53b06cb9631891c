//! Setting up two-step sign-in before a first session, when the team requires it
//! (`gateway::team::second_factor::set_required`): a right password on an account without it
//! gives no session but a ticket (cookie `cr_enrol`, 10 minutes, sent to these two routes
//! only), and
//!
//! - `GET /auth/enrol`: the QR code (drawn here) and the secret as text, and a form for the
//!   app's code;
//! - `POST /auth/enrol` (the code): turns it on, ends the ticket and shows the recovery codes
//!   once, with the way back to sign in (now with a code).
//!
//! Plain HTML: it works without the page's script. Nothing else is reachable with a ticket.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Form, Router};
use serde::Deserialize;

use crate::AppState;
use crate::auth::{AuthConfig, ClientAddress};
use crate::error::{Refusal, STORE_DOWN, Shape};
use crate::plain_page::escape;
use gateway::team::accounts::{AccountError, Actor, User};
use gateway::team::second_factor;

/// The enrolment ticket's cookie.
pub const COOKIE: &str = "cr_enrol";
pub const PATH: &str = "/auth/enrol";

pub fn routes() -> Router<AppState> {
    Router::new().route(PATH, get(show).post(confirm))
}

/// The `Set-Cookie` value for a ticket (`None`: clear it).
pub fn ticket_cookie(ticket: Option<&str>, config: &AuthConfig) -> HeaderValue {
    crate::plain_page::scoped_cookie(COOKIE, ticket, PATH, second_factor::TICKET_TTL, "Strict", config.secure)
}


/// The ticket's holder, or where to send the browser instead.
async fn holder(state: &AppState, headers: &HeaderMap) -> Result<(String, User), Response> {
    let back = || Redirect::to("/signin?error=enrol-expired").into_response();
    let Some(ticket) = crate::plain_page::cookie(headers, COOKIE) else { return Err(back()) };
    match second_factor::ticket_holder(state.store.as_ref(), &ticket).await {
        Ok(Some(user)) => Ok((ticket, user)),
        Ok(None) => Err(back()),
        Err(e) => Err(failed(e)),
    }
}

fn failed(e: AccountError) -> Response {
    match e {
        AccountError::Store(e) => Refusal::unavailable(Shape::Plain, "cannot read an enrolment ticket", &e, STORE_DOWN).into_response(),
        other => Refusal::plain(StatusCode::UNPROCESSABLE_ENTITY, other.to_string()).into_response(),
    }
}

fn page(state: &AppState, body: &str) -> Response {
    crate::plain_page::page(&state.leptos_options, "Set up two-step sign-in", "signin", &format!("<h1>KIE Control Room</h1>{body}"))
}

async fn show(State(state): State<AppState>, Extension(from): Extension<ClientAddress>, headers: HeaderMap) -> Response {
    let (_, user) = match holder(&state, &headers).await {
        Ok(h) => h,
        Err(r) => return r,
    };
    let actor = Actor::user(&user, &from.0);
    let setup = match second_factor::begin(state.store.as_ref(), &actor).await {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    let qr = match app::api::qr_svg(&setup.uri) {
        Ok(svg) => svg,
        Err(e) => return Refusal::plain(StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    };
    page(&state, &format!(
        "<p class=\"error\" role=\"status\">The team requires two-step sign-in: set it up to go on.</p>\
         <p>Scan this with your authenticator app, or type the secret in, then enter the code it shows (within 10 minutes).</p>\
         <div class=\"qr\" role=\"img\" aria-label=\"QR code of the two-step secret\">{qr}</div>\
         <p class=\"muted small\">Secret: <code class=\"once\" data-testid=\"enrol-secret\">{}</code></p>\
         <form method=\"post\" action=\"{PATH}\" class=\"signin-form\"><label>Code <input name=\"code\" required maxlength=\"8\" inputmode=\"numeric\" autocomplete=\"one-time-code\" data-testid=\"enrol-code\"></label><button type=\"submit\">Turn on</button></form>",
        escape(&setup.secret)
    ))
}

#[derive(Deserialize)]
struct CodeForm {
    #[serde(default)]
    code: String,
}

async fn confirm(State(state): State<AppState>, Extension(from): Extension<ClientAddress>, headers: HeaderMap, Form(form): Form<CodeForm>) -> Response {
    let (ticket, user) = match holder(&state, &headers).await {
        Ok(h) => h,
        Err(r) => return r,
    };
    if form.code.len() > 64 {
        return Refusal::plain(StatusCode::UNPROCESSABLE_ENTITY, "That is not a code.").into_response();
    }
    let actor = Actor::user(&user, &from.0);
    let codes = match second_factor::confirm(state.store.as_ref(), &actor, &form.code).await {
        Ok(c) => c,
        Err(AccountError::Invalid(why)) => {
            return page(&state, &format!("<p class=\"error\" role=\"alert\" data-testid=\"enrol-error\">{}</p><p><a href=\"{PATH}\">Start again</a></p>", escape(&why)));
        }
        Err(e) => return failed(e),
    };
    if let Err(e) = second_factor::end_ticket(state.store.as_ref(), &ticket).await {
        tracing::warn!(error = %e, "an enrolment ticket outlives its use (it lapses in 10 minutes)");
    }
    let list: String = codes.iter().map(|c| format!("<li><code>{}</code></li>", escape(c))).collect();
    let mut r = page(&state, &format!(
        "<div class=\"ok\" role=\"status\" data-testid=\"enrol-done\"><p>Two-step sign-in is on. Keep these recovery codes somewhere safe: each opens your account once without the app, and they are not shown again.</p><ul class=\"codes\" data-testid=\"enrol-recovery\">{list}</ul></div><p><a href=\"/signin\">Sign in</a> with your password and the code your app shows.</p>"
    ));
    r.headers_mut().insert(header::SET_COOKIE, ticket_cookie(None, &state.auth));
    r
}
