//! The rate guard and KIE's status-read limit, held across every instance through the store.
//!
//! Before a task leaves, the dispatcher claims every rule of [`crate::tasks::rate_guard`] for it:
//! a slot in each request window, a running slot for a concurrency rule (held until the task
//! ends), its estimated tokens in each token window. Windows are widened by the configured
//! safety margin, so network jitter between two instances cannot put 21 requests into KIE's
//! 10 s. A claim that does not fit says how long until it would, and takes nothing.
//!
//! If KIE answers 429 anyway (another client on the same account), the guard stops every
//! instance for a cool-down and counts it for the Throttle panel. `recordInfo` calls share a
//! separate window of `record_info_per_sec`.

use std::time::Duration;

use super::Lifecycle;
use crate::tasks::rate_guard::{LimitRule, estimate_tokens};
use crate::secret::random_hex;
use crate::store::{ReserveOutcome, ReserveRequest, Scope, StoreResult, now_ms};
use crate::tasks::task::TaskRecord;

/// The window every instance's `recordInfo` calls count against.
pub const RECORD_INFO_WINDOW: &str = "rate:kie:recordinfo";
/// Set while the guard cools down after a 429 (its value: until when, Unix ms).
const COOLDOWN_KEY: &str = "rate:kie:cooldown";
/// How many 429s KIE has answered to `createTask`.
pub const RATE_LIMITED_COUNTER: &str = "rate:kie:429";
/// How long a full concurrency rule waits before looking again.
const CONCURRENT_RETRY: Duration = Duration::from_millis(250);

/// The hold ids of one claim: its running slot, its request-window slot, its tokens.
pub(crate) struct Holds {
    pub running: String,
    pub requests: String,
    pub tokens: String,
}

pub(super) fn running_hold(task_id: &str) -> String {
    format!("running:{task_id}")
}

/// The reservations that claim every one of `rules` under the hold ids given (`tokens` of
/// each token window): one per kind, each with its own hold, since a running slot lasts until
/// the task ends and a window slot until the window passes.
pub(crate) fn rule_holds(rules: Vec<(LimitRule, Scope)>, ids: Holds, tokens: i64) -> Vec<ReserveRequest> {
    let (mut running, mut requests, mut token_scopes) = (Vec::new(), Vec::new(), Vec::new());
    for (rule, scope) in rules {
        match rule {
            LimitRule::Concurrent { .. } => running.push(scope),
            LimitRule::Requests { .. } => requests.push(scope),
            LimitRule::Tokens { .. } => token_scopes.push(scope),
        }
    }
    [(running, ids.running, 1), (requests, ids.requests, 1), (token_scopes, ids.tokens, tokens)]
        .into_iter()
        .filter(|(scopes, _, _)| !scopes.is_empty())
        .map(|(scopes, id, amount)| {
            // A task larger than a whole window is counted as filling it, so it still goes.
            let amount = scopes.iter().map(|s| s.limit).fold(amount, i64::min);
            let hold_ttl = scopes.iter().filter_map(|s| s.window).max();
            ReserveRequest { id, amount, scopes, hold_ttl }
        })
        .collect()
}

/// How long until a refused rule would fit (a full concurrency rule: look again shortly).
pub(crate) fn wait_for(refusal: &crate::store::Refusal) -> Duration {
    refusal.retry_after.unwrap_or(CONCURRENT_RETRY).max(Duration::from_millis(1))
}

impl Lifecycle {
    /// Each rule with the store scope it is held in (windows widened by the safety margin).
    pub fn guard_scopes(&self) -> Vec<(LimitRule, Scope)> {
        self.scopes_of(&self.0.opts.rate_rules, "rate:kie")
    }

    /// The language models' rules with their scopes: the shared ones (`RATE_GUARD_CHAT`,
    /// `None`), then each model's own (`RATE_GUARD_CHAT_MODELS`), held apart.
    pub fn chat_rule_sets(&self) -> Vec<(Option<&str>, Vec<(LimitRule, Scope)>)> {
        let mut sets = vec![(None, self.scopes_of(&self.0.opts.chat_rules, "rate:chat"))];
        for (m, rules) in &self.0.opts.chat_model_rules {
            sets.push((Some(m.as_str()), self.scopes_of(rules, &format!("rate:chat:model:{m}"))));
        }
        sets
    }

    /// What a call of `model` claims: the shared rules and its own.
    pub fn chat_scopes(&self, model: &str) -> Vec<(LimitRule, Scope)> {
        self.chat_rule_sets().into_iter().filter(|(m, _)| m.is_none_or(|m| m == model)).flat_map(|(_, scopes)| scopes).collect()
    }

