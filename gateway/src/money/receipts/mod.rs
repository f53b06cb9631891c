//! Receipts: one per production (project), in KIE's **actual** credits (`creditsConsumed`,
//! never the estimate; 1 credit = $0.005), with a line per ended task.
//!
//! One job per file: this one reads (the totals, the lines, the breakdowns); `fold` is the
//! worker that keeps the totals; `export` writes CSV.
//!
//! - **Folding** (`fold`; incremental, exact): a task that ends enters the `receipt:fold`
//!   index. The folder ([`fold_round`], every instance) counts it into running totals — by project, day,
//!   model, owner, and their pairs — with reservations keyed by the task (`receipt:<task>`,
//!   `receipt-n:<task>`, `receipt-e:<task>`) and marks the record `folded`, in one store step
//!   ([`fold_in`], [`mark_folded`]); a chat call is folded by the very write that ends it, so
//!   it never enters the index. Counting is keyed by the task (nothing counts twice); a
//!   duplicate callback cannot end a task twice. A folded task is in its project's index for
//!   the day it ended ([`TaskRecord::receipt_day`]). Records that ended before receipts (or
//!   before the day indexes) existed are found by one-time scans of the ended states (oldest
//!   first, with a cursor, each marked done in the store).
//! - **Reading** ([`receipt`], [`LinePages`]): the totals come from those running totals (a
//!   day range sums its days); the lines are the project's ended tasks, newest first, at most
//!   [`MAX_LINES`] — for a day range, read from each day's index.
//!   Failed and expired tasks are lines with cost 0 (KIE does not charge failures), except a
//!   language model's call its client left: KIE generated it, and it is a line at its cost.
//! - [`csv`] (`export`) writes a receipt one row per line (formula cells defused).

mod export;
mod fold;

use serde::{Deserialize, Serialize};

use crate::library::asset::AssetState;
use crate::money::credits::Credits;
use crate::store::{Scope, Store, StoreResult};
use crate::tasks::task::{TaskQuery, TaskRecord};

pub use export::{CSV_HEADER, csv, csv_rows};
use fold::DAY_INDEXED;
pub(crate) use fold::{Folder, fold_in, mark_folded, run};
pub use fold::{Backfill, Folded, fold, fold_round};

/// Most lines one receipt lists (the totals always cover everything).
pub const MAX_LINES: usize = 100_000;
/// Most days a date range may span.
pub const MAX_DAYS: u64 = 366;

/// The day (UTC, `YYYY-MM-DD`) of a Unix-ms time.
pub fn day(ms: u64) -> String {
    crate::team::audit::utc(ms)[..10].to_string()
}

/// What a running total counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    /// KIE's actual charge, in milli-credits.
    Charged,
    /// The catalog's estimate, in milli-credits.
    Estimated,
    /// Ended tasks.
    Tasks,
    /// Of the charge, what was counted at the estimate (KIE said nothing to count it from).
    AtEstimate,
}

impl Total {
    fn tag(self) -> &'static str {
        match self {
            Total::Charged => "c",
            Total::Estimated => "e",
            Total::Tasks => "n",
            Total::AtEstimate => "x",
        }
    }
}

/// What a running total is broken down by (`None` fields: all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Slice<'a> {
    pub project: Option<&'a str>,
    pub day: Option<&'a str>,
    pub model: Option<&'a str>,
    pub owner: Option<&'a str>,
}

/// The running total `what` of `slice`.
pub fn scope(what: Total, s: &Slice<'_>) -> Scope {
    let mut key = format!("receipt:{}", what.tag());
    for (tag, v) in [("p", s.project), ("d", s.day), ("m", s.model), ("o", s.owner)] {
        if let Some(v) = v {
            key.push_str(&format!(":{tag}={v}"));
        }
    }
    Scope { key, limit: crate::store::MAX_AMOUNT, window: None }
}

/// The store key of the names the receipts have seen (projects, models, owners).
const DIRECTORY: &str = "receipts:directory";
/// Most names kept per kind (the charts show the largest; totals cover everything).
pub const MAX_NAMES: usize = 1000;

