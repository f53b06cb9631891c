//! Follow-ups through a task's life: a model that acts on a result of an earlier task
//! (Midjourney's upscale of one image of a grid, Suno's extension of one track; see
//! [`crate::money::catalog::FollowUp`]).
//!
//! - at submit ([`Lifecycle::admit_follow_up`]), the input must name a task the caller may use
//!   — by its `taskId` (the console's id or KIE's), or by one of its tracks as this console's
//!   record-info names it (`<task>-<n>`) — of a model the follow-up acts on, that succeeded at
//!   KIE recently enough for KIE to still have it; its index field (or the track) must name
//!   one of that task's results, counted as KIE counts them; a follow-up KIE requires be of
//!   the parent's model is given that model. The input keeps the console's ids and the task
//!   records its parent ([`Follows`]). A refusal names the field and writes nothing;
//! - at send ([`Lifecycle::follow_up_for_kie`]), `taskId` becomes the parent's KIE task id and
//!   a track KIE's id of that track.

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

/// The task and result a track field names, as this console's record-info writes a track's
/// id (`<task>-<n>`).
pub fn track_named<'a>(field: &str, v: Option<&'a Value>) -> Result<(&'a str, usize), String> {
    let rule = format!("input.{field} must name a track as this console's record-info gives it (<task id>-<n>)");
    let v = v.and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty() && s.len() <= 140).ok_or_else(|| rule.clone())?;
    let (task, n) = v.rsplit_once('-').ok_or_else(|| format!("{rule}; {v} is not one"))?;
    let n = n.parse::<usize>().map_err(|_| format!("{rule}; {v} is not one"))?;
    Ok((task, n))
}

impl Lifecycle {
    /// Checks a follow-up's parent (see the module doc) and writes its console id into the
    /// input. `sees`: the projects the caller reaches (`None`: `project` alone).
    pub(super) async fn admit_follow_up(&self, model: &Model, input: &mut Value, sees: Option<&Membership>, project: &str) -> Result<Option<Follows>, SubmitError> {
        let (Some(rule), Value::Object(fields)) = (&model.follows, input) else { return Ok(None) };
        let field = rule.parent_field().to_string();
        let given_task = fields.get(PARENT_FIELD).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty() && s.len() <= 128).map(str::to_string);
        // By its track (which names the task too), or by its id.
        let (named, track) = match &rule.track {
            Some(tf) => track_named(tf, fields.get(tf)).map(|(task, n)| (task.to_string(), Some(n))).map_err(invalid)?,
            None => (given_task.clone().ok_or_else(|| invalid(format!("{} acts on an earlier task: input.{PARENT_FIELD} must name it (its id)", model.id)))?, None),
        };
        let usable = |t: &TaskRecord| sees.map_or(t.project == project, |m| m.sees(&t.project));
        let Some(parent) = self.find(&named).await?.filter(usable) else {
            return Err(invalid(format!("input.{field}: there is no task {named} that you can use")));
        };
        if let (Some(_), Some(also)) = (&rule.track, &given_task) {
            let same = self.find(also).await?.is_some_and(|t| t.id == parent.id);
            if !same {
                return Err(invalid(format!("input.{PARENT_FIELD} ({also}) is not the task input.{field} names ({})", parent.id)));
            }
        }
        if !rule.of.contains(&parent.model) {
            return Err(invalid(format!("input.{field}: {} acts on a task of {}; {} is {}", model.id, rule.of.join(", "), parent.id, parent.model)));
        }
        if parent.state != TaskState::Success || parent.kie_task_id.is_none() {
            return Err(invalid(format!("input.{field}: {} has not succeeded at KIE (it is {}); a follow-up acts on a result", parent.id, parent.state)));
        }
        if !still_at_kie(&parent, now_ms()) {
            return Err(invalid(format!(
                "input.{field}: {} ended more than {} days ago and KIE no longer keeps it; use its Library copy as the input of a new task instead",
                parent.id,
                PARENT_KEPT.as_secs() / 86_400
            )));
        }
        let n = match track {
            Some(n) if n >= parent.result_urls.len() => {
                return Err(invalid(format!("input.{field}: {} made {} tracks, counted from 0; there is no track {n}", parent.id, parent.result_urls.len())));
            }
            Some(n) if parent.kie_result_ids.get(n).is_none_or(String::is_empty) => {
                return Err(invalid(format!("input.{field}: KIE's id of {} track {n} is not on record here, so KIE cannot be told which track; use its Library copy as an input instead", parent.id)));
            }
            Some(n) => Some(n),
            None => result_named(rule, fields, &parent).map_err(invalid)?,
        };
        if let Some(mf) = &rule.parent_model {
            // What the parent was made with: its own field (an extension's, a cover's), else
            // its model's name at KIE.
            let upstream = match parent.input.get(mf) {
                Some(Value::String(m)) => m.clone(),
                _ => self.0.catalog.get(&parent.model).map_or_else(|| parent.model.clone(), |m| m.upstream_name().to_string()),
            };
            match fields.get(mf) {
                None | Some(Value::Null) => {}
                Some(Value::String(m)) if *m == upstream => {}
                Some(other) => return Err(invalid(format!("input.{mf} must be {upstream}, the model {} was made with ({other} was given)", parent.id))),
            }
            fields.insert(mf.clone(), upstream.into());
        }
        if rule.track.is_none() || given_task.is_some() {
            fields.insert(PARENT_FIELD.into(), parent.id.clone().into());
        }
        Ok(Some(Follows { task: parent.id, n }))
    }

    /// A follow-up's input as KIE takes it: the parent's `taskId` and, for a follow-up that
    /// names a track, the track, both by KIE's own ids. Returns what was replaced, for the
    /// task's story.
    pub(super) async fn follow_up_for_kie(&self, t: &TaskRecord, follows: &Follows, fields: &mut serde_json::Map<String, Value>) -> Result<Vec<String>, super::inputs::InputTrouble> {
        use super::inputs::InputTrouble;
        let parent = self.0.store.task_get(&follows.task).await.map_err(|e| InputTrouble::Later(format!("input.{PARENT_FIELD}: {e}")))?;
        let gone = || InputTrouble::Never(format!("input.{PARENT_FIELD}: {} is no longer on record here, so KIE's id for it is unknown", follows.task));
        let parent = parent.ok_or_else(gone)?;
        let kie_id = parent.kie_task_id.clone().ok_or_else(gone)?;
        let mut told = Vec::new();
        if fields.contains_key(PARENT_FIELD) {
            told.push(format!("input.{PARENT_FIELD} ({}) sent to KIE as its id there, {kie_id}", follows.task));
            fields.insert(PARENT_FIELD.into(), kie_id.into());
        }
        let track = self.0.catalog.get(&t.model).and_then(|m| m.follows.as_ref()).and_then(|r| r.track.clone());
        if let (Some(tf), Some(n)) = (track, follows.n) {
            let id = parent.kie_result_ids.get(n).filter(|id| !id.is_empty()).ok_or_else(|| InputTrouble::Never(format!("input.{tf}: KIE's id of {} track {n} is not on record here", follows.task)))?;
            told.push(format!("input.{tf} ({}-{n}) sent to KIE as its id there, {id}", follows.task));
            fields.insert(tf, id.clone().into());
        }
        Ok(told)
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
        let vary = FollowUp { of: vec![grid.model.clone()], index: Some("imageIndex".into()), first: 1, action: "Vary".into(), track: None, parent_model: None };
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
