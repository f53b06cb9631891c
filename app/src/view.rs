//! View types: plain serde structs shared by the server (which fills them from real records
//! and configuration) and the browser (which renders them). These structs are what crosses the
//! wire: no KIE key, password or session token ever goes in here. The one secret that does is
//! a relay key at its creation ([`NewRelayKey`]), shown once to the admin who made it.

use serde::{Deserialize, Serialize};

/// Where generation requests go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Upstream {
    /// No `KIE_API_KEY`: nothing can be sent, nothing is invented.
    NotConfigured,
    /// KIE itself (or a KIE-compatible base URL), by host.
    Kie { host: String },
    /// The bundled simulator: every screen says so.
    Simulator { host: String },
}

/// What the console may know about the KIE key: never the key itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyView {
    pub configured: bool,
    /// "environment" or "file".
    pub source: Option<String>,
    /// First 8 hex digits of SHA-256(key): tells operators which key is live, reveals nothing.
    pub fingerprint: Option<String>,
}

/// The shared store the console runs on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreView {
    /// "redis" or "embedded".
    pub backend: String,
    pub reachable: bool,
    /// Why it is not reachable (no secrets: host and error kind only).
    pub error: Option<String>,
}

/// Ledger meters, read from the Control Room's own task records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LedgerView {
    pub tasks_on_record: u64,
    pub in_flight: u64,
    pub succeeded: u64,
    /// Failed or expired tasks (the Error Review's count).
    pub to_review: u64,
    /// Credits KIE charged for finished tasks, as a decimal string.
    pub credits_consumed: String,
}

/// What the upstream answered to the last probe (`chat/credit`, timed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayView {
    pub reachable: bool,
    /// Round trip of the probe in microseconds.
    pub latency_us: u64,
    /// The account's credit balance, as KIE reported it.
    pub balance: Option<String>,
    /// What went wrong, in words an operator can act on (never the key).
    pub error: Option<String>,
    /// Unix ms of the probe.
    pub checked_ms: u64,
}

/// Everything the panels need at first paint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsoleStatus {
    pub upstream: Upstream,
    pub key: KeyView,
    /// `None` when there is no upstream to probe (no key, no simulator).
    pub gateway: Option<GatewayView>,
    /// Days KIE's balance lasts at the last 7 days' burn (receipts); `None`: no balance or burn.
    #[serde(default)]
    pub runway_days: Option<f64>,
    #[serde(default)]
    pub runway_alert_days: u64,
    pub store: StoreView,
    /// `None` when the store could not be read: the meters then show nothing, not zeros.
    pub ledger: Option<LedgerView>,
    /// Where KIE will call back (`PUBLIC_URL/callbacks/kie/…`), if `PUBLIC_URL` is set.
    pub callback_base: Option<String>,
    /// Whether callback signatures are verified (`KIE_WEBHOOK_HMAC_KEY` set).
    pub callback_signed: bool,
}

/// One row of the Task Monitor or the Error Review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRow {
    pub id: String,
    /// Record version: a live event older than the row on screen is ignored.
    pub version: u64,
    pub model: String,
    pub project: String,
    pub owner: String,
    pub state: String,
    pub terminal: bool,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub finished_ms: Option<u64>,
    pub estimated_credits: String,
    pub actual_credits: Option<String>,
    pub kie_task_id: Option<String>,
    pub fail_code: Option<String>,
    pub fail_msg: Option<String>,
    /// The Error Review's class label ("Rate limited", "Callback lost"…).
    pub fail_class: Option<String>,
    /// Where the task stands in words, while it waits.
    pub note: Option<String>,
    pub result_urls: Vec<String>,
    /// The first words of the prompt.
    pub prompt: Option<String>,
    pub retry_of: Option<String>,
    #[serde(default)]
    pub rerun_of: Option<String>,
    /// For a language model's call (kind "chat"): its tokens, "11 → 5 tokens" (estimated
    /// ones say so). `None` for a task.
    #[serde(default)]
    pub chat: Option<String>,
    /// While it waits for the rate guard: its place and expected wait ("#3 · ≈ 10 s").
    pub queue: Option<String>,
    /// The Library's copies of its results (`/library/<task>/<n>`, signed-in paths), in
    /// result order; empty until archived.
    #[serde(default)]
    pub library: Vec<String>,
    /// Where its Library copies stand: "In Library", "Archiving 1/2", "Result expired",
    /// "Not archived", "Deleted from Library"; `None` when nothing is to be copied.
    #[serde(default)]
    pub archive: Option<String>,
}

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

