//! Cost rules: shared budgets that hold exactly, across every instance.
//!
//! A rule caps spend for a *target* — the whole team, one project, one person, or one person
//! within a project — in three ways, each optional: per job, per rolling 24 hours, and in total.
//! Rules are set in dollars and held in milli-credits (1 credit = $0.005).
//!
//! At submit, the task's estimate is checked against every per-job cap, then **reserved**
//! against every day and total scope that applies, in one atomic [`Store::reserve`] keyed by
//! the task (a Lua script on Redis, one transaction on the embedded store): either every scope
//! takes it or none does. When the task ends the hold is settled: the actual cost (KIE's
//! `creditsConsumed`, else the estimate) on success, nothing on failure or expiry. Settling is
//! idempotent, so a repeat callback or a second instance cannot count it twice.
//!
//! Crossing 80 %, 90 % or 100 % of a day or total cap raises an alert once per window (for a
//! day rule: once per 24 h; for a total: once per cap value), kept for the Budget panel. The
//! meters are checked again when a task settles, since KIE's actual charge can be above the
//! estimate; an actual charge above a per-job cap raises its own alert (once per task).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

use crate::team::accounts::{Actor, Role};
use crate::team::audit;
use crate::money::credits::Credits;
use crate::store::{Refusal, ReserveOutcome, ReserveRequest, Scope, Store, StoreError, StoreResult, Unchanged, edit_doc, now_ms, read_doc};

/// The stored list of rules.
const RULES_KEY: &str = "costrules";
/// Recent alerts, newest first.
const ALERTS_KEY: &str = "costrules:alerts";
/// Most rules a deployment holds.
pub const MAX_RULES: usize = 200;
/// Most alerts kept.
pub const MAX_ALERTS: usize = 50;
/// Largest cap accepted ($10 M): keeps every sum far from overflow.
pub const MAX_CAP_USD: f64 = 10_000_000.0;
/// The alert levels, in percent of a cap.
pub const ALERT_LEVELS: [u8; 3] = [80, 90, 100];
const DAY: Duration = Duration::from_secs(24 * 3600);
/// How long a task's hold (and its per-job alert claim) is kept at most.
pub const HOLD_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Who a rule applies to. Both `None`: the whole team.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    pub project: Option<String>,
    pub user: Option<String>,
}

impl Target {
    /// Whether `actor` is shown this rule, its meters and alerts: everyone who reaches every
    /// project is; someone limited to some projects sees their projects' rules and their own.
    pub fn seen_by(&self, actor: &Actor) -> bool {
        !actor.membership.is_limited() || self.project.as_deref().map_or(self.user.as_deref() == Some(actor.who.as_str()), |p| actor.sees(p))
    }

    /// For people: "team", "project trailer", "user ana", "user ana in project trailer",
    /// "relay key 3f2a…" (a rule for one relay key names its owner, `key:<id>`).
    pub fn label(&self) -> String {
        let who = |u: &str| u.strip_prefix("key:").map_or_else(|| format!("user {u}"), |id| format!("relay key {id}"));
        match (&self.project, &self.user) {
            (None, None) => "team".into(),
            (Some(p), None) => format!("project {p}"),
            (None, Some(u)) => who(u),
            (Some(p), Some(u)) => format!("{} in project {p}", who(u)),
        }
    }

    /// The target of a rule for one relay key: the owner its tasks carry
    /// ([`crate::team::relay_keys::RelayKey::owner`]).
    pub fn relay_key(id: &str) -> Target {
        Target { project: None, user: Some(crate::team::relay_keys::owner_of(id)) }
    }

    /// For store keys: stable and unambiguous.
    fn slug(&self) -> String {
        format!("p={}|u={}", self.project.as_deref().unwrap_or("*"), self.user.as_deref().unwrap_or("*"))
    }

    fn applies_to(&self, owner: &str, project: &str) -> bool {
        self.project.as_deref().is_none_or(|p| p == project) && self.user.as_deref().is_none_or(|u| u == owner)
    }
}

