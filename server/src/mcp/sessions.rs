//! MCP sessions in the store: what a client said when it opened one (so an instance that did
//! not open it can take it over, as the SDK's session store allows), and which relay key it
//! belongs to. Both expire a day after the session opened; a client whose session is gone is
//! answered 404 and opens a new one.

use std::sync::Arc;
use std::time::Duration;

use rmcp::transport::streamable_http_server::session::{SessionState, SessionStore, SessionStoreError};

use gateway::{Store, StoreResult};

/// How long a session's record is kept.
const KEPT: Duration = Duration::from_secs(24 * 3600);
/// Longest session id accepted (the SDK's are UUIDs).
const MAX_ID: usize = 128;

fn state_key(id: &str) -> String {
    format!("mcp:session:{id}")
}

fn key_key(id: &str) -> String {
    format!("mcp:session:{id}:key")
}

/// The relay key id session `id` belongs to, if it is known.
pub(super) async fn key_of(store: &dyn Store, id: &str) -> StoreResult<Option<String>> {
    if id.is_empty() || id.len() > MAX_ID {
        return Ok(None);
    }
    Ok(store.kv_get(&key_key(id)).await?.and_then(|v| String::from_utf8(v).ok()))
}

/// Records that session `id` belongs to relay key `key_id`.
pub(super) async fn bind(store: &dyn Store, id: &str, key_id: &str) -> StoreResult<()> {
    store.kv_set(&key_key(id), key_id.as_bytes(), Some(KEPT)).await
}

/// The SDK's session store on the Control Room's store.
pub(super) struct StoredSessions(Arc<dyn Store>);

impl StoredSessions {
    pub(super) fn new(store: Arc<dyn Store>) -> StoredSessions {
        StoredSessions(store)
    }
}

#[async_trait::async_trait]
impl SessionStore for StoredSessions {
    async fn load(&self, id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        if id.is_empty() || id.len() > MAX_ID {
            return Ok(None);
        }
        match self.0.kv_get(&state_key(id)).await? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    async fn store(&self, id: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        Ok(self.0.kv_set(&state_key(id), &serde_json::to_vec(state)?, Some(KEPT)).await?)
    }

    async fn delete(&self, id: &str) -> Result<(), SessionStoreError> {
        self.0.kv_delete(&state_key(id)).await?;
        self.0.kv_delete(&key_key(id)).await?;
        Ok(())
    }
}
