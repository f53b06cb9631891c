//! Who is asking, checked once for every request before any page, server function, live stream
//! or file is served.
//!
//! - [`guard`] (middleware): refuses cross-site writes (the `Origin`, or else the `Referer`, of
//!   every state-changing browser request must be this console), lets the public routes pass
//!   (health, sign-in, the static bundle, KIE's callbacks with their per-task token, the relay
//!   API with its relay keys), and for everything else resolves the session cookie to an
//!   [`Actor`] placed in the request's extensions. Without a session a page redirects to
//!   `/signin` and anything else gets 401. Roles are checked where the action is (server
//!   functions, the audit export), against that [`Actor`].
//! - `POST /auth/signin`, `/auth/signout`, `/auth/signout-all`: plain HTML forms, so they work
//!   before the page's WASM has loaded.
//! - `GET /audit.csv` (admin): the audit log, filtered like the Audit panel.

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::AppState;
use crate::error::{Refusal, STORE_DOWN, Shape};
use gateway::team::accounts::{self, Actor, Role};
use gateway::team::audit::{self, AuditFilter};
use gateway::team::sessions::{self, SessionPolicy, SignInError};

/// The session cookie's name.
pub const COOKIE: &str = "cr_session";

/// What the guard needs to know, fixed at start.
#[derive(Clone)]
pub struct AuthConfig {
    pub policy: SessionPolicy,
    /// Cookies get `Secure` (PUBLIC_URL is https).
    pub secure: bool,
    /// `host[:port]` of PUBLIC_URL, accepted as an origin besides the request's own `Host`.
    pub public_authority: Option<String>,
    /// `TRUSTED_PROXIES`: whose forwarding headers name the client.
    pub trusted_proxies: Arc<crate::edge::client_address::TrustedProxies>,
}

/// The client's address as the guard saw it (for the audit log and attempt limits).
#[derive(Clone)]
pub struct ClientAddress(pub Arc<str>);

/// The session token of this request (for sign-out), kept apart from the [`Actor`].
#[derive(Clone)]
pub struct SessionToken(pub Arc<str>);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/signin", post(sign_in))
        .route("/auth/signout", post(sign_out))
        .route("/auth/signout-all", post(sign_out_everywhere))
        .route("/audit.csv", get(audit_csv))
}

/// Paths anyone may reach; each guards itself where it must (relay keys, callback tokens, an
/// enrolment ticket, a share link).
fn public(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics" | "/signin" | "/auth/signin" | "/favicon.svg" | crate::enrol::PATH | crate::single_sign_on::START | crate::single_sign_on::CALLBACK)
        || path.starts_with("/pkg/")
        || path.starts_with("/callbacks/kie/")
        || path.starts_with("/kie/")
        // A share link's token, checked by its own page.
        || path.starts_with(crate::share::PREFIX)
        // A relay key, checked by its own guard.
        || path == crate::mcp::PATH
}

/// Paths whose handler accepts a session or a credential of its own (a Library file: a signed
/// link), and says what is missing when there is neither.
fn session_optional(path: &str) -> bool {
    path.starts_with("/library/")
}

/// `host[:port]` of a URL.
fn authority(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let host = u.host_str()?;
    Some(match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    })
}

/// Whether a state-changing request comes from a page of this console. Requests authenticated
/// by a relay key or a callback token carry no cookie and are not browser-driven, so only the
/// cookie-bearing surface is checked; sign-in is checked too (login forgery).
fn same_origin(headers: &HeaderMap, config: &AuthConfig) -> bool {
    let source = headers.get(header::ORIGIN).or_else(|| headers.get(header::REFERER)).and_then(|v| v.to_str().ok());
    let Some(claimed) = source.and_then(authority) else { return false };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    host == Some(claimed.as_str()) || config.public_authority.as_deref() == Some(claimed.as_str())
}

fn client_address(req: &Request, proxies: &crate::edge::client_address::TrustedProxies) -> String {
    req.extensions().get::<ConnectInfo<SocketAddr>>().map_or_else(|| "unknown".into(), |c| proxies.client(c.0.ip(), req.headers()).to_string())
}