/// One cost rule: whom it governs and its caps (milli-credits; a kind absent is no cap).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostRule {
    pub target: Target,
    /// Stored as one field per kind (`"per_day": 1000`), as rules always were.
    #[serde(flatten)]
    pub caps: Caps,
    pub updated_ms: u64,
    /// Who set it last.
    pub updated_by: String,
}

/// The kinds of cap. What each one means is its [`CapSpec`], in [`CapKind::spec`]: a new kind
/// is a variant and its spec here; the Budget panel, its form, the CLI's flags, the metrics
/// and the store's scopes all read the specs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CapKind {
    PerJob,
    PerDay,
    Total,
}

/// How a cap holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Each job on its own: its estimate is checked at submit (and its actual charge when it
    /// ends); nothing is reserved.
    Job,
    /// The spend of every job it governs, summed in the store under `budget:<word>:<target>`
    /// and reserved at submit: over a rolling `window`, or with none, in total.
    Summed { word: &'static str, window: Option<Duration> },
}

/// What one kind of cap is called everywhere it shows, and how it holds.
#[derive(Debug)]
pub struct CapSpec {
    /// In stored rules, metrics, form fields and logs: `per_day`.
    pub name: &'static str,
    /// The CLI's flag: `per-day` (`--per-day USD`).
    pub flag: &'static str,
    /// The CLI's help for that flag.
    pub help: &'static str,
    /// In a rule's name and alerts: "max per rolling 24 h".
    pub label: &'static str,
    /// In a rule's caps text: "per 24 h".
    pub short: &'static str,
    /// The Budget form's field, and what an error about its amount calls it.
    pub field: &'static str,
    /// After "used of $x" in a refusal: " in the last 24 h".
    pub during: &'static str,
    pub reach: Reach,
}

impl CapKind {
    /// Every kind, in the order they are shown.
    pub const ALL: [CapKind; 3] = [CapKind::PerJob, CapKind::PerDay, CapKind::Total];

    pub fn spec(self) -> &'static CapSpec {
        match self {
            CapKind::PerJob => &CapSpec {
                name: "per_job",
                flag: "per-job",
                help: "Most one job may cost, in USD",
                label: "max per job",
                short: "per job",
                field: "Max spend per job",
                during: "",
                reach: Reach::Job,
            },
            CapKind::PerDay => &CapSpec {
                name: "per_day",
                flag: "per-day",
                help: "Most to spend in any rolling 24 hours, in USD",
                label: "max per rolling 24 h",
                short: "per 24 h",
                field: "Max spend per day",
                during: " in the last 24 h",
                reach: Reach::Summed { word: "day", window: Some(DAY) },
            },
            CapKind::Total => &CapSpec {
                name: "total",
                flag: "total",
                help: "Most to spend in total, in USD",
                label: "max in total",
                short: "total",
                field: "Max spend in total",
                during: "",
                reach: Reach::Summed { word: "total", window: None },
            },
        }
    }

    /// Its name in metrics, forms and logs.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    pub fn label(self) -> &'static str {
        self.spec().label
    }

    /// The kind a stored field, form field or metric label names.
    pub fn named(name: &str) -> Option<CapKind> {
        CapKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// A rule's caps, at most one of each kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caps(BTreeMap<CapKind, Credits>);

impl Caps {
    pub fn get(&self, kind: CapKind) -> Option<Credits> {
        self.0.get(&kind).copied()
    }

    /// Sets (`Some`) or removes (`None`) the cap of `kind`.
    pub fn set(&mut self, kind: CapKind, cap: Option<Credits>) {
        match cap {
            Some(c) => self.0.insert(kind, c),
            None => self.0.remove(&kind),
        };
    }

    /// The caps set, in [`CapKind::ALL`]'s order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (CapKind, Credits)> + '_ {
        self.0.iter().map(|(k, c)| (*k, *c))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(CapKind, Credits)> for Caps {
    fn from_iter<I: IntoIterator<Item = (CapKind, Credits)>>(caps: I) -> Self {
        Caps(caps.into_iter().collect())
    }
}

impl Serialize for Caps {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter().map(|(k, c)| (k.name(), c)))
    }
}

