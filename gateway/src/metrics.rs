//! What an operator's Prometheus reads: this instance's counters and histograms, and gauges of
//! the state every instance shares, in the OpenMetrics or the Prometheus text format.
//!
//! Counters are per process: each instance counts what *it* did, so Prometheus' `sum` over
//! instances is the deployment's total and nothing is counted twice. The gauges marked
//! *shared* (tasks by state, the oldest queued task's age) are read from the store at scrape
//! time and carry the same value on every instance: take `max`, not `sum`.
//!
//! Labels are bounded: a catalog model, a project name (validated), and fixed words
//! (outcome, reason, route…). Never a task id, a key, an email or a person's id.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use crate::money::budget::CapKind;
use crate::money::credits::Credits;
use crate::tasks::rate_guard::LimitRule;
use crate::store::{Scope, Store, StoreResult, now_ms};
use crate::tasks::task::{TaskQuery, TaskState};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelProject {
    model: String,
    project: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelOutcome {
    model: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabel {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelDirection {
    model: String,
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Rule {
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Endpoint {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendOperation {
    backend: String,
    operation: String,
}

/// A cap's owner, without naming a person: scope `team`, `project` or `person` (a person's
/// rule is shown under its project, or none, and the fullest one wins).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Cap {
    scope: String,
    project: String,
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct State {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Version {
    version: String,
}

type Seconds = Family<Endpoint, Histogram, fn() -> Histogram>;

/// Request latencies: 0.5 ms to about 8 s.
fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// What a callback achieved (the `outcome` label of `callbacks_received_total`).
pub const CALLBACK_OUTCOMES: [&str; 7] = ["applied", "duplicate", "deferred", "forged", "unknown_token", "bad_body", "store_error"];

/// What a try at copying a result came to (the `outcome` label of `library_assets_total`).
pub const LIBRARY_OUTCOMES: [&str; 5] = ["archived", "retry", "full", "expired", "failed"];

/// Store operations: 50 µs to about 1.6 s.
fn store_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.00005, 2.0, 16))
}

/// Why a submission was refused (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Budget,
    /// A chat call the rate guard's chat limits could not admit in time.
    RateLimited,
    Validation,
    NotConfigured,
    Forbidden,
    Store,
    /// A task over the owner's queue quota (`QUEUE_MAX_PER_OWNER`).
    QueueFull,
    /// A task refused while its intake was paused (`QUEUE_PAUSED_INTAKE=refuse`).
    Paused,
}

impl Refusal {
    fn name(self) -> &'static str {
        match self {
            Refusal::Budget => "budget",
            Refusal::RateLimited => "rate_limited",
            Refusal::Validation => "validation",
            Refusal::NotConfigured => "not_configured",
            Refusal::Forbidden => "forbidden",
            Refusal::Store => "store",
            Refusal::QueueFull => "queue_full",
            Refusal::Paused => "paused",
        }
    }
}

/// The metrics of one instance; cheap to share (`Arc`).
pub struct Metrics {
    registry: Registry,
    submitted: Family<ModelProject, Counter>,
    refused: Family<Reason, Counter>,
    chat_calls: Family<ModelOutcome, Counter>,
    chat_tokens: Family<ModelDirection, Counter>,
    chat_credits: Family<ModelLabel, Counter<f64, AtomicU64>>,
    charge_overruns: Family<ModelLabel, Counter>,
    ended: Family<ModelOutcome, Counter>,
    estimated: Family<ModelProject, Counter<f64, AtomicU64>>,
    charged: Family<ModelProject, Counter<f64, AtomicU64>>,
    budget_refusals: Family<Rule, Counter>,
    kie_rate_limited: Counter,
    dispatch_backoffs: Counter,
    in_doubt: Counter,
    callbacks: Family<Outcome, Counter>,
    poller_calls: Family<Outcome, Counter>,
    library_assets: Family<Outcome, Counter>,
    kie_latency: Seconds,
    relay_requests: Family<RouteStatus, Counter>,
    relay_latency: Family<Route, Histogram, fn() -> Histogram>,
    sse_clients: Gauge,
    store_latency: Family<BackendOperation, Histogram, fn() -> Histogram>,
    tasks: Family<State, Gauge>,
    budget_used: Family<Cap, Gauge<f64, AtomicU64>>,
    guard_used: Family<Rule, Gauge<f64, AtomicU64>>,
    store_up: Gauge,
    oldest_queued: Gauge<f64, AtomicU64>,
    balance: Gauge<f64, AtomicU64>,
    /// Whether KIE answered a balance yet (the runway needs one).
    balance_known: std::sync::atomic::AtomicBool,
    runway: Gauge<f64, AtomicU64>,
    runway_alert: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("control_room");
        let m = Metrics {
            submitted: Family::default(),
            refused: Family::default(),
            chat_calls: Family::default(),
            chat_tokens: Family::default(),
            chat_credits: Family::default(),
            charge_overruns: Family::default(),
            ended: Family::default(),
            estimated: Family::default(),
            charged: Family::default(),
            budget_refusals: Family::default(),
            kie_rate_limited: Counter::default(),
            dispatch_backoffs: Counter::default(),
            in_doubt: Counter::default(),
            callbacks: Family::default(),
            poller_calls: Family::default(),
            library_assets: Family::default(),
            kie_latency: Family::new_with_constructor(latency_buckets),
            relay_requests: Family::default(),
            relay_latency: Family::new_with_constructor(latency_buckets),
            sse_clients: Gauge::default(),
            store_latency: Family::new_with_constructor(store_buckets),
            tasks: Family::default(),
            budget_used: Family::default(),
            guard_used: Family::default(),
            store_up: Gauge::default(),
            oldest_queued: Gauge::default(),
            balance: Gauge::default(),
            balance_known: Default::default(),
            runway: Gauge::default(),
            runway_alert: Gauge::default(),
            registry: Registry::default(),
        };
        let build: Family<Version, Gauge> = Family::default();
        build.get_or_create(&Version { version: env!("CARGO_PKG_VERSION").into() }).set(1);
        registry.register("build_info", "The running version (value 1)", build);
        registry.register("tasks_submitted", "Tasks recorded by this instance", m.submitted.clone());
        registry.register("chat_calls", "Language model calls this instance relayed, by model and outcome (answered, failed, cancelled)", m.chat_calls.clone());
        registry.register("chat_tokens", "Tokens of the language model calls this instance relayed, by model and direction (prompt, completion)", m.chat_tokens.clone());
        registry.register("chat_credits", "Credits counted for the language model calls this instance relayed", m.chat_credits.clone());
        registry.register("charge_overruns", "Tasks KIE charged more than they held (KIE's price above the catalog's): the cost rules count the real charge", m.charge_overruns.clone());
        registry.register("submissions_refused", "Submissions refused by this instance, by reason; nothing was recorded", m.refused.clone());
        registry.register("tasks_ended", "Tasks this instance saw end, by outcome (success, fail, expired)", m.ended.clone());
        registry.register("credits_estimated", "Credits estimated for the tasks this instance recorded", m.estimated.clone());
        registry.register("credits_charged", "Credits KIE charged for the tasks this instance saw end", m.charged.clone());
        registry.register("budget_refusals", "Submissions a cost rule refused, by the kind of cap", m.budget_refusals.clone());
        registry.register("kie_rate_limited", "createTask calls KIE answered with 429", m.kie_rate_limited.clone());
        registry.register("dispatch_backoffs", "Times the dispatcher backed off from KIE", m.dispatch_backoffs.clone());
        registry.register("dispatch_in_doubt", "createTask sends left in doubt (no answer that says whether KIE took the task; never resent)", m.in_doubt.clone());
        registry.register("callbacks_received", "KIE callbacks by outcome (applied, duplicate, deferred, forged, unknown_token, bad_body, store_error)", m.callbacks.clone());
        registry.register("poller_calls", "recordInfo calls the poller made, by outcome", m.poller_calls.clone());
        registry.register("library_assets", "Tries to copy a result into the Library, by outcome (archived, retry, full, expired, failed)", m.library_assets.clone());
        registry.register("kie_request_duration_seconds", "KIE API call latency, by endpoint", m.kie_latency.clone());
        registry.register("relay_requests", "Relay API requests, by route and status", m.relay_requests.clone());
        registry.register("relay_request_duration_seconds", "Relay API request latency, by route", m.relay_latency.clone());
        registry.register("sse_clients", "Live event streams open on this instance", m.sse_clients.clone());
        registry.register("store_operation_duration_seconds", "Store operation latency, by backend and operation", m.store_latency.clone());
        registry.register("tasks", "Tasks on record by state (shared: the same on every instance)", m.tasks.clone());
        registry.register("budget_used_ratio", "Spend over cap of each day and total cost rule (shared)", m.budget_used.clone());
        registry.register("rate_guard_used_ratio", "Each rate guard rule's window (or running tasks) over its limit (shared)", m.guard_used.clone());
        registry.register("store_up", "Whether this instance could read the store at the last scrape (1) or not (0)", m.store_up.clone());
        registry.register("queue_oldest_age_seconds", "Age of the oldest task waiting for the rate guard (shared)", m.oldest_queued.clone());
        registry.register("kie_balance_credits", "KIE's last answered credit balance (shared account; absent until KIE answered)", m.balance.clone());
        registry.register("runway_days", "Days KIE's balance lasts at the last 7 days' burn, from the receipts (+Inf: nothing spent; NaN until KIE answered a balance; shared)", m.runway.clone());
        registry.register("runway_alert_days", "RUNWAY_ALERT_DAYS: the runway alert fires below this", m.runway_alert.clone());
        // Series with fixed label words exist from the start at 0, so that a rate over them
        // is 0 rather than "no data" and a dashboard finds them before the first event.
        for why in [Refusal::Budget, Refusal::Validation, Refusal::NotConfigured, Refusal::Forbidden, Refusal::Store, Refusal::QueueFull] {
            let _ = m.refused.get_or_create(&Reason { reason: why.name().into() });
        }
        for kind in CapKind::ALL {
            let _ = m.budget_refusals.get_or_create(&Rule { rule: kind.name().into() });
        }
        for outcome in CALLBACK_OUTCOMES {
            let _ = m.callbacks.get_or_create(&Outcome { outcome: outcome.into() });
        }
        for outcome in LIBRARY_OUTCOMES {
            let _ = m.library_assets.get_or_create(&Outcome { outcome: outcome.into() });
        }
        for outcome in ["ok", "error"] {
            let _ = m.poller_calls.get_or_create(&Outcome { outcome: outcome.into() });
        }
        // Unknown until KIE answers a balance: NaN, never a runway of 0 that would alert.
        m.runway.set(f64::NAN);
        Metrics { registry, ..m }
    }

    pub fn submitted(&self, model: &str, project: &str, estimate: Credits) {
        let l = ModelProject { model: model.into(), project: project.into() };
        self.submitted.get_or_create(&l).inc();
        self.estimated.get_or_create(&l).inc_by(estimate.as_f64());
    }

    /// A chat call ended: its outcome, tokens and cost.
    pub fn chat_call(&self, model: &str, outcome: &str, prompt: u64, completion: u64, cost: Credits) {
        self.chat_calls.get_or_create(&ModelOutcome { model: model.into(), outcome: outcome.into() }).inc();
        for (direction, n) in [("prompt", prompt), ("completion", completion)] {
            self.chat_tokens.get_or_create(&ModelDirection { model: model.into(), direction: direction.into() }).inc_by(n);
        }
        self.chat_credits.get_or_create(&ModelLabel { model: model.into() }).inc_by(cost.as_f64());
    }

    pub fn refused(&self, why: Refusal) {
        self.refused.get_or_create(&Reason { reason: why.name().into() }).inc();
    }

    pub fn budget_refused(&self, kind: CapKind) {
        self.budget_refusals.get_or_create(&Rule { rule: kind.name().into() }).inc();
    }

    /// The catalog's task models: their per-model series that alerts read exist from the
    /// start at 0 (a rate over them is 0, not "no data").
    pub fn know_models<'a>(&self, models: impl Iterator<Item = &'a str>) {
        for model in models {
            let _ = self.charge_overruns.get_or_create(&ModelLabel { model: model.into() });
        }
    }

    /// A task KIE charged more than it held.
    pub fn charge_overrun(&self, model: &str) {
        self.charge_overruns.get_or_create(&ModelLabel { model: model.into() }).inc();
    }

    /// A task this instance moved to a final state, with what KIE charged.
    pub fn ended(&self, model: &str, project: &str, state: TaskState, charged: Option<Credits>) {
        self.ended.get_or_create(&ModelOutcome { model: model.into(), outcome: state.as_str().into() }).inc();
        if let Some(c) = charged.filter(|c| *c > Credits::ZERO) {
            self.charged.get_or_create(&ModelProject { model: model.into(), project: project.into() }).inc_by(c.as_f64());
        }
    }

    pub fn kie_rate_limited(&self) {
        self.kie_rate_limited.inc();
    }

    pub fn dispatch_backoff(&self) {
        self.dispatch_backoffs.inc();
    }

    pub fn dispatch_in_doubt(&self) {
        self.in_doubt.inc();
    }

    /// A callback's result, one of [`CALLBACK_OUTCOMES`].
    pub fn callback(&self, result: &'static str) {
        self.callbacks.get_or_create(&Outcome { outcome: result.into() }).inc();
    }

    /// A try at copying a result, one of [`LIBRARY_OUTCOMES`].
    pub fn library_asset(&self, outcome: &'static str) {
        self.library_assets.get_or_create(&Outcome { outcome: outcome.into() }).inc();
    }

    pub fn poller_call(&self, ok: bool) {
        self.poller_calls.get_or_create(&Outcome { outcome: if ok { "ok" } else { "error" }.into() }).inc();
    }

    /// A KIE call to `endpoint` (its path's last part: createTask, recordInfo, credit…).
    pub fn kie_call(&self, endpoint: &str, took: Duration) {
        self.kie_latency.get_or_create(&Endpoint { endpoint: endpoint.into() }).observe(took.as_secs_f64());
    }

    /// A relay request (`route` one of the relay's own paths, or "other").
    pub fn relay_request(&self, route: &str, status: u16, took: Duration) {
        self.relay_requests.get_or_create(&RouteStatus { route: route.into(), status: status.to_string() }).inc();
        self.relay_latency.get_or_create(&Route { route: route.into() }).observe(took.as_secs_f64());
    }

    /// One store operation (`operation`: the store trait's method name).
    pub fn store_op(&self, backend: &str, operation: &str, took: Duration) {
        self.store_latency.get_or_create(&BackendOperation { backend: backend.into(), operation: operation.into() }).observe(took.as_secs_f64());
    }

    /// Live event streams open on this instance now.
    pub fn set_sse_clients(&self, n: usize) {
        self.sse_clients.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// KIE's balance, from a real answer.
    pub fn balance(&self, credits: Credits) {
        self.balance.set(credits.as_f64());
        self.balance_known.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// `RUNWAY_ALERT_DAYS`, exported for the alert rule.
    pub fn set_runway_alert_days(&self, days: u64) {
        self.runway_alert.set(i64::try_from(days).unwrap_or(i64::MAX));
    }

    /// Reads the shared gauges from the store (at scrape time), with the rate guard's rules and
    /// their scopes; `store_up` says whether it could.
    pub async fn refresh_shared(&self, store: &dyn Store, guard: &[(LimitRule, Scope)]) -> StoreResult<()> {
        let read = self.read_shared(store, guard).await;
        self.store_up.set(i64::from(read.is_ok()));
        read
    }

    async fn read_shared(&self, store: &dyn Store, guard: &[(LimitRule, Scope)]) -> StoreResult<()> {
        let scopes: Vec<Scope> = guard.iter().map(|(_, s)| s.clone()).collect();
        for ((rule, scope), used) in guard.iter().zip(store.usage_many(&scopes).await?) {
            let ratio = if scope.limit > 0 { used.max(0) as f64 / scope.limit as f64 } else { 0.0 };
            self.guard_used.get_or_create(&Rule { rule: rule.to_string() }).set(ratio);
        }
        let rules = crate::money::budget::rules(store).await?;
        let meters = crate::money::budget::meters(store, &rules).await?;
        let mut fill: std::collections::HashMap<Cap, f64> = std::collections::HashMap::new();
        for m in &meters {
            let scope = if m.target.user.is_some() { "person" } else if m.target.project.is_some() { "project" } else { "team" };
            let cap = Cap { scope: scope.into(), project: m.target.project.clone().unwrap_or_default(), rule: m.kind.name().into() };
            let ratio = if m.cap.0 > 0 { m.used.0.max(0) as f64 / m.cap.0 as f64 } else { 0.0 };
            let e = fill.entry(cap).or_default();
            *e = e.max(ratio);
        }
        // Rules come and go: no series outlives its rule.
        self.budget_used.clear();
        for (cap, ratio) in fill {
            self.budget_used.get_or_create(&cap).set(ratio);
        }
        let counts = store.task_counts().await?;
        for state in TaskState::ALL {
            self.tasks.get_or_create(&State { state: state.as_str().into() }).set(counts.get(state) as i64);
        }
        let q = TaskQuery { state: Some(TaskState::Queued), oldest_first: true, limit: 1, ..Default::default() };
        let oldest = store.task_list(&q).await?.tasks.first().map(|t| now_ms().saturating_sub(t.created_ms));
        self.oldest_queued.set(oldest.map_or(0.0, |ms| ms as f64 / 1000.0));
        if self.balance_known.load(std::sync::atomic::Ordering::Relaxed)
            && let Some(balance) = Credits::from_decimal(self.balance.get())
        {
            let days = crate::money::receipts::runway_days(store, balance).await?;
            self.runway.set(days.unwrap_or(f64::INFINITY));
        }
        Ok(())
    }

    /// The OpenMetrics text exposition.
    pub fn openmetrics(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The Prometheus text format (0.0.4): OpenMetrics without `# EOF` and `# UNIT`, with a
    /// counter's family named as its samples are (`…_total`).
    pub fn prometheus_text(&self) -> String {
        let om = self.openmetrics();
        let mut out = String::with_capacity(om.len());
        let mut counters = std::collections::HashSet::new();
        for line in om.lines() {
            if let Some(name) = line.strip_prefix("# TYPE ").and_then(|r| r.strip_suffix(" counter")) {
                counters.insert(name.to_string());
            }
        }
        for line in om.lines() {
            if line == "# EOF" || line.starts_with("# UNIT ") {
                continue;
            }
            let renamed = ["# TYPE ", "# HELP "].iter().find_map(|p| {
                let rest = line.strip_prefix(p)?;
                let (name, tail) = rest.split_once(' ')?;
                counters.contains(name).then(|| format!("{p}{name}_total {tail}"))
            });
            out.push_str(renamed.as_deref().unwrap_or(line));
            out.push('\n');
        }
        out
    }
}
