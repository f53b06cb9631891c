//! `GET /receipts.json?project=P[&from=YYYY-MM-DD][&to=YYYY-MM-DD]` and `/receipts.csv`: a
//! production's receipt in KIE's actual credits (viewer and above). Thin: parse, call
//! `gateway::money::receipts`, map its error to a status. The CSV is streamed a page of lines
//! at a time.

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::AppState;
use futures::StreamExt;
use crate::error::{Refusal, STORE_DOWN, Shape};
use gateway::money::receipts::{self, Receipt, ReceiptError};
use gateway::team::accounts::{Actor, Role};

#[derive(Deserialize)]
pub struct ReceiptQuery {
    #[serde(default)]
    project: String,
    from: Option<String>,
    to: Option<String>,
}

fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_string)
}

/// Who may read, and whether a project was named.
fn allowed(actor: &Actor, q: &ReceiptQuery) -> Result<(), Refusal> {
    if actor.require(Role::Viewer).is_err() {
        return Err(Refusal::plain(StatusCode::FORBIDDEN, "Receipts need a signed-in viewer or above."));
    }
    if q.project.trim().is_empty() {
        return Err(Refusal::plain(StatusCode::BAD_REQUEST, "Say which production: ?project=NAME (optional from= and to= as YYYY-MM-DD)."));
    }
    if !actor.sees(q.project.trim()) {
        return Err(Refusal::plain(StatusCode::NOT_FOUND, "No such production among your projects."));
    }
    Ok(())
}

fn refusal(e: ReceiptError) -> Refusal {
    match e {
        ReceiptError::Invalid(why) => Refusal::plain(StatusCode::UNPROCESSABLE_ENTITY, why),
        ReceiptError::Store(e) => Refusal::unavailable(Shape::Plain, "cannot read a receipt", &e, STORE_DOWN),
    }
}

async fn read(state: &AppState, actor: &Actor, q: &ReceiptQuery) -> Result<Receipt, Refusal> {
    allowed(actor, q)?;
    let base = state.lifecycle.options().public_base.clone();
    receipts::receipt(state.store.as_ref(), q.project.trim(), nonempty(&q.from).as_deref(), nonempty(&q.to).as_deref(), base.as_deref()).await.map_err(refusal)
}

fn filename(project: &str, from: &Option<String>, to: &Option<String>, ext: &str) -> String {
    let range = match (from, to) {
        (None, None) => String::new(),
        (f, t) => format!("-{}-{}", f.as_deref().unwrap_or("start"), t.as_deref().unwrap_or("today")),
    };
    format!("attachment; filename=\"receipt-{}{range}.{ext}\"", project.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_', "_"))
}

pub async fn json(State(state): State<AppState>, actor: Extension<Actor>, Query(q): Query<ReceiptQuery>) -> Result<Response, Refusal> {
    let r = read(&state, &actor, &q).await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(r)).into_response())
}

/// The receipt's lines as CSV, streamed a page at a time (memory is a page, whatever the
/// project's history; no line limit). A store failure mid-way cuts the download off (the
/// file then ends without its last line) and is logged.
pub async fn csv(State(state): State<AppState>, actor: Extension<Actor>, Query(q): Query<ReceiptQuery>) -> Result<Response, Refusal> {
    allowed(&actor, &q)?;
    let base = state.lifecycle.options().public_base.clone();
    let (from, to) = (nonempty(&q.from), nonempty(&q.to));
    let pages = receipts::LinePages::new(q.project.trim(), from.as_deref(), to.as_deref(), base.as_deref()).map_err(refusal)?;
    let disposition = filename(q.project.trim(), &from, &to, "csv");
    let store = state.store.clone();
    let rows = futures::stream::unfold(Some(pages), move |pages| {
        let store = store.clone();
        async move {
            let mut pages = pages?;
            match pages.next(store.as_ref()).await {
                Ok(Some(lines)) => Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(receipts::csv_rows(&lines))), Some(pages))),
                Ok(None) => None,
                Err(e) => {
                    tracing::error!(error = %e, "a receipt's export was cut off: the store is unavailable");
                    Some((Err(std::io::Error::other("the store is unavailable")), None))
                }
            }
        }
    });
    let body = futures::stream::once(async { Ok(axum::body::Bytes::from_static(receipts::CSV_HEADER.as_bytes())) }).chain(rows);
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()), (header::CONTENT_DISPOSITION, disposition), (header::CACHE_CONTROL, "no-store".to_string())], axum::body::Body::from_stream(body)).into_response())
}
