//! `GET /metrics` for Prometheus, never behind the sign-in page: for `Authorization: Bearer
//! <METRICS_TOKEN>` only, closed while `METRICS_TOKEN` is unset, open to anyone with
//! `METRICS_TOKEN=open`. The Prometheus text
//! format, or OpenMetrics when the scraper asks for it. Also the relay's request counter and
//! latency, measured around every `/kie` route.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Instant;

use crate::AppState;
use crate::config::MetricsAccess;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !state.metrics_access.allows(&headers) {
        let msg = match state.metrics_access {
            MetricsAccess::Closed => "/metrics is closed: set METRICS_TOKEN and send it as Authorization: Bearer <token> (or METRICS_TOKEN=open to serve it to anyone)",
            _ => "/metrics needs Authorization: Bearer <METRICS_TOKEN>",
        };
        return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], msg).into_response();
    }
    let m = state.lifecycle.options().metrics.clone();
    m.set_sse_clients(state.hub.listeners());
    if let Err(e) = m.refresh_shared(state.store.as_ref(), &state.lifecycle.guard_scopes()).await {
        // The instance's own counters are still worth reading; the shared gauges keep their
        // last value, and readiness says the store is away.
        tracing::warn!(error = %e, "metrics: cannot read the shared gauges from the store");
    }
    let wants_openmetrics = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("application/openmetrics-text"));
    if wants_openmetrics {
        ([(header::CONTENT_TYPE, OPENMETRICS)], m.openmetrics()).into_response()
    } else {
        ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], m.prometheus_text()).into_response()
    }
}

/// Counts and times a relay request under its route (the matched path: a bounded set).
pub async fn relay_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("other", |p| p.as_str()).to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    state.lifecycle.options().metrics.relay_request(&route, response.status().as_u16(), started.elapsed());
    response
}
