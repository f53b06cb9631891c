//! Submitting a task: validate, write the record (write-ahead, state `queued`), wake the
//! dispatcher. Nothing reaches KIE here, so the caller gets its task id at once; the
//! dispatcher sends it when the rate guard allows. Retry re-submits a failed task as a new
//! task linked to the old one.

use serde_json::Value;

use super::{LOOKUP_TTL, Lifecycle, token_key};
use crate::catalog::{MAX_INPUT_BYTES, MAX_PROMPT_CHARS};
use crate::secret::random_hex;
use crate::store::{StoreError, now_ms};
use crate::task::{RelayCallback, TaskRecord};

/// Longest relay `callBackUrl` accepted.
pub const MAX_CALLBACK_URL: usize = 2048;

/// One request to run a model.
#[derive(Debug, Clone)]
pub struct Submission {
    /// Who asks: a person, or `key:<label>` for a relay key.
    pub owner: String,
    pub project: String,
    pub model: String,
    /// The model's `input` object.
    pub input: Value,
    /// A relay client's `callBackUrl`, with the id of the key that signs it.
    pub relay_callback: Option<(String, String)>,
    pub retry_of: Option<String>,
}

/// Why a submission was refused. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("The model {0:?} is not in the catalog; pick one from the Market panel.")]
    UnknownModel(String),
    #[error("{0}")]
    Invalid(String),
    #[error("Not configured: no KIE key is set (KIE_API_KEY or KIE_API_KEY_FILE), so nothing can be submitted.")]
    NotConfigured,
    #[error("No task {0}.")]
    NotFound(String),
    #[error("Only a failed or expired task can be retried; {0} is {1}.")]
    NotRetryable(String, String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SubmitError {
    /// What the person or program that submitted is told: the error itself, except a store
    /// failure, which is logged here and not shown.
    pub fn public_message(&self) -> String {
        match self {
            SubmitError::Store(inner) => {
                tracing::error!(error = %inner, "submission failed in the store");
                "The task store is unavailable; nothing was recorded. Try again shortly.".into()
            }
            other => other.to_string(),
        }
    }
}

fn invalid(msg: impl Into<String>) -> SubmitError {
    SubmitError::Invalid(msg.into())
}

/// A project name (see [`crate::task::valid_name`]).
pub fn check_project(p: &str) -> Result<(), SubmitError> {
    if crate::task::valid_name(p) { Ok(()) } else { Err(invalid(format!("project must be {}", crate::task::NAME_RULE))) }
}

impl Lifecycle {
    /// Checks a submission against the catalog and the size limits.
    fn validate(&self, s: &Submission) -> Result<(), SubmitError> {
        check_project(&s.project)?;
        let model = self.0.catalog.get(&s.model).ok_or_else(|| SubmitError::UnknownModel(s.model.chars().take(100).collect()))?;
        let Value::Object(input) = &s.input else { return Err(invalid("input must be a JSON object of the model's fields")) };
        let size = serde_json::to_vec(&s.input).map(|v| v.len()).unwrap_or(usize::MAX);
        if size > MAX_INPUT_BYTES {
            return Err(invalid(format!("input is {size} bytes; the limit is {MAX_INPUT_BYTES}")));
        }
        match input.get("prompt") {
            None | Some(Value::Null) => {}
            Some(Value::String(p)) if p.chars().count() > MAX_PROMPT_CHARS => {
                return Err(invalid(format!("prompt is {} characters; the limit is {MAX_PROMPT_CHARS}", p.chars().count())));
            }
            Some(Value::String(_)) => {}
            Some(_) => return Err(invalid("prompt must be a string")),
        }
        for field in &model.required {
            let present = match input.get(field) {
                None | Some(Value::Null) => false,
                Some(Value::String(v)) => !v.trim().is_empty(),
                Some(Value::Array(v)) => !v.is_empty(),
                Some(_) => true,
            };
            if !present {
                return Err(invalid(format!("{} needs input.{field}", model.id)));
            }
        }
        if let Some((url, _)) = &s.relay_callback {
            let parsed = url::Url::parse(url).map_err(|_| invalid("callBackUrl must be an absolute http(s) URL"))?;
            if !matches!(parsed.scheme(), "http" | "https") || url.len() > MAX_CALLBACK_URL {
                return Err(invalid(format!("callBackUrl must be an http(s) URL of at most {MAX_CALLBACK_URL} characters")));
            }
        }
        Ok(())
    }

    /// Records a new task (state `queued`) and wakes the dispatcher. Returns the record.
    pub async fn submit(&self, s: Submission) -> Result<TaskRecord, SubmitError> {
        if !self.configured() {
            return Err(SubmitError::NotConfigured);
        }
        self.validate(&s)?;
        let now = now_ms();
        let model = self.0.catalog.get(&s.model).ok_or_else(|| SubmitError::UnknownModel(s.model.clone()))?;
        let mut t = TaskRecord::new(format!("cr_{}", random_hex(10)), s.owner.trim(), s.project.trim(), &s.model, now);
        t.estimated_cost = model.estimate(&s.input);
        t.input = s.input;
        t.callback_token = random_hex(16);
        t.retry_of = s.retry_of;
        t.note = Some("Waiting for the rate guard".into());
        t.relay_callback = s.relay_callback.map(|(url, key_id)| RelayCallback { url, key_id, ..Default::default() });
        // The token's lookup first: a record never exists without it; a crash in between
        // leaves only an orphan lookup that expires.
        self.0.store.kv_set(&token_key(&t.callback_token), t.id.as_bytes(), Some(LOOKUP_TTL)).await?;
        if !self.0.store.task_insert(&t).await? {
            return Err(StoreError::Invalid(format!("task id {} already exists", t.id)).into());
        }
        tracing::info!(task = %t.id, model = %t.model, project = %t.project, owner = %t.owner, "task recorded");
        self.announce(&t).await;
        self.0.wake_dispatcher.notify_one();
        Ok(t)
    }

    /// Re-submits a failed or expired task as a new task linked to it.
    pub async fn retry(&self, id: &str, owner: &str) -> Result<TaskRecord, SubmitError> {
        let old = self.0.store.task_get(id).await?.ok_or_else(|| SubmitError::NotFound(id.to_string()))?;
        if !matches!(old.state, crate::TaskState::Fail | crate::TaskState::Expired) {
            return Err(SubmitError::NotRetryable(old.id, old.state.to_string()));
        }
        let relay_callback = old.relay_callback.map(|c| (c.url, c.key_id));
        self.submit(Submission { owner: owner.to_string(), project: old.project, model: old.model, input: old.input, relay_callback, retry_of: Some(old.id) }).await
    }
}
