//! The control API for tests, under `/_sim/` (never one of KIE's paths): accounts and
//! balances, settings (limits, schedule, retention), the clock, faults, and the request log.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::collections::{HashMap, VecDeque};

use crate::Sim;
use crate::world::{Account, Faults, Settings};

#[derive(Deserialize)]
pub struct NewAccount {
    pub key: String,
    /// Credits.
    pub balance: f64,
    #[serde(default)]
    pub hmac_key: Option<String>,
}

pub async fn put_account(State(sim): State<Sim>, Json(a): Json<NewAccount>) -> Response {
    if a.key.trim().is_empty() || !a.balance.is_finite() {
        return (StatusCode::UNPROCESSABLE_ENTITY, "key must be non-empty and balance a number").into_response();
    }
    sim.add_account(&a.key, a.balance, a.hmac_key.as_deref());
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
pub struct Balance {
    pub balance: f64,
}

pub async fn set_balance(State(sim): State<Sim>, Path(key): Path<String>, Json(b): Json<Balance>) -> Response {
    let mut w = sim.world();
    match w.accounts.get_mut(&key) {
        Some(a) if b.balance.is_finite() => {
            a.balance_milli = (b.balance * 1000.0).round() as i64;
            StatusCode::NO_CONTENT.into_response()
        }
        Some(_) => (StatusCode::UNPROCESSABLE_ENTITY, "balance must be a number").into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

pub async fn get_account(State(sim): State<Sim>, Path(key): Path<String>) -> Response {
    let mut w = sim.world();
    w.settle_due();
    match w.accounts.get(&key) {
        Some(a) => Json(json!({ "balance": a.balance_milli as f64 / 1000.0 })).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

pub async fn put_settings(State(sim): State<Sim>, Json(s): Json<Settings>) -> Response {
    if s.rate_window_ms == 0 || s.record_info_per_sec == 0 {
        return (StatusCode::UNPROCESSABLE_ENTITY, "windows and rates must be positive").into_response();
    }
    sim.world().settings = s;
    StatusCode::NO_CONTENT.into_response()
}

pub async fn get_settings(State(sim): State<Sim>) -> Json<Settings> {
    Json(sim.world().settings.clone())
}

#[derive(Deserialize)]
pub struct ClockChange {
    #[serde(default)]
    pub speed: Option<f64>,
    #[serde(default)]
    pub advance_ms: Option<u64>,
}

pub async fn clock(State(sim): State<Sim>, Json(c): Json<ClockChange>) -> Response {
    {
        let mut w = sim.world();
        if let Some(s) = c.speed {
            if !(s.is_finite() && s > 0.0) {
                return (StatusCode::UNPROCESSABLE_ENTITY, "speed must be positive").into_response();
            }
            w.clock.set_speed(s);
        }
        if let Some(ms) = c.advance_ms {
            w.clock.advance(ms);
        }
    }
    sim.wake_dispatcher();
    let w = sim.world();
    Json(json!({ "now_ms": w.clock.now_ms(), "speed": w.clock.speed() })).into_response()
}

pub async fn put_faults(State(sim): State<Sim>, Json(f): Json<Faults>) -> StatusCode {
    sim.world().faults = f;
    StatusCode::NO_CONTENT
}

pub async fn put_task_faults(State(sim): State<Sim>, Path(id): Path<String>, Json(f): Json<Faults>) -> StatusCode {
    sim.world().task_faults.insert(id, f);
    StatusCode::NO_CONTENT
}

/// `GET /_sim/log?since=SEQ`: entries after `since`, oldest first (at most 50,000 a call).
pub async fn log(State(sim): State<Sim>, Query(q): Query<HashMap<String, String>>) -> Response {
    let since: u64 = q.get("since").and_then(|s| s.parse().ok()).unwrap_or(0);
    let w = sim.world();
    let entries: Vec<_> = w.log.iter().filter(|e| e.seq > since).take(50_000).cloned().collect();
    Json(json!({ "entries": entries, "last_seq": w.seq })).into_response()
}

/// Forgets tasks, faults and the log; keeps accounts and settings.
pub async fn reset(State(sim): State<Sim>) -> StatusCode {
    let mut w = sim.world();
    w.tasks.clear();
    w.task_order.clear();
    w.task_faults.clear();
    w.faults = Faults::default();
    w.due.clear();
    w.unsettled.clear();
    w.log.clear();
    w.uploads.clear();
    w.upload_order.clear();
    for a in w.accounts.values_mut() {
        a.creates = VecDeque::new();
        a.record_infos = VecDeque::new();
        a.chats = VecDeque::new();
    }
    StatusCode::NO_CONTENT
}

pub fn account(balance: f64, hmac_key: Option<&str>) -> Account {
    Account {
        balance_milli: (balance * 1000.0).round() as i64,
        hmac_key: hmac_key.map(str::to_string),
        creates: VecDeque::new(),
        record_infos: VecDeque::new(),
        chats: VecDeque::new(),
    }
}
