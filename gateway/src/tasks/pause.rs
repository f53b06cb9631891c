//! Pausing intake: an operator holds the queue for the whole team or for one project. Queued
//! tasks stay queued and nothing of theirs is sent to KIE until it is resumed; new tasks are
//! queued behind them, or refused with a clear message when `QUEUE_PAUSED_INTAKE=refuse`.
//!
//! The pauses are one document in the store (edited under a lease), so a pause set on one
//! instance holds on every instance and across restarts. The dispatcher reads it at the start
//! of every round and again just before each send, so a send that starts after a pause was
//! written never reaches KIE; a `createTask` already under way finishes. Setting or lifting a
//! pause is audited. Admins pause the team; admins and producers pause a project.

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreResult, edit_doc, now_ms, read_doc};
use crate::tasks::QueueSettingError;
use crate::team::accounts::{Actor, Role};

const PAUSES_KEY: &str = "queue:pauses";
/// Most projects paused at once.
pub const MAX_PAUSED_PROJECTS: usize = 200;
/// Longest reason kept with a pause.
pub const MAX_REASON: usize = 200;

/// One pause: who set it, when, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    /// Who set it (an email, or `cli`), as the audit log names them.
    pub by: String,
    /// Their name, as the screen and refusals show it.
    #[serde(default)]
    pub name: String,
    pub at_ms: u64,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Every pause in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pauses {
    /// The whole team's intake.
    #[serde(default)]
    pub team: Option<Pause>,
    /// Projects paused one by one.
    #[serde(default)]
    pub projects: std::collections::BTreeMap<String, Pause>,
}

impl Pauses {
    /// The pause that holds `project`'s tasks, if any (the team's first).
    pub fn holding(&self, project: &str) -> Option<&Pause> {
        self.team.as_ref().or_else(|| self.projects.get(project))
    }

    /// Whether nothing is paused.
    pub fn is_empty(&self) -> bool {
        self.team.is_none() && self.projects.is_empty()
    }

    /// Why `project`'s queued tasks wait, in a sentence; `None` when they are not held.
    pub fn why(&self, project: &str) -> Option<String> {
        let (what, p) = match (&self.team, self.projects.get(project)) {
            (Some(p), _) => ("the team's intake", p),
            (None, Some(p)) => ("this project's intake", p),
            (None, None) => return None,
        };
        Some(match &p.reason {
            Some(r) => format!("Paused: {what} is held by {} ({r})", p.name),
            None => format!("Paused: {what} is held by {}", p.name),
        })
    }
}

/// What a new submission meets while its project is paused (`QUEUE_PAUSED_INTAKE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PausedIntake {
    /// Accepted and queued: it leaves once intake is resumed.
    #[default]
    Queue,
    /// Refused with the pause's reason; nothing is written.
    Refuse,
}

impl std::str::FromStr for PausedIntake {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "queue" => Ok(PausedIntake::Queue),
            "refuse" => Ok(PausedIntake::Refuse),
            other => Err(format!("{other:?} is not a paused-intake mode: use queue or refuse")),
        }
    }
}

/// Every pause in force, read from the store.
pub async fn read(store: &dyn Store) -> StoreResult<Pauses> {
    read_doc(store, PAUSES_KEY).await
}

/// Pauses (`paused`) or resumes the team's intake (`project` `None`: admins) or one project's
/// (admins and producers). Audited. Returns whether anything changed (pausing what is paused
/// keeps the first pause; resuming what is not paused changes nothing).
pub async fn set(store: &dyn Store, by: &Actor, project: Option<&str>, paused: bool, reason: Option<&str>) -> Result<bool, QueueSettingError> {
    let project = project.map(str::trim);
    by.require(if project.is_some() { Role::Producer } else { Role::Admin }).map_err(|e| QueueSettingError::Forbidden(e.to_string()))?;
    if let Some(p) = project
        && !crate::tasks::task::valid_name(p)
    {
        return Err(QueueSettingError::Invalid(format!("project must be {}", crate::tasks::task::NAME_RULE)));
    }
    if let Some(p) = project {
        by.membership.admit(p).map_err(QueueSettingError::Forbidden)?;
    }
    let reason = reason.map(str::trim).filter(|r| !r.is_empty());
    if reason.is_some_and(|r| r.chars().count() > MAX_REASON || r.chars().any(char::is_control)) {
        return Err(QueueSettingError::Invalid(format!("the reason must be one line of at most {MAX_REASON} characters")));
    }
    let pause = Pause { by: by.who.clone(), name: by.name.clone(), at_ms: now_ms(), reason: reason.map(str::to_string) };
    let changed = edit_doc(store, PAUSES_KEY, |all: &mut Pauses| {
        let was = match project {
            None => all.team.is_some(),
            Some(p) => all.projects.contains_key(p),
        };
        match (project, paused && !was, !paused && was) {
            (Some(_), true, _) if all.projects.len() >= MAX_PAUSED_PROJECTS => {
                return Err(QueueSettingError::Invalid(format!("at most {MAX_PAUSED_PROJECTS} projects can be paused one by one; pause the team instead")));
            }
            (None, true, _) => all.team = Some(pause.clone()),
            (Some(p), true, _) => drop(all.projects.insert(p.to_string(), pause.clone())),
            (None, _, true) => all.team = None,
            (Some(p), _, true) => drop(all.projects.remove(p)),
            _ => {}
        }
        Ok(paused != was)
    })
    .await?;
    if changed {
        let target = project.map_or("the team's intake".to_string(), |p| format!("project {p}"));
        let (action, before, after) = if paused { ("intake paused", None, Some(reason.unwrap_or("paused").to_string())) } else { ("intake resumed", Some("paused".to_string()), None) };
        crate::team::audit::record(store, by, action, &target, before, after).await?;
    }
    Ok(changed)
}
