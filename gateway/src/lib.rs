//! The KIE Control Room's gateway core. It knows nothing of HTTP or Leptos: the server and the
//! app reach it through plain Rust calls, so it is tested and benchmarked without a socket.
//!
//! Map of the crate:
//! - [`accounts`] — people, roles (viewer < producer < admin), argon2 passwords, [`accounts::Actor`].
//! - [`sessions`] — browser sessions in the store: idle and absolute expiry, sign-in with
//!   attempt limits, sign out everywhere.
//! - [`audit`] — the append-only audit log: who changed what, when, from where; search, CSV.
//! - [`credits`] — [`Credits`], KIE's unit of money held exactly (milli-credits), and USD.
//! - [`task`] — [`TaskRecord`], [`TaskState`], listing queries and pages: what a task is.
//! - [`secret`] — [`Secret`], a string that never prints; `random_hex` for ids, tokens, keys.
//! - [`kie`] — the KIE client: wire types, typed errors, callback signatures, one adapter per
//!   API family.
//! - [`outbound`] — the one vetted client for every request a user or a setting can aim
//!   (relay callbacks, webhooks): public addresses only (`OUTBOUND_ALLOW` for exceptions),
//!   pinned to the vetted address, no redirects, bounded.
//! - [`store`] — the [`Store`] trait (tasks, key/value, counters, reservations, append-only
//!   logs, leases, publish/subscribe) and its two backends, [`RedisStore`] and [`EmbeddedStore`];
//!   the store's epoch, which tells a wiped store from a new one; `store::watched`, caches every
//!   instance drops at once on an announced change; `store::metered`, a store that times itself.
//! - [`catalog`] — the models the Control Room accepts, their inputs and price rules.
//! - [`budget`] — cost rules: per job, per rolling day and in total, for the team, a project
//!   or a person; reservations at submit, settlement when a task ends, alerts.
//! - [`rate_guard`] — the rate guard's limit kinds (requests per window, concurrent tasks,
//!   tokens per window) as configuration.
//! - [`pins`] — each person's pinned models.
//! - [`lifecycle`] — [`Lifecycle`]: submit, dispatcher, callbacks, fallback poller, relay
//!   callbacks, KIE's limits; the one idempotent `apply_upstream_state`.
//! - [`events`] — live task events through the store, numbered and replayable.
//! - [`relay_keys`] — the keys programs use on the relay API (stored hashed).
//! - [`relay`] — a task written in KIE's JSON shape, for the relay API and its callbacks.
//! - [`metrics`] — what Prometheus reads: per-instance counters and histograms, shared gauges.
//!
//! See `docs/architecture.md` for the data flow of a task and where a change goes.

pub mod accounts;
pub mod audit;
pub mod budget;
pub mod catalog;
pub mod credits;
pub mod events;
pub mod kie;
pub mod lifecycle;
pub mod metrics;
pub mod outbound;
pub mod pins;
pub mod rate_guard;
pub mod relay;
pub mod relay_keys;
pub mod secret;
pub mod sessions;
pub mod store;
pub mod task;

pub use credits::Credits;
pub use secret::Secret;
pub use store::{EmbeddedStore, RedisStore, Store, StoreError, StoreResult};
pub use lifecycle::{Lifecycle, LifecycleOptions};
pub use task::{TaskRecord, TaskState};
