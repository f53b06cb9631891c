//! The composer's drafts: a chat call one person prepared, kept for [`DRAFT_LIFE`] under a
//! one-time token, and taken once, by that person, when the browser opens its stream
//! (`GET /draft/<token>`); the call itself is admitted when it is taken, like any other.

use std::time::Duration;

use super::{ChatError, ChatRequest};
use crate::money::credits::Credits;
use crate::store::{StoreError, StoreResult};
use crate::tasks::lifecycle::Lifecycle;

/// How long a draft waits to be read.
pub const DRAFT_LIFE: Duration = Duration::from_secs(60);

/// A token's length (hex).
const TOKEN_LEN: usize = 32;

fn draft_key(token: &str) -> String {
    format!("draft:{token}")
}

impl Lifecycle {
    /// Checks and estimates `req` (refused as a call would be) and keeps it for
    /// [`DRAFT_LIFE`]. Returns its token and what the call would hold.
    pub async fn start_draft(&self, req: ChatRequest) -> Result<(String, Credits), ChatError> {
        let estimate = self.chat_estimate(&req.owner, req.project.trim(), &req.model, &req.body).await?.estimate;
        let token = crate::secret::random_hex(TOKEN_LEN / 2);
        let bytes = serde_json::to_vec(&req).map_err(|e| ChatError::Invalid(e.to_string()))?;
        self.store().kv_set(&draft_key(&token), &bytes, Some(DRAFT_LIFE)).await?;
        Ok((token, estimate))
    }

    /// The draft under `token` if `who` started it, taken: a second take finds nothing.
    /// Someone else's draft reads like a missing one and is left alone.
    pub async fn take_draft(&self, token: &str, who: &str) -> StoreResult<Option<ChatRequest>> {
        if token.len() != TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let key = draft_key(token);
        let found = self.store().kv_get(&key).await?.map(|v| serde_json::from_slice::<ChatRequest>(&v).map_err(|e| StoreError::Corrupt(format!("a draft: {e}")))).transpose()?;
        let Some(req) = found.filter(|r| r.owner == who) else { return Ok(None) };
        // Whoever deletes it first has it.
        Ok(self.store().kv_delete(&key).await?.then_some(req))
    }
}
