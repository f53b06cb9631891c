//! One refusal type for every handler ([`Refusal`]): the status, what to fix, how long waiting
//! takes when waiting cures it, and the shape its caller reads — KIE's envelope on the relay
//! (`{code, msg, data: null}`, the HTTP status mirroring `code`, as KIE's clients expect),
//! plain text that no cache keeps everywhere else. Handlers return `Result<_, Refusal>` and
//! use `?`; a store failure ([`Refusal::unavailable`]) is logged here and answered without its
//! detail. [`RelayCaller`] is the relay's extractor for who is asking.

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

use crate::AppState;
use gateway::team::relay_keys::{RelayKey, RelayKeyError};

/// What a console route answers when the store fails.
pub const STORE_DOWN: &str = "The store is unavailable; try again shortly.";

/// A request refused: see the module doc.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    message: String,
    retry_after: Option<Duration>,
    shape: Shape,
}

/// How a refusal is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Plain text, `Cache-Control: no-store` (the console's routes).
    Plain,
    /// KIE's JSON envelope (the relay under `/kie`).
    Kie,
}

impl Refusal {
    pub fn new(shape: Shape, status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal { status, message: message.into(), retry_after: None, shape }
    }

    /// A plain-text refusal.
    pub fn plain(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal::new(Shape::Plain, status, message)
    }

    /// A refusal in KIE's envelope; `code` is KIE's code, an HTTP status (else 500).
    pub fn kie(code: u16, message: impl Into<String>) -> Refusal {
        Refusal::new(Shape::Kie, StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), message)
    }

    /// The store (or another part this console needs) failed: logged with `what` and its
    /// cause, answered 503 with `message` and nothing of the cause.
    pub fn unavailable(shape: Shape, what: &str, cause: &dyn std::fmt::Display, message: &str) -> Refusal {
        tracing::error!(error = %cause, "{what}");
        Refusal::new(shape, StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// Waiting cures it: sent with `Retry-After` (whole seconds, at least 1).
    pub fn retry_after(mut self, wait: Option<Duration>) -> Refusal {
        self.retry_after = wait;
        self
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut r = match self.shape {
            Shape::Plain => (self.status, [(header::CACHE_CONTROL, "no-store")], self.message).into_response(),
            Shape::Kie => (self.status, Json(gateway::tasks::relay::envelope(i64::from(self.status.as_u16()), &self.message, serde_json::Value::Null))).into_response(),
        };
        if let Some(wait) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&wait.as_secs_f64().ceil().max(1.0).to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}

/// The token of an `Authorization: Bearer …` header ("" without one).
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map_or("", str::trim)
}

/// The relay key a request carries: `Authorization: Bearer …`, or `x-api-key` as Anthropic's
/// clients send it.
fn relay_key(headers: &axum::http::HeaderMap) -> &str {
    match bearer(headers) {
        "" => headers.get("x-api-key").and_then(|v| v.to_str().ok()).map_or("", str::trim),
        key => key,
    }
}

/// Who calls the relay: the relay key of the request's `Authorization: Bearer …` (or
/// `x-api-key`), checked
/// (401 in KIE's words for a missing, unknown or revoked key; 503 when the store cannot say).
pub struct RelayCaller(pub RelayKey);

impl FromRequestParts<AppState> for RelayCaller {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<RelayCaller, Refusal> {
        match state.keys.authenticate(relay_key(&parts.headers)).await {
            Ok(key) => {
                tracing::Span::current().record("actor", format!("key:{}", key.id));
                Ok(RelayCaller(key))
            }
            Err(RelayKeyError::Store(e)) => Err(Refusal::unavailable(Shape::Kie, "relay: cannot check a key", &e, "The Control Room's store is unavailable; try again shortly")),
            Err(_) => Err(Refusal::kie(401, "You do not have access permissions")),
        }
    }
}