impl<'de> Deserialize<'de> for Caps {
    /// Reads the fields that name a kind (`null`: no cap); any other field is left alone.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = Caps;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a cost rule's caps")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Caps, A::Error> {
                let mut caps = Caps::default();
                while let Some(name) = map.next_key::<String>()? {
                    match CapKind::named(&name) {
                        Some(kind) => caps.set(kind, map.next_value::<Option<Credits>>()?),
                        None => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(caps)
            }
        }
        d.deserialize_map(Fields)
    }
}

impl CostRule {
    /// A rule for `target` with `caps`.
    pub fn new(target: Target, caps: impl IntoIterator<Item = (CapKind, Credits)>) -> CostRule {
        CostRule { target, caps: caps.into_iter().collect(), ..Default::default() }
    }

    /// Its cap of `kind`, if it has one.
    pub fn cap(&self, kind: CapKind) -> Option<Credits> {
        self.caps.get(kind)
    }

    /// The store scopes this rule reserves against (its summed caps), with their kind.
    fn scopes(&self) -> impl Iterator<Item = (CapKind, Scope)> + '_ {
        self.caps.iter().filter_map(|(kind, cap)| match kind.spec().reach {
            Reach::Job => None,
            Reach::Summed { word, window } => Some((kind, Scope { key: format!("budget:{word}:{}", self.target.slug()), limit: cap.milli(), window })),
        })
    }

    /// Its caps that hold per job.
    fn job_caps(&self) -> impl Iterator<Item = (CapKind, Credits)> + '_ {
        self.caps.iter().filter(|(k, _)| k.spec().reach == Reach::Job)
    }
}

/// `$4.80 (960 credits)`.
pub fn money(c: Credits) -> String {
    format!("${:.2} ({} credits)", c.usd(), c)
}

#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    /// A rule that cannot be set; nothing changed.
    #[error("{0}")]
    Invalid(String),
    /// A submission a rule does not allow (which kind of cap refused it); nothing was reserved.
    #[error("{0}")]
    Refused(String, CapKind),
    /// The person's role does not allow it.
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A dollar amount from a form or the CLI, checked and converted.
pub fn usd_cap(what: &str, usd: f64) -> Result<Credits, BudgetError> {
    if !usd.is_finite() || usd <= 0.0 || usd > MAX_CAP_USD {
        return Err(BudgetError::Invalid(format!("{what} must be a dollar amount above 0 and at most {MAX_CAP_USD:.0}")));
    }
    Credits::from_usd(usd).ok_or_else(|| BudgetError::Invalid(format!("{what} is not a usable amount")))
}

impl CostRule {
    /// A rule from caps in US dollars as a person gives them — each with the name they gave
    /// it, for the error (`--per-day`, "Max spend per day") — for the project and user named
    /// (trimmed; empty or absent means any).
    pub fn in_usd<'a>(project: Option<String>, user: Option<String>, caps: impl IntoIterator<Item = (CapKind, &'a str, f64)>) -> Result<CostRule, BudgetError> {
        let name = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let caps = caps.into_iter().map(|(kind, what, usd)| Ok((kind, usd_cap(what, usd)?))).collect::<Result<Vec<_>, BudgetError>>()?;
        Ok(CostRule::new(Target { project: name(project), user: name(user) }, caps))
    }

    /// "per job $1.00 (200 credits) · per 24 h — · total —", for the audit log and the CLI.
    pub fn caps_text(&self) -> String {
        let cap = |c: Option<Credits>| c.map_or("—".into(), money);
        CapKind::ALL.map(|k| format!("{} {}", k.spec().short, cap(self.cap(k)))).join(" · ")
    }

    /// Whether it caps anything (a rule without caps is removed).
    pub fn has_caps(&self) -> bool {
        !self.caps.is_empty()
    }
}

/// Every rule, team first, then projects and people by name.
pub async fn rules(store: &dyn Store) -> StoreResult<Vec<CostRule>> {
    Ok(rules_read(store).await?.rules)
}

