//! Asking for an upgrade of a video as KIE's own clients do (Veo's 1080p and 4K:
//! [`crate::kie::family::ApiFamily::upgrade`]): the same question asked again until the file is
//! there. The first ask of a parent's video starts one follow-up task through the whole
//! lifecycle (checked, reserved under every cost rule, queued, rate-guarded); every ask after
//! answers from that task's record. A failed upgrade is started anew when asked again.
//!
//! One task per parent, video and upgrade, across every instance: starting one is claimed with
//! the store's set-if-absent, so two asks at once start it once, and its id is written under
//! `upgrade:<family>:<parent>:<index>` before it is submitted, so a crash between the two
//! leaves a name the next ask finds (a task, or nothing started).

use serde_json::{Value, json};
use std::time::Duration;

use super::Lifecycle;
use super::submit::{SubmitError, Submission};
use crate::kie::family::Family;
use crate::tasks::task::{TaskRecord, TaskState};

/// How long a start is claimed: longer than a submission takes, short enough that a start
/// that died is tried again on the next ask.
const CLAIM: Duration = Duration::from_secs(30);

/// How long the name of an upgrade's task is kept: past KIE's 14 days.
const KEPT: Duration = Duration::from_secs(30 * 24 * 3600);

/// What an ask found.
#[derive(Debug)]
pub enum Asked {
    /// This ask started it.
    Started(TaskRecord),
    /// It is being made (or another ask is starting it: `None`).
    Making(Option<TaskRecord>),
    /// It is made: its record holds the file.
    Made(TaskRecord),
}

/// Who asks, and for what.
pub struct UpgradeAsk {
    pub family: Family,
    /// The parent task, as the caller named it (the console's id or KIE's).
    pub parent: String,
    pub index: u64,
    /// Who asks and where their tasks go: a submission's owner, project and relay callback.
    pub owner: String,
    pub project: String,
    pub relay_callback: Option<(String, String)>,
}

fn name_key(family: Family, parent: &str, index: u64) -> String {
    format!("upgrade:{}:{parent}:{index}", family.name())
}

impl Lifecycle {
    /// Answers an ask for an upgrade: starts its task, or says where the one asked for before
    /// stands. The parent must be the caller's project's (else [`SubmitError::NotFound`]); the
    /// follow-up's own checks (a Veo video that succeeded recently, an index it made) are
    /// [`Lifecycle::submit`]'s.
    pub async fn ask_upgrade(&self, ask: UpgradeAsk) -> Result<Asked, SubmitError> {
        let parent = self.find(&ask.parent).await?.filter(|t| t.project == ask.project).ok_or_else(|| SubmitError::NotFound(ask.parent.clone()))?;
        let model = self.0.catalog.by_upstream(ask.family, None).ok_or_else(|| SubmitError::UnknownModel(ask.family.name().to_string()))?.id.clone();
        let name = name_key(ask.family, &parent.id, ask.index);
        let before = match self.0.store.kv_get(&name).await? {
            Some(id) => self.find(&String::from_utf8_lossy(&id)).await?,
            None => None,
        };
        match &before {
            Some(t) if t.state == TaskState::Success => return Ok(Asked::Made(t.clone())),
            Some(t) if !matches!(t.state, TaskState::Fail | TaskState::Expired) => return Ok(Asked::Making(Some(t.clone()))),
            _ => {}
        }
        // Claimed per task it follows, so a failed one is started anew once.
        let claim = format!("{name}:start:{}", before.as_ref().map_or("-", |t| t.id.as_str()));
        if !self.0.store.kv_set_nx(&claim, b"1", Some(CLAIM)).await? {
            return Ok(Asked::Making(None));
        }
        let id = super::submit::new_task_id();
        self.0.store.kv_set(&name, id.as_bytes(), Some(KEPT)).await?;
        let submission = Submission {
            id: Some(id),
            owner: ask.owner,
            project: ask.project,
            model,
            input: json!({ "taskId": parent.id, "index": ask.index }),
            relay_callback: ask.relay_callback,
            ..Default::default()
        };
        match self.submit(submission).await {
            Ok(t) => Ok(Asked::Started(t)),
            Err(e) => {
                // Nothing started: the next ask may try.
                self.0.store.kv_delete(&claim).await?;
                Err(e)
            }
        }
    }
}

/// The index an ask names (`index`, a whole number or its text; 0 when absent), or why not.
pub fn index_of(v: Option<&Value>) -> Result<u64, String> {
    match v {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(0),
        Some(Value::String(s)) => s.trim().parse().map_err(|_| format!("index must be a whole number, not {s:?}")),
        Some(v) => v.as_u64().ok_or_else(|| format!("index must be a whole number, not {v}")),
    }
}
