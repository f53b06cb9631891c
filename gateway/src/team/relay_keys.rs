//! Relay keys: what programs use instead of the KIE key to reach the relay API.
//!
//! A key reads `kcr_<id>_<secret>`. The store keeps its SHA-256 (the secret is 256 random
//! bits, so a fast hash is enough; passwords, which are not random, get argon2 elsewhere), its
//! label and project, and a separate webhook secret that signs the relay's callbacks to the
//! key's clients the way KIE signs its own. The key itself is shown once, at creation.
//!
//! The relay authenticates through a [`KeyCache`]: checked keys stay in memory while their
//! instance hears revocations; a revocation reaches every instance's cache at once.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

use crate::team::accounts::{Actor, Role};
use crate::team::audit;
use crate::secret::{constant_time_eq, hex, random_hex};
use crate::store::watched::{self, Watched};
use crate::store::{Store, StoreError, now_ms};

const PREFIX: &str = "kcr_";
/// The list of key ids (edited with [`crate::store::edit_doc`]).
const LIST_KEY: &str = "relaykeys";
/// How often `last_used_ms` is written at most.
const LAST_USED_EVERY_MS: u64 = 60_000;
/// Most keys a deployment holds.
pub const MAX_KEYS: usize = 1000;

/// One relay key as stored (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayKey {
    pub id: String,
    /// A label for people ("render farm", "nightly batch").
    pub name: String,
    /// Tasks submitted with this key belong to this project.
    pub project: String,
    /// Hex SHA-256 of the whole key.
    pub hash: String,
    /// Signs the relay's callbacks to this key's clients (`X-Webhook-Signature`).
    pub webhook_secret: String,
    pub created_ms: u64,
    pub revoked_ms: Option<u64>,
    /// Filled in by [`list`] (kept apart from the record, see [`authenticate`]).
    #[serde(default, skip_serializing)]
    pub last_used_ms: Option<u64>,
}

impl RelayKey {
    /// The owner tasks submitted with this key carry: `key:<id>`, so two keys with the same
    /// label are two owners (a cost rule, a queue quota and the fair queue's turn each name
    /// one key), and a label can be changed without moving anything.
    pub fn owner(&self) -> String {
        owner_of(&self.id)
    }
}

/// The owner the tasks of the relay key `id` carry (see [`RelayKey::owner`]).
pub fn owner_of(id: &str) -> String {
    format!("key:{id}")
}