/// The session cookie's value, if the request has one.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The middleware: see the module documentation.
pub async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let programmatic = path.starts_with("/kie/") || path.starts_with("/callbacks/kie/") || path == crate::mcp::PATH;
    if writes && !programmatic && !same_origin(req.headers(), &state.auth) {
        tracing::warn!(%path, "refused a cross-site request");
        return Refusal::plain(StatusCode::FORBIDDEN, "Cross-site request refused: this console accepts changes only from its own pages.").into_response();
    }
    let from = client_address(&req, &state.auth.trusted_proxies);
    req.extensions_mut().insert(ClientAddress(from.as_str().into()));
    if public(&path) {
        return next.run(req).await;
    }
    let token = cookie_token(req.headers());
    let user = match &token {
        Some(t) => sessions::resolve(state.store.as_ref(), t, &state.auth.policy, sessions::Use::Activity).await,
        None => Ok(None),
    };
    match user {
        Ok(Some(user)) => {
            let actor = Actor::user(&user, &from);
            tracing::Span::current().record("actor", actor.log_id());
            req.extensions_mut().insert(actor);
            if let Some(t) = token {
                req.extensions_mut().insert(SessionToken(t.into()));
            }
            next.run(req).await
        }
        // Its handler takes a session when there is one, else checks a credential of its own.
        Ok(None) if session_optional(&path) => next.run(req).await,
        Ok(None) if req.method() == Method::GET && !path.starts_with("/api/") && path != "/events" && !path.ends_with(".csv") && !path.ends_with(".json") && !path.ends_with(".svg") && !path.starts_with("/library/") && !path.starts_with("/draft/") && !path.starts_with("/panel/") => {
            Redirect::to(&format!("/signin?next={}", url::form_urlencoded::byte_serialize(path.as_bytes()).collect::<String>())).into_response()
        }
        Ok(None) => Refusal::plain(StatusCode::UNAUTHORIZED, "Sign in first: this needs a session (POST /auth/signin).").into_response(),
        Err(e) => Refusal::unavailable(Shape::Plain, "cannot check a session", &e, STORE_DOWN).into_response(),
    }
}

/// The `Set-Cookie` value for a session token (`None`: clear it).
pub(crate) fn session_cookie(token: Option<&str>, config: &AuthConfig) -> HeaderValue {
    let (value, max_age) = match token {
        Some(t) => (t, config.policy.absolute.as_secs()),
        None => ("", 0),
    };
    let secure = if config.secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")).unwrap_or(HeaderValue::from_static("cr_session=; Max-Age=0"))
}

