//! `GET /healthz` (the process answers) and `GET /readyz` (the store answers too, and has not
//! lost its data while this instance ran; and how its Library is). `/readyz` says ready or
//! not to anyone; what is wrong only to whoever may read `/metrics` (`METRICS_TOKEN`).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;

use crate::AppState;
use gateway::library::Library;
use gateway::{Lifecycle, Store};

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The Library's word for `/readyz` (it does not make the instance unready: the others still
/// archive, and everything else works; panel 07 and the log say what to fix).
fn library(library: &Option<Library>) -> Value {
    match library {
        None => json!("off"),
        Some(l) => match l.problem() {
            None => json!("ready"),
            Some(p) => json!({ "problem": p }),
        },
    }
}

pub async fn readyz(State(state): State<AppState>, headers: HeaderMap) -> (StatusCode, Json<Value>) {
    let (status, details) = readiness(&state.store, &state.lifecycle, &state.library).await;
    if state.metrics_access.allows(&headers) {
        (status, Json(details))
    } else {
        (status, Json(json!({"status": details["status"]})))
    }
}

async fn readiness(store: &Arc<dyn Store>, lifecycle: &Lifecycle, lib: &Option<Library>) -> (StatusCode, Value) {
    if lifecycle.halted() {
        let error = "the store lost its data (its epoch is gone): restore it and restart this instance";
        return (StatusCode::SERVICE_UNAVAILABLE, json!({"status": "unavailable", "store": store.backend(), "error": error}));
    }
    if store.failing_over() {
        let error = "store failing over: the Redis primary is gone and the Sentinels have not named a new one yet";
        return (StatusCode::SERVICE_UNAVAILABLE, json!({"status": "failing over", "store": store.backend(), "error": error}));
    }
    match store.ping().await {
        Ok(()) => (StatusCode::OK, json!({"status": "ready", "store": store.backend(), "library": library(lib)})),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, json!({"status": "unavailable", "store": store.backend(), "error": e.to_string()}))
        }
    }
}