/// The cost rules as read, with the condition that they are still the stored ones.
#[derive(Debug, Clone)]
pub struct RulesRead {
    pub rules: Vec<CostRule>,
    pub unchanged: Unchanged,
}

/// [`rules`] with the condition under which a decision made from them still holds.
pub async fn rules_read(store: &dyn Store) -> StoreResult<RulesRead> {
    let raw = store.kv_get(RULES_KEY).await?;
    let mut rules: Vec<CostRule> = match &raw {
        Some(b) => serde_json::from_slice(b).map_err(|e| StoreError::Corrupt(format!("{RULES_KEY}: {e}")))?,
        None => Vec::new(),
    };
    rules.sort_by(|a, b| (&a.target.project, &a.target.user).cmp(&(&b.target.project, &b.target.user)));
    Ok(RulesRead { rules, unchanged: Unchanged::of(RULES_KEY, raw.as_deref()) })
}

/// Sets (or, with no cap at all, removes) the rule for `rule.target`, as `by` (an admin), and
/// records it in the audit log. Returns what was there before.
pub async fn set_rule(store: &dyn Store, by: &Actor, mut rule: CostRule) -> Result<Option<CostRule>, BudgetError> {
    by.require(Role::Admin).map_err(|e| BudgetError::Forbidden(e.to_string()))?;
    for name in [&rule.target.project, &rule.target.user].into_iter().flatten() {
        if name.len() > 128 || name.trim().is_empty() || name.chars().any(char::is_control) {
            return Err(BudgetError::Invalid("a project or user name must be 1–128 printable characters".into()));
        }
    }
    rule.updated_ms = now_ms();
    rule.updated_by = by.who.clone();
    let (target, after) = (rule.target.label(), rule.has_caps().then(|| rule.caps_text()));
    let before = edit_doc(store, RULES_KEY, |rules: &mut Vec<CostRule>| {
        let before = rules.iter().position(|r| r.target == rule.target).map(|i| rules.remove(i));
        if rule.has_caps() {
            if rules.len() >= MAX_RULES {
                return Err(BudgetError::Invalid(format!("at most {MAX_RULES} cost rules; remove some first")));
            }
            rules.push(rule);
        }
        Ok(before)
    })
    .await?;
    let action = if after.is_some() { "cost rule set" } else { "cost rule removed" };
    audit::record(store, by, action, &target, before.as_ref().map(CostRule::caps_text), after).await?;
    Ok(before)
}

/// Whether any rule applies to `owner` in `project`.
pub fn governs(rules: &[CostRule], owner: &str, project: &str) -> bool {
    rules.iter().any(|r| r.target.applies_to(owner, project))
}

/// The lowest per-job cap of the rules that apply to `owner` in `project`: what a task of a
/// model with no known price reserves.
pub fn per_job_cap(rules: &[CostRule], owner: &str, project: &str) -> Option<Credits> {
    rules.iter().filter(|r| r.target.applies_to(owner, project)).flat_map(|r| r.job_caps().map(|(_, cap)| cap)).min()
}

/// The id of a task's hold under the cost rules.
pub(crate) fn hold_id(task_id: &str) -> String {
    format!("budget:{task_id}")
}

/// The hold a task's estimate takes under the cost rules that govern its owner in its project:
/// one reservation against each day and total cap, held under the task's id. Decided in
/// memory ([`CostHold::plan`]), taken by [`reserve`] or with the record itself
/// ([`crate::store::CreateWith::holds`]).
#[derive(Debug, Clone)]
pub struct CostHold {
    /// `None` when no day or total cap applies (nothing to hold).
    pub request: Option<ReserveRequest>,
    /// Each scope's rule and cap kind, in the request's order (for a refusal's words).
    labels: Vec<(String, CapKind)>,
    estimate: Credits,
}

