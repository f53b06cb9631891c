//! Panel 07, Retention: the Library and its copies.

use serde::{Deserialize, Serialize};

/// Panel 07: the retention guard's state, from the store's records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LibraryView {
    /// `None`: LIBRARY_URL=off.
    pub url: Option<String>,
    /// Why this instance cannot use its Library.
    pub problem: Option<String>,
    pub retention_days: u64,
    pub buffer_days: u64,
    pub assets: i64,
    pub bytes: i64,
    pub quota_bytes: Option<u64>,
    pub pending_tasks: usize,
    pub pending_assets: usize,
    pub overdue: usize,
    pub nearest_deadline_ms: Option<u64>,
    pub lost_tasks: usize,
    pub failing: usize,
    pub last_error: Option<String>,
    /// The counts of pending and lost tasks are lower bounds (bounded scans).
    pub capped: bool,
    /// The server's clock when this was read (for "in 11 d").
    pub now_ms: u64,
    /// Files from desks on their way in, of projects the reader sees.
    #[serde(default)]
    pub arriving: Vec<ArrivingFile>,
}

/// A file from a desk on its way into the Library.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArrivingFile {
    pub task_id: String,
    pub file: String,
    pub project: String,
    pub by: String,
    /// [`arriving`]'s words.
    pub progress: String,
}

impl LibraryView {
    /// Share of the quota used, in whole percent.
    pub fn quota_percent(&self) -> Option<u64> {
        self.quota_bytes.filter(|q| *q > 0).map(|q| (self.bytes.max(0) as u64).saturating_mul(100) / q)
    }
}

/// What deleting a project's copies would delete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectCopies {
    pub project: String,
    pub files: usize,
    pub bytes: u64,
}

/// One Library copy, for the Library listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LibraryItem {
    pub task_id: String,
    pub index: usize,
    pub model: String,
    pub project: String,
    pub owner: String,
    pub content_type: String,
    pub bytes: u64,
    pub sha256: String,
    pub archived_ms: u64,
    /// For signed-in people (`/library/<task>/<n>`).
    pub path: String,
    /// A signed link that works with no other credential until it expires.
    pub link: String,
    pub link_expires_s: u64,
}

/// `1.4 MB`.
pub fn size(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} KB", bytes as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", bytes as f64 / 1e6),
        _ => format!("{:.2} GB", bytes as f64 / 1e9),
    }
}

/// A desk file's progress on its way in, in words, as of `now_ms`: `Arriving 12.0 MB of
/// 48.2 MB (24 %)`, or `Stalled at …` when no bytes have come for a minute.
#[cfg(feature = "ssr")]
pub fn arriving(a: &gateway::library::asset::Arrival, now_ms: u64) -> String {
    let how = if a.stalled(now_ms) { "Stalled at" } else { "Arriving" };
    match a.expected.filter(|&of| of > 0) {
        Some(of) => format!("{how} {} of {} ({} %)", size(a.received), size(of), (u128::from(a.received.min(of)) * 100 / u128::from(of))),
        None => format!("{how} {}", size(a.received)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_quota_is_a_whole_percent_only_when_there_is_one() {
        let view = |bytes: i64, quota: Option<u64>| LibraryView { bytes, quota_bytes: quota, ..Default::default() };
        assert_eq!(view(250, Some(1000)).quota_percent(), Some(25));
        assert_eq!(view(1999, Some(1000)).quota_percent(), Some(199), "over the quota says so");
        assert_eq!(view(-5, Some(1000)).quota_percent(), Some(0), "a negative count reads as empty");
        assert_eq!(view(5, Some(0)).quota_percent(), None, "a zero quota is no quota");
        assert_eq!(view(5, None).quota_percent(), None);
        assert_eq!(view(i64::MAX, Some(1)).quota_percent(), Some(u64::MAX), "no wrap-around");
    }

    #[cfg(feature = "ssr")]
    #[test]
    fn a_desk_file_on_its_way_in_says_how_much_has_arrived() {
        use gateway::library::asset::Arrival;
        let now = 1_800_000_000_000;
        let at = |received, expected| Arrival { received, expected, at_ms: now - 1000 };
        assert_eq!(arriving(&at(12_000_000, Some(48_200_000)), now), "Arriving 12.0 MB of 48.2 MB (24 %)");
        assert_eq!(arriving(&at(900, None), now), "Arriving 900 B", "no announced length: what has arrived");
        assert_eq!(arriving(&at(5, Some(0)), now), "Arriving 5 B");
        assert_eq!(arriving(&at(u64::MAX, Some(u64::MAX - 1)), now), format!("Arriving {} of {} (100 %)", size(u64::MAX), size(u64::MAX - 1)), "never over 100 %, no overflow");
        let a = at(12_000_000, Some(48_200_000));
        assert_eq!(arriving(&a, a.at_ms + Arrival::STALLED_MS), "Arriving 12.0 MB of 48.2 MB (24 %)", "a minute without bytes is still on its way");
        assert_eq!(arriving(&a, a.at_ms + Arrival::STALLED_MS + 1), "Stalled at 12.0 MB of 48.2 MB (24 %)", "longer is stalled");
        assert_eq!(arriving(&a, 0), "Arriving 12.0 MB of 48.2 MB (24 %)", "a clock behind the record's is no wrap-around");
    }
}

/// A share link as panel 07 lists it (never its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareLinkRow {
    pub id: String,
    pub project: String,
    pub created_by: String,
    /// `YYYY-MM-DD` (UTC) it ends.
    pub until: String,
    pub password: bool,
    pub receipts: bool,
    pub uses: i64,
    /// `live`, `revoked` or `expired`.
    pub state: String,
}

/// A share link just made: its address, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewShareLink {
    pub url: String,
    pub row: ShareLinkRow,
}
