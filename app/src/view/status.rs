//! The status strip and the Gateway panel (01): the upstream, the KIE key as far as it may be known, the store, the ledger meters and the last probe.

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
    /// Redis lost its primary and the Sentinels have not named a new one yet.
    #[serde(default)]
    pub failing_over: bool,
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
