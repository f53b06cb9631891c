//! Single sign-on with the team's OpenID provider: OpenID Connect's authorization code flow
//! with PKCE, `state` and `nonce`, through the `openidconnect` crate.
//!
//! - `GET /auth/oidc/start?next=/path`: a fresh `state`, `nonce` and PKCE verifier, kept in the
//!   store for 10 minutes under the state's digest (any instance may get the callback), the
//!   state also in a cookie scoped to `/auth/oidc` (so a callback only completes in the browser
//!   that started it); then off to the provider. At most 20 starts per client address and
//!   5,000 in all per 10 minutes, so nobody can fill the store with started sign-ins.
//! - `GET /auth/oidc/callback?code&state`: the state must match the cookie and be taken from
//!   the store once (a replayed state finds nothing); the code is exchanged with the verifier;
//!   the ID token's signature is checked against the provider's JWKS (fetched at discovery,
//!   cached for an hour, fetched again once on a key it does not know), and `iss`, `aud`, `exp`
//!   (60 s of clock skew either way), `iat` and `nonce`. What it says goes to the core
//!   (`gateway::team::single_sign_on`), which decides who may enter and as what.
//!
//! Errors send the browser back to `/signin?error=sso-…` with what to do; the server log and
//! the audit log say what was wrong, never a token or a code. The provider is reached with a
//! client of its own (no redirects, 10 s): its address comes from the operator
//! (`OIDC_ISSUER`), never from a user.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Router};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::{ClientAddress, local_path, see_other, session_cookie};
use crate::config::SingleSignOnSettings;
use gateway::team::audit;
use gateway::team::single_sign_on::{self as core, Identity, Refusal};

pub const START: &str = "/auth/oidc/start";
pub const CALLBACK: &str = "/auth/oidc/callback";
/// The cookie that ties a callback to the browser that started it.
const STATE_COOKIE: &str = "cr_oidc";
/// How long a started sign-in waits for its callback.
const PENDING_TTL: Duration = Duration::from_secs(10 * 60);
/// How long the provider's discovery document and keys are kept.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// The least time between two fetches of the keys for a key they did not have.
const REFRESH_GAP: Duration = Duration::from_secs(10);
/// Clock skew allowed between the provider and this server.
const CLOCK_SKEW: Duration = Duration::from_secs(60);
/// Most groups read from the role claim, and most characters of each.
const MAX_GROUPS: usize = 256;
const MAX_GROUP_LEN: usize = 256;

type Client = CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

/// The team's identity provider, as this instance knows it.
pub struct SingleSignOn {
    settings: SingleSignOnSettings,
    http: reqwest::Client,
    /// The discovery document (with the keys) and when it was fetched.
    provider: tokio::sync::Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    metadata: Option<(Instant, CoreProviderMetadata)>,
    /// When the keys were last fetched again for a key they did not have.
    refreshed: Option<Instant>,
}

/// What the start step keeps for the callback.
#[derive(Serialize, Deserialize)]
struct Pending {
    nonce: String,
    verifier: String,
    next: String,
}

/// Why a sign-in through the provider did not open a session: the `?error=` code, and what
/// the logs say.
struct Failure {
    code: &'static str,
    detail: String,
    /// Whether the audit log records it: only failures of a sign-in this browser really
    /// started (its state taken), so a stranger's forged callbacks cannot flood the log.
    audit: bool,
}

fn failure(code: &'static str, detail: impl Into<String>) -> Failure {
    Failure { code, detail: detail.into(), audit: true }
}

/// A callback refused before its state was taken: logged, not audited.
fn stray(code: &'static str, detail: &str) -> Failure {
    Failure { code, detail: detail.into(), audit: false }
}

