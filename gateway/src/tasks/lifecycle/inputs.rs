//! Inputs from the Library ([`crate::library::inputs`]) through a task's life:
//!
//! - at submit ([`Lifecycle::admit_inputs`]), each Library link or reference in the input is
//!   rewritten to its reference form and checked: its task is one the caller may use (a
//!   project they reach, or a signed link), it succeeded and made that result, and the result
//!   can still be had (copied into the Library, or KIE's own URL still alive). A refusal
//!   names the field and writes nothing;
//! - at send ([`Lifecycle::input_for_kie`], before the rate guard is asked, so an upload holds
//!   no slot), each is replaced by a URL KIE can fetch: KIE's own result URL while it surely
//!   lives, else an upload of the Library's copy to KIE (reused while it surely lives, kept
//!   under `library:kie-upload:<task>/<n>` with that life as its TTL). The task's recorded
//!   input keeps the reference, so a retry or a re-run resolves it afresh; the story says
//!   which URL each input went as.
//!
//! An upload that fails for a while (KIE's upload host down, a timeout) holds the task back
//! with backoff like a refused `createTask`, until [`super::dispatch::MAX_SEND_ATTEMPTS`] or
//! the give-up time; an input that can no longer be had ends the task unsent, nothing charged.

use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

use super::Lifecycle;
use super::submit::{SubmitError, invalid};
use crate::library::asset::{Asset, AssetState};
use crate::library::inputs::{self, KIE_URL_TRUSTED, LibraryInput, UPLOAD_REUSED};
use crate::store::{StoreResult, now_ms};
use crate::tasks::task::{FailClass, HeldBack, TaskRecord, TaskState};
use crate::team::membership::Membership;

/// Why an input could not be made fetchable at send.
pub(super) enum InputTrouble {
    /// For now (KIE's upload host, the store, the Library's bucket): tried again later.
    Later(String),
    /// For good (the asset is gone): the task ends unsent.
    Never(String),
}

/// Where KIE can fetch a result from.
enum Fetchable<'a> {
    /// KIE's own result URL, still alive.
    Kie(&'a str),
    /// The Library's copy (to upload).
    Copy(&'a Asset),
}

/// Where KIE can fetch result `n` of `source` from now, if anywhere.
fn fetchable(source: &TaskRecord, n: usize, library: bool, now: u64) -> Option<Fetchable<'_>> {
    // A desk file never was KIE's: only its Library copy can be sent.
    let alive = source.kie_task_id.is_some() && source.finished_ms.is_some_and(|f| now.saturating_sub(f) < KIE_URL_TRUSTED.as_millis() as u64);
    if let Some(url) = source.result_urls.get(n).filter(|_| alive) {
        return Some(Fetchable::Kie(url));
    }
    let asset = source.archive.as_ref().and_then(|a| a.assets.get(n)).filter(|a| a.state == AssetState::Archived && library)?;
    Some(Fetchable::Copy(asset))
}

/// The store key of an upload's URL (see the module doc).
fn upload_key(task: &str, n: usize) -> String {
    format!("library:kie-upload:{task}/{n}")
}

impl Lifecycle {
    /// Gives the lifecycle the Library's copies to read inputs from (the Library does, when
    /// it is opened).
    pub(crate) fn attach_library(&self, objects: Arc<dyn object_store::ObjectStore>) {
        let _ = self.0.library_objects.set(objects);
    }

    /// Rewrites and checks the Library inputs of a submission's `input` (see the module
    /// doc). `sees`: the projects the caller reaches (`None`: `project` alone).
    pub(super) async fn admit_inputs(&self, input: &mut Value, sees: Option<&Membership>, project: &str) -> Result<Vec<LibraryInput>, SubmitError> {
        let Value::Object(fields) = input else { return Ok(Vec::new()) };
        let found = inputs::recognise(fields, self.0.opts.library_links.as_ref(), now_ms() / 1000).map_err(invalid)?;
        let library = self.0.library_objects.get().is_some();
        for i in &found {
            let usable = |t: &TaskRecord| i.signed || sees.map_or(t.project == project, |m| m.sees(&t.project));
            let Some(source) = self.0.store.task_get(&i.task).await?.filter(usable) else {
                return Err(invalid(format!("input.{}: there is no task {} in the Library that you can use", i.field, i.task)));
            };
            if source.state != TaskState::Success || i.n >= source.result_urls.len() {
                return Err(invalid(format!("input.{}: {} made no result {} (it is {}, with {} results; they count from 0)", i.field, i.task, i.n, source.state, source.result_urls.len())));
            }
            if fetchable(&source, i.n, library, now_ms()).is_none() {
                return Err(invalid(format!(
                    "input.{}: {} result {} is not in the Library (not copied yet, or deleted) and KIE's own copy may have lapsed; choose another",
                    i.field, i.task, i.n
                )));
            }
        }
        Ok(found)
    }

