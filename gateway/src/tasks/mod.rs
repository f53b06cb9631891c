//! Tasks: the record, its life from submission to a result (the lifecycle and the rate
//! guard it keeps to and the fair shares it is sent in), its live events, and its KIE-shaped
//! form for the relay; the pauses operators set on intake and their bulk actions; batches; its
//! story, step by step; how long each model typically takes; its counts by state for a filter;
//! a Suno track's timestamped [`lyrics`]; and [`visible`], the one door every read on
//! someone's behalf goes through (their projects).

pub mod batch;
pub mod bulk;
pub mod events;
pub mod facets;
pub mod fair_share;
pub mod lifecycle;
pub mod lyrics;
pub mod pause;
pub mod rate_guard;
pub mod relay;
pub mod story;
pub mod task;
pub mod typical;
pub mod visible;

/// Why a change to how the queue runs (a project's fair share, a pause) was refused; nothing
/// was changed.
#[derive(Debug, thiserror::Error)]
pub enum QueueSettingError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Store(#[from] crate::StoreError),
}
