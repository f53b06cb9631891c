//! Administration commands against the configured store (Redis, or the embedded store when
//! no server holds it):
//! - `control-room key create|list|revoke`: relay keys; a new key is printed once;
//! - `control-room budget set|show`: cost rules in US dollars, with their spend meters.

use std::io::Write;

use crate::config::{BudgetCommand, Command, Config, KeyCommand};
use crate::{ServerError, open_store};
use gateway::budget::{self, CostRule, money};
use gateway::relay_keys;

/// Runs one administration command, writing to `out`.
pub async fn command(config: &Config, cmd: Command, out: &mut dyn Write) -> Result<(), ServerError> {
    match cmd {
        Command::Key(cmd) => key_command(config, cmd, out).await,
        Command::Budget(cmd) => budget_command(config, cmd, out).await,
    }
}

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

fn cap_text(c: Option<gateway::Credits>) -> String {
    c.map_or("-".into(), money)
}

/// Runs one budget command, writing to `out`.
pub async fn budget_command(config: &Config, cmd: BudgetCommand, out: &mut dyn Write) -> Result<(), ServerError> {
    let store = open_store(&config.store).await?;
    let fail = |e: budget::BudgetError| ServerError::Store(e.to_string());
    match cmd {
        BudgetCommand::Set { project, user, per_job, per_day, total } => {
            let caps = [("--per-job", per_job), ("--per-day", per_day), ("--total", total)];
            let rule = CostRule::in_usd(project, user, caps, "cli").map_err(fail)?;
            let label = rule.target.label();
            let removed = !rule.has_caps();
            let before = budget::set_rule(store.as_ref(), rule.clone()).await.map_err(fail)?;
            if removed {
                writeln!(out, "{}", if before.is_some() { format!("Removed the cost rule for {label}.") } else { format!("There was no cost rule for {label}.") })?;
            } else {
                writeln!(out, "Cost rule for {label}: per job {}, per rolling 24 h {}, total {}.", cap_text(rule.per_job), cap_text(rule.per_day), cap_text(rule.total))?;
            }
        }
        BudgetCommand::Show => {
            let rules = budget::rules(store.as_ref()).await.map_err(|e| ServerError::Store(e.to_string()))?;
            if rules.is_empty() {
                writeln!(out, "No cost rules: nothing caps spend. Set one with `control-room budget set --project NAME --per-day USD`.")?;
            }
            for r in &rules {
                writeln!(out, "{} (set by {}):", r.target.label(), r.updated_by)?;
                writeln!(out, "  per job         {}", cap_text(r.per_job))?;
                let meters = budget::meters(store.as_ref(), std::slice::from_ref(r)).await.map_err(|e| ServerError::Store(e.to_string()))?;
                for m in meters {
                    let name = if m.kind == budget::CapKind::PerDay { "per 24 h" } else { "total" };
                    writeln!(out, "  {name:<15} {} used of {} ({} %)", money(m.used), money(m.cap), m.percent())?;
                }
            }
            let alerts = budget::alerts(store.as_ref()).await.map_err(|e| ServerError::Store(e.to_string()))?;
            for a in alerts.iter().take(10) {
                writeln!(out, "alert at {} (Unix s): {}", a.at_ms / 1000, a.message())?;
            }
        }
    }
    Ok(())
}