/// The projects, models and owners folded so far, for the breakdowns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    pub projects: std::collections::BTreeSet<String>,
    pub models: std::collections::BTreeSet<String>,
    pub owners: std::collections::BTreeSet<String>,
}

impl Directory {
    fn knows(&self, t: &TaskRecord) -> bool {
        self.projects.contains(&t.project) && self.models.contains(&t.model) && self.owners.contains(&t.owner)
    }
}

pub async fn directory(store: &dyn Store) -> StoreResult<Directory> {
    crate::store::read_doc(store, DIRECTORY).await
}

/// Adds a task's names to the directory (under a lease; only when one is new).
pub(super) async fn note_names(store: &dyn Store, known: &std::sync::Mutex<Directory>, t: &TaskRecord) -> StoreResult<()> {
    if known.lock().unwrap_or_else(|e| e.into_inner()).knows(t) {
        return Ok(());
    }
    let now = crate::store::edit_doc(store, DIRECTORY, |d: &mut Directory| {
        for (set, name) in [(&mut d.projects, &t.project), (&mut d.models, &t.model), (&mut d.owners, &t.owner)] {
            if set.len() < MAX_NAMES {
                set.insert(name.clone());
            }
        }
        Ok::<_, crate::StoreError>(d.clone())
    })
    .await?;
    *known.lock().unwrap_or_else(|e| e.into_inner()) = now;
    Ok(())
}

/// What spend is broken down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum By {
    /// The last 30 days (UTC), oldest first.
    Day,
    Model,
    Project,
    /// A person or a relay key.
    Owner,
}

impl By {
    pub fn parse(s: &str) -> Option<By> {
        match s {
            "day" => Some(By::Day),
            "model" => Some(By::Model),
            "project" => Some(By::Project),
            "owner" => Some(By::Owner),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            By::Day => "day",
            By::Model => "model",
            By::Project => "project",
            By::Owner => "owner",
        }
    }
}

/// One bar of a breakdown: KIE's charge and the estimate, and the tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bar {
    pub label: String,
    pub charged: Credits,
    pub estimated: Credits,
    pub tasks: i64,
}

/// Days a breakdown by day covers.
pub const DAYS_SHOWN: u64 = 30;

/// A breakdown of spend: its bars, and how many labels it has in all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spend {
    pub bars: Vec<Bar>,
    pub labels: usize,
}

/// Spend broken down `by`, from the folded totals: by day the last 30 days, oldest first;
/// else the `top` largest, largest first. Two store reads whatever the history: every
/// label's charge at once ([`Store::usage_many`]), then the estimate and the tasks of the
/// bars kept.
pub async fn spend(store: &dyn Store, by: By, top: usize) -> StoreResult<Spend> {
    let dir = if by == By::Day { Directory::default() } else { directory(store).await? };
    let labels: Vec<String> = match by {
        By::Day => {
            let today = crate::store::now_ms() / 86_400_000;
            (0..DAYS_SHOWN).rev().map(|back| day((today - back) * 86_400_000)).collect()
        }
        By::Model => dir.models.into_iter().collect(),
        By::Project => dir.projects.into_iter().collect(),
        By::Owner => dir.owners.into_iter().collect(),
    };
    let slices: Vec<Slice<'_>> = labels
        .iter()
        .map(|label| {
            let l = Some(label.as_str());
            match by {
                By::Day => Slice { day: l, ..Default::default() },
                By::Model => Slice { model: l, ..Default::default() },
                By::Project => Slice { project: l, ..Default::default() },
                By::Owner => Slice { owner: l, ..Default::default() },
            }
        })
        .collect();
    let charged = store.usage_many(&slices.iter().map(|s| scope(Total::Charged, s)).collect::<Vec<_>>()).await?;
    let mut kept: Vec<usize> = (0..labels.len()).collect();
    if by != By::Day {
        kept.sort_by(|&a, &b| charged[b].cmp(&charged[a]).then(labels[a].cmp(&labels[b])));
        kept.truncate(top);
    }
    let rest: Vec<Scope> = kept.iter().flat_map(|&i| [scope(Total::Estimated, &slices[i]), scope(Total::Tasks, &slices[i])]).collect();
    let rest = store.usage_many(&rest).await?;
    let bars = kept.iter().zip(rest.chunks(2)).map(|(&i, r)| Bar { label: labels[i].clone(), charged: Credits(charged[i]), estimated: Credits(r[0]), tasks: r[1] }).collect();
    Ok(Spend { bars, labels: labels.len() })
}

