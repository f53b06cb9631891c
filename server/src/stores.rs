//! The store: Redis when `REDIS_URL` is set, else the embedded store under `DATA_DIR`; and
//! Redis's policy (it is the system of record: it must keep what it is given).

use std::sync::Arc;

use gateway::{EmbeddedStore, RedisStore, Store};

use crate::ServerError;
use crate::config::{Config, StoreConfig, redis_display};

/// Opens the configured store, with a one-line error that says what to fix.
pub async fn open_store(config: &StoreConfig) -> Result<Arc<dyn Store>, ServerError> {
    match config {
        StoreConfig::Redis { url, prefix, options } => Ok(Arc::new(connect_redis(url, prefix, options).await?)),
        StoreConfig::Embedded { dir } => {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || EmbeddedStore::open(&dir))
                .await
                .map_err(|e| ServerError::Store(e.to_string()))?
                .map(|s| Arc::new(s) as Arc<dyn Store>)
                .map_err(|e| ServerError::Store(format!("cannot open the embedded store: {e}")))
        }
    }
}

async fn connect_redis(url: &str, prefix: &str, options: &gateway::store::RedisOptions) -> Result<RedisStore, ServerError> {
    RedisStore::connect_opts(url, prefix, options).await.map_err(|e| ServerError::Store(format!("cannot use Redis at {}: {e}", redis_display(url))))
}

/// The store `run` serves from: [`open_store`], and for Redis its policy checked
/// ([`check_persistence`]) on the primary now, and again on each primary a failover brings.
pub(crate) async fn open_checked(config: &Config) -> Result<Arc<dyn Store>, ServerError> {
    let StoreConfig::Redis { url, prefix, options } = &config.store else { return open_store(&config.store).await };
    let redis = connect_redis(url, prefix, options).await?;
    let policy = Policy { allow_ephemeral: config.redis_allow_ephemeral, assume_persistent: config.redis_assume_persistent };
    check_persistence(&redis, &policy).await?;
    let mut failovers = redis.failovers();
    let watched = redis.clone();
    tokio::spawn(async move {
        while failovers.changed().await.is_ok() {
            tracing::info!(primary = %watched.primary_addr(), "a new Redis primary: checking that it persists and never evicts");
            if let Err(e) = check_persistence(&watched, &policy).await {
                tracing::error!("{e}");
            }
        }
    });
    Ok(Arc::new(redis))
}

/// What [`check_persistence`] accepts beyond a persistent, non-evicting Redis
/// (`REDIS_ALLOW_EPHEMERAL`, `REDIS_ASSUME_PERSISTENT`).
struct Policy {
    allow_ephemeral: bool,
    assume_persistent: bool,
}

/// Redis is the system of record: a server that keeps nothing on disk, or that deletes keys
/// when full (`maxmemory-policy` other than `noeviction`), is refused (unless
/// `REDIS_ALLOW_EPHEMERAL`); one with snapshots only is warned about.
async fn check_persistence(redis: &RedisStore, policy: &Policy) -> Result<(), ServerError> {
    // The primary's address (a Sentinel's pick, or REDIS_URL's host): never the password.
    let url = redis.primary_addr();
    let persistence = redis.persistence().await;
    if let Some(p) = &persistence
        && p.evicts()
        && !policy.allow_ephemeral
    {
        return Err(ServerError::Store(format!(
            "Redis at {} runs with maxmemory-policy {}: when full it deletes keys (budgets, holds, tasks), and it is the Control Room's system of record. Set `maxmemory-policy noeviction` (CONFIG SET maxmemory-policy noeviction), or set REDIS_ALLOW_EPHEMERAL=1 to accept losing data.",
            url,
            p.eviction
        )));
    }
    match persistence {
        Some(p) if p.aof => Ok(()),
        Some(p) if p.rdb => {
            tracing::warn!("Redis at {} keeps RDB snapshots only: a crash loses what came after the last one (budgets, tasks). Set appendonly yes.", url);
            Ok(())
        }
        Some(_) if policy.allow_ephemeral => {
            tracing::warn!("Redis at {} keeps nothing on disk; REDIS_ALLOW_EPHEMERAL is set, so starting anyway: a Redis restart loses every budget, task and hold.", url);
            Ok(())
        }
        Some(_) => Err(ServerError::Store(format!(
            "Redis at {} keeps nothing on disk (appendonly no, no save points): it is the Control Room's system of record. Set `appendonly yes` (redis-server --appendonly yes, or CONFIG SET appendonly yes), or set REDIS_ALLOW_EPHEMERAL=1 to accept losing everything when it restarts.",
            url
        ))),
        None if policy.assume_persistent => {
            tracing::info!("Redis at {} does not answer CONFIG GET (a managed Redis); REDIS_ASSUME_PERSISTENT is set: its operator vouches that it keeps what it is given and never evicts keys.", url);
            Ok(())
        }
        None => {
            tracing::warn!(
                "Redis at {} does not answer CONFIG GET (a managed Redis, or a user without +config): could not verify that it persists (appendonly yes) nor that it never evicts keys (maxmemory-policy noeviction). Starting anyway; make sure of both, then set REDIS_ASSUME_PERSISTENT=1 to say so.",
                url
            );
            Ok(())
        }
    }
}
