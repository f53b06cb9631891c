//! Server function of the Ledger panel (09): receipts by project, estimate against KIE's
//! charge by model, spend by person or key and by day, the receipt sync, the runway. Thin:
//! the figures are the folded totals of `gateway::money::receipts`.

use leptos::prelude::*;

use crate::view::ReceiptsReport;

#[cfg(feature = "ssr")]
fn row(b: gateway::money::receipts::Bar) -> crate::view::SpendRow {
    let off = (b.estimated.0 > 0).then(|| (b.charged.0 - b.estimated.0) * 100 / b.estimated.0);
    crate::view::SpendRow { label: b.label, charged: b.charged.to_string(), estimated: b.estimated.to_string(), usd: format!("${:.2}", b.charged.usd()), tasks: b.tasks, off_by_percent: off }
}

/// Projects the receipts table lists (the largest; every project's receipt is one link away).
#[cfg(feature = "ssr")]
const PROJECTS_SHOWN: usize = 25;
/// Bars the chart draws (the largest; its CSV has them all).
#[cfg(feature = "ssr")]
const BARS_SHOWN: usize = 24;

/// Panel 09's report (viewer and above), with the chart's breakdown `by` (day, model, project
/// or owner). It reads what the panel shows: a few store reads whatever the history.
/// The Ledger of someone limited to some projects: their projects' receipts and nothing of
/// the team's (no other project, no breakdown that mixes projects, no balance or runway).
#[cfg(feature = "ssr")]
async fn mine(store: &dyn gateway::Store, projects: &[String]) -> gateway::StoreResult<ReceiptsReport> {
    use gateway::money::receipts;
    let mut bars = receipts::each_project_totals(store, projects).await?;
    let total = receipts::Bar {
        label: "your projects".into(),
        charged: gateway::Credits(bars.iter().map(|b| b.charged.0).sum()),
        estimated: gateway::Credits(bars.iter().map(|b| b.estimated.0).sum()),
        tasks: bars.iter().map(|b| b.tasks).sum(),
    };
    bars.truncate(PROJECTS_SHOWN);
    Ok(ReceiptsReport { projects_only: true, total: Some(row(total)), projects: bars.into_iter().map(row).collect(), ..Default::default() })
}

#[server(endpoint = "ledger_report")]
pub async fn ledger_report(#[server(default)] by: String) -> Result<ReceiptsReport, ServerFnError> {
    use crate::api::context::{Role, signed_in, store_error};
    use gateway::money::receipts::{self, By};
    let (ctx, actor) = signed_in(Role::Viewer)?;
    let store = ctx.store.as_ref();
    if let Some(projects) = actor.membership.projects() {
        return mine(store, projects).await.map_err(store_error);
    }
    let mut report = ReceiptsReport { total: Some(row(receipts::totals(store).await.map_err(store_error)?)), runway_alert_days: ctx.runway_alert_days, ..Default::default() };
    report.at_estimate = receipts::counted_at_estimate(store).await.map_err(store_error)?.to_string();
    let projects = receipts::spend(store, By::Project, PROJECTS_SHOWN).await.map_err(store_error)?;
    report.more_projects = projects.labels.saturating_sub(projects.bars.len());
    report.projects = projects.bars.into_iter().map(row).collect();
    // Every model: the reconciliation lists those whose estimate was off.
    report.models = receipts::spend(store, By::Model, receipts::MAX_NAMES).await.map_err(store_error)?.bars.into_iter().map(row).collect();
    match By::parse(&by) {
        Some(By::Owner) => report.owners = receipts::spend(store, By::Owner, BARS_SHOWN).await.map_err(store_error)?.bars.into_iter().map(row).collect(),
        Some(By::Model | By::Project) => {}
        _ => report.days = receipts::spend(store, By::Day, BARS_SHOWN).await.map_err(store_error)?.bars.into_iter().map(row).collect(),
    }
    if ctx.lifecycle.options().receipt_sync.is_some() {
        let s = gateway::money::receipt_sync::status(store).await.map_err(store_error)?;
        report.sync = Some(crate::view::SyncView { pending: s.pending, failing: s.failing, synced: s.synced, last_error: s.last_error, capped: s.capped });
    }
    // The balance KIE last answered (the Gateway panel's probe), at the last week's burn.
    let balance = ctx.gateway().await.and_then(|g| g.balance).and_then(|b| b.parse::<f64>().ok()).and_then(gateway::Credits::from_decimal);
    if let Some(b) = balance {
        report.runway_days = receipts::runway_days(store, b).await.map_err(store_error)?;
        let d = receipts::drift(store, b).await.map_err(store_error)?;
        report.drift = Some(crate::view::DriftView { since: receipts::day(d.since_ms), balance_fell: d.balance_fell.to_string(), accounted: d.accounted.to_string(), drift: d.drift.to_string(), zero: d.drift.0 == 0 });
    }
    if let Some(d) = report.runway_days.filter(|d| *d < ctx.runway_alert_days as f64) {
        report.warnings.push(format!("At the last 7 days' burn KIE's balance lasts about {d:.1} days (RUNWAY_ALERT_DAYS is {}): top up.", ctx.runway_alert_days));
    }
    if let Some(day) = &ctx.credits_expire_on
        && let Some(at) = receipts::parse_day(day)
    {
        let left = at.saturating_sub(gateway::store::now_ms()).div_ceil(86_400_000);
        if at <= gateway::store::now_ms() {
            report.warnings.push(format!("Prepaid credits expired on {day} (CREDITS_EXPIRE_ON)."));
        } else if left <= 14 {
            let how = if left <= 3 { "in" } else { "within" };
            report.warnings.push(format!("Prepaid credits expire {how} {left} days, on {day} (CREDITS_EXPIRE_ON): spend or renew them."));
        }
    }
    Ok(report)
}