/// Everything folded: KIE's charge, the estimate, and the tasks.
pub async fn totals(store: &dyn Store) -> StoreResult<Bar> {
    totals_of(store, "all", &Slice::default()).await
}

/// One project's folded totals (a share link's page).
pub async fn project_totals(store: &dyn Store, project: &str) -> StoreResult<Bar> {
    totals_of(store, project, &Slice { project: Some(project), ..Default::default() }).await
}

/// Each of `projects`' totals, the largest charge first (what someone limited to these projects
/// is shown of the spend).
pub async fn each_project_totals(store: &dyn Store, projects: &[String]) -> StoreResult<Vec<Bar>> {
    let mut bars = Vec::with_capacity(projects.len());
    for p in projects {
        bars.push(project_totals(store, p).await?);
    }
    bars.sort_by_key(|b| std::cmp::Reverse(b.charged));
    Ok(bars)
}

async fn totals_of(store: &dyn Store, label: &str, slice: &Slice<'_>) -> StoreResult<Bar> {
    Ok(Bar {
        label: label.into(),
        charged: Credits(store.usage(&scope(Total::Charged, slice)).await?),
        estimated: Credits(store.usage(&scope(Total::Estimated, slice)).await?),
        tasks: store.usage(&scope(Total::Tasks, slice)).await?,
    })
}

/// The runway: at the last 7 days' burn (KIE's charges), how many days `balance` lasts.
/// `None` when nothing was spent in those days.
pub async fn runway_days(store: &dyn Store, balance: Credits) -> StoreResult<Option<f64>> {
    let today = crate::store::now_ms() / 86_400_000;
    let days: Vec<String> = (0..7).map(|back| day((today - back) * 86_400_000)).collect();
    let scopes: Vec<Scope> = days.iter().map(|d| scope(Total::Charged, &Slice { day: Some(d), ..Default::default() })).collect();
    let week: i64 = store.usage_many(&scopes).await?.iter().sum();
    Ok((week > 0).then(|| balance.0.max(0) as f64 / (week as f64 / 7.0)))
}

/// The store key of the drift's starting point.
const BASELINE: &str = "receipts:baseline";

/// KIE's balance against the receipts since a starting point: what KIE's balance fell by,
/// what the receipts account for, and the difference (spend this console did not see, or —
/// negative — a top-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    pub since_ms: u64,
    pub balance_fell: Credits,
    pub accounted: Credits,
    pub drift: Credits,
}

#[derive(Serialize, Deserialize)]
struct Baseline {
    balance: i64,
    charged: i64,
    at_ms: u64,
}

/// The drift between KIE's balance (as it answered now) and the receipts, since the first
/// balance this deployment read (that one is kept as the starting point).
pub async fn drift(store: &dyn Store, balance: Credits) -> StoreResult<Drift> {
    let charged = store.usage(&scope(Total::Charged, &Slice::default())).await?;
    let mine = serde_json::to_vec(&Baseline { balance: balance.0, charged, at_ms: crate::store::now_ms() }).map_err(|e| crate::StoreError::Invalid(e.to_string()))?;
    store.kv_set_nx(BASELINE, &mine, None).await?;
    let raw = store.kv_get(BASELINE).await?.unwrap_or(mine);
    let base: Baseline = serde_json::from_slice(&raw).map_err(|e| crate::StoreError::Corrupt(format!("{BASELINE}: {e}")))?;
    let (fell, accounted) = (base.balance - balance.0, charged - base.charged);
    Ok(Drift { since_ms: base.at_ms, balance_fell: Credits(fell), accounted: Credits(accounted), drift: Credits(fell - accounted) })
}

