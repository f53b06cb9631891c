//! KIE's callbacks: `POST /callbacks/kie/<token>`.
//!
//! The token (128 random bits, one per task) finds the task; an unknown one changes nothing.
//! With `KIE_WEBHOOK_HMAC_KEY` set, the signature must match. KIE does not sign the body, so
//! the body is only a hint: the state is confirmed with `recordInfo` before it is applied.
//! Duplicates and out-of-order callbacks are harmless (see [`super::apply`]); one instance
//! at a time acts on a task's callback (a lease), and one that finds the lease taken, the
//! `recordInfo` budget spent or KIE unreachable leaves the task to the fallback poller.
//! A duplicate or a forged callback for a known token is told in the task's story.

use std::time::Duration;

use super::{LOOKUP_TTL, Lifecycle, kie_id_key, token_key};
use crate::kie::signature::{self, DEFAULT_REPLAY_WINDOW, SignatureError};
use crate::store::{StoreError, now_ms};
use crate::tasks::story::{BeatKind, Via};
use crate::tasks::task::TaskRecord;

/// What a callback achieved.
#[derive(Debug)]
pub enum CallbackOutcome {
    /// Confirmed and applied.
    Applied,
    /// Confirmed; the task already knew (a duplicate or a late, older state).
    Unchanged,
    /// The task had ended already.
    AlreadyFinal,
    /// Not confirmed now (another instance is on it, or KIE could not be asked); the poller
    /// will follow the task.
    Deferred,
}

#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("unknown callback")]
    UnknownToken,
    #[error("unreadable callback body: {0}")]
    BadBody(String),
    #[error("callback signature refused: {0}")]
    BadSignature(#[from] SignatureError),
    #[error("the callback names a task that is not this one")]
    WrongTask,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How long one instance holds a task's callback.
const CALLBACK_LEASE: Duration = Duration::from_secs(20);
/// How long a callback waits for a `recordInfo` slot before leaving it to the poller.
const CONFIRM_WAIT: Duration = Duration::from_secs(3);

impl Lifecycle {
    /// Handles one callback. `timestamp` and `signature` are the `X-Webhook-*` headers.
    pub async fn on_callback(&self, token: &str, timestamp: Option<&str>, signature: Option<&str>, body: &[u8]) -> Result<CallbackOutcome, CallbackError> {
        let done = self.handle_callback(token, timestamp, signature, body).await;
        let result = match &done {
            Ok(CallbackOutcome::Applied) => "applied",
            Ok(CallbackOutcome::Unchanged | CallbackOutcome::AlreadyFinal) => "duplicate",
            Ok(CallbackOutcome::Deferred) => "deferred",
            Err(CallbackError::UnknownToken) => "unknown_token",
            Err(CallbackError::BadBody(_)) => "bad_body",
            Err(CallbackError::BadSignature(_) | CallbackError::WrongTask) => "forged",
            Err(CallbackError::Store(_)) => "store_error",
        };
        self.0.opts.metrics.callback(result);
        let heard = match &done {
            Ok(CallbackOutcome::Unchanged | CallbackOutcome::AlreadyFinal) => Some("Duplicate callback from KIE: nothing changed"),
            Err(CallbackError::BadSignature(_)) => Some("Forged callback refused: its signature does not match"),
            Err(CallbackError::WrongTask) => Some("Forged callback refused: it names a task that is not this one"),
            _ => None,
        };
        if let Some(text) = heard
            && let Err(e) = self.tell_callback(token, text).await
        {
            tracing::warn!(error = %e, "cannot tell a callback in its task's story");
        }
        done
    }

    /// A callback that changed nothing, in its task's story: one beat, counted when repeated
    /// (the other callbacks are told by the change they make).
    async fn tell_callback(&self, token: &str, text: &str) -> Result<(), StoreError> {
        let Some(id) = self.0.store.kv_get(&token_key(token)).await? else { return Ok(()) };
        let id = String::from_utf8_lossy(&id).into_owned();
        let (now, instance) = (now_ms(), &self.0.opts.instance);
        self.modify(&id, |t| {
            t.story.push(now, instance, BeatKind::Callback, text);
            true
        })
        .await?;
        Ok(())
    }

    async fn handle_callback(&self, token: &str, timestamp: Option<&str>, signature: Option<&str>, body: &[u8]) -> Result<CallbackOutcome, CallbackError> {
        if token.len() != 32 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CallbackError::UnknownToken);
        }
        let id = match self.0.store.kv_get(&token_key(token)).await? {
            Some(id) => String::from_utf8_lossy(&id).into_owned(),
            None => return Err(CallbackError::UnknownToken),
        };
        let task = self.0.store.task_get(&id).await?.ok_or(CallbackError::UnknownToken)?;
        let hint = task.family.adapter().parse_callback(body).map_err(CallbackError::BadBody)?;
        if let Some(key) = &self.0.opts.webhook_hmac {
            signature::verify(key.expose().as_bytes(), &hint.task_id, timestamp, signature, now_ms() / 1000, DEFAULT_REPLAY_WINDOW)?;
        }
        // A task this console gave up on may still be finished, and charged, by KIE.
        if task.state.is_terminal() && !task.given_up() {
            return Ok(CallbackOutcome::AlreadyFinal);
        }
        if task.kie_task_id.as_deref().is_some_and(|k| k != hint.task_id) {
            return Err(CallbackError::WrongTask);
        }
        if !hint.state.is_terminal() {
            // Progress (Suno's `text` and `first`): nothing ends on it, and confirming each
            // would spend the family's record-info budget (3/s per task); the poller follows.
            return Ok(CallbackOutcome::Deferred);
        }
        let lease = format!("callback:{id}");
        if !self.0.store.lease_acquire(&lease, &self.0.opts.instance, CALLBACK_LEASE).await? {
            return Ok(CallbackOutcome::Deferred);
        }
        let outcome = self.confirm(&task, token, &hint.task_id).await;
        self.0.store.lease_release(&lease, &self.0.opts.instance).await?;
        outcome
    }

    /// Asks KIE for the task's real state and applies it.
    async fn confirm(&self, task: &TaskRecord, token: &str, kie_id: &str) -> Result<CallbackOutcome, CallbackError> {
        let Some(kie) = &self.0.kie else { return Ok(CallbackOutcome::Deferred) };
        if !self.claim_record_info(CONFIRM_WAIT).await? {
            tracing::info!(task = %task.id, "callback: recordInfo budget spent; the poller will confirm");
            return Ok(CallbackOutcome::Deferred);
        }
        let status = match kie.status_of(task.family.adapter(), kie_id, &task.input).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(task = %task.id, error = %e, "callback: cannot confirm with recordInfo; the poller will");
                return Ok(CallbackOutcome::Deferred);
            }
        };
        if task.kie_task_id.is_none() {
            // In doubt (or the callback beat createTask's answer): the task KIE describes must
            // have been created with this task's callback URL.
            let ours = status.callback_url.as_deref().is_some_and(|u| u.trim_end_matches('/').ends_with(&format!("/callbacks/kie/{token}")));
            if !ours {
                return Err(CallbackError::WrongTask);
            }
            if task.family.adapter().upgrade().is_none() {
                self.0.store.kv_set(&kie_id_key(kie_id), task.id.as_bytes(), Some(LOOKUP_TTL)).await?;
            }
        }
        Ok(match self.apply_upstream_state(&task.id, &status, Via::Callback).await? {
            Some(_) => CallbackOutcome::Applied,
            None => CallbackOutcome::Unchanged,
        })
    }
}
