//! Fair shares: how the rate guard's window is shared between owners, per project, set by an
//! admin (from the CLI or the Throttle panel) and audited.
//!
//! By default every owner with queued work gets one send per turn of the rotation and may
//! have `QUEUE_MAX_PER_OWNER` tasks waiting. A project's share changes both for the owners
//! whose tasks are in it:
//! - `weight` (1–[`MAX_WEIGHT`]): an owner whose next task is in the project sends up to
//!   `weight` tasks per turn (weighted round-robin: with weights 3 and 1, three of one
//!   project's to one of the other's while both wait; either alone still gets the window);
//! - `max_queued` (1–[`MAX_QUEUED`]): how many tasks each owner may have waiting in it,
//!   counted apart from their tasks elsewhere (which `QUEUE_MAX_PER_OWNER` bounds);
//! - `priority`: the priority its tasks get when their submission names none (a person's
//!   or a relay key's own choice wins).
//!
//! Shares are one document in the store (edited under a lease), read by every instance at
//! most [`CACHE_FOR`] after a change.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::store::{Store, StoreResult, edit_doc, now_ms, read_doc};
use crate::tasks::QueueSettingError;
use crate::tasks::task::Priority;
use crate::team::accounts::{Actor, Role};

const SHARES_KEY: &str = "queue:shares";
/// Largest weight.
pub const MAX_WEIGHT: u32 = 100;
/// Largest per-project queue quota.
pub const MAX_QUEUED: u32 = 1_000_000;
/// Most projects with a share of their own.
pub const MAX_SHARES: usize = 200;
/// How long an instance uses the shares it read before reading them again.
pub const CACHE_FOR: Duration = Duration::from_secs(5);

/// One project's share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    pub project: String,
    pub weight: u32,
    /// Each owner's queue quota in the project (`None`: `QUEUE_MAX_PER_OWNER`).
    pub max_queued: Option<u32>,
    /// Its tasks' priority when their submission names none.
    #[serde(default, skip_serializing_if = "Priority::is_normal")]
    pub priority: Priority,
    pub updated_ms: u64,
    pub updated_by: String,
}

impl Share {
    /// `weight 3 · at most 200 waiting per owner · high priority by default`.
    pub fn text(&self) -> String {
        let mut text = format!("weight {}", self.weight);
        if let Some(m) = self.max_queued {
            text += &format!(" · at most {m} waiting per owner");
        }
        if !self.priority.is_normal() {
            text += &format!(" · {} priority by default", self.priority.as_str());
        }
        text
    }
}

/// Every project's share.
pub async fn shares(store: &dyn Store) -> StoreResult<Vec<Share>> {
    read_doc(store, SHARES_KEY).await
}

/// The weight of `project` (1 when it has no share).
pub fn weight_of(shares: &[Share], project: &str) -> u32 {
    shares.iter().find(|s| s.project == project).map_or(1, |s| s.weight)
}

/// Each owner's queue quota in `project`, when its share sets one (`None`: the owner's
/// quota across projects, `QUEUE_MAX_PER_OWNER`, holds).
pub fn own_quota(shares: &[Share], project: &str) -> Option<u32> {
    shares.iter().find(|s| s.project == project).and_then(|s| s.max_queued)
}

/// The priority `project`'s tasks get when their submission names none.
pub fn default_priority(shares: &[Share], project: &str) -> Priority {
    shares.iter().find(|s| s.project == project).map_or(Priority::Normal, |s| s.priority)
}

/// Sets `project`'s share (admin); weight 1 with no quota and no priority of its own removes
/// it. Audited. Returns the share it replaced.
pub async fn set(store: &dyn Store, by: &Actor, project: &str, weight: u32, max_queued: Option<u32>, priority: Priority) -> Result<Option<Share>, QueueSettingError> {
    by.require(Role::Admin).map_err(|e| QueueSettingError::Forbidden(e.to_string()))?;
    let project = project.trim();
    if !crate::tasks::task::valid_name(project) {
        return Err(QueueSettingError::Invalid(format!("project must be {}", crate::tasks::task::NAME_RULE)));
    }
    if !(1..=MAX_WEIGHT).contains(&weight) {
        return Err(QueueSettingError::Invalid(format!("weight must be a whole number from 1 to {MAX_WEIGHT}")));
    }
    if max_queued.is_some_and(|m| !(1..=MAX_QUEUED).contains(&m)) {
        return Err(QueueSettingError::Invalid(format!("the queue quota must be a whole number from 1 to {MAX_QUEUED}")));
    }
    let share = Share { project: project.to_string(), weight, max_queued, priority, updated_ms: now_ms(), updated_by: by.who.clone() };
    let keep = weight != 1 || max_queued.is_some() || !priority.is_normal();
    let after = keep.then(|| share.text());
    let before = edit_doc(store, SHARES_KEY, |all: &mut Vec<Share>| {
        let before = all.iter().position(|s| s.project == project).map(|i| all.remove(i));
        if keep {
            if all.len() >= MAX_SHARES {
                return Err(QueueSettingError::Invalid(format!("at most {MAX_SHARES} projects have a share of their own; remove some first")));
            }
            all.push(share);
        }
        Ok(before)
    })
    .await?;
    let action = if keep { "fair share set" } else { "fair share removed" };
    crate::team::audit::record(store, by, action, &format!("project {project}"), before.as_ref().map(Share::text), after).await?;
    Ok(before)
}