/// A key as created: the stored record and the secret text shown once.
pub struct NewKey {
    pub key: RelayKey,
    pub text: crate::Secret,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayKeyError {
    #[error("{0}")]
    Invalid(String),
    #[error("no relay key {0}")]
    NotFound(String),
    /// Wrong, malformed or revoked: one answer for all, so a caller learns nothing.
    #[error("You do not have access permissions")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn record_key(id: &str) -> String {
    format!("relaykey:{id}")
}

fn used_key(id: &str) -> String {
    format!("relaykey:{id}:used")
}

fn hash(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

fn check_label(what: &str, v: &str) -> Result<(), RelayKeyError> {
    if crate::tasks::task::valid_name(v) { Ok(()) } else { Err(RelayKeyError::Invalid(format!("{what} must be {}", crate::tasks::task::NAME_RULE))) }
}

async fn get(store: &dyn Store, id: &str) -> Result<Option<RelayKey>, RelayKeyError> {
    match store.kv_get(&record_key(id)).await? {
        Some(b) => Ok(Some(serde_json::from_slice(&b).map_err(|e| StoreError::Corrupt(format!("relay key {id}: {e}")))?)),
        None => Ok(None),
    }
}

async fn put(store: &dyn Store, key: &RelayKey) -> Result<(), RelayKeyError> {
    let bytes = serde_json::to_vec(key).map_err(|e| StoreError::Invalid(e.to_string()))?;
    Ok(store.kv_set(&record_key(&key.id), &bytes, None).await?)
}

/// Creates a key for `project`, labelled `name`, as `by` (an admin); recorded in the audit log.
pub async fn create(store: &dyn Store, by: &Actor, project: &str, name: &str) -> Result<NewKey, RelayKeyError> {
    by.require(Role::Admin).map_err(|e| RelayKeyError::Forbidden(e.to_string()))?;
    check_label("the project", project)?;
    check_label("the name", name)?;
    let id = random_hex(6);
    let text = format!("{PREFIX}{id}_{}", random_hex(32));
    let key = RelayKey {
        id: id.clone(),
        name: name.trim().to_string(),
        project: project.trim().to_string(),
        hash: hash(&text),
        webhook_secret: format!("whsec_{}", random_hex(24)),
        created_ms: now_ms(),
        revoked_ms: None,
        last_used_ms: None,
    };
    // The record first: a crash before the list is updated leaves an unlisted key that
    // nobody holds (its text was never shown), not a listed key without a record.
    put(store, &key).await?;
    crate::store::edit_doc(store, LIST_KEY, |list: &mut Vec<String>| {
        if list.len() >= MAX_KEYS {
            return Err(RelayKeyError::Invalid(format!("at most {MAX_KEYS} relay keys; revoke some first")));
        }
        list.push(id);
        Ok(())
    })
    .await?;
    audit::record(store, by, "relay key created", &key.id, None, Some(format!("{} · project {}", key.name, key.project))).await?;
    Ok(NewKey { key, text: crate::Secret::new(text) })
}

/// Every key, newest first.
pub async fn list(store: &dyn Store) -> Result<Vec<RelayKey>, RelayKeyError> {
    let mut out = Vec::new();
    for id in crate::store::read_doc::<Vec<String>>(store, LIST_KEY).await? {
        if let Some(mut k) = get(store, &id).await? {
            k.last_used_ms = store.kv_get(&used_key(&id)).await?.and_then(|b| String::from_utf8(b).ok()?.parse().ok());
            out.push(k);
        }
    }
    out.sort_by_key(|k| std::cmp::Reverse(k.created_ms));
    Ok(out)
}

/// Revokes a key at once (the record, then a message that drops it from every instance's
/// [`KeyCache`]), as `by` (an admin);
/// recorded in the audit log.
pub async fn revoke(store: &dyn Store, by: &Actor, id: &str) -> Result<RelayKey, RelayKeyError> {
    by.require(Role::Admin).map_err(|e| RelayKeyError::Forbidden(e.to_string()))?;
    if id.is_empty() || id.len() > 32 {
        return Err(RelayKeyError::NotFound(id.to_string()));
    }
    let mut key = get(store, id).await?.ok_or_else(|| RelayKeyError::NotFound(id.to_string()))?;
    if key.revoked_ms.is_none() {
        key.revoked_ms = Some(now_ms());
        put(store, &key).await?;
        // Every instance's cache drops it now (and a cache that cannot hear this caches
        // nothing).
        watched::announce(store, REVOKED_CHANNEL, &key.id).await?;
        audit::record(store, by, "relay key revoked", &key.id, Some(format!("{} · project {} · live", key.name, key.project)), Some("revoked".into())).await?;
    }
    Ok(key)
}

/// When this instance last recorded each key's use, so that a busy key costs one store write
/// a minute, not one per request.
#[derive(Default)]
pub struct LastUse(std::sync::Mutex<std::collections::HashMap<String, u64>>);

impl LastUse {
    /// Whether `id`'s use should be written now (and notes that it is).
    fn due(&self, id: &str, now: u64) -> bool {
        let Ok(mut seen) = self.0.lock() else { return true };
        if seen.len() > MAX_KEYS * 2 {
            seen.clear();
        }
        match seen.get(id) {
            Some(t) if now.saturating_sub(*t) < LAST_USED_EVERY_MS => false,
            _ => {
                seen.insert(id.to_string(), now);
                true
            }
        }
    }
}

/// The channel on which a revocation is announced to every instance's [`KeyCache`].
const REVOKED_CHANNEL: &str = "relay-keys:revoked";
/// How long a cached key is trusted without hearing anything (a safety net under the
/// revocation messages, not the way revocations arrive).
const CACHE_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// The keys this instance has checked, so that a relay request does not read the store to
/// authenticate. A revocation is published to every instance and drops the key from every
/// cache at once; while this instance is not subscribed (starting, or the store dropped the
/// subscription) nothing is cached and every request reads the store (see
/// [`crate::store::watched`]).
pub struct KeyCache {
    store: Arc<dyn Store>,
    keys: Arc<Watched<RelayKey>>,
    last_use: LastUse,
}

impl KeyCache {
    /// A cache that follows revocations through the store's publish/subscribe.
    pub fn start(store: Arc<dyn Store>) -> KeyCache {
        let keys = Watched::new(store.clone(), CACHE_FOR, MAX_KEYS * 2);
        keys.follow(REVOKED_CHANNEL);
        KeyCache { store, keys, last_use: LastUse::default() }
    }

    /// Stops following revocations (and caching).
    pub fn stop(&self) {
        self.keys.stop();
    }

    /// Stops hearing revocations and waits until the listener let go of the store.
    pub async fn stop_and_wait(&self) {
        self.keys.stop_and_wait().await;
    }

    /// Whether revocations are being heard (so checked keys are cached).
    pub fn listening(&self) -> bool {
        self.keys.listening()
    }

    /// The live key this text opens, or [`RelayKeyError::Unauthorized`]: its record (from
    /// the cache, else the store), its hash checked in constant time, not revoked.
    pub async fn authenticate(&self, text: &str) -> Result<RelayKey, RelayKeyError> {
        let id = key_id(text)?;
        let store = self.store.as_ref();
        let key = self.keys.get(id, || get(store, id), |k| k.revoked_ms.is_none()).await?.ok_or(RelayKeyError::Unauthorized)?;
        check_text(&key, text)?;
        note_use(store, &self.last_use, id, now_ms()).await;
        Ok(key)
    }
}

impl Drop for KeyCache {
    fn drop(&mut self) {
        self.stop();
    }
}

fn key_id(text: &str) -> Result<&str, RelayKeyError> {
    let id = text.strip_prefix(PREFIX).and_then(|rest| rest.split_once('_')).map(|(id, _)| id).ok_or(RelayKeyError::Unauthorized)?;
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(RelayKeyError::Unauthorized);
    }
    Ok(id)
}

fn check_text(key: &RelayKey, text: &str) -> Result<(), RelayKeyError> {
    if !constant_time_eq(key.hash.as_bytes(), hash(text).as_bytes()) || key.revoked_ms.is_some() {
        return Err(RelayKeyError::Unauthorized);
    }
    Ok(())
}

async fn note_use(store: &dyn Store, last_use: &LastUse, id: &str, now: u64) {
    // Last use lives in its own entry so that it never races a revocation of the record;
    // written at most once a minute per key and instance. Best effort: bookkeeping never
    // refuses a valid key.
    if last_use.due(id, now)
        && let Err(e) = store.kv_set(&used_key(id), now.to_string().as_bytes(), None).await
    {
        tracing::warn!(error = %e, "cannot record a relay key's last use");
    }
}

/// The key a task's relay callback is signed with.
pub async fn find(store: &dyn Store, id: &str) -> Result<Option<RelayKey>, RelayKeyError> {
    get(store, id).await
}
