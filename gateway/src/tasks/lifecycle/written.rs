//! Written results ([`crate::kie::ApiFamily::writes_result`]: Suno's MIDI, notes KIE answers as
//! data): the archiver keeps each as a file in the Library, and the relay's answers and
//! callbacks carry what is read back from that copy. A console without a Library cannot keep
//! one, so it refuses such a task before anything is recorded.

use serde_json::Value;

use super::Lifecycle;
use super::submit::{SubmitError, invalid};
use crate::kie::Family;
use crate::library::asset::AssetState;
use crate::tasks::task::{TaskRecord, TaskState};

/// The largest written file read back (a MIDI file of the most notes kept is ~2 MB).
const MAX_READ: u64 = 8 << 20;

impl Lifecycle {
    /// Refuses a task of `family` when its result is written and there is no Library to keep it.
    pub(super) fn check_written(&self, family: Family, model: &str) -> Result<(), SubmitError> {
        if family.adapter().writes_result() && self.0.library_objects.get().is_none() {
            return Err(invalid(format!("{model}: KIE answers its result as data that this console keeps as a file in the Library, which is off here (set LIBRARY_URL)")));
        }
        Ok(())
    }

    /// A written result's content, read back from its Library copy: `None` for any other task,
    /// one whose file is not kept (yet), or a copy that cannot be read (logged).
    pub async fn written_content(&self, t: &TaskRecord) -> Option<Value> {
        let adapter = t.family.adapter();
        if !adapter.writes_result() || t.state != TaskState::Success {
            return None;
        }
        let asset = t.archive.as_ref()?.assets.first().filter(|a| a.state == AssetState::Archived)?;
        let objects = self.0.library_objects.get()?;
        if asset.bytes.is_none_or(|b| b > MAX_READ) {
            tracing::warn!(task = %t.id, "a written result's copy is larger than is read back");
            return None;
        }
        let read = async { objects.get(&crate::library::asset_path(&t.id, 0)).await?.bytes().await };
        let bytes = match read.await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(task = %t.id, error = %e, "a written result's copy cannot be read");
                return None;
            }
        };
        adapter.result_content(&bytes).inspect_err(|e| tracing::warn!(task = %t.id, error = %e, "a written result's copy cannot be read back")).ok()
    }
}