pub(crate) fn see_other(location: &str, cookie: Option<HeaderValue>) -> Response {
    let mut r = Redirect::to(location).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(c) = cookie {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    /// Two-step sign-in's code (or a recovery code), when the account has it on.
    #[serde(default)]
    code: String,
    #[serde(default)]
    next: String,
}

/// Only a path on this console (never `//host` or a full URL): no open redirect.
/// `next` if it is a plain path on this console, else `/`: it must start with one `/`, and
/// have no `\\`, no `//` and no control character anywhere (browsers drop tabs and newlines
/// from URLs, so `/\t/evil.example` would become `//evil.example`, another site).
pub(crate) fn local_path(next: &str) -> &str {
    let plain = next.starts_with('/') && !next.contains("//") && !next.contains('\\') && !next.chars().any(char::is_control) && next.len() <= 512;
    if plain { next } else { "/" }
}

async fn sign_in(State(state): State<AppState>, Extension(from): Extension<ClientAddress>, headers: HeaderMap, Form(form): Form<SignInForm>) -> Response {
    let from = from.0.to_string();
    let previous = cookie_token(&headers);
    let back = |code: &str| see_other(&format!("/signin?error={code}&next={}", url::form_urlencoded::byte_serialize(local_path(&form.next).as_bytes()).collect::<String>()), None);
    if form.email.len() > 254 || form.password.len() > 1024 || form.code.len() > 64 {
        return back("refused");
    }
    match sessions::sign_in(state.store.as_ref(), &form.email, &form.password, &form.code, &from, previous.as_deref(), &state.auth.policy).await {
        Ok((token, user)) => {
            tracing::info!(actor = %Actor::user(&user, &from).log_id(), %from, "signed in");
            see_other(local_path(&form.next), Some(session_cookie(Some(token.expose()), &state.auth)))
        }
        Err(SignInError::Refused) => back("refused"),
        Err(SignInError::Throttled(_)) => back("throttled"),
        Err(SignInError::SlowDown(_)) => back("slow-down"),
        Err(SignInError::CodeNeeded) => back("code"),
        Err(SignInError::PasswordsOff) => back("passwords-off"),
        Err(SignInError::MustEnrol(ticket)) => see_other(crate::enrol::PATH, Some(crate::enrol::ticket_cookie(Some(ticket.expose()), &state.auth))),
        Err(SignInError::Account(e)) => {
            tracing::error!(error = %e, "sign-in failed in the store");
            back("unavailable")
        }
    }
}

async fn sign_out(State(state): State<AppState>, token: Option<Extension<SessionToken>>) -> Result<Response, Refusal> {
    if let Some(Extension(t)) = token {
        sessions::close(state.store.as_ref(), &t.0).await.map_err(|e| Refusal::unavailable(Shape::Plain, "cannot end a session", &e, "The store is unavailable; you are still signed in. Try again shortly."))?;
    }
    Ok(see_other("/signin?error=signed-out", Some(session_cookie(None, &state.auth))))
}

async fn sign_out_everywhere(State(state): State<AppState>, actor: Extension<Actor>) -> Result<Response, Refusal> {
    accounts::end_sessions(state.store.as_ref(), &actor, &actor.who).await.map_err(|e| Refusal::unavailable(Shape::Plain, "cannot end sessions", &e, "The store is unavailable; your sessions are still open. Try again shortly."))?;
    Ok(see_other("/signin?error=signed-out-everywhere", Some(session_cookie(None, &state.auth))))
}

/// Most entries one export holds.
const MAX_EXPORT: usize = 10_000;

async fn audit_csv(State(state): State<AppState>, actor: Extension<Actor>, Query(filter): Query<AuditFilter>) -> Result<Response, Refusal> {
    if actor.require(Role::Admin).is_err() {
        return Err(Refusal::plain(StatusCode::FORBIDDEN, "The audit log is for admins."));
    }
    let entries = audit::export(state.store.as_ref(), &filter, MAX_EXPORT).await.map_err(|e| Refusal::unavailable(Shape::Plain, "cannot read the audit log", &e, STORE_DOWN))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"control-room-audit.csv\""),
            (header::CACHE_CONTROL, "no-store"),
        ],
        audit::csv(&entries),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn origin_must_be_this_console() {
        let cfg = AuthConfig { policy: SessionPolicy::default(), secure: true, public_authority: Some("console.example.test".into()), trusted_proxies: Default::default() };
        let own = headers(&[(header::HOST, "127.0.0.1:3000"), (header::ORIGIN, "http://127.0.0.1:3000")]);
        let public = headers(&[(header::HOST, "10.0.0.5:3000"), (header::ORIGIN, "https://console.example.test")]);
        let evil = headers(&[(header::HOST, "127.0.0.1:3000"), (header::ORIGIN, "https://evil.example")]);
        let referer = headers(&[(header::HOST, "127.0.0.1:3000"), (header::REFERER, "http://127.0.0.1:3000/signin")]);
        let none = headers(&[(header::HOST, "127.0.0.1:3000")]);
        assert!(same_origin(&own, &cfg) && same_origin(&public, &cfg) && same_origin(&referer, &cfg));
        assert!(!same_origin(&evil, &cfg) && !same_origin(&none, &cfg));
    }

    #[test]
    fn next_is_a_local_path_only() {
        assert_eq!(local_path("/?panel=3"), "/?panel=3");
        for bad in ["//evil.example", "https://evil.example", "/\\evil", "", "/\t/evil.example", "/\n/evil.example", "/a//evil", "/x\\y", "/\u{7f}/evil"] {
            assert_eq!(local_path(bad), "/");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)))]

        /// Whatever `next` holds, the browser is sent to `/` or to a plain path of this
        /// console: one leading `/`, no `//`, no `\\`, no control character.
        #[test]
        fn next_never_leaves_the_console(next in "(/|\\\\|\\PC|[\\t\\n\\r\\x00\\x7f]|%09|//){0,12}") {
            let p = local_path(&next);
            proptest::prop_assert!(p == "/" || (p.starts_with('/') && !p.contains("//") && !p.contains('\\') && !p.chars().any(char::is_control)), "{next:?} -> {p:?}");
            let resolved = url::Url::parse("https://console.example.test/").and_then(|b| b.join(&p.replace(['\t', '\n', '\r'], ""))).map(|u| u.host_str().map(str::to_string));
            proptest::prop_assert_eq!(resolved, Ok(Some("console.example.test".to_string())), "{:?} leaves the console", next);
        }

        /// The sign-in form parses any body without a panic, and whatever `next` it carries
        /// (up to 600 characters), the browser is sent back to a path of at most 512 bytes on
        /// this console.
        #[test]
        fn the_sign_in_form_parses_any_body(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512), next in "\\PC{0,600}") {
            let _ = serde_urlencoded::from_bytes::<SignInForm>(&body);
            let encoded = format!("email=a&password=b&next={}", url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>());
            let form = serde_urlencoded::from_str::<SignInForm>(&encoded);
            proptest::prop_assert!(form.is_ok(), "a well-formed form parses");
            let back = form.map(|f| local_path(&f.next).to_string()).unwrap_or_default();
            proptest::prop_assert!(back.starts_with('/') && back.len() <= 512, "{next:?} -> {back:?}");
            proptest::prop_assert!(back == "/" || back == next, "a path is kept whole or replaced by /");
        }
    }

    #[test]
    fn cookie_is_found_among_others() {
        let h = headers(&[(header::COOKIE, "a=1; cr_session=abc123; b=2")]);
        assert_eq!(cookie_token(&h).as_deref(), Some("abc123"));
        assert_eq!(cookie_token(&HeaderMap::new()), None);
    }
}