/// What an ended task is counted at: what it cost when it ended (the cost rules settled the
/// same). 0 for a failure KIE did not charge and for anything that never ran; a language
/// model's call its client left is charged (KIE generated it).
pub fn charged(t: &TaskRecord) -> Credits {
    if t.state.is_terminal() { t.actual_cost.unwrap_or(Credits::ZERO).max(Credits::ZERO) } else { Credits::ZERO }
}

/// The part of a task's charge counted at its estimate.
pub(super) fn at_estimate(t: &TaskRecord) -> Credits {
    if t.charge_basis == Some(crate::tasks::task::ChargeBasis::Estimate) { charged(t) } else { Credits::ZERO }
}

/// Of everything folded, the credits counted at the estimate: KIE said nothing to count
/// them from (the Ledger says so).
pub async fn counted_at_estimate(store: &dyn Store) -> StoreResult<Credits> {
    Ok(Credits(store.usage(&scope(Total::AtEstimate, &Slice::default())).await?))
}

/// One line of a receipt: one ended task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    pub task_id: String,
    pub kie_task_id: Option<String>,
    pub model: String,
    pub project: String,
    /// A person's email or `key:<id>` for a relay key.
    pub owner: String,
    pub state: String,
    /// Decimal credits.
    pub estimated_credits: String,
    pub credits: String,
    pub cost_usd: f64,
    /// Per result: the Library's copy once archived (absolute, from `PUBLIC_URL`), else KIE's URL.
    pub exports: Vec<String>,
    pub created_ms: u64,
    pub finished_ms: Option<u64>,
    /// What `credits` rests on: `reported` (KIE said), `measured` (seconds or tokens KIE
    /// reported, at the catalog's price) or `estimate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge_basis: Option<String>,
    /// KIE finished it after this console had given up on it (it was `expired` first).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub completed_after_give_up: bool,
    /// What it was made from: its inputs from the Library (`control-room://library/<task>/<n>`),
    /// and a follow-up's parent — the result it acts on, or the whole task
    /// (`control-room://library/<task>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
}

/// A task's line. `base` is `PUBLIC_URL` (Library paths are absolute with it).
pub fn line(t: &TaskRecord, base: Option<&str>) -> Line {
    let base = base.unwrap_or("").trim_end_matches('/');
    // Per result: the Library's copy once it is there (or was, if an admin deleted it),
    // else KIE's own URL.
    let exports = t
        .result_urls
        .iter()
        .enumerate()
        .map(|(n, kie)| match t.archive.as_ref().and_then(|a| a.assets.get(n)).map(|x| x.state) {
            Some(AssetState::Archived | AssetState::Deleted) => format!("{base}{}", crate::library::links::unsigned_path(&t.id, n)),
            _ => kie.clone(),
        })
        .collect();
    let c = charged(t);
    Line {
        task_id: t.id.clone(),
        kie_task_id: t.kie_task_id.clone(),
        model: t.model.clone(),
        project: t.project.clone(),
        owner: t.owner.clone(),
        state: t.state.as_str().to_string(),
        estimated_credits: t.estimated_cost.to_string(),
        credits: c.to_string(),
        cost_usd: c.usd(),
        exports,
        created_ms: t.created_ms,
        finished_ms: t.finished_ms,
        charge_basis: t.charge_basis.filter(|_| c > Credits::ZERO).map(|b| b.as_str().to_string()),
        completed_after_give_up: t.completed_late,
        inputs: t.inputs.iter().map(crate::library::inputs::LibraryInput::reference).chain(t.follows.as_ref().map(|f| match f.n {
            Some(n) => crate::library::inputs::reference(&f.task, n),
            None => format!("{}{}", crate::library::inputs::SCHEME, f.task),
        })).collect(),
    }
}

/// One production's receipt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub project: String,
    /// The day range (UTC, inclusive), if one was asked for.
    pub from: Option<String>,
    pub to: Option<String>,
    /// KIE's actual charge, decimal credits (from the folded totals).
    pub credits: String,
    pub cost_usd: f64,
    pub estimated_credits: String,
    pub tasks: i64,
    pub task_ids: Vec<String>,
    pub kie_task_ids: Vec<String>,
    /// The models used.
    pub routes: Vec<String>,
    pub exports: Vec<String>,
    pub lines: Vec<Line>,
    /// More lines than [`MAX_LINES`]: the list stops there (the totals do not).
    pub truncated: bool,
}