impl CostHold {
    /// Checks `estimate` against every per-job cap that applies (a refusal names the rule, the
    /// estimate and the cap) and plans the hold.
    pub fn plan(rules: &[CostRule], task_id: &str, owner: &str, project: &str, estimate: Credits) -> Result<CostHold, BudgetError> {
        let applicable: Vec<&CostRule> = rules.iter().filter(|r| r.target.applies_to(owner, project)).collect();
        for r in &applicable {
            if let Some((kind, cap)) = r.job_caps().find(|(_, cap)| estimate > *cap) {
                return Err(BudgetError::Refused(format!(
                    "Refused by the cost rule \"{} — {}\": this task is estimated at {}; one job may cost at most {}.",
                    r.target.label(),
                    kind.label(),
                    money(estimate),
                    money(cap)
                ), kind));
            }
        }
        let (labels, scopes): (Vec<_>, Vec<_>) = applicable.iter().flat_map(|r| r.scopes().map(move |(k, s)| ((r.target.label(), k), s))).unzip();
        let request = (!scopes.is_empty()).then(|| ReserveRequest {
            id: hold_id(task_id),
            amount: estimate.milli(),
            scopes,
            // Settled when the task ends (within the give-up time); the TTL only keeps a hold
            // whose task vanished from staying forever.
            hold_ttl: Some(HOLD_TTL),
        });
        Ok(CostHold { request, labels, estimate })
    }

    /// What the store's refusal of this hold means: the rule, what is used, what is left and
    /// what the task needs.
    pub fn refused(&self, refusal: &Refusal) -> BudgetError {
        let Some((rule, kind)) = self.labels.get(refusal.scope) else {
            return BudgetError::Store(StoreError::Corrupt("a refusal named a scope the hold does not have".into()));
        };
        let (used, cap) = (Credits(refusal.used), Credits(refusal.limit));
        BudgetError::Refused(format!(
            "Refused by the cost rule \"{rule} — {}\": {} used of {}{}, {} left; this task needs {}.",
            kind.label(),
            money(used),
            money(cap),
            kind.spec().during,
            money(Credits((cap.0 - used.0).max(0))),
            money(self.estimate)
        ), *kind)
    }
}

/// Checks `estimate` against every rule that applies to `owner` in `project` and reserves it
/// ([`CostHold`]) in one atomic step. A refusal names the rule, what is used, what is left
/// and what the task needs; nothing is held then. Reserving again for the same task changes
/// nothing.
pub async fn reserve(store: &dyn Store, rules: &[CostRule], task_id: &str, owner: &str, project: &str, estimate: Credits) -> Result<(), BudgetError> {
    let hold = CostHold::plan(rules, task_id, owner, project, estimate)?;
    let Some(req) = &hold.request else { return Ok(()) };
    match store.reserve(req).await? {
        ReserveOutcome::Reserved | ReserveOutcome::AlreadyHeld => Ok(()),
        ReserveOutcome::Refused(refusal) => Err(hold.refused(&refusal)),
    }
}

/// Counts a charge KIE made after the task's hold was released (it completed after this
/// console gave up on it): against every day and total cap that applies, over the cap if need
/// be — it was spent, and the caps then close at once — keyed by the task, so a repeat counts
/// once. `true` if it was counted by this call.
pub async fn charge_after(store: &dyn Store, rules: &[CostRule], task_id: &str, owner: &str, project: &str, actual: Credits) -> StoreResult<bool> {
    let scopes: Vec<Scope> = rules.iter().filter(|r| r.target.applies_to(owner, project)).flat_map(CostRule::scopes).map(|(_, s)| Scope { limit: i64::MAX, ..s }).collect();
    if scopes.is_empty() || actual <= Credits::ZERO {
        return Ok(false);
    }
    let req = ReserveRequest { id: format!("budget-late:{task_id}"), amount: actual.milli(), scopes, hold_ttl: Some(HOLD_TTL) };
    Ok(store.reserve(&req).await? == ReserveOutcome::Reserved)
}

/// Ends a task's hold: `actual` stays counted (the estimate is replaced by it), zero releases
/// everything. `false` if there was no hold (no rule applied, or settled already).
pub async fn settle(store: &dyn Store, task_id: &str, actual: Credits) -> StoreResult<bool> {
    store.settle(&hold_id(task_id), actual.milli().max(0)).await
}

