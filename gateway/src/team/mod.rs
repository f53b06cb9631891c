//! The team: people and their roles, browser sessions, relay keys for programs, pinned
//! models, and the audit log of who changed what.
//!
//! - [`accounts`] — the people: roles, passwords, the one users document.
//! - [`actor`] — who does something ([`actor::Actor`]), what their role allows, how logs
//!   name them.
//! - [`sessions`] — browser sign-in, throttled per account and address.
//! - [`second_factor`] — two-step sign-in for password accounts (TOTP, recovery codes).
//! - [`single_sign_on`] — who an identity provider's person may be here (domains, groups,
//!   role) and their session, the account made on first sign-in.
//! - [`membership`] — the projects a person is limited to ([`membership::Membership`]), the one
//!   check every read makes.
//! - [`relay_keys`] — keys for programs, each bound to one project.
//! - [`share_links`] — read-only links to one project's Library for people without an account.
//! - [`pins`] — models pinned for the team.
//! - [`audit`] — the append-only log of who changed what.

pub mod accounts;
pub(crate) mod actor;
pub mod audit;
pub mod membership;
pub mod pins;
pub mod relay_keys;
pub mod second_factor;
pub mod sessions;
pub mod share_links;
pub mod single_sign_on;
pub mod upload_allowance;