/// Why a receipt cannot be made as asked.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] crate::StoreError),
}

/// `YYYY-MM-DD` → Unix ms at its start (UTC).
pub fn parse_day(s: &str) -> Option<u64> {
    let mut it = s.trim().splitn(3, '-');
    let (y, m, d): (i64, i64, i64) = (it.next()?.parse().ok()?, it.next()?.parse().ok()?, it.next()?.parse().ok()?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Civil date to days (Howard Hinnant's algorithm), checked by the round trip.
    let (y2, m2) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms = u64::try_from(days).ok()?.checked_mul(86_400_000)?;
    (day(ms) == s.trim()).then_some(ms)
}

/// A receipt's lines, a page at a time, newest first (the JSON receipt and the streamed CSV
/// share it). Without a range: the project's ended tasks, folded. With one, once every folded
/// task is in its day's index: each day of the range, newest first, read from that day's
/// index, so what a range costs is its lines and its days, whatever the project's history;
/// until then (an upgrade's one-time scan under way), the project's tasks filtered by day.
#[derive(Debug, Clone)]
pub struct LinePages {
    query: TaskQuery,
    range: Option<(u64, u64)>,
    base: Option<String>,
    /// The range's days still to read, oldest first (popped from the end), once the day
    /// indexes are known to be whole.
    days: Option<Vec<String>>,
    done: bool,
}

impl LinePages {
    /// The lines of `project`, optionally for the days `from..=to` (UTC, `YYYY-MM-DD`);
    /// `base` is `PUBLIC_URL`. Refused with a sentence if the project or a day is malformed.
    pub fn new(project: &str, from: Option<&str>, to: Option<&str>, base: Option<&str>) -> Result<LinePages, ReceiptError> {
        let range = request(project, from, to)?;
        Ok(LinePages { query: TaskQuery { project: Some(project.to_string()), limit: crate::tasks::task::MAX_PAGE, ..Default::default() }, range, base: base.map(str::to_string), days: None, done: false })
    }

    /// The next page of lines (possibly empty when a page held none in the range); `None`
    /// once every line was given.
    pub async fn next(&mut self, store: &dyn Store) -> StoreResult<Option<Vec<Line>>> {
        if self.done {
            return Ok(None);
        }
        if let Some((from, to)) = self.range
            && self.days.is_none()
            && store.kv_get(DAY_INDEXED).await?.is_some()
        {
            let mut days = range_days(from, to);
            self.query.receipt_day = days.pop();
            self.days = Some(days);
        }
        let page = store.task_list(&self.query).await?;
        let lines = page
            .tasks
            .iter()
            .filter(|t| t.folded)
            .filter(|t| {
                let at = t.finished_ms.unwrap_or(t.updated_ms);
                !self.range.is_some_and(|(f, to)| at < f || at >= to + 86_400_000)
            })
            .map(|t| line(t, self.base.as_deref()))
            .collect();
        match (page.next, self.days.as_mut()) {
            (Some(next), _) => self.query.after = Some(next),
            (None, Some(days)) if !days.is_empty() => {
                self.query.receipt_day = days.pop();
                self.query.after = None;
            }
            (None, _) => self.done = true,
        }
        Ok(Some(lines))
    }
}

/// The days `from..=to` (Unix ms of their starts), oldest first.
fn range_days(from: u64, to: u64) -> Vec<String> {
    (0..=(to - from) / 86_400_000).map(|n| day(from + n * 86_400_000)).collect()
}

/// Checks a receipt's request: the project's name and the day range (`None`: everything).
fn request(project: &str, from: Option<&str>, to: Option<&str>) -> Result<Option<(u64, u64)>, ReceiptError> {
    if !crate::tasks::task::valid_name(project) {
        return Err(ReceiptError::Invalid(format!("project must be {}", crate::tasks::task::NAME_RULE)));
    }
    let bad = |which: &str, v: &str| ReceiptError::Invalid(format!("{which} must be a date YYYY-MM-DD, got {v:?}"));
    let from_ms = from.map(|f| parse_day(f).ok_or_else(|| bad("from", f))).transpose()?;
    let to_ms = to.map(|t| parse_day(t).ok_or_else(|| bad("to", t))).transpose()?;
    match (from_ms, to_ms) {
        (None, None) => Ok(None),
        (f, t) => {
            let f = f.unwrap_or(t.unwrap_or(0).saturating_sub((MAX_DAYS - 1) * 86_400_000));
            let t = t.unwrap_or(crate::store::now_ms() / 86_400_000 * 86_400_000);
            if t < f {
                return Err(ReceiptError::Invalid("to is before from".into()));
            }
            if (t - f) / 86_400_000 >= MAX_DAYS {
                return Err(ReceiptError::Invalid(format!("a range spans at most {MAX_DAYS} days")));
            }
            Ok(Some((f, t)))
        }
    }
}

/// The receipt of `project`, optionally for the days `from..=to` (UTC, `YYYY-MM-DD`).
pub async fn receipt(store: &dyn Store, project: &str, from: Option<&str>, to: Option<&str>, base: Option<&str>) -> Result<Receipt, ReceiptError> {
    let mut pages = LinePages::new(project, from, to, base)?;
    let range = pages.range;
    // Totals from the folded running totals: the project's, or the sum of its days.
    let days: Vec<String> = range.map(|(f, t)| range_days(f, t)).unwrap_or_default();
    let cuts: Vec<Slice<'_>> = if days.is_empty() {
        vec![Slice { project: Some(project), ..Default::default() }]
    } else {
        days.iter().map(|d| Slice { project: Some(project), day: Some(d.as_str()), ..Default::default() }).collect()
    };
    let whats = [Total::Charged, Total::Estimated, Total::Tasks];
    let read = store.usage_many(&whats.iter().flat_map(|w| cuts.iter().map(|c| scope(*w, c))).collect::<Vec<_>>()).await?;
    let sum = |k: usize| read[k * cuts.len()..(k + 1) * cuts.len()].iter().sum::<i64>();
    let (charged, estimated, tasks) = (Credits(sum(0)), Credits(sum(1)), sum(2));
    // Lines: the project's ended tasks, newest first.
    let mut lines = Vec::new();
    let mut truncated = false;
    while let Some(page) = pages.next(store).await? {
        for l in page {
            if lines.len() == MAX_LINES {
                truncated = true;
                break;
            }
            lines.push(l);
        }
        if truncated {
            break;
        }
    }
    let mut routes: Vec<String> = lines.iter().map(|l| l.model.clone()).collect();
    routes.sort();
    routes.dedup();
    Ok(Receipt {
        project: project.to_string(),
        from: from.map(|s| s.trim().to_string()),
        to: to.map(|s| s.trim().to_string()),
        credits: charged.to_string(),
        cost_usd: charged.usd(),
        estimated_credits: estimated.to_string(),
        tasks,
        task_ids: lines.iter().map(|l| l.task_id.clone()).collect(),
        kie_task_ids: lines.iter().filter_map(|l| l.kie_task_id.clone()).collect(),
        routes,
        exports: lines.iter().flat_map(|l| l.exports.iter().cloned()).collect(),
        lines,
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_parse_and_print_alike() {
        assert_eq!(parse_day("1970-01-01"), Some(0));
        assert_eq!(parse_day("2026-12-01").map(day).as_deref(), Some("2026-12-01"));
        assert_eq!(parse_day("2000-02-29").map(day).as_deref(), Some("2000-02-29"));
        for bad in ["2026-02-30", "2026-13-01", "26-1-1", "x", "", "2026-1-1", "1969-12-31"] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
    }

    #[test]
    fn scopes_name_their_slice() {
        assert_eq!(scope(Total::Charged, &Slice::default()).key, "receipt:c");
        assert_eq!(scope(Total::Tasks, &Slice { project: Some("trailer"), day: Some("2026-12-01"), ..Default::default() }).key, "receipt:n:p=trailer:d=2026-12-01");
    }
}