/// One cap's spend now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meter {
    pub target: Target,
    pub kind: CapKind,
    pub used: Credits,
    pub cap: Credits,
}

impl Meter {
    /// Spend as a whole percentage of the cap (0 when the cap is 0).
    pub fn percent(&self) -> u32 {
        if self.cap.0 <= 0 { 0 } else { ((self.used.0.max(0) as i128 * 100) / self.cap.0 as i128).min(u32::MAX as i128) as u32 }
    }
}

async fn meter(store: &dyn Store, rule: &CostRule, kind: CapKind, scope: &Scope) -> StoreResult<Meter> {
    Ok(Meter { target: rule.target.clone(), kind, used: Credits(store.usage(scope).await?), cap: Credits(scope.limit) })
}

/// The spend meters of every day and total cap, read from the store's scopes (all of them
/// in one read per [`crate::store::MAX_USAGE_BATCH`]).
pub async fn meters(store: &dyn Store, rules: &[CostRule]) -> StoreResult<Vec<Meter>> {
    let caps: Vec<(&CostRule, CapKind, Scope)> = rules.iter().flat_map(|r| r.scopes().into_iter().map(move |(kind, scope)| (r, kind, scope))).collect();
    let mut out = Vec::with_capacity(caps.len());
    for chunk in caps.chunks(crate::store::MAX_USAGE_BATCH) {
        let scopes: Vec<Scope> = chunk.iter().map(|(_, _, s)| s.clone()).collect();
        let used = store.usage_many(&scopes).await?;
        out.extend(chunk.iter().zip(used).map(|((r, kind, scope), used)| Meter { target: r.target.clone(), kind: *kind, used: Credits(used), cap: Credits(scope.limit) }));
    }
    Ok(out)
}

/// One cap that governs a caller, as it stands: a per-job cap (no spend to meter), or a day or
/// total cap with its spend so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standing {
    pub target: Target,
    pub kind: CapKind,
    pub cap: Credits,
    /// `None` for a per-job cap.
    pub used: Option<Credits>,
}

impl Standing {
    /// What one more job may cost under this cap: the cap itself per job, else what is left.
    pub fn left(&self) -> Credits {
        self.used.map_or(self.cap, |used| Credits((self.cap.0 - used.0).max(0)))
    }

    /// "project trailer — max per rolling 24 h: $1.20 (240 credits) used of $5.00 (1000
    /// credits), $3.80 (760 credits) left".
    pub fn describe(&self) -> String {
        let rule = format!("{} — {}", self.target.label(), self.kind.label());
        match self.used {
            None => format!("{rule}: one job may cost at most {}", money(self.cap)),
            Some(used) => format!("{rule}: {} used of {}{}, {} left", money(used), money(self.cap), self.kind.spec().during, money(self.left())),
        }
    }
}

/// Every cap of the rules that govern `owner` in `project`, with the spend of the summed ones
/// (read in one batch): what an agent or a program is told it may still spend.
pub async fn standing(store: &dyn Store, rules: &[CostRule], owner: &str, project: &str) -> StoreResult<Vec<Standing>> {
    let applicable: Vec<CostRule> = rules.iter().filter(|r| r.target.applies_to(owner, project)).cloned().collect();
    let mut out: Vec<Standing> = applicable.iter().flat_map(|r| r.job_caps().map(|(kind, cap)| Standing { target: r.target.clone(), kind, cap, used: None })).collect();
    out.extend(meters(store, &applicable).await?.into_iter().map(|m| Standing { target: m.target, kind: m.kind, cap: m.cap, used: Some(m.used) }));
    Ok(out)
}

/// A cap crossed a level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub at_ms: u64,
    pub target: Target,
    pub kind: CapKind,
    /// 80, 90 or 100 (for a per-job cap that KIE's actual charge passed: 100).
    pub level: u8,
    pub used: Credits,
    pub cap: Credits,
    /// For a per-job cap: the task whose actual cost passed it.
    #[serde(default)]
    pub task: Option<String>,
    /// For a charge above its hold (KIE's price above the catalog's): what the task held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Credits>,
}

