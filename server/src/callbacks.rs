//! `POST /callbacks/kie/{token}`: KIE's callbacks, handed to the lifecycle. The only
//! unauthenticated write; guarded by the per-task token and, when configured, the signature.
//! Answers 200 once the callback is taken (even if it changed nothing), so KIE stops retrying.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;
use gateway::tasks::lifecycle::{CallbackError, CallbackOutcome};

pub async fn kie_callback(State(state): State<AppState>, Path(token): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let outcome = state.lifecycle.on_callback(&token, header("x-webhook-timestamp"), header("x-webhook-signature"), &body).await;
    let (status, msg) = match outcome {
        Ok(CallbackOutcome::Applied) => (StatusCode::OK, "applied"),
        Ok(CallbackOutcome::Unchanged) => (StatusCode::OK, "already known"),
        Ok(CallbackOutcome::AlreadyFinal) => (StatusCode::OK, "task already final"),
        Ok(CallbackOutcome::Deferred) => (StatusCode::OK, "accepted; confirmation deferred to polling"),
        Err(CallbackError::UnknownToken) => (StatusCode::NOT_FOUND, "unknown callback"),
        Err(CallbackError::BadBody(_)) => (StatusCode::BAD_REQUEST, "the body is not a KIE callback"),
        Err(CallbackError::BadSignature(e)) => {
            tracing::warn!(error = %e, "callback refused: signature");
            (StatusCode::UNAUTHORIZED, "signature refused")
        }
        Err(CallbackError::WrongTask) => (StatusCode::CONFLICT, "the callback names another task"),
        Err(CallbackError::Store(e)) => {
            tracing::error!(error = %e, "callback: store unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable; retry later")
        }
    };
    (status, Json(json!({ "code": status.as_u16(), "msg": msg }))).into_response()
}
