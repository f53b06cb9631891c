//! Follow-ups through a task's life: a model that acts on a result of an earlier task
//! (Midjourney's upscale of one image of a grid; see [`crate::money::catalog::FollowUp`]).
//!
//! - at submit ([`Lifecycle::admit_follow_up`]), the input's `taskId` must name a task the
//!   caller may use (by the console's id or KIE's), of a model the follow-up acts on, that
//!   succeeded at KIE recently enough for KIE to still have it; its index field must name one
//!   of that task's results, counted as KIE counts them. The input keeps the console's id
//!   and the task records its parent ([`Follows`]). A refusal names the field and writes
//!   nothing;
//! - at send ([`Lifecycle::parent_for_kie`]), `taskId` becomes the parent's KIE task id.

use serde_json::Value;
use std::time::Duration;

use super::Lifecycle;
use super::submit::{SubmitError, invalid};
use crate::money::catalog::{FollowUp, Model, PARENT_FIELD};
use crate::store::now_ms;
use crate::tasks::task::{Follows, TaskRecord, TaskState};
use crate::team::membership::Membership;

/// How long after a task ended a follow-up on it is sent. KIE keeps tasks and their results
/// 14 days at most: a day less, so one sent near the edge still finds it.
pub const PARENT_KEPT: Duration = Duration::from_secs(13 * 24 * 3600);

/// Whether KIE surely still has `t`'s task (ended less than [`PARENT_KEPT`] ago).
pub fn still_at_kie(t: &TaskRecord, now_ms: u64) -> bool {
    now_ms.saturating_sub(t.finished_ms.unwrap_or(t.created_ms)) <= PARENT_KEPT.as_millis() as u64
}

/// The whole number `v` holds (`2`, `2.0` or `"2"`), if it does.
fn whole(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1e6).map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Which result of `parent` the input's index field names (from 0), checked against what
/// `parent` made; `None` when the follow-up acts on the whole task.
fn result_named(rule: &FollowUp, input: &serde_json::Map<String, Value>, parent: &TaskRecord) -> Result<Option<usize>, String> {
    let Some(field) = &rule.index else { return Ok(None) };
    let made = parent.result_urls.len() as u64;
    let range = format!("from {} to {}", rule.first, rule.first + made.saturating_sub(1));
    let given = input.get(field).and_then(whole).ok_or_else(|| format!("input.{field} must be a whole number {range}: which of {}'s {made} results", parent.id))?;
    match given.checked_sub(rule.first).filter(|n| *n < made) {
        Some(n) => Ok(Some(n as usize)),
        None => Err(format!("input.{field} is {given}; {} made {made} results, so it must be {range}", parent.id)),
    }
}

impl Lifecycle {
    /// Checks a follow-up's parent (see the module doc) and writes its console id into the
    /// input. `sees`: the projects the caller reaches (`None`: `project` alone).
    pub(super) async fn admit_follow_up(&self, model: &Model, input: &mut Value, sees: Option<&Membership>, project: &str) -> Result<Option<Follows>, SubmitError> {
        let (Some(rule), Value::Object(fields)) = (&model.follows, input) else { return Ok(None) };
        let Some(named) = fields.get(PARENT_FIELD).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty() && s.len() <= 128) else {
            return Err(invalid(format!("{} acts on an earlier task: input.{PARENT_FIELD} must name it (its id)", model.id)));
        };
        let usable = |t: &TaskRecord| sees.map_or(t.project == project, |m| m.sees(&t.project));
        let Some(parent) = self.find(named).await?.filter(usable) else {
            return Err(invalid(format!("input.{PARENT_FIELD}: there is no task {named} that you can use")));
        };
        if !rule.of.contains(&parent.model) {
            return Err(invalid(format!("input.{PARENT_FIELD}: {} acts on a task of {}; {} is {}", model.id, rule.of.join(", "), parent.id, parent.model)));
        }
        if parent.state != TaskState::Success || parent.kie_task_id.is_none() {
            return Err(invalid(format!("input.{PARENT_FIELD}: {} has not succeeded at KIE (it is {}); a follow-up acts on a result", parent.id, parent.state)));
        }
        if !still_at_kie(&parent, now_ms()) {
            return Err(invalid(format!(
                "input.{PARENT_FIELD}: {} ended more than {} days ago and KIE no longer keeps it; use its Library copy as the input of a new task instead",
                parent.id,
                PARENT_KEPT.as_secs() / 86_400
            )));
        }
        let n = result_named(rule, fields, &parent).map_err(invalid)?;
        fields.insert(PARENT_FIELD.into(), parent.id.clone().into());
        Ok(Some(Follows { task: parent.id, n }))
    }

    /// The KIE task id of the task `t` follows, for its `taskId` at send.
    pub(super) async fn parent_for_kie(&self, follows: &Follows) -> Result<String, super::inputs::InputTrouble> {
        use super::inputs::InputTrouble;
        let parent = self.0.store.task_get(&follows.task).await.map_err(|e| InputTrouble::Later(format!("input.{PARENT_FIELD}: {e}")))?;
        parent
            .and_then(|p| p.kie_task_id)
            .ok_or_else(|| InputTrouble::Never(format!("input.{PARENT_FIELD}: {} is no longer on record here, so KIE's id for it is unknown", follows.task)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_index_is_counted_as_kie_counts_it_and_bounded_by_what_the_parent_made() {
        let mut grid = TaskRecord::new("cr_grid", "ann", "p", "midjourney/text-to-image", 0);
        grid.result_urls = (0..4).map(|n| format!("https://kie.example/{n}.png")).collect();
        let vary = FollowUp { of: vec![grid.model.clone()], index: Some("imageIndex".into()), first: 1, action: "Vary".into() };
        let named = |v: Value| result_named(&vary, json!({ "imageIndex": v }).as_object().unwrap(), &grid);
        assert_eq!(named(json!(2)), Ok(Some(1)));
        assert_eq!(named(json!("4")), Ok(Some(3)));
        assert_eq!(named(json!(2.0)), Ok(Some(1)));
        for bad in [json!(0), json!(5), json!(-1), json!(1.5), json!("second")] {
            let e = named(bad.clone()).unwrap_err();
            assert!(e.contains("from 1 to 4"), "{bad}: {e}");
        }
        let whole_task = FollowUp { index: None, ..vary };
        assert_eq!(result_named(&whole_task, &serde_json::Map::new(), &grid), Ok(None));
    }
}