impl Alert {
    pub fn message(&self) -> String {
        match (&self.task, self.held) {
            (Some(task), Some(held)) => format!(
                "{}: task {task} cost {} at KIE, above the {} it held (KIE's price is above the catalog's); it counts as charged — update the catalog's price.",
                self.target.label(),
                money(self.used),
                money(held)
            ),
            (Some(task), None) => format!(
                "{} — {}: task {task} cost {} at KIE, over the cap of {} (estimated lower at submit).",
                self.target.label(),
                self.kind.label(),
                money(self.used),
                money(self.cap)
            ),
            (None, _) => format!("{} — {}: {} % reached ({} of {}).", self.target.label(), self.kind.label(), self.level, money(self.used), money(self.cap)),
        }
    }
}

async fn keep_alert(store: &dyn Store, alert: &Alert) -> StoreResult<()> {
    edit_doc(store, ALERTS_KEY, |list: &mut Vec<Alert>| {
        list.insert(0, alert.clone());
        list.truncate(MAX_ALERTS);
        Ok::<_, StoreError>(())
    })
    .await
}

/// After a task settled at `actual`: every per-job cap that applies and that the actual
/// charge passed (KIE charged more than the estimate the cap let through) raises an alert,
/// once per task and rule.
pub async fn check_overrun(store: &dyn Store, rules: &[CostRule], task_id: &str, owner: &str, project: &str, actual: Credits, held: Credits) -> StoreResult<Vec<Alert>> {
    let mut raised = Vec::new();
    let applicable: Vec<&CostRule> = rules.iter().filter(|r| r.target.applies_to(owner, project)).collect();
    for r in &applicable {
        let Some((kind, cap)) = r.job_caps().find(|(_, cap)| actual > *cap) else { continue };
        let claim = format!("budget:perjob:{}:alert:{task_id}", r.target.slug());
        if !store.kv_set_nx(&claim, b"1", Some(HOLD_TTL)).await? {
            continue;
        }
        let alert = Alert { at_ms: now_ms(), target: r.target.clone(), kind, level: 100, used: actual, cap, task: Some(task_id.to_string()), held: None };
        keep_alert(store, &alert).await?;
        raised.push(alert);
    }
    // Above its hold but no per-job cap said so: the rule that governs it says it, once.
    if let Some(r) = applicable.first().filter(|_| actual > held && raised.is_empty())
        && store.kv_set_nx(&format!("budget:overrun:alert:{task_id}"), b"1", Some(HOLD_TTL)).await?
    {
        // Its widest cap (the last kind it has): total, else per day, else per job.
        let (kind, cap) = r.caps.iter().next_back().unwrap_or((CapKind::PerJob, held));
        let alert = Alert { at_ms: now_ms(), target: r.target.clone(), kind, level: 100, used: actual, cap, task: Some(task_id.to_string()), held: Some(held) };
        keep_alert(store, &alert).await?;
        raised.push(alert);
    }
    Ok(raised)
}

/// Raises the alerts that the meters of the rules applying to `owner` in `project` have
/// crossed and not yet raised in this window; returns them (already recorded) for delivery.
/// Each alert is claimed with a set-if-absent, so across instances it is raised once.
pub async fn check_alerts(store: &dyn Store, rules: &[CostRule], owner: &str, project: &str) -> StoreResult<Vec<Alert>> {
    let mut raised = Vec::new();
    for r in rules.iter().filter(|r| r.target.applies_to(owner, project)) {
        for (kind, scope) in r.scopes() {
            let meter = meter(store, r, kind, &scope).await?;
            let Some(level) = ALERT_LEVELS.iter().rev().copied().find(|l| meter.percent() >= u32::from(*l)) else { continue };
            // Once per window: a day alert for 24 h, a total alert per cap value.
            let claim = format!("{}:alert:{}:{level}", scope.key, scope.limit);
            let ttl = scope.window;
            if !store.kv_set_nx(&claim, b"1", ttl).await? {
                continue;
            }
            let alert = Alert { at_ms: now_ms(), target: r.target.clone(), kind, level, used: meter.used, cap: meter.cap, task: None, held: None };
            keep_alert(store, &alert).await?;
            raised.push(alert);
        }
    }
    Ok(raised)
}