    /// The input to send KIE for `t`: its own, with each Library input replaced by a URL KIE
    /// can fetch and a follow-up's parent by KIE's id of it; and, for the story, how each went.
    pub(super) async fn input_for_kie(&self, t: &TaskRecord) -> Result<(Value, Vec<String>), InputTrouble> {
        let mut input = t.input.clone();
        let mut told = Vec::with_capacity(t.inputs.len() + 1);
        // A follow-up names its parent by the console's id: KIE knows it by its own.
        if let (Some(f), Value::Object(fields)) = (&t.follows, &mut input) {
            told.extend(self.follow_up_for_kie(t, f, fields).await?);
        }
        for i in &t.inputs {
            let later = |e: &dyn std::fmt::Display| InputTrouble::Later(format!("input.{}: {e}", i.field));
            let gone = || InputTrouble::Never(format!("input.{}: {} result {} is no longer in the Library and KIE's own copy may have lapsed", i.field, i.task, i.n));
            let source = self.0.store.task_get(&i.task).await.map_err(|e| later(&e))?.ok_or_else(gone)?;
            let (url, how) = match fetchable(&source, i.n, self.0.library_objects.get().is_some(), now_ms()) {
                Some(Fetchable::Kie(url)) => (url.to_string(), "KIE's own result URL"),
                Some(Fetchable::Copy(asset)) => self.uploaded(i, asset).await.map_err(|t| match t {
                    InputTrouble::Later(e) => later(&e),
                    InputTrouble::Never(e) => InputTrouble::Never(format!("input.{}: {e}", i.field)),
                })?,
                None if source.archive.as_ref().and_then(|a| a.assets.get(i.n)).is_some_and(|a| a.state == AssetState::Pending) => {
                    return Err(later(&"waiting for its copy in the Library"));
                }
                None => return Err(gone()),
            };
            inputs::put(&mut input, &i.field, &url);
            told.push(format!("input.{} ({} result {}) sent to KIE as {how}", i.field, i.task, i.n));
        }
        Ok((input, told))
    }

    /// The URL of the Library's copy of `i` on KIE's upload host: the upload made earlier
    /// while it surely lives, else a new one.
    async fn uploaded(&self, i: &LibraryInput, asset: &Asset) -> Result<(String, &'static str), InputTrouble> {
        let key = upload_key(&i.task, i.n);
        let later = |e: &dyn std::fmt::Display| InputTrouble::Later(e.to_string());
        if let Some(url) = self.0.store.kv_get(&key).await.map_err(|e| later(&e))? {
            return Ok((String::from_utf8_lossy(&url).into_owned(), "its upload to KIE, made earlier"));
        }
        let (Some(kie), Some(objects)) = (&self.0.kie, self.0.library_objects.get()) else {
            return Err(InputTrouble::Never("the Library is off on this console, so its copy cannot be sent".into()));
        };
        let got = match objects.get(&crate::library::asset_path(&i.task, i.n)).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Err(InputTrouble::Never("its copy is recorded but missing from the Library".into())),
            Err(e) => return Err(later(&format!("the Library could not be read: {e}"))),
        };
        let len = got.meta.size;
        let content_type = asset.content_type.as_deref().unwrap_or("application/octet-stream");
        let name = format!("{}-{}.{}", i.task, i.n, crate::library::sniff::extension(content_type));
        let body = reqwest::Body::wrap_stream(got.into_stream());
        let url = kie.upload_file(body, len, &name, content_type).await.map_err(|e| {
            if e.is_transient() { later(&format!("KIE's upload did not succeed: {e}")) } else { InputTrouble::Never(format!("KIE refused the upload of its copy: {e}")) }
        })?;
        // Not kept: the next send uploads again, which is harmless.
        if let Err(e) = self.0.store.kv_set(&key, url.as_bytes(), Some(UPLOAD_REUSED)).await {
            tracing::warn!(error = %e, task = %i.task, "cannot remember an upload to KIE");
        }
        Ok((url, "an upload of the Library's copy"))
    }

    /// A queued task whose inputs could not be made ready: held back with backoff (for now),
    /// or ended unsent with nothing charged (for good, or after trying as long as a send is
    /// tried).
    pub(super) async fn hold_for_inputs(&self, id: &str, trouble: InputTrouble) -> StoreResult<()> {
        let now = now_ms();
        let give_up = self.0.opts.give_up_after.as_millis() as u64;
        let mut ended = false;
        self.modify(id, |t| {
            if t.state != TaskState::Queued || t.dispatch.sending_since_ms.is_some() {
                return false;
            }
            t.dispatch.attempts += 1;
            let tried_enough = t.dispatch.attempts >= super::dispatch::MAX_SEND_ATTEMPTS || now.saturating_sub(t.created_ms) > give_up;
            match &trouble {
                InputTrouble::Later(why) if !tried_enough => {
                    let wait = super::backoff(Duration::from_secs(2), t.dispatch.attempts, Duration::from_secs(60));
                    t.dispatch.next_attempt_ms = now + wait.as_millis() as u64;
                    t.dispatch.held_back = Some(HeldBack::UpstreamError);
                    t.note = Some(format!("Its input is not ready for KIE yet ({why}); retry {} in {:.0} s", t.dispatch.attempts + 1, wait.as_secs_f64().ceil()));
                }
                InputTrouble::Later(why) | InputTrouble::Never(why) => {
                    t.end_unsent(&format!("not sent: {why}"), now);
                    t.fail_class = Some(FailClass::Policy);
                    t.fail_code = Some("422".into());
                    ended = true;
                }
            }
            true
        })
        .await?;
        if ended {
            self.release_holds(id, crate::Credits::ZERO).await?;
        }
        Ok(())
    }
}
