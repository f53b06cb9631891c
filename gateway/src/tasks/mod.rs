//! Tasks: the record, its life from submission to a result (the lifecycle and the rate
//! guard it keeps to), its live events, and its KIE-shaped form for the relay.

pub mod events;
pub mod lifecycle;
pub mod rate_guard;
pub mod relay;
pub mod task;
