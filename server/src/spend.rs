//! `GET /spend.svg?by=day|model|project|owner` and `/spend.csv?by=…` (viewer and above): the
//! spend in KIE's actual credits from the folded receipts, as a chart drawn here (no chart
//! code reaches the browser) and as the same figures in CSV. The day chart draws the team's
//! per-day cap, the project chart each project's total cap, as lines.

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::fmt::Write;

use crate::AppState;
use crate::error::{Refusal, STORE_DOWN, Shape};
use crate::relay_docs::esc;
use gateway::Credits;
use gateway::money::budget;
use gateway::money::receipts::{self, Bar, By};
use gateway::team::accounts::{Actor, Role};

#[derive(Deserialize)]
pub struct SpendQuery {
    #[serde(default)]
    by: String,
}

/// Bars a chart draws at most (the largest; the CSV has them all).
const MAX_BARS: usize = 24;

/// The largest `top` bars of the breakdown asked for.
async fn bars(state: &AppState, actor: &Actor, q: &SpendQuery, top: usize) -> Result<(By, Vec<Bar>), Refusal> {
    if actor.require(Role::Viewer).is_err() {
        return Err(Refusal::plain(StatusCode::FORBIDDEN, "Spend needs a signed-in viewer or above."));
    }
    let Some(by) = By::parse(q.by.trim()) else { return Err(Refusal::plain(StatusCode::BAD_REQUEST, "Say what to break spend down by: ?by=day, model, project or owner.")) };
    let unreadable = |e: gateway::StoreError| Refusal::unavailable(Shape::Plain, "cannot read the spend", &e, STORE_DOWN);
    // Someone limited to some projects sees those projects' spend, and no breakdown that
    // mixes in anyone else's.
    if let Some(projects) = actor.membership.projects() {
        if by != By::Project {
            return Err(Refusal::plain(StatusCode::FORBIDDEN, "Your spend is shown by project: ?by=project."));
        }
        let mut bars = receipts::each_project_totals(state.store.as_ref(), projects).await.map_err(unreadable)?;
        bars.truncate(top);
        return Ok((by, bars));
    }
    receipts::spend(state.store.as_ref(), by, top).await.map(|s| (by, s.bars)).map_err(unreadable)
}

/// The caps to draw: (bar label or "" for every bar, cap, what it is).
async fn caps(state: &AppState, actor: &Actor, by: By) -> Vec<(String, Credits, String)> {
    let mut rules = budget::rules(state.store.as_ref()).await.unwrap_or_default();
    rules.retain(|r| r.target.seen_by(actor));
    match by {
        By::Day => rules.iter().filter(|r| r.target.project.is_none() && r.target.user.is_none()).filter_map(|r| r.cap(budget::CapKind::PerDay).map(|c| (String::new(), c, "team per-day cap (rolling 24 h)".to_string()))).collect(),
        By::Project => rules.iter().filter(|r| r.target.user.is_none()).filter_map(|r| Some((r.target.project.clone()?, r.cap(budget::CapKind::Total)?, "total cap".to_string()))).collect(),
        _ => Vec::new(),
    }
}

