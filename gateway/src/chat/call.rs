//! One chat call, from admission to what it really used.
//!
//! [`Lifecycle::chat_begin`] admits a call or refuses it before anything is sent:
//! - the model must be a language model of the catalog (else 404, in KIE's words), the body a
//!   JSON object with its conversation (`messages`; the Responses API's `input`) (else 422);
//! - the console decides the answer's limit and sends it ([`limit`]): what is asked for, lowered
//!   to what the lowest per-job cap affords; the call holds the worst case of what is sent
//!   (the prompt's upper bound plus `n` answers at that limit); a model with no known price
//!   holds the per-job cap that governs the caller and is sent at most its own limit;
//! - the rate guard's chat rules (`RATE_GUARD_CHAT`: requests and tokens per window,
//!   concurrent calls), the cost rules' hold of the estimate and a write-ahead record (state
//!   `generating`, `chat` set) with its live event are taken in one atomic store step, one
//!   round trip on Redis, under the cost rules kept in memory (the step is refused if they
//!   changed, and judged again): a full rule waits at most [`CHAT_WAIT`] (else 429 with how
//!   long to wait), so the console never causes an upstream 429; a cost rule refuses with
//!   402; either way nothing is held.
//!
//! [`Lifecycle::chat_end`] counts what the call used (what KIE said it charged, where it says —
//! the Responses API's `credits_consumed`; else KIE's `usage`; without it, what arrived at
//! about four characters a token, marked estimated — or, for a call the client left before its
//! end, the whole hold, since KIE bills what it generated), in one store step with the
//! record's compare-and-set ([`crate::store::UpdateWith`]), written over the record as admitted
//! (kept on the ticket: no read): the concurrency slot freed, the spend counted in the ledger
//! (keyed by the call), the cost rules' hold settled to the actual cost, the token window's
//! hold settled to the real tokens, the call folded into the receipts and its live event. The
//! relay ends a call off the response path ([`Lifecycle::chat_end_later`]). A record whose instance
//! stopped mid-call is ended by the poller after [`CHAT_ABANDONED`], counted at its estimate.

use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Notify;

use serde_json::{Value, json};
use std::time::{Duration, Instant};

use crate::money::budget::{self, BudgetError, CostHold};
use crate::money::receipts;
use crate::money::catalog::Model;
use crate::money::credits::Credits;
use crate::secret::random_hex;
use crate::store::{CreateWith, Created, StoreError, StoreResult, UpdateWith, now_ms};
use crate::tasks::lifecycle::limits::{Holds, rule_holds, wait_for};
use crate::tasks::lifecycle::{Lifecycle, count_in_ledger};
use crate::tasks::task::{ChargeBasis, ChatUsage, FailClass, TaskRecord, TaskState};

use super::limit::{self, Decision};
use super::usage::estimate_prompt_tokens;

/// Times a call is judged again when the cost rules changed under it.
const RULE_CHANGE_TRIES: u32 = 3;
/// Longest a call waits for the rate guard before it is refused with 429.
pub const CHAT_WAIT: Duration = Duration::from_secs(5);
/// A call still recorded as running this long after it began was cut off by a stop.
pub const CHAT_ABANDONED: Duration = Duration::from_secs(15 * 60);
/// A call's concurrency slot.
fn running_hold(id: &str) -> String {
    format!("chat-running:{id}")
}

/// Characters of the last user message kept on the record (what the Monitor shows).
const PROMPT_SHOWN: usize = 300;

/// A call to admit.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ChatRequest {
    /// Who asks: a person, or `key:<id>` for a relay key.
    pub owner: String,
    pub project: String,
    pub model: String,
    /// The API the caller speaks: a model is admitted only through its own.
    #[serde(default)]
    pub api: crate::money::catalog::ChatApi,
    /// The body as the client sent it (relayed unchanged).
    pub body: Value,
}

/// What a call would hold and be sent with (see [`limit`]).
#[derive(Debug, Clone)]
pub struct ChatPlan {
    /// What it holds.
    pub estimate: Credits,
    /// The prompt's tokens at about four characters a token (what is counted when KIE reports
    /// no usage).
    pub prompt_estimate: u64,
    pub decision: Decision,
    /// The body as it would be sent.
    pub body: Value,
}