impl SingleSignOn {
    pub fn new(settings: SingleSignOnSettings) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the identity provider's client: {e}"))?;
        Ok(SingleSignOn { settings, http, provider: tokio::sync::Mutex::default() })
    }

    /// The name on the sign-in page's button.
    pub fn provider_name(&self) -> &str {
        &self.settings.provider_name
    }

    /// The provider's discovery document: the cached one while fresh, unless `refresh` asks
    /// for its keys again (at most once per [`REFRESH_GAP`]).
    async fn metadata(&self, refresh: bool) -> Result<CoreProviderMetadata, Failure> {
        let mut cached = self.provider.lock().await;
        let refresh = refresh && cached.refreshed.is_none_or(|at| at.elapsed() >= REFRESH_GAP);
        if let Some((at, m)) = cached.metadata.as_ref()
            && at.elapsed() < DISCOVERY_TTL
            && !refresh
        {
            return Ok(m.clone());
        }
        if refresh {
            cached.refreshed = Some(Instant::now());
        }
        let issuer = IssuerUrl::new(self.settings.issuer.as_str().trim_end_matches('/').to_string()).map_err(|e| failure("sso-failed", format!("OIDC_ISSUER: {e}")))?;
        let m = CoreProviderMetadata::discover_async(issuer, &self.http).await.map_err(|e| failure("sso-unreachable", format!("discovery at {} failed: {e}", self.settings.issuer)))?;
        cached.metadata = Some((Instant::now(), m.clone()));
        Ok(m)
    }

    fn client(&self, m: CoreProviderMetadata) -> Client {
        CoreClient::from_provider_metadata(m, ClientId::new(self.settings.client_id.clone()), Some(ClientSecret::new(self.settings.client_secret.expose().to_string())))
            .set_redirect_uri(RedirectUrl::from_url(self.settings.redirect.clone()))
    }

    /// The provider's address to send the browser to, and what to keep until it comes back.
    async fn start(&self) -> Result<(url::Url, CsrfToken, Pending), Failure> {
        let client = self.client(self.metadata(false).await?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random).set_pkce_challenge(challenge);
        for s in &self.settings.scopes {
            request = request.add_scope(Scope::new(s.clone()));
        }
        let (url, state, nonce) = request.url();
        Ok((url, state, Pending { nonce: nonce.secret().clone(), verifier: verifier.secret().clone(), next: String::new() }))
    }

    /// Exchanges `code` and verifies the ID token: who the provider says this is.
    async fn identity(&self, code: &str, pending: &Pending) -> Result<Identity, Failure> {
        let client = self.client(self.metadata(false).await?);
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| failure("sso-failed", format!("the provider names no token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| failure("sso-failed", format!("the provider refused the code: {}", token_error(&e))))?;
        let id_token = response.id_token().ok_or_else(|| failure("sso-failed", "the provider's answer has no ID token"))?;
        let nonce = Nonce::new(pending.nonce.clone());
        let verify = |client: &Client| {
            let skew = chrono::Duration::from_std(CLOCK_SKEW).unwrap_or_default();
            let verifier = client
                .id_token_verifier()
                .set_time_fn(move || chrono::Utc::now() - skew)
                .set_issue_time_verifier_fn(move |iat| if iat > chrono::Utc::now() + skew { Err(format!("issued in the future ({iat})")) } else { Ok(()) });
            let claims = id_token.claims(&verifier, &nonce)?.clone();
            if let Some(expected) = claims.access_token_hash() {
                fn other(e: impl std::fmt::Display) -> ClaimsVerificationError { ClaimsVerificationError::Other(e.to_string()) }
                let actual = AccessTokenHash::from_token(response.access_token(), id_token.signing_alg().map_err(other)?, id_token.signing_key(&verifier).map_err(other)?).map_err(other)?;
                if actual != *expected {
                    return Err(ClaimsVerificationError::Other("the access token's hash does not match the ID token's at_hash".into()));
                }
            }
            Ok(claims)
        };
        let claims = match verify(&client) {
            Err(ClaimsVerificationError::SignatureVerification(_)) => {
                // Perhaps a key the provider rotated in since discovery: fetch its keys once more.
                let client = self.client(self.metadata(true).await?);
                verify(&client)
            }
            other => other,
        }
        .map_err(|e| failure("sso-failed", format!("the ID token was refused: {}", claims_error(&e))))?;
        let groups = role_claim(&id_token.to_string(), &self.settings.role_claim);
        Ok(Identity {
            issuer: claims.issuer().to_string(),
            subject: claims.subject().to_string(),
            email: claims.email().map(|e| e.to_string()),
            email_verified: claims.email_verified().unwrap_or(false),
            name: claims.name().and_then(|n| n.get(None)).map(|n| n.to_string()),
            groups,
        })
    }
}

/// A token request's error without the provider's raw body (it may hold tokens).
fn token_error<E: std::error::Error>(e: &openidconnect::RequestTokenError<E, openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>>) -> String {
    match e {
        openidconnect::RequestTokenError::ServerResponse(r) => format!("{} ({})", r.error(), r.error_description().map(String::as_str).unwrap_or("no description")),
        openidconnect::RequestTokenError::Request(e) => format!("no answer: {e}"),
        openidconnect::RequestTokenError::Parse(e, _) => format!("an answer that is not a token response ({})", e.path()),
        openidconnect::RequestTokenError::Other(e) => e.clone(),
    }
}

/// What was wrong with an ID token, in words an operator can act on.
fn claims_error(e: &ClaimsVerificationError) -> String {
    match e {
        ClaimsVerificationError::Expired(_) => "it has expired (or this server's clock is more than 60 s behind the provider's)".into(),
        ClaimsVerificationError::InvalidAudience(_) => "its audience is not this console's OIDC_CLIENT_ID".into(),
        ClaimsVerificationError::InvalidIssuer(_) => "its issuer is not OIDC_ISSUER".into(),
        ClaimsVerificationError::InvalidNonce(_) => "its nonce is not the one this sign-in sent".into(),
        ClaimsVerificationError::SignatureVerification(_) => "its signature matches none of the provider's keys".into(),
        other => other.to_string(),
    }
}

/// The role claim's values, read from the (already verified) token's payload: a list of
/// strings or one string (anything else is no group); `None` when the token has no such claim.
fn role_claim(jwt: &str, claim: &str) -> Option<Vec<String>> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).and_then(|p| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok());
    let value: Option<serde_json::Value> = payload.and_then(|p| serde_json::from_slice(&p).ok());
    let keep = |s: &str| (!s.is_empty() && s.len() <= MAX_GROUP_LEN).then(|| s.to_string());
    Some(match value.as_ref()?.get(claim)? {
        serde_json::Value::Array(items) => items.iter().filter_map(|i| i.as_str().and_then(keep)).take(MAX_GROUPS).collect(),
        serde_json::Value::String(s) => keep(s).into_iter().collect(),
        _ => Vec::new(),
    })
}

