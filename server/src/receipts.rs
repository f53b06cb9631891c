//! `GET /receipts.json?project=P[&from=YYYY-MM-DD][&to=YYYY-MM-DD]` and `/receipts.csv`: a
//! production's receipt in KIE's actual credits (viewer and above). Thin: parse, call
//! `gateway::money::receipts`, map its error to a status.

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::AppState;
use crate::auth::plain;
use gateway::money::receipts::{self, Receipt, ReceiptError};
use gateway::team::accounts::{Actor, Role};

#[derive(Deserialize)]
pub struct ReceiptQuery {
    #[serde(default)]
    project: String,
    from: Option<String>,
    to: Option<String>,
}

async fn read(state: &AppState, actor: &Actor, q: &ReceiptQuery) -> Result<Receipt, Response> {
    if actor.require(Role::Viewer).is_err() {
        return Err(plain(StatusCode::FORBIDDEN, "Receipts need a signed-in viewer or above."));
    }
    if q.project.trim().is_empty() {
        return Err(plain(StatusCode::BAD_REQUEST, "Say which production: ?project=NAME (optional from= and to= as YYYY-MM-DD)."));
    }
    let base = state.lifecycle.options().public_base.clone();
    let empty = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
    receipts::receipt(state.store.as_ref(), q.project.trim(), empty(&q.from).as_deref(), empty(&q.to).as_deref(), base.as_deref()).await.map_err(|e| match e {
        ReceiptError::Invalid(why) => plain(StatusCode::UNPROCESSABLE_ENTITY, &why),
        ReceiptError::Store(e) => {
            tracing::error!(error = %e, "cannot read a receipt");
            plain(StatusCode::SERVICE_UNAVAILABLE, "The store is unavailable; try again shortly.")
        }
    })
}

fn filename(r: &Receipt, ext: &str) -> String {
    let range = match (&r.from, &r.to) {
        (None, None) => String::new(),
        (f, t) => format!("-{}-{}", f.as_deref().unwrap_or("start"), t.as_deref().unwrap_or("today")),
    };
    format!("attachment; filename=\"receipt-{}{range}.{ext}\"", r.project.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_', "_"))
}

pub async fn json(State(state): State<AppState>, actor: Extension<Actor>, Query(q): Query<ReceiptQuery>) -> Response {
    match read(&state, &actor, &q).await {
        Ok(r) => ([(header::CACHE_CONTROL, "no-store")], axum::Json(r)).into_response(),
        Err(resp) => resp,
    }
}

pub async fn csv(State(state): State<AppState>, actor: Extension<Actor>, Query(q): Query<ReceiptQuery>) -> Response {
    match read(&state, &actor, &q).await {
        Ok(r) => {
            let disposition = filename(&r, "csv");
            ([(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()), (header::CONTENT_DISPOSITION, disposition), (header::CACHE_CONTROL, "no-store".to_string())], receipts::csv(&r)).into_response()
        }
        Err(resp) => resp,
    }
}