    fn scopes_of(&self, rules: &[LimitRule], prefix: &str) -> Vec<(LimitRule, Scope)> {
        let margin = self.0.opts.rate_margin;
        rules
            .iter()
            .map(|r| {
                let scope = match *r {
                    LimitRule::Requests { limit, window } => Scope { key: format!("{prefix}:requests:{}", window.as_millis()), limit, window: Some(window + margin) },
                    LimitRule::Tokens { limit, window } => Scope { key: format!("{prefix}:tokens:{}", window.as_millis()), limit, window: Some(window + margin) },
                    LimitRule::Concurrent { limit } => Scope { key: format!("{prefix}:running"), limit, window: None },
                };
                (*r, scope)
            })
            .collect()
    }

    /// How long the guard still cools down after a 429 (`None`: it does not).
    pub async fn cooldown_left(&self) -> StoreResult<Option<Duration>> {
        let until = self.0.store.kv_get(COOLDOWN_KEY).await?.and_then(|b| String::from_utf8(b).ok()?.parse::<u64>().ok());
        let now = now_ms();
        Ok(until.filter(|u| *u > now).map(|u| Duration::from_millis(u - now)))
    }

    /// KIE answered 429: every instance holds off for `pause`.
    pub(super) async fn cool_down(&self, pause: Duration) -> StoreResult<()> {
        self.0.store.counter_add(RATE_LIMITED_COUNTER, 1, None).await?;
        let until = now_ms() + pause.as_millis() as u64;
        self.0.store.kv_set(COOLDOWN_KEY, until.to_string().as_bytes(), Some(pause)).await
    }

    /// Claims every rule for `task`, or says how long until the first that is full would
    /// fit; a refused claim gives back what it took. On success, returns the holds taken, for
    /// [`Lifecycle::give_back`] if the task turns out not to need them.
    pub(super) async fn claim_dispatch(&self, task: &TaskRecord) -> StoreResult<Result<Vec<String>, Duration>> {
        if let Some(wait) = self.cooldown_left().await? {
            return Ok(Err(wait));
        }
        let ids = Holds { running: running_hold(&task.id), requests: format!("rate:{}", random_hex(8)), tokens: format!("tokens:{}", random_hex(8)) };
        self.claim_rules(self.guard_scopes(), ids, estimate_tokens(&task.input)).await
    }

    /// Claims every one of `rules` under the hold ids given (`tokens` of each token window),
    /// or says how long until the first that is full would fit; a refused claim gives back
    /// what it took. Returns the holds taken.
    pub(crate) async fn claim_rules(&self, rules: Vec<(LimitRule, Scope)>, ids: Holds, tokens: i64) -> StoreResult<Result<Vec<String>, Duration>> {
        let mut taken: Vec<String> = Vec::new();
        for req in rule_holds(rules, ids, tokens) {
            match self.0.store.reserve(&req).await? {
                ReserveOutcome::Reserved => taken.push(req.id),
                ReserveOutcome::AlreadyHeld => {}
                ReserveOutcome::Refused(r) => {
                    self.give_back(&taken).await?;
                    return Ok(Err(wait_for(&r)));
                }
            }
        }
        Ok(Ok(taken))
    }

    /// Returns claimed slots unused (the task was not sent after all).
    pub(crate) async fn give_back(&self, holds: &[String]) -> StoreResult<()> {
        for id in holds {
            self.0.store.settle(id, 0).await?;
        }
        Ok(())
    }

    /// The task no longer runs upstream: its concurrency slot is free again.
    pub(super) async fn release_running(&self, task_id: &str) -> StoreResult<()> {
        if self.0.opts.rate_rules.iter().any(|r| matches!(r, LimitRule::Concurrent { .. })) {
            self.0.store.settle(&running_hold(task_id), 0).await?;
        }
        Ok(())
    }

    /// Waits (up to `max_wait`) for one `recordInfo` slot. `false` if none came in time.
    pub async fn claim_record_info(&self, max_wait: Duration) -> StoreResult<bool> {
        // Widened by the safety margin like the request windows: KIE's second and ours are
        // not the same second. Every caller (poller, callback confirmation, any instance)
        // claims here, one slot per call.
        let scope = Scope { key: RECORD_INFO_WINDOW.into(), limit: self.0.opts.record_info_per_sec, window: Some(Duration::from_secs(1) + self.0.opts.rate_margin) };
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            let req = ReserveRequest { id: format!("{RECORD_INFO_WINDOW}:{}", random_hex(8)), amount: 1, scopes: vec![scope.clone()], hold_ttl: scope.window };
            let wait = match self.0.store.reserve(&req).await? {
                ReserveOutcome::Reserved | ReserveOutcome::AlreadyHeld => return Ok(true),
                ReserveOutcome::Refused(r) => r.retry_after.unwrap_or(Duration::from_millis(100)).max(Duration::from_millis(5)),
            };
            if tokio::time::Instant::now() + wait > deadline {
                return Ok(false);
            }
            tokio::time::sleep(wait).await;
        }
    }
}
