//! `control-room key create|list|revoke`: relay keys, managed against the configured store
//! (Redis, or the embedded store when no server holds it). A new key is printed once.

use std::io::Write;

use crate::config::{Config, KeyCommand};
use crate::{ServerError, open_store};
use gateway::relay_keys;

fn when(ms: Option<u64>) -> String {
    ms.map_or("-".into(), |ms| format!("{}", ms / 1000))
}

/// Runs one key command, writing to `out`.
pub async fn key_command(config: &Config, cmd: KeyCommand, out: &mut dyn Write) -> Result<(), ServerError> {
    let store = open_store(&config.store).await?;
    let fail = |e: relay_keys::RelayKeyError| ServerError::Store(e.to_string());
    match cmd {
        KeyCommand::Create { project, name } => {
            let new = relay_keys::create(store.as_ref(), &project, &name).await.map_err(fail)?;
            writeln!(out, "Relay key {} for project {:?} ({}).", new.key.id, new.key.project, new.key.name)?;
            writeln!(out, "key:            {}", new.text.expose())?;
            writeln!(out, "webhook secret: {}", new.key.webhook_secret)?;
            writeln!(out, "Shown once: the store keeps only the key's hash. Use it as the Bearer key with base URL <console>/kie.")?;
        }
        KeyCommand::List => {
            let keys = relay_keys::list(store.as_ref()).await.map_err(fail)?;
            writeln!(out, "{:<14} {:<24} {:<20} {:>12} {:>12} {:>12}", "ID", "NAME", "PROJECT", "CREATED", "LAST USED", "REVOKED")?;
            for k in keys {
                writeln!(out, "{:<14} {:<24} {:<20} {:>12} {:>12} {:>12}", k.id, k.name, k.project, k.created_ms / 1000, when(k.last_used_ms), when(k.revoked_ms))?;
            }
            writeln!(out, "(times are Unix seconds)")?;
        }
        KeyCommand::Revoke { id } => {
            let k = relay_keys::revoke(store.as_ref(), id.trim()).await.map_err(fail)?;
            writeln!(out, "Revoked relay key {} ({}, project {}).", k.id, k.name, k.project)?;
        }
    }
    Ok(())
}
