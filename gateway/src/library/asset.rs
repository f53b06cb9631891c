//! What a task's record says of its results' copies: the archive plan made when the task
//! succeeds, one [`Asset`] per result URL, each moving `pending` → `archived` (or `expired`,
//! `failed`, `deleted`). Plain data, no I/O; the archiver changes it through
//! `Lifecycle::modify`, so every change is a compare-and-set on the record and a live event.

use serde::{Deserialize, Serialize};

/// Most result URLs of one task that are archived (KIE answers a handful).
pub const MAX_ASSETS_PER_TASK: usize = 32;

/// The archive plan of a task that succeeded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Archive {
    /// By when the copy must exist: KIE's retention minus the buffer, from the task's end.
    pub deadline_ms: u64,
    /// When KIE deletes the originals (retention from the task's end): after this a missing
    /// copy cannot be had any more.
    pub lapses_ms: u64,
    pub assets: Vec<Asset>,
    /// Rounds that left an asset pending (for the backoff).
    pub attempts: u32,
    /// Not before this time (backoff after a failed round).
    pub next_attempt_ms: u64,
}

/// Where one result stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetState {
    /// Still to copy.
    Pending,
    /// In the Library: byte-identical to what KIE served, checked by size and SHA-256.
    Archived,
    /// KIE no longer has it (its link lapsed and `download-url` could not renew it, or its
    /// retention ran out first): the task shows **Result expired**.
    Expired,
    /// Refused for good (its URL breaks the download policy, or it is too large).
    Failed,
    /// Deleted from the Library by an admin (audited).
    Deleted,
}

impl AssetState {
    pub fn as_str(self) -> &'static str {
        match self {
            AssetState::Pending => "pending",
            AssetState::Archived => "archived",
            AssetState::Expired => "expired",
            AssetState::Failed => "failed",
            AssetState::Deleted => "deleted",
        }
    }
}

/// One result of a task and its Library copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asset {
    /// KIE's URL, as KIE gave it.
    pub source: String,
    pub state: AssetState,
    /// Lowercase hex SHA-256 of the bytes, once archived (also the `ETag`).
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub bytes: Option<u64>,
    /// Sniffed from the bytes, never taken from the source's header.
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub archived_ms: Option<u64>,
    /// Downloads tried.
    #[serde(default)]
    pub attempts: u32,
    /// Why the last try did not archive it, in words (shown in panel 07).
    #[serde(default)]
    pub last_error: Option<String>,
    /// The source lapsed and KIE's `download-url` was asked for a fresh link (once).
    #[serde(default)]
    pub renewed: bool,
    /// A file from the desk on its way in: how much of it has arrived (written about once a
    /// second while the upload runs; gone once the asset leaves `pending`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arriving: Option<Arrival>,
}

/// How much of a desk file has arrived, as the request copying it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arrival {
    /// The file's bytes received so far.
    pub received: u64,
    /// The upload's length as its request announced it (the form around the file included),
    /// when it did.
    pub expected: Option<u64>,
    /// When `received` was counted (Unix ms): one long past is an upload that stopped (its
    /// sender's line, or an instance that went down mid-copy: the archiver ends the asset
    /// `failed` an hour after it began).
    #[serde(default)]
    pub at_ms: u64,
}

impl Arrival {
    /// No bytes have come for this long: the upload is shown as stalled.
    pub const STALLED_MS: u64 = 60_000;

    /// Whether no bytes have come for [`Arrival::STALLED_MS`] as of `now_ms`.
    pub fn stalled(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.at_ms) > Self::STALLED_MS
    }
}

impl Asset {
    pub fn pending(source: &str) -> Asset {
        Asset {
            source: source.to_string(),
            state: AssetState::Pending,
            sha256: None,
            bytes: None,
            content_type: None,
            archived_ms: None,
            attempts: 0,
            last_error: None,
            renewed: false,
            arriving: None,
        }
    }
}

impl Archive {
    /// The plan for results that became known at `finished_ms`.
    pub fn plan(result_urls: &[String], finished_ms: u64, terms: &Terms) -> Archive {
        let lapses_ms = finished_ms.saturating_add(terms.retention_ms);
        Archive {
            deadline_ms: lapses_ms.saturating_sub(terms.buffer_ms),
            lapses_ms,
            assets: result_urls.iter().take(MAX_ASSETS_PER_TASK).map(|u| Asset::pending(u)).collect(),
            attempts: 0,
            next_attempt_ms: 0,
        }
    }

    /// How much of a file from the desk has arrived, while it is still on its way in.
    pub fn arriving(&self) -> Option<Arrival> {
        self.assets.iter().find_map(|x| x.arriving.filter(|_| x.state == AssetState::Pending))
    }

    /// Some result is still to copy.
    pub fn pending(&self) -> bool {
        self.assets.iter().any(|a| a.state == AssetState::Pending)
    }

    /// Some result is in the Library.
    pub fn holds_any(&self) -> bool {
        self.assets.iter().any(|a| a.state == AssetState::Archived)
    }

    /// Every result is in the Library (the relay then answers Library links).
    pub fn complete(&self) -> bool {
        !self.assets.is_empty() && self.assets.iter().all(|a| a.state == AssetState::Archived)
    }

    /// Some result can no longer be had: the task shows Result expired.
    pub fn lost(&self) -> bool {
        self.assets.iter().any(|a| a.state == AssetState::Expired)
    }
}

/// How long KIE keeps results and how early the copy must exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    /// `RETENTION_DAYS` (14): KIE deletes results this long after the task ends.
    pub retention_ms: u64,
    /// `RETENTION_BUFFER_DAYS` (2): the copy must exist this long before KIE deletes.
    pub buffer_ms: u64,
}

impl Default for Terms {
    fn default() -> Self {
        const DAY: u64 = 24 * 3600 * 1000;
        Terms { retention_ms: 14 * DAY, buffer_ms: 2 * DAY }
    }
}
