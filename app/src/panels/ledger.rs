//! 09 · Ledger — receipts per production in KIE's actual credits, the spend in pictures
//! (charts drawn on the server, `/spend.svg`), the estimate against KIE's charge by model, the
//! receipt sync, and the runway. Refetched live when a task ends (and when it is folded).

use leptos::prelude::*;

use super::{Fields, Panel, PanelId, badge, field};
use crate::api::ledger_report;
use crate::view::{ReceiptsReport, SpendRow};

fn sync_badge(r: &ReceiptsReport) -> AnyView {
    match &r.sync {
        None => badge("off", "Sync off"),
        Some(s) if s.failing > 0 => badge("warn", format!("{}{} to sync · {} failing", s.pending, if s.capped { "+" } else { "" }, s.failing)),
        Some(s) => badge("info", format!("{}{} to sync", s.pending, if s.capped { "+" } else { "" })),
    }
}

fn projects(rows: Vec<SpendRow>) -> AnyView {
    if rows.is_empty() {
        return view! { <p class="empty" data-testid="receipts-empty">"No ended tasks folded yet: receipts appear as tasks end."</p> }.into_any();
    }
    let link = |p: &str, ext: &str| format!("/receipts.{ext}?project={}", p.replace('%', "%25").replace(' ', "%20").replace('&', "%26"));
    view! {
        <div class="table-wrap" tabindex="0" role="region" aria-label="Receipts"><table class="tasks receipts" data-testid="receipts">
            <caption>"Receipts by production (KIE's charges)"</caption>
            <thead><tr><th>"Project"</th><th>"Tasks"</th><th>"Credits"</th><th>"USD"</th><th>"Export"</th></tr></thead>
            <tbody>
                {rows.into_iter().map(|r| view! {
                    <tr data-project=r.label.clone()>
                        <td>{r.label.clone()}</td><td>{r.tasks}</td><td data-testid="receipt-credits">{r.charged.clone()}</td><td>{r.usd.clone()}</td>
                        <td><a href=link(&r.label, "csv") download="" data-testid="receipt-csv">"CSV"</a>" · "<a href=link(&r.label, "json") target="_blank" rel="noopener">"JSON"</a></td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table></div>
    }
    .into_any()
}

fn reconciliation(rows: Vec<SpendRow>) -> impl IntoView + use<> {
    let differ: Vec<SpendRow> = rows.into_iter().filter(|r| r.off_by_percent.is_some_and(|p| p != 0)).collect();
    (!differ.is_empty()).then(|| view! {
        <div class="table-wrap" tabindex="0" role="region" aria-label="Reconciliation"><table class="tasks" data-testid="reconciliation">
            <caption>"Estimate against KIE's charge, where they differ"</caption>
            <thead><tr><th>"Model"</th><th>"Estimated"</th><th>"Charged"</th><th>"Off by"</th></tr></thead>
            <tbody>
                {differ.into_iter().map(|r| view! {
                    <tr><td>{r.label}</td><td>{r.estimated}</td><td>{r.charged}</td><td>{r.off_by_percent.map(|p| format!("{p:+} %"))}</td></tr>
                }).collect_view()}
            </tbody>
        </table></div>
    })
}

/// The rows a chart draws, as a table for screen readers.
fn chart_table(by: &str, rows: &[SpendRow]) -> AnyView {
    let rows: Vec<SpendRow> = rows.iter().filter(|r| r.tasks > 0).cloned().collect();
    view! {
        <table class="sr-only" data-testid="chart-table">
            <caption>{format!("Spend by {by}")}</caption>
            <thead><tr><th>{by.to_string()}</th><th>"Credits"</th><th>"Tasks"</th></tr></thead>
            <tbody>{rows.into_iter().map(|r| view! { <tr><td>{r.label}</td><td>{r.charged}</td><td>{r.tasks}</td></tr> }).collect_view()}</tbody>
        </table>
    }
    .into_any()
}

pub async fn render(query: Fields) -> AnyView {
    let by = match field(&query, "by") {
        Some(b @ ("model" | "project" | "owner")) => b.to_string(),
        _ => "day".to_string(),
    };
    let report = ledger_report(by.clone()).await;
    let head = report.as_ref().map_or_else(|_| badge("err", "Unavailable"), sync_badge);
    let body = match report {
        Err(e) => super::unavailable(&e),
        Ok(r) => {
                        let by = if r.projects_only { "project".to_string() } else { by.clone() };
                        let team = !r.projects_only;
                        let total = r.total.clone();
                        let runway = r.runway_days;
                        let alert = r.runway_alert_days;
                        let sync = r.sync.clone();
                        let rows = match by.as_str() {
                            "model" => r.models.clone(),
                            "project" => r.projects.clone(),
                            "owner" => r.owners.clone(),
                            _ => r.days.clone(),
                        };
                        let version = total.as_ref().map_or(0, |t| t.tasks);
                        let table = chart_table(&by, &rows);
                        view! {
                            {r.warnings.iter().map(|w| view! { <p class="warn" data-testid="ledger-warning">{w.clone()}</p> }).collect_view()}
                            <dl class="kv" data-testid="ledger-totals">
                                <dt>"KIE charged"</dt><dd>{total.as_ref().map(|t| format!("{} credits · {} · {} tasks", super::grouped(&t.charged), t.usd, super::grouped(&t.tasks.to_string())))}
                                    {(!r.at_estimate.is_empty() && r.at_estimate != "0").then(|| view! { <span class="muted" data-testid="at-estimate">{format!(" — of which {} credits counted at the estimate (KIE said nothing to count them from)", r.at_estimate)}</span> })}
                                </dd>
                                <dt>"Estimated"</dt><dd>{total.as_ref().map(|t| super::credits(&t.estimated))}</dd>
                                {team.then(|| view! {
                                <dt>"Runway"</dt><dd data-testid="runway" class=if runway.is_some_and(|d| d < alert as f64) { "error" } else { "" }>
                                    {runway.map_or("no burn in the last 7 days, or no balance yet".to_string(), |d| format!("{} at the last 7 days' burn", super::runway(d)))}</dd>
                                })}
                                {r.drift.clone().map(|d| view! {
                                    <dt title="Drift: how far KIE's own balance moved from what these receipts account for">"Against KIE"</dt>
                                    <dd data-testid="drift" class=if d.zero { "" } else { "warn" }>
                                        {format!("since {}: KIE's balance fell {} credits, the receipts account for {} — drift {}", d.since, d.balance_fell, d.accounted, d.drift)}
                                        {(!d.zero).then_some(" (spend this console did not see, a charge still being folded, or — below 0 — a top-up)")}
                                    </dd>
                                })}
                                {team.then(|| view! { <dt>"Receipt sync"</dt><dd data-testid="sync-status">{match &sync {
                                    None => "off (RECEIPT_SYNC_URL not set)".to_string(),
                                    Some(s) => format!("{}{} to sync · {} synced · {} failing", s.pending, if s.capped { "+" } else { "" }, s.synced, s.failing),
                                }}</dd> })}
                            </dl>
                            {sync.and_then(|s| s.last_error).map(|e| view! { <p class="warn small" data-testid="sync-last-error">"Receiver's last answer: "{e}</p> })}
                            {projects(r.projects.clone())}
                            {(r.more_projects > 0).then(|| view! { <p class="muted small" data-testid="more-projects">{format!("…and {} smaller projects: each has its receipt at /receipts.csv?project=NAME, and the chart's CSV by project lists them all.", r.more_projects)}</p> })}
                            {reconciliation(r.models.clone())}
                            <div class="chart">
                                <form method="get" action="/" data-filter="ledger" class="inline" hidden=r.projects_only>
                                    <label class="small">"Spend by "
                                        <select name="by" data-testid="chart-by">
                                            {[("day", "day (30 days)"), ("model", "model"), ("project", "project"), ("owner", "person or key")].map(|(v, t)| view! { <option value=v selected=by == v>{t}</option> }).collect_view()}
                                        </select>
                                    </label>
                                </form>
                                " "<a class="small" href=format!("/spend.csv?by={by}") download="">"CSV"</a>
                                <img data-testid="spend-chart" src=format!("/spend.svg?by={by}&v={version}") alt=format!("Spend by {by} — the figures are in the table that follows") width="300" height="180"/>
                                {table}
                            </div>
                        }.into_any()
        }
    };
    view! {
        <Panel id=PanelId::Ledger badge=head refresh="ended">
            {body}
        </Panel>
    }
    .into_any()
}