pub fn routes() -> Router<AppState> {
    Router::new().route(START, get(start)).route(CALLBACK, get(callback))
}

fn pending_key(state: &str) -> String {
    format!("oidc:pending:{}", gateway::team::sessions::digest(state))
}

fn state_cookie(state: Option<&str>, secure: bool) -> HeaderValue {
    // Lax: the provider sends the browser back with a top-level GET from its own site.
    crate::plain_page::scoped_cookie(STATE_COOKIE, state, "/auth/oidc", PENDING_TTL, "Lax", secure)
}


fn back(code: &str) -> Response {
    see_other(&format!("/signin?error={code}"), None)
}

#[derive(Deserialize)]
struct StartQuery {
    #[serde(default)]
    next: String,
}

/// Sign-ins started per client address, and by everyone, in [`PENDING_TTL`]: each keeps a
/// record until its callback or its end, so a stranger cannot fill the store with them.
const STARTS_PER_ADDRESS: i64 = 20;
const STARTS_IN_ALL: i64 = 5_000;

/// Counts a start against both limits: whether it may go on.
async fn may_start(state: &AppState, from: &str) -> Result<bool, gateway::store::StoreError> {
    let mine = state.store.counter_add(&format!("oidc:starts:{}", gateway::team::sessions::digest(from)), 1, Some(PENDING_TTL)).await?;
    if mine > STARTS_PER_ADDRESS {
        return Ok(false);
    }
    Ok(state.store.counter_add("oidc:starts:all", 1, Some(PENDING_TTL)).await? <= STARTS_IN_ALL)
}

async fn start(State(state): State<AppState>, Extension(from): Extension<ClientAddress>, Query(q): Query<StartQuery>) -> Response {
    let Some(sso) = state.single_sign_on.clone() else { return back("sso-off") };
    match may_start(&state, &from.0).await {
        Ok(true) => {}
        Ok(false) => return back("sso-throttled"),
        Err(e) => {
            tracing::error!(error = %e, "cannot count a started single sign-on");
            return back("unavailable");
        }
    }
    let (url, csrf, mut pending) = match sso.start().await {
        Ok(v) => v,
        Err(f) => {
            tracing::warn!(detail = %f.detail, "single sign-on cannot start");
            return back(f.code);
        }
    };
    pending.next = local_path(&q.next).to_string();
    let Ok(json) = serde_json::to_vec(&pending) else { return back("sso-failed") };
    if let Err(e) = state.store.kv_set(&pending_key(csrf.secret()), &json, Some(PENDING_TTL)).await {
        tracing::error!(error = %e, "cannot keep a started single sign-on");
        return back("unavailable");
    }
    let mut r = Redirect::to(url.as_str()).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert(header::SET_COOKIE, state_cookie(Some(csrf.secret()), state.auth.secure));
    r
}

#[derive(Deserialize)]
struct CallbackQuery {
    #[serde(default)]
    code: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    error: String,
}

