//! The team: people and their roles, browser sessions, relay keys for programs, pinned
//! models, and the audit log of who changed what.

pub mod accounts;
pub mod audit;
pub mod pins;
pub mod relay_keys;
pub mod sessions;