/// An admitted call: what [`Lifecycle::chat_end`] needs.
#[derive(Debug)]
pub struct ChatTicket {
    pub id: String,
    pub model: String,
    /// The API it is sent through.
    pub api: crate::money::catalog::ChatApi,
    /// Where KIE serves it ([`crate::money::catalog::Model::chat_path`]).
    pub path: String,
    pub streamed: bool,
    /// What the call holds: the worst case of what is sent (or, with no known price, the
    /// per-job cap).
    pub estimated_cost: Credits,
    /// `field=limit` when the answer's limit sent is below the one asked for.
    pub clamped: Option<String>,
    /// The body to send: the caller's, with the limit this console decided.
    pub body: bytes::Bytes,
    started: Instant,
    prompt_estimate: u64,
    holds: Vec<String>,
    tokens_hold: String,
    running_hold: String,
    /// The record as admitted: its end is written over it without a read.
    record: TaskRecord,
}

impl ChatTicket {
    /// Milliseconds since the call was admitted.
    pub fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatOutcome {
    /// KIE answered in full.
    Answered,
    /// KIE refused or failed (its HTTP status and what it said).
    Failed(u16, String),
    /// The client went away before the end; the upstream request was dropped with it.
    Cancelled,
}

/// What a call used.
#[derive(Debug, Clone)]
pub struct ChatEnd {
    pub outcome: ChatOutcome,
    /// KIE's `usage` (prompt, completion), when it gave one.
    pub usage: Option<(u64, u64)>,
    /// The answer's characters as they arrived (for the estimate when there is no `usage`).
    pub answer_chars: usize,
    /// What KIE said it charged (the Responses API's `credits_consumed`), when it says.
    pub charged: Option<Credits>,
    pub first_byte_ms: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("The model name you specified is not supported")]
    UnknownModel,
    #[error("{0}")]
    Invalid(String),
    #[error("Not configured: no KIE key is set, so no language model can be called.")]
    NotConfigured,
    #[error("{0}")]
    OverBudget(String),
    #[error("The rate guard's chat limits are full: try again in {} s", .0.as_secs().max(1))]
    RateLimited(Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<BudgetError> for ChatError {
    fn from(e: BudgetError) -> ChatError {
        match e {
            BudgetError::Refused(msg, _) => ChatError::OverBudget(msg),
            BudgetError::Invalid(msg) | BudgetError::Forbidden(msg) => ChatError::Invalid(msg),
            BudgetError::Store(e) => ChatError::Store(e),
        }
    }
}

impl ChatError {
    /// The HTTP status (KIE's codes are HTTP statuses).
    pub fn code(&self) -> u16 {
        match self {
            ChatError::UnknownModel => 404,
            ChatError::Invalid(_) => 422,
            ChatError::OverBudget(_) => 402,
            ChatError::RateLimited(_) => 429,
            ChatError::NotConfigured | ChatError::Store(_) => 503,
        }
    }

    /// What the caller is told (a store failure is logged, not shown).
    pub fn public_message(&self) -> String {
        match self {
            ChatError::Store(e) => {
                tracing::error!(error = %e, "chat call failed in the store");
                "The Control Room's store is unavailable; nothing was sent. Try again shortly.".into()
            }
            other => other.to_string(),
        }
    }
}

impl Lifecycle {
    /// What a call would be held at, and the limit it would be sent with, or why it would be
    /// refused before anything is held: the composer shows it before a draft.
    pub async fn chat_estimate(&self, owner: &str, project: &str, model: &str, body: &Value) -> Result<ChatPlan, ChatError> {
        let rules = self.cost_rules(true).await?;
        // In the model's own API: an estimate does not say which path it will be sent by.
        let api = self.catalog().get(model).map(|m| m.api).unwrap_or_default();
        self.plan_under(&rules.rules, owner, project, model, api, body).map(|(_, plan)| plan)
    }

    /// [`Lifecycle::chat_estimate`] under these cost rules, with the model (see [`limit`]).
    fn plan_under(&self, rules: &[budget::CostRule], owner: &str, project: &str, model: &str, api: crate::money::catalog::ChatApi, body: &Value) -> Result<(&Model, ChatPlan), ChatError> {
        if !self.configured() {
            return Err(ChatError::NotConfigured);
        }
        crate::tasks::lifecycle::submit::check_project(project).map_err(|e| ChatError::Invalid(e.to_string()))?;
        let model = self.catalog().get(model).filter(|m| m.is_chat() && m.api == api).ok_or(ChatError::UnknownModel)?;
        let turns = api.turns_field();
        let given = match body.get(turns) {
            Some(Value::Array(m)) => !m.is_empty(),
            // The Responses API also takes its input as one text.
            Some(Value::String(s)) => api == crate::money::catalog::ChatApi::Responses && !s.trim().is_empty(),
            _ => false,
        };
        if !given {
            return Err(ChatError::Invalid(format!("{turns} is required: a list of {{role, content}}")));
        }
        let ask = limit::read(body, &model.id, api).map_err(ChatError::Invalid)?;
        let cap = budget::per_job_cap(rules, owner, project);
        let decision = limit::decide(model, ask, limit::prompt_bound(body, api), cap).map_err(|too| {
            ChatError::OverBudget(format!(
                "Refused by a per-job cost rule: this prompt with the shortest answer may cost {}; one job may cost at most {}. Shorten the prompt or raise the cap.",
                budget::money(too.least),
                budget::money(too.cap)
            ))
        })?;
        let estimate = match (decision.worst_case, cap) {
            (Some(c), _) | (None, Some(c)) => c,
            (None, None) => return Err(ChatError::Invalid(format!("{} has no known token price: set a per-job cap for this project or person (Budget panel) and that cap is what a call may cost", model.id))),
        };
        let sent = limit::rewrite(body, &decision, api);
        Ok((model, ChatPlan { estimate, prompt_estimate: estimate_prompt_tokens(body), decision, body: sent }))
    }

    /// Admits a chat call (see the module doc) or says why not; nothing is sent either way.
    pub async fn chat_begin(&self, req: ChatRequest) -> Result<ChatTicket, ChatError> {
        let mut rules = self.cost_rules(false).await?;
        // Whether `rules` was read for this call: a refusal decided from the rules in memory
        // is confirmed against the stored ones first (a cap may have been lifted).
        let mut fresh = false;
        let id = format!("chat_{}", random_hex(10));
        let (running_hold, tokens_hold) = (running_hold(&id), format!("chat-tokens:{id}"));
        let deadline = Instant::now() + CHAT_WAIT;
        let mut tries = 0;
        loop {
            let (model, plan) = match self.plan_under(&rules.rules, &req.owner, &req.project, &req.model, req.api, &req.body) {
                Ok(p) => p,
                Err(ChatError::OverBudget(_) | ChatError::Invalid(_)) if !fresh => {
                    (rules, fresh) = (self.cost_rules(true).await?, true);
                    continue;
                }
                Err(e) => {
                    if matches!(e, ChatError::OverBudget(_)) {
                        self.options().metrics.budget_refused(budget::CapKind::PerJob);
                    }
                    return Err(e);
                }
            };
            let ChatPlan { estimate, prompt_estimate: prompt, decision, body } = plan;
            // Before anything is held: a body that cannot be written leaves nothing behind.
            let body: bytes::Bytes = serde_json::to_vec(&body).map_err(|e| ChatError::Invalid(e.to_string()))?.into();
            let out = decision.limit * decision.ask.n;
            let streamed = req.body.get("stream").and_then(Value::as_bool).unwrap_or(false);
            // The rate guard's chat rules, then the cost rules: taken with the record, or none.
            let ids = Holds { running: running_hold.clone(), requests: format!("chat-rate:{}", random_hex(8)), tokens: tokens_hold.clone() };
            let mut holds = rule_holds(self.chat_scopes(&model.id), ids, (prompt + out) as i64);
            let rate_holds = holds.len();
            let cost = match CostHold::plan(&rules.rules, &id, &req.owner, &req.project, estimate) {
                Ok(cost) => cost,
                Err(_) if !fresh => {
                    (rules, fresh) = (self.cost_rules(true).await?, true);
                    continue;
                }
                Err(e) => return Err(self.over_budget(e)),
            };
            holds.extend(cost.request.clone());
            let t = self.chat_record(&id, &req, &model.id, &decision, estimate, streamed);
            let announce = crate::tasks::events::announcement(&t)?;
            let with = CreateWith { announce: Some(&announce), unchanged: Some(&rules.unchanged), holds: &holds, ..Default::default() };
            let ticket = || ChatTicket {
                id: id.clone(),
                model: model.id.clone(),
                api: model.api,
                path: model.chat_path(),
                streamed,
                estimated_cost: estimate,
                clamped: decision.clamped.clone(),
                body: body.clone(),
                started: Instant::now(),
                prompt_estimate: prompt,
                holds: holds[..rate_holds].iter().map(|h| h.id.clone()).collect(),
                tokens_hold: tokens_hold.clone(),
                running_hold: running_hold.clone(),
                record: t.clone(),
            };
            let created = match self.store().task_create(&t, &with).await {
                Ok(c) => c,
                // The step may have been taken before the store failed: the record says.
                Err(e) => {
                    return match self.store().task_get(&id).await {
                        Ok(Some(_)) => Ok(ticket()),
                        Ok(None) => Err(ChatError::Store(e)),
                        Err(_) => {
                            self.end_unsent(ticket());
                            Err(ChatError::Store(e))
                        }
                    };
                }
            };
            match created {
                Created::Inserted(_) => return Ok(ticket()),
                Created::Exists => return Err(ChatError::Store(StoreError::Invalid(format!("call id {id} already exists")))),
                Created::Refused(i, r) if i < rate_holds => {
                    let wait = wait_for(&r);
                    if Instant::now() + wait > deadline {
                        self.options().metrics.refused(crate::metrics::Refusal::RateLimited);
                        return Err(ChatError::RateLimited(wait));
                    }
                    tokio::time::sleep(wait).await;
                }
                Created::Refused(_, r) => return Err(self.over_budget(cost.refused(&r))),
                Created::Changed if tries < RULE_CHANGE_TRIES => {
                    tries += 1;
                    (rules, fresh) = (self.cost_rules(true).await?, true);
                }
                Created::Changed => return Err(ChatError::Store(StoreError::Unavailable("the cost rules kept changing while this call was admitted; nothing was sent".into()))),
            }
        }
    }

    /// The write-ahead record of a call (state `generating`, `chat` set).
    fn chat_record(&self, id: &str, req: &ChatRequest, model: &str, decision: &Decision, estimate: Credits, streamed: bool) -> TaskRecord {
        let now = now_ms();
        let mut t = TaskRecord::new(id.to_string(), req.owner.trim(), req.project.trim(), model, now);
        let (last_user, turns) = super::usage::last_user_text(&req.body, req.api);
        t.input = json!({ "prompt": last_user.chars().take(PROMPT_SHOWN).collect::<String>(), "messages": turns, "max_tokens": decision.limit, "n": decision.ask.n, "stream": streamed });
        t.state = TaskState::Generating;
        t.submitted_ms = Some(now);
        t.estimated_cost = estimate;
        t.chat = Some(ChatUsage { streamed, ..Default::default() });
        t.note = Some("Chat call in progress".into());
        t
    }

    /// A call that may have been recorded, but whose admission could not be confirmed, is
    /// not sent: ended as failed at no cost once the store answers again (tried for a few
    /// minutes; after that the poller ends it as abandoned).
    fn end_unsent(&self, ticket: ChatTicket) {
        let lc = self.clone();
        tokio::spawn(async move {
            let end = ChatEnd { outcome: ChatOutcome::Failed(503, "The store failed while the call was admitted; it was not sent".into()), usage: Some((0, 0)), answer_chars: 0, charged: None, first_byte_ms: None };
            let mut ticket = Some(ticket);
            for _ in 0..60 {
                tokio::time::sleep(Duration::from_secs(3)).await;
                let Some(t) = ticket.take() else { return };
                match lc.store().task_get(&t.id).await {
                    Ok(None) => return,
                    Ok(Some(_)) => {
                        if let Err(e) = lc.chat_end(t, end.clone()).await {
                            tracing::warn!(error = %e, "cannot end an unsent chat call yet");
                        }
                        return;
                    }
                    Err(_) => ticket = Some(t),
                }
            }
        });
    }

    /// [`Lifecycle::chat_end`] off the response path: recorded in the background once the
    /// answer is handed over (a store failure is logged; the poller ends the call later). A
    /// stopping instance waits for these ([`crate::tasks::lifecycle::Workers::stop`]).
    pub fn chat_end_later(&self, ticket: ChatTicket, end: ChatEnd) {
        let lc = self.clone();
        let pending = self.chat_ends().enter();
        tokio::spawn(async move {
            if let Err(e) = lc.chat_end(ticket, end).await {
                tracing::error!(error = %e, "chat: the call's end could not be recorded; the poller ends it");
            }
            drop(pending);
        });
    }

    /// Ends an admitted call at what it used (see the module doc). Returns the record.
    pub async fn chat_end(&self, ticket: ChatTicket, end: ChatEnd) -> StoreResult<Option<TaskRecord>> {
        let (prompt, completion, estimated) = match end.usage {
            Some((p, c)) => (p, c, false),
            None => (ticket.prompt_estimate, super::usage::tokens_of_chars(end.answer_chars), true),
        };
        let model = self.catalog().get(&ticket.model);
        // A refused call costs nothing. An answer costs what its tokens cost (for a model with
        // no known price, the cap it held). A call the client left before KIE's usage arrived
        // was still generated, and billed, at KIE: it counts its whole hold, never less.
        // What KIE said it charged comes first.
        let spent = match (&end.outcome, end.usage, end.charged) {
            (ChatOutcome::Failed(..), ..) => Credits::ZERO,
            (_, _, Some(charged)) => charged,
            (ChatOutcome::Cancelled, None, None) => ticket.estimated_cost,
            _ => model.and_then(|m| m.chat_cost(prompt, completion)).unwrap_or(ticket.estimated_cost),
        };
        let priced = model.is_some_and(|m| m.chat_cost(0, 0).is_some());
        let basis = match end.charged {
            Some(_) => ChargeBasis::Reported,
            None if !estimated && priced => ChargeBasis::Measured,
            None => ChargeBasis::Estimate,
        };
        let budget_hold = budget::hold_id(&ticket.id);
        let used_tokens = (prompt + completion) as i64;
        let mut settles: Vec<(&str, i64)> = vec![(budget_hold.as_str(), spent.milli().max(0))];
        if ticket.holds.contains(&ticket.running_hold) {
            settles.push((ticket.running_hold.as_str(), 0));
        }
        if ticket.holds.contains(&ticket.tokens_hold) {
            settles.push((ticket.tokens_hold.as_str(), used_tokens));
        }
        let latency = ticket.elapsed_ms();
        let now = now_ms();
        let end_call = |t: &mut TaskRecord| {
            if t.state.is_terminal() {
                return false;
            }
            t.chat = Some(ChatUsage { prompt_tokens: prompt, completion_tokens: completion, estimated, streamed: ticket.streamed, first_byte_ms: end.first_byte_ms, latency_ms: Some(latency) });
            t.actual_cost = Some(spent);
            t.charge_basis = (spent > Credits::ZERO).then_some(basis);
            t.finished_ms = Some(now);
            t.note = None;
            match &end.outcome {
                ChatOutcome::Answered => t.state = TaskState::Success,
                ChatOutcome::Failed(code, msg) => {
                    t.state = TaskState::Fail;
                    t.fail_code = Some(code.to_string());
                    t.fail_msg = Some(msg.chars().take(500).collect());
                    t.fail_class = Some(crate::tasks::lifecycle::apply::class_of_fail_code(Some(&code.to_string())));
                }
                ChatOutcome::Cancelled => {
                    t.state = TaskState::Fail;
                    t.fail_class = Some(FailClass::Cancelled);
                    t.fail_code = Some("499".into());
                    t.fail_msg = Some("The client went away before the answer ended; the call to KIE was dropped".into());
                }
            }
            true
        };
        // One write over the record as admitted (no read): the call ended and folded into the
        // receipts, the concurrency slot freed, the spend counted in the ledger (keyed by the
        // call), the cost rules' hold and the tokens window's hold settled to what was used,
        // and its live event.
        let mut ended = ticket.record.clone();
        end_call(&mut ended);
        let mut charges = vec![crate::tasks::lifecycle::ledger_charge(&ticket.id, spent)];
        charges.extend(receipts::fold_in(self, &ended).await?);
        let with = UpdateWith { settles: &settles, charges: &charges, ..Default::default() };
        let record = self.modify_from(&ticket.record, &with, |t| end_call(t) && receipts::mark_folded(t)).await?;
        if record.is_none() {
            // Ended already (the poller took it as abandoned, counting its estimate): only its
            // rate holds are left to give back.
            let store = self.store().as_ref();
            for (hold, keep) in [(&ticket.running_hold, 0), (&ticket.tokens_hold, used_tokens)] {
                if ticket.holds.contains(hold) {
                    store.settle(hold, keep).await?;
                }
            }
        }
        let word = match end.outcome {
            ChatOutcome::Answered => "answered",
            ChatOutcome::Failed(..) => "failed",
            ChatOutcome::Cancelled => "cancelled",
        };
        self.options().metrics.chat_call(&ticket.model, word, prompt, completion, spent);
        if let Some(t) = &record {
            tracing::info!(call = %t.id, model = %t.model, outcome = word, prompt, completion, estimated, "chat call ended");
            if spent > Credits::ZERO {
                self.raise_alerts(t.owner.clone(), t.project.clone(), Some((t.id.clone(), spent, t.estimated_cost)));
            }
        }
        Ok(record)
    }

    /// Ends a call whose instance stopped mid-call (found by the poller): counted at its
    /// estimate, since what KIE charged cannot be known.
    pub(crate) async fn chat_abandoned(&self, t: &TaskRecord) -> StoreResult<()> {
        if now_ms().saturating_sub(t.created_ms) < CHAT_ABANDONED.as_millis() as u64 {
            return Ok(());
        }
        let store = self.store().as_ref();
        count_in_ledger(store, &t.id, t.estimated_cost).await?;
        budget::settle(store, &t.id, t.estimated_cost).await?;
        store.settle(&running_hold(&t.id), 0).await?;
        let now = now_ms();
        self.modify(&t.id, |t| {
            if t.state.is_terminal() {
                return false;
            }
            t.state = TaskState::Expired;
            t.fail_class = Some(FailClass::CallbackLost);
            t.fail_msg = Some("The instance serving this chat call stopped before it ended; counted at its estimate".into());
            t.actual_cost = Some(t.estimated_cost);
            t.charge_basis = Some(ChargeBasis::Estimate);
            t.finished_ms = Some(now);
            t.note = None;
            true
        })
        .await?;
        Ok(())
    }
}

/// Chat calls whose end is being recorded in the background.
#[derive(Default)]
pub struct EndsInFlight {
    count: AtomicUsize,
    idle: Notify,
}

/// One end in flight, counted until it is dropped.
pub struct EndInFlight(std::sync::Arc<EndsInFlight>);

impl EndsInFlight {
    pub fn enter(self: &std::sync::Arc<Self>) -> EndInFlight {
        self.count.fetch_add(1, Ordering::AcqRel);
        EndInFlight(self.clone())
    }

    /// Waits until no end is in flight.
    pub async fn idle(&self) {
        loop {
            let woken = self.idle.notified();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            woken.await;
        }
    }
}

impl Drop for EndInFlight {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