/// Panel 07: the retention guard's state, from the store's records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LibraryView {
    /// `None`: LIBRARY_URL=off.
    pub url: Option<String>,
    /// Why this instance cannot use its Library.
    pub problem: Option<String>,
    pub retention_days: u64,
    pub buffer_days: u64,
    pub assets: i64,
    pub bytes: i64,
    pub quota_bytes: Option<u64>,
    pub pending_tasks: usize,
    pub pending_assets: usize,
    pub overdue: usize,
    pub nearest_deadline_ms: Option<u64>,
    pub lost_tasks: usize,
    pub failing: usize,
    pub last_error: Option<String>,
    /// The counts of pending and lost tasks are lower bounds (bounded scans).
    pub capped: bool,
    /// The server's clock when this was read (for "in 11 d").
    pub now_ms: u64,
}

impl LibraryView {
    /// Share of the quota used, in whole percent.
    pub fn quota_percent(&self) -> Option<u64> {
        self.quota_bytes.filter(|q| *q > 0).map(|q| (self.bytes.max(0) as u64).saturating_mul(100) / q)
    }
}

/// One Library copy, for the Library listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LibraryItem {
    pub task_id: String,
    pub index: usize,
    pub model: String,
    pub project: String,
    pub owner: String,
    pub content_type: String,
    pub bytes: u64,
    pub sha256: String,
    pub archived_ms: u64,
    /// For signed-in people (`/library/<task>/<n>`).
    pub path: String,
    /// A signed link that works with no other credential until it expires.
    pub link: String,
    pub link_expires_s: u64,
}

impl TaskRow {
    /// Steps done of the lifecycle (queued 1 … ended 6), for the progress bar.
    pub fn step(&self) -> u8 {
        match self.state.as_str() {
            "queued" => 1,
            "submitted" => 2,
            "waiting" => 3,
            "queuing" => 4,
            "generating" => 5,
            _ => 6,
        }
    }
}

#[cfg(feature = "ssr")]
impl From<gateway::TaskRecord> for TaskRow {
    fn from(t: gateway::TaskRecord) -> TaskRow {
        use gateway::library::asset::AssetState;
        let library = t.archive.iter().flat_map(|a| a.assets.iter().enumerate()).filter(|(_, x)| x.state == AssetState::Archived).map(|(n, _)| gateway::library::links::unsigned_path(&t.id, n)).collect();
        let archive = t.archive.as_ref().map(|a| {
            let count = |s: AssetState| a.assets.iter().filter(|x| x.state == s).count();
            if a.lost() {
                "Result expired".to_string()
            } else if a.pending() {
                format!("Archiving {}/{}", count(AssetState::Archived), a.assets.len())
            } else if a.complete() {
                "In Library".to_string()
            } else if count(AssetState::Deleted) > 0 {
                "Deleted from Library".to_string()
            } else {
                "Not archived".to_string()
            }
        });
        let prompt = t.input.get("prompt").and_then(|p| p.as_str()).map(|p| {
            let short: String = p.chars().take(80).collect();
            if short.len() < p.len() { format!("{short}…") } else { short }
        });
        TaskRow {
            terminal: t.state.is_terminal(),
            state: t.state.as_str().into(),
            estimated_credits: t.estimated_cost.to_string(),
            actual_credits: t.actual_cost.map(|c| c.to_string()),
            fail_class: t.fail_class.map(|c| c.label().to_string()),
            version: t.version,
            id: t.id,
            model: t.model,
            project: t.project,
            owner: t.owner,
            created_ms: t.created_ms,
            updated_ms: t.updated_ms,
            finished_ms: t.finished_ms,
            kie_task_id: t.kie_task_id,
            fail_code: t.fail_code,
            fail_msg: t.fail_msg,
            note: t.note,
            result_urls: t.result_urls,
            prompt,
            retry_of: t.retry_of,
            rerun_of: t.rerun_of,
            chat: t.chat.map(|u| {
                let est = if u.estimated { " (estimated)" } else { "" };
                format!("chat · {} → {} tokens{est}", u.prompt_tokens, u.completion_tokens)
            }),
            queue: None,
            library,
            archive,
        }
    }
}