/// Recent alerts, newest first.
pub async fn alerts(store: &dyn Store) -> StoreResult<Vec<Alert>> {
    read_doc(store, ALERTS_KEY).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_apply_by_project_and_user() {
        let team = Target::default();
        let project = Target { project: Some("trailer".into()), user: None };
        let person = Target { project: Some("trailer".into()), user: Some("ana".into()) };
        assert!(team.applies_to("bo", "promo"));
        assert!(project.applies_to("bo", "trailer") && !project.applies_to("bo", "promo"));
        assert!(person.applies_to("ana", "trailer") && !person.applies_to("bo", "trailer"));
        assert_ne!(project.slug(), person.slug());
        assert_eq!(person.label(), "user ana in project trailer");
    }

    #[test]
    fn rules_stored_before_caps_were_data_read_and_write_the_same_fields() {
        let stored = r#"{"target":{"project":"trailer","user":null},"per_job":200000,"per_day":null,"total":5000,"updated_ms":7,"updated_by":"ana"}"#;
        let r: CostRule = serde_json::from_str(stored).expect("an old rule");
        assert_eq!(r.caps.iter().collect::<Vec<_>>(), vec![(CapKind::PerJob, Credits(200000)), (CapKind::Total, Credits(5000))]);
        assert_eq!((r.updated_ms, r.updated_by.as_str()), (7, "ana"));
        let written = serde_json::to_value(&r).expect("json");
        assert_eq!(written["per_job"], 200000);
        assert_eq!(written["total"], 5000);
        assert!(written.get("per_day").is_none(), "no cap: no field");
        assert_eq!(serde_json::from_value::<CostRule>(written).expect("read back"), r);
        assert_eq!(r.caps_text(), "per job $1.00 (200 credits) · per 24 h — · total $0.03 (5 credits)");
    }

    #[test]
    fn every_kind_of_cap_has_its_own_names_and_a_summed_one_its_own_scope() {
        for (i, a) in CapKind::ALL.iter().enumerate() {
            assert_eq!(CapKind::named(a.name()), Some(*a));
            for b in &CapKind::ALL[i + 1..] {
                let (x, y) = (a.spec(), b.spec());
                assert!(x.name != y.name && x.flag != y.flag && x.label != y.label && x.short != y.short && x.field != y.field, "{a:?} and {b:?} share a name");
            }
        }
        let rule = CostRule::new(Target::relay_key("3f2a"), CapKind::ALL.map(|k| (k, Credits(1000))));
        let keys: Vec<String> = rule.scopes().map(|(_, s)| s.key).collect();
        assert_eq!(keys, ["budget:day:p=*|u=key:3f2a", "budget:total:p=*|u=key:3f2a"], "per job is checked, never reserved");
        assert_eq!(rule.target.label(), "relay key 3f2a");
        assert!(rule.target.applies_to("key:3f2a", "any") && !rule.target.applies_to("ana", "any"));
    }

    #[test]
    fn dollar_caps_are_checked() {
        assert_eq!(usd_cap("per day", 5.0).unwrap(), Credits::from_credits(1000));
        assert!(usd_cap("per day", 0.0).is_err());
        assert!(usd_cap("per day", -1.0).is_err());
        assert!(usd_cap("per day", f64::NAN).is_err());
        assert!(usd_cap("per day", 1e12).is_err());
        assert_eq!(money(Credits::from_credits(960)), "$4.80 (960 credits)");
    }

    #[test]
    fn meter_percent_is_whole_and_safe() {
        let m = |used, cap| Meter { target: Target::default(), kind: CapKind::Total, used: Credits(used), cap: Credits(cap) };
        assert_eq!(m(799, 1000).percent(), 79);
        assert_eq!(m(800, 1000).percent(), 80);
        assert_eq!(m(5, 0).percent(), 0);
        assert_eq!(m(-5, 10).percent(), 0);
    }
}
