//! Files from the desk: a producer adds an image, a video or an audio file to the Library
//! (panel 07), so the team keeps it and any task can take it as an input
//! ([`super::inputs`]: it reaches KIE as an upload of the Library's copy).
//!
//! A desk file is recorded like a task's result, on a record of its own (model
//! [`DESK_MODEL`], succeeded, nothing charged, no KIE task), so the Monitor, the Library,
//! signed links, share pages and retention treat it as any other asset. In order:
//!
//! 1. the record, its one asset *pending* and the archiver held off for an hour (the file is
//!    this request's to copy);
//! 2. the bytes, streamed into a temporary copy (capped, hashed, sniffed: an image, a video or
//!    an audio file, else refused), then counted against the quota and renamed, as the
//!    archiver commits a download; meanwhile, about once a second, how much has arrived is
//!    written on the asset ([`super::asset::Arrival`]: a live event, so every console shows
//!    the upload's progress on its row);
//! 3. the record says `archived`.
//!
//! A refusal (too large, not media, the Library full) deletes the record it wrote. A crash
//! between the steps leaves a pending asset the archiver ends `failed` an hour later ("the
//! upload from the desk did not finish"), and the temporary file is swept.

use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::archiver::{Fetch, Outcome};
use super::asset::{Archive, Arrival, AssetState};
use super::Library;
use crate::store::{CreateWith, Created, StoreError, now_ms};
use crate::tasks::task::{TaskRecord, TaskState};
use crate::team::accounts::{Actor, Role};

/// The model a desk file's record names.
pub const DESK_MODEL: &str = "library/desk-upload";
/// A desk file's source, as its asset records it until it is copied: `desk:<file name>`.
pub const DESK_SOURCE: &str = "desk:";
/// How long the archiver leaves a desk file's pending asset to the request copying it.
const HELD_OFF_MS: u64 = 3600 * 1000;
/// How often the progress of a file on its way in is written (each write is a live event).
pub const ARRIVAL_EVERY: Duration = Duration::from_secs(1);

/// Why a desk file was not kept. Nothing of it stays.
#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    NotMedia(String),
    #[error("{0}")]
    Full(String),
    #[error("the Library could not keep the file: {0}")]
    Unavailable(String),
}

impl DeskError {
    /// The HTTP status that fits.
    pub fn code(&self) -> u16 {
        match self {
            DeskError::Forbidden(_) => 403,
            DeskError::Invalid(_) => 422,
            DeskError::TooLarge(_) => 413,
            DeskError::NotMedia(_) => 415,
            DeskError::Full(_) => 507,
            DeskError::Unavailable(_) => 503,
        }
    }
}

impl From<StoreError> for DeskError {
    fn from(e: StoreError) -> Self {
        DeskError::Unavailable(e.to_string())
    }
}

impl Library {
    /// Keeps a file from `by`'s desk in `project`'s Library: `chunks` are its bytes, at most
    /// `max` of them; `expected` is the upload's announced length, if any (its progress is
    /// shown against it). Returns its record (its asset is `control-room://library/<id>/0`).
    pub async fn keep_from_desk(
        &self,
        by: &Actor,
        project: &str,
        file_name: &str,
        chunks: impl futures::Stream<Item = Result<Bytes, String>>,
        max: u64,
        expected: Option<u64>,
    ) -> Result<TaskRecord, DeskError> {
        by.require(Role::Producer).map_err(|e| DeskError::Forbidden(e.to_string()))?;
        crate::tasks::lifecycle::submit::check_project(project).map_err(|e| DeskError::Invalid(e.to_string()))?;
        by.membership.admit(project).map_err(DeskError::Forbidden)?;
        let name: String = file_name.rsplit(['/', '\\']).next().unwrap_or_default().chars().filter(|c| !c.is_control()).take(120).collect();
        let now = now_ms();
        let mut t = TaskRecord::new(format!("cr_{}", crate::secret::random_hex(10)), &by.who, project, DESK_MODEL, now);
        t.state = TaskState::Success;
        t.finished_ms = Some(now);
        t.actual_cost = Some(crate::Credits::ZERO);
        t.input = serde_json::json!({ "file": name });
        t.result_urls = vec![format!("{DESK_SOURCE}{name}")];
        let mut archive = Archive::plan(&t.result_urls, now, &self.0.lifecycle.options().archive.unwrap_or_default());
        archive.next_attempt_ms = now + HELD_OFF_MS;
        t.archive = Some(archive);
        let announce = crate::tasks::events::announcement(&t)?;
        match self.store().task_create(&t, &CreateWith { announce: Some(&announce), ..Default::default() }).await? {
            Created::Inserted(_) => {}
            other => return Err(DeskError::Unavailable(format!("the record could not be written ({other:?})"))),
        }
        let kept = self.copy_from_desk(&t, chunks, max, expected).await;
        match kept {
            Ok(outcome) => {
                let done = self.record(&t.id, 0, &outcome, false).await?.ok_or_else(|| DeskError::Unavailable("the record changed while the file was copied".into()))?;
                tracing::info!(task = %t.id, project, by = %by.log_id(), "a file from the desk is in the Library");
                Ok(done)
            }
            Err(e) => {
                // Nothing of it stays: the record goes (it was never shown as archived).
                if let Ok(Some(now)) = self.store().task_get(&t.id).await {
                    let _ = self.store().task_delete(&t.id, now.version).await;
                }
                Err(e)
            }
        }
    }