/// One price of a model: for a value of its priced-by choice (and a mode, for video).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PricePoint {
    pub choice: Option<String>,
    pub mode: Option<String>,
    /// Credits as a decimal string.
    pub credits: String,
    /// `$0.04`.
    pub usd: String,
}

/// A model of the Market, as the composer and the Market and Pinned panels show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelOption {
    pub id: String,
    pub category: String,
    pub provider: String,
    pub purpose: String,
    /// Input fields it requires.
    pub required: Vec<String>,
    /// The choice its price depends on, if any ("resolution", "quality", "duration").
    pub priced_by: Option<String>,
    /// The values that choice takes.
    pub choices: Vec<String>,
    /// Its price for every choice (and mode), computed by the same rule that prices a task.
    pub prices: Vec<PricePoint>,
    /// Pinned by the person looking.
    pub pinned: bool,
    /// The KIE API it lives on ("market", "veo", "suno"…).
    pub family: String,
    /// Its inputs beyond the prompt and the priced choice.
    pub fields: Vec<FieldOption>,
    /// Whether a source gives its price (if not, a per-job cap is what a task holds).
    pub price_known: bool,
    /// A price by the input's length ("12 cr per 1,000 characters of text"), when it has one.
    pub rate: Option<String>,
}

/// One input of a model as the composer offers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldOption {
    pub name: String,
    /// "text", "choice", "number", "flag", "url" or "urls".
    pub kind: String,
    pub choices: Vec<String>,
    pub default: Option<bool>,
}

impl FieldOption {
    /// The value shown before anyone changes it: the first choice, the flag's default, or
    /// nothing for free text.
    pub fn initial(&self) -> String {
        match self.kind.as_str() {
            "flag" => self.default.unwrap_or(false).to_string(),
            _ => self.choices.first().cloned().unwrap_or_default(),
        }
    }
}

/// A draft by a language model, started: where to read it (`/draft/<token>`, once) and what
/// it is estimated at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DraftStart {
    pub token: String,
    pub estimate: String,
}

/// An ended task's inputs, to open in the composer ("Re-run with edits").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Draft {
    /// The task it re-runs.
    pub of: String,
    pub model: String,
    pub project: String,
    pub prompt: String,
    pub choice: Option<String>,
    pub mode: Option<String>,
    pub image_url: Option<String>,
    /// The model's other fields, as the composer writes them.
    pub fields: Vec<(String, String)>,
}

impl ModelOption {
    /// The price for this choice and mode (the first price when the choice is not given).
    pub fn price_for(&self, choice: &str, mode: &str) -> Option<&PricePoint> {
        let fits = |p: &&PricePoint| {
            p.choice.as_deref().is_none_or(|c| choice.is_empty() || c == choice) && p.mode.as_deref().is_none_or(|m| m == mode)
        };
        self.prices.iter().find(fits).or(self.prices.first())
    }

    /// The cheapest price, for the Market's list.
    pub fn from_price(&self) -> Option<&PricePoint> {
        self.prices.iter().min_by(|a, b| a.credits.parse::<f64>().unwrap_or(0.0).total_cmp(&b.credits.parse::<f64>().unwrap_or(0.0)))
    }
}

/// The Market: every model with its prices, and the date they were taken.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MarketView {
    pub models: Vec<ModelOption>,
    pub prices_taken: String,
    /// Whose pins `pinned` reflects.
    pub user: String,
}

/// One cost rule as the Budget panel shows it (amounts in dollars and credits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleView {
    /// "team", "project trailer", …
    pub label: String,
    pub project: Option<String>,
    pub user: Option<String>,
    pub per_job: Option<String>,
    pub per_day: Option<String>,
    pub total: Option<String>,
    pub updated_by: String,
}