/// A bar chart of KIE's charges, with its figures in `<title>`s and a caption for readers.
pub fn svg(by: By, bars: &[Bar], caps: &[(String, Credits, String)]) -> String {
    let shown: Vec<&Bar> = bars.iter().take(MAX_BARS).collect();
    let (w, h, left, bottom, top) = (300.0, 180.0, 56.0, 52.0, 16.0);
    let max_bar = shown.iter().map(|b| b.charged.0).max().unwrap_or(0);
    let max_cap = caps.iter().map(|c| c.1.0).max().unwrap_or(0);
    let max = max_bar.max(max_cap).max(1) as f64;
    let plot_h = h - bottom - top;
    let slot = (w - left - 8.0) / shown.len().max(1) as f64;
    let y = |v: i64| top + plot_h - plot_h * v as f64 / max;
    let title = match by {
        By::Day => "Spend per day, last 30 days (KIE's charges, credits)",
        By::Model => "Spend by model (KIE's charges, credits)",
        By::Project => "Spend by project (KIE's charges, credits)",
        By::Owner => "Spend by person or relay key (KIE's charges, credits)",
    };
    let mut out = String::new();
    let _ = write!(out, r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-labelledby="t d" font-family="ui-monospace,monospace" font-size="12">"##);
    // The same chart on a light system setting (the page follows it too). An image cannot read
    // the page's CSS variables: these are the light theme's --well, --panel-edge and --muted.
    out.push_str("<style>@media (prefers-color-scheme:light){.bg{fill:#eef1f5}.gr{stroke:#d3d9e1}.ax{fill:#4f5b69}}</style>");
    let _ = write!(out, r##"<title id="t">{}</title><desc id="d">{} bars; the largest {} credits.</desc>"##, esc(title), shown.len(), Credits(max_bar));
    let _ = write!(out, r##"<rect class="bg" width="{w}" height="{h}" fill="#0e131b"/>"##);
    for frac in [0.0, 0.5, 1.0] {
        let v = (max * frac) as i64;
        let _ = write!(out, r##"<line x1="{left}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#243044" class="gr"/><text class="ax" x="{}" y="{:.1}" fill="#8a97ab" text-anchor="end">{}</text>"##, w - 8.0, y(v), y(v), left - 4.0, y(v) + 4.0, Credits(v));
    }
    if shown.is_empty() || max_bar == 0 {
        let _ = write!(out, r##"<text class="ax" x="{}" y="{}" fill="#8a97ab" text-anchor="middle">No spend folded yet</text>"##, w / 2.0, top + plot_h / 2.0);
    }
    for (i, b) in shown.iter().enumerate() {
        let x = left + slot * i as f64 + slot * 0.15;
        let bw = (slot * 0.7).max(1.0);
        let top_y = y(b.charged.0);
        let label = esc(&b.label);
        let _ = write!(
            out,
            r##"<rect x="{x:.1}" y="{top_y:.1}" width="{bw:.1}" height="{:.1}" fill="#3fb6a8"><title>{label}: {} credits (estimated {}), {} tasks</title></rect>"##,
            (top + plot_h - top_y).max(0.0),
            b.charged,
            b.estimated,
            b.tasks
        );
        // A label every few bars where they would overlap (12 px text at -35°).
        let every = if by == By::Day { 5 } else { (20.0 / slot).ceil().max(1.0) as usize };
        if i % every == 0 || i + 1 == shown.len() {
            let short: String = if by == By::Day { b.label.chars().skip(5).collect() } else { b.label.chars().take(14).collect() };
            let (lx, ly) = (x + bw / 2.0, h - bottom + 14.0);
            let _ = write!(out, r##"<text class="ax" x="{lx:.1}" y="{ly:.1}" fill="#8a97ab" text-anchor="end" transform="rotate(-35 {lx:.1} {ly:.1})">{}</text>"##, esc(&short));
        }
        for (_, cap, what) in caps.iter().filter(|c| c.0 == b.label) {
            let cy = y(cap.0);
            let _ = write!(out, r##"<line x1="{:.1}" x2="{:.1}" y1="{cy:.1}" y2="{cy:.1}" stroke="#e0a43a" stroke-width="2"><title>{label}: {what} {cap} credits</title></line>"##, x - 2.0, x + bw + 2.0);
        }
    }
    for (_, cap, what) in caps.iter().filter(|c| c.0.is_empty()) {
        let cy = y(cap.0);
        let _ = write!(out, r##"<line x1="{left}" x2="{}" y1="{cy:.1}" y2="{cy:.1}" stroke="#e0a43a" stroke-dasharray="5 4"/><text x="{}" y="{:.1}" fill="#e0a43a" text-anchor="end">{} {cap}</text>"##, w - 8.0, w - 10.0, cy - 4.0, esc(what));
    }
    out.push_str("</svg>");
    out
}

pub async fn chart(State(state): State<AppState>, actor: Extension<Actor>, Query(q): Query<SpendQuery>) -> Result<Response, Refusal> {
    let (by, bars) = bars(&state, &actor, &q, MAX_BARS).await?;
    let caps = caps(&state, &actor, by).await;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "no-store"), (header::X_CONTENT_TYPE_OPTIONS, "nosniff")], svg(by, &bars, &caps)).into_response())
}

/// The chart's figures as CSV (label, KIE's charge, the estimate, tasks).
pub fn csv(by: By, bars: &[Bar]) -> String {
    let mut out = format!("{},charged_credits,estimated_credits,tasks\r\n", by.as_str());
    for b in bars {
        let _ = write!(out, "{},{},{},{}\r\n", gateway::team::audit::field(&b.label), b.charged, b.estimated, b.tasks);
    }
    out
}

pub async fn table(State(state): State<AppState>, actor: Extension<Actor>, Query(q): Query<SpendQuery>) -> Result<Response, Refusal> {
    let (by, bars) = bars(&state, &actor, &q, receipts::MAX_NAMES).await?;
    let disposition = format!("attachment; filename=\"spend-by-{}.csv\"", by.as_str());
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()), (header::CONTENT_DISPOSITION, disposition), (header::CACHE_CONTROL, "no-store".to_string())], csv(by, &bars)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(label: &str, c: i64) -> Bar {
        Bar { label: label.into(), charged: Credits(c), estimated: Credits(c + 500), tasks: 1 }
    }

    #[test]
    fn an_empty_and_a_busy_chart_render_and_escape_their_labels() {
        let empty = svg(By::Model, &[], &[]);
        assert!(empty.starts_with("<svg") && empty.ends_with("</svg>") && empty.contains("No spend folded yet"));
        let busy: Vec<Bar> = (0..40).map(|i| bar(&format!("<model & {i}>"), i * 1000)).collect();
        let s = svg(By::Model, &busy, &[]);
        assert_eq!(s.matches("<rect x=").count(), MAX_BARS, "the largest {MAX_BARS} bars");
        assert!(!s.contains("<model"), "labels are escaped");
        assert!(s.contains("&lt;model &amp; 1&gt;: 1 credits (estimated 1.5), 1 tasks"));
        let day = svg(By::Day, &[bar("2026-12-01", 4000)], &[(String::new(), Credits(10_000), "team per-day cap (rolling 24 h)".into())]);
        assert!(day.contains("stroke-dasharray") && day.contains("team per-day cap (rolling 24 h) 10"), "the cap is drawn");
        let rows = csv(By::Project, &[bar("=cmd", 2000)]);
        assert_eq!(rows, "project,charged_credits,estimated_credits,tasks\r\n\"'=cmd\",2,2.5,1\r\n");
    }
}
