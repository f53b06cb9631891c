//! Panel 09, the Ledger: spend breakdowns, receipts, reconciliation, their sync and the runway.

use serde::{Deserialize, Serialize};

/// One row of a spend breakdown (a project, a model, an owner or a day).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpendRow {
    pub label: String,
    /// KIE's actual charge, decimal credits.
    pub charged: String,
    pub estimated: String,
    pub usd: String,
    pub tasks: i64,
    /// How far KIE's charge is from the estimate, in whole percent (`None`: nothing estimated).
    pub off_by_percent: Option<i64>,
}

/// Panel 09: receipts, reconciliation, sync and runway — from the folded records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReceiptsReport {
    /// For someone limited to some projects: only their projects, no team-wide figures.
    #[serde(default)]
    pub projects_only: bool,
    pub total: Option<SpendRow>,
    /// The largest projects (`more_projects` others are not listed).
    pub projects: Vec<SpendRow>,
    pub more_projects: usize,
    pub models: Vec<SpendRow>,
    pub owners: Vec<SpendRow>,
    pub days: Vec<SpendRow>,
    /// `None`: RECEIPT_SYNC_URL is not set.
    pub sync: Option<SyncView>,
    /// Days KIE's balance lasts at the last 7 days' burn (`None`: no balance, or no burn).
    pub runway_days: Option<f64>,
    /// RUNWAY_ALERT_DAYS.
    pub runway_alert_days: u64,
    /// Warnings about prepaid credits expiring (CREDITS_EXPIRE_ON), or the runway.
    pub warnings: Vec<String>,
    /// KIE's balance against the receipts since the first balance read (`None`: no balance).
    pub drift: Option<DriftView>,
    /// Of KIE's charges, the decimal credits counted at the estimate (KIE said nothing to
    /// count them from).
    pub at_estimate: String,
}

/// [`ReceiptsReport::drift`]: decimal credits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DriftView {
    /// The day (UTC) of the starting point.
    pub since: String,
    pub balance_fell: String,
    pub accounted: String,
    pub drift: String,
    pub zero: bool,
}

/// How the receipt sync stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncView {
    pub pending: usize,
    pub failing: usize,
    pub synced: i64,
    pub last_error: Option<String>,
    pub capped: bool,
}