/// Takes the started sign-in `state` names, once: a second callback with it finds nothing.
async fn take_pending(app: &AppState, state: &str) -> Result<Option<Pending>, gateway::store::StoreError> {
    let key = pending_key(state);
    let Some(raw) = app.store.kv_get(&key).await? else { return Ok(None) };
    if !app.store.kv_delete(&key).await? {
        return Ok(None);
    }
    Ok(serde_json::from_slice(&raw).ok())
}

async fn callback(State(state): State<AppState>, Extension(from): Extension<ClientAddress>, headers: HeaderMap, Query(q): Query<CallbackQuery>) -> Response {
    let Some(sso) = state.single_sign_on.clone() else { return back("sso-off") };
    let from = from.0.to_string();
    let mut r = match finish(&state, &sso, &from, &headers, &q).await {
        Ok(r) => r,
        Err(f) => {
            tracing::warn!(%from, code = f.code, detail = %f.detail, "single sign-on refused");
            if f.audit {
                let _ = audit::append(state.store.as_ref(), "(single sign-on)", &from, "sign-in refused", "single sign-on", None, Some(f.detail)).await;
            }
            back(f.code)
        }
    };
    r.headers_mut().append(header::SET_COOKIE, state_cookie(None, state.auth.secure));
    r
}

async fn finish(state: &AppState, sso: &Arc<SingleSignOn>, from: &str, headers: &HeaderMap, q: &CallbackQuery) -> Result<Response, Failure> {
    if crate::plain_page::cookie(headers, STATE_COOKIE).as_deref() != Some(q.state.as_str()) || q.state.is_empty() {
        return Err(stray("sso-state", "the callback's state is not the one this browser started"));
    }
    let pending = take_pending(state, &q.state).await.map_err(|e| stray("unavailable", &format!("the store: {e}")))?.ok_or_else(|| stray("sso-state", "the callback's state is unknown, expired or already used"))?;
    if !q.error.is_empty() {
        return Err(failure("sso-denied", format!("the provider answered {:?}", q.error.chars().take(64).collect::<String>())));
    }
    if q.code.is_empty() || q.code.len() > 2048 {
        return Err(failure("sso-failed", "the provider's callback has no code"));
    }
    let identity = sso.identity(&q.code, &pending).await?;
    let previous = crate::auth::cookie_token(headers);
    match core::sign_in(state.store.as_ref(), &sso.settings.admission, &identity, from, previous.as_deref(), &state.auth.policy).await {
        Ok((token, user)) => {
            tracing::info!(actor = %gateway::team::accounts::Actor::user(&user, from).log_id(), %from, "signed in through single sign-on");
            Ok(see_other(&pending.next, Some(session_cookie(Some(token.expose()), &state.auth))))
        }
        Err(Refusal::Account(e)) => Err(failure("unavailable", format!("the store: {e}"))),
        // Already audited by the core, with the person's email.
        Err(refusal) => {
            let code = match refusal {
                Refusal::NoEmail | Refusal::EmailNotVerified => "sso-email",
                Refusal::DomainNotAllowed(_) | Refusal::NotInGroup => "sso-not-allowed",
                Refusal::Disabled => "sso-disabled",
                Refusal::OtherSubject => "sso-other-person",
                Refusal::Full | Refusal::Account(_) => "sso-full",
            };
            tracing::warn!(%from, code, reason = %refusal, "single sign-on refused");
            Ok(back(code))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn jwt(payload: serde_json::Value) -> String {
        let b = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!("{}.{}.sig", b(b"{\"alg\":\"RS256\"}"), b(payload.to_string().as_bytes()))
    }

    #[test]
    fn the_role_claim_is_a_list_or_one_string_and_nothing_else() {
        assert_eq!(role_claim(&jwt(serde_json::json!({"groups": ["a", "b", 3, ""]})), "groups"), Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(role_claim(&jwt(serde_json::json!({"roles": "admins"})), "roles"), Some(vec!["admins".to_string()]));
        assert_eq!(role_claim(&jwt(serde_json::json!({"groups": {"a": 1}})), "groups"), Some(vec![]));
        assert_eq!(role_claim(&jwt(serde_json::json!({"sub": "x"})), "groups"), None, "no claim");
        assert_eq!(role_claim("not a token", "groups"), None);
        let many: Vec<String> = (0..1000).map(|i| format!("g{i}")).collect();
        assert_eq!(role_claim(&jwt(serde_json::json!({ "groups": many })), "groups").map(|g| g.len()), Some(MAX_GROUPS));
    }
}