/// A spend meter of one cap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeterView {
    /// "project trailer — max per rolling 24 h".
    pub label: String,
    /// `$4.80 (960 credits)`.
    pub used: String,
    pub cap: String,
    pub percent: u32,
}

/// The Budget panel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BudgetView {
    pub rules: Vec<RuleView>,
    pub meters: Vec<MeterView>,
    /// Recent alerts, newest first: (Unix ms, message).
    pub alerts: Vec<(u64, String)>,
}

/// One rate guard rule and how full it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardRuleView {
    pub rule: String,
    pub used: i64,
    pub limit: i64,
}

/// The Throttle panel: the rate guard's rules, its queue and KIE's 429s.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThrottleView {
    pub rules: Vec<GuardRuleView>,
    pub margin_ms: u64,
    /// Tasks waiting for the guard.
    pub depth: usize,
    /// Expected wait of the last task in the queue, ms.
    pub drain_ms: u64,
    /// The next few tasks to leave: (task id, owner, expected wait ms).
    pub next: Vec<(String, String, u64)>,
    /// The queue by owner, most waiting first.
    pub by_owner: Vec<OwnerQueueView>,
    pub backed_off: usize,
    pub in_doubt: usize,
    pub cooldown_ms: Option<u64>,
    pub rate_limited_total: i64,
    /// Projects with a fair share of their own: (project, "weight 3 · at most 200 waiting
    /// per owner").
    pub shares: Vec<(String, String)>,
}

/// One owner's share of the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnerQueueView {
    pub owner: String,
    pub waiting: usize,
    pub oldest_age_ms: u64,
    /// Of the next window's sends, how many are theirs.
    pub next_window: usize,
}

/// What a submission from the console answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submitted {
    pub id: String,
    pub estimated_credits: String,
}

/// One page of task rows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskList {
    pub rows: Vec<TaskRow>,
    pub next: Option<String>,
}

/// The signed-in person, as the page needs them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Me {
    pub email: String,
    pub name: String,
    /// "viewer", "producer" or "admin".
    pub role: String,
}

impl Me {
    pub fn can_produce(&self) -> bool {
        self.role == "producer" || self.role == "admin"
    }

    pub fn is_admin(&self) -> bool {
        self.role == "admin"
    }
}

/// One user in the Team panel (never a password hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRow {
    pub email: String,
    pub name: String,
    pub role: String,
    pub disabled: bool,
    /// UTC, RFC 3339.
    pub created: String,
}

/// One relay key in the vault panel (never the key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayKeyRow {
    pub id: String,
    pub name: String,
    pub project: String,
    /// Times in UTC, RFC 3339.
    pub created: String,
    pub last_used: Option<String>,
    pub revoked: Option<String>,
}

/// A relay key just created: the only time its text is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRelayKey {
    pub row: RelayKeyRow,
    pub key: String,
    pub webhook_secret: String,
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRow {
    pub seq: u64,
    /// UTC, RFC 3339.
    pub at: String,
    pub who: String,
    pub from: String,
    pub action: String,
    pub target: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// A page of the audit log, newest first; `next` continues it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditView {
    pub rows: Vec<AuditRow>,
    pub next: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_quota_is_a_whole_percent_only_when_there_is_one() {
        let view = |bytes: i64, quota: Option<u64>| LibraryView { bytes, quota_bytes: quota, ..Default::default() };
        assert_eq!(view(250, Some(1000)).quota_percent(), Some(25));
        assert_eq!(view(1999, Some(1000)).quota_percent(), Some(199), "over the quota says so");
        assert_eq!(view(-5, Some(1000)).quota_percent(), Some(0), "a negative count reads as empty");
        assert_eq!(view(5, Some(0)).quota_percent(), None, "a zero quota is no quota");
        assert_eq!(view(5, None).quota_percent(), None);
        assert_eq!(view(i64::MAX, Some(1)).quota_percent(), Some(u64::MAX), "no wrap-around");
    }
}