    /// Steps 2 of the module doc: the copy (its arrival written as it goes), counted and
    /// committed.
    async fn copy_from_desk(&self, t: &TaskRecord, chunks: impl futures::Stream<Item = Result<Bytes, String>>, max: u64, expected: Option<u64>) -> Result<Outcome, DeskError> {
        let id = t.id.as_str();
        let too_large = || Fetch::Refused(format!("the file is larger than this console takes ({} MiB)", max >> 20));
        let received = AtomicU64::new(0);
        let counted = futures::StreamExt::inspect(chunks, |c| {
            if let Ok(b) = c {
                received.fetch_add(b.len() as u64, Ordering::Relaxed);
            }
        });
        let copied = tokio::select! {
            copied = self.write_temp(id, 0, counted, max, too_large) => copied,
            never = self.report_arrival(t, &received, expected) => match never {},
        };
        let copy = match copied {
            Ok(c) => c,
            Err(Fetch::Refused(why)) => return Err(DeskError::TooLarge(why)),
            Err(Fetch::Transient(why)) if why.contains("empty body") => return Err(DeskError::Invalid("the file is empty".into())),
            Err(Fetch::Transient(why)) => return Err(DeskError::Unavailable(why)),
            Err(Fetch::Gone(status)) => return Err(DeskError::Unavailable(format!("HTTP {status}"))),
        };
        // A MIDI file is notes, not sound: no model takes it as an input.
        if !["image/", "video/", "audio/"].iter().any(|k| copy.content_type.starts_with(k)) || copy.content_type == "audio/midi" {
            let _ = object_store::ObjectStore::delete(self.0.objects.as_ref(), &copy.tmp).await;
            return Err(DeskError::NotMedia("the file is not an image, a video or an audio file this console knows (PNG, JPEG, GIF, WebP, MP4, MOV, WebM, MP3, WAV, M4A, Ogg, FLAC)".into()));
        }
        match self.commit(id, 0, copy).await {
            o @ Outcome::Archived { .. } => Ok(o),
            Outcome::Full(why) => Err(DeskError::Full(why)),
            Outcome::Retry(why) | Outcome::Failed(why) | Outcome::Expired(why) => Err(DeskError::Unavailable(why)),
        }
    }

    /// Writes how much of `t`'s file has arrived every [`ARRIVAL_EVERY`] while it moves, until
    /// the copy it runs beside ends (and drops it). Progress is for people to watch: a write
    /// that fails is logged and the copy goes on.
    async fn report_arrival(&self, t: &TaskRecord, received: &AtomicU64, expected: Option<u64>) -> std::convert::Infallible {
        let mut known = t.clone();
        let mut shown = 0;
        loop {
            tokio::time::sleep(ARRIVAL_EVERY).await;
            let count = received.load(Ordering::Relaxed);
            if count == shown {
                continue;
            }
            shown = count;
            let arrival = Arrival { received: count, expected, at_ms: now_ms() };
            let on_its_way = |t: &mut TaskRecord| {
                let Some(x) = t.archive.as_mut().and_then(|a| a.assets.first_mut()).filter(|x| x.state == AssetState::Pending) else { return false };
                x.arriving = Some(arrival);
                true
            };
            match self.0.lifecycle.modify_from(&known, &crate::store::UpdateWith::default(), on_its_way).await {
                Ok(Some(t)) => known = t,
                Ok(None) => {}
                Err(e) => tracing::warn!(task = %known.id, error = %e, "the progress of a file from the desk could not be written"),
            }
        }
    }
}
