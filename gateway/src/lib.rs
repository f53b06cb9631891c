//! The KIE Control Room's gateway core. It knows nothing of HTTP or Leptos: the server and the
//! app reach it through plain Rust calls, so it is tested and benchmarked without a socket.
//!
//! Map of the crate, by domain:
//! - [`tasks`] — what a task is and its whole life:
//!   - [`tasks::task`] — [`TaskRecord`], [`TaskState`], listing queries and pages;
//!   - [`tasks::lifecycle`] — [`Lifecycle`]: submit, dispatcher, callbacks, fallback poller,
//!     relay callbacks, KIE's limits, the queue's order, places and deadlines, the Error
//!     Review's resolutions, the bulk actions' runner, a batch admitted whole; the one idempotent
//!     `apply_upstream_state`; each worker's own state in its own file;
//!   - [`tasks::rate_guard`] — the rate guard's limit kinds (requests per window, concurrent
//!     tasks, tokens per window) as configuration;
//!   - [`tasks::fair_share`], [`tasks::pause`] and [`tasks::bulk`] — how operators run the
//!     queue: a project's weight and quota, pauses on intake (team or project), and bulk
//!     cancels and retries (previewed, then run as a resumable job), each audited;
//!   - [`tasks::batch`] — a batch: its rows (prompts or a CSV) × variants, the list of
//!     batches, its progress counted from its indexes;
//!   - [`tasks::typical`] — how long each model typically takes at KIE;
//!   - [`tasks::facets`] — a filter's tasks counted by state from the store's indexes;
//!   - [`tasks::story`] — a task's story: each step, told on its record in the same write;
//!   - [`tasks::events`] — live task events through the store, numbered and replayable;
//!   - [`tasks::relay`] — a task written in KIE's JSON shape, for the relay API and its callbacks.
//! - [`money`] — what things cost and who may spend it:
//!   - [`money::credits`] — [`Credits`], KIE's unit of money held exactly (milli-credits), and USD;
//!   - [`money::catalog`] — the models the Control Room accepts, their inputs and price rules;
//!   - [`money::budget`] — cost rules: per job, per rolling day and in total, for the team, a
//!     project or a person; reservations at submit, settlement when a task ends, alerts.
//! - [`team`] — who is asking:
//!   - [`team::accounts`] — people, roles (viewer < producer < admin), argon2 passwords,
//!     [`team::accounts::Actor`];
//!   - [`team::sessions`] — browser sessions in the store: idle and absolute expiry, sign-in
//!     with attempt limits, sign out everywhere;
//!   - [`team::audit`] — the append-only audit log: who changed what, when, from where;
//!   - [`team::relay_keys`] — the keys programs use on the relay API (stored hashed);
//!   - [`team::pins`] — each person's pinned models.
//! - [`chat`] — language models: chat completions admitted under the cost rules and the rate
//!   guard's chat limits, counted from KIE's `usage` (or an estimate), recorded like tasks.
//! - [`library`] — the results' copies before KIE deletes them: the archive plan on each
//!   task, the archiver (by lease, deadline first, through the outbound policy), signed
//!   links, content sniffing; kept in an `object_store` (a folder or an S3 bucket).
//! - [`store`] — the [`Store`] trait (tasks, key/value, counters, reservations, append-only
//!   logs, leases, publish/subscribe) and its two backends, [`RedisStore`] and [`EmbeddedStore`];
//!   the store's epoch, which tells a wiped store from a new one; `store::watched`, caches every
//!   instance drops at once on an announced change; `store::metered`, a store that times itself.
//! - [`kie`] — the KIE client: wire types, typed errors, callback signatures, one adapter per
//!   API family.
//! - [`outbound`] — the one vetted client for every request a user or a setting can aim
//!   (relay callbacks, webhooks): public addresses only (`OUTBOUND_ALLOW` for exceptions),
//!   pinned to the vetted address, no redirects, bounded.
//! - [`metrics`] — what Prometheus reads: per-instance counters and histograms, shared gauges.
//! - [`secret`] — [`Secret`], a string that never prints; `random_hex` for ids, tokens, keys.
//!
//! See `docs/architecture.md` for the data flow of a task and where a change goes.

pub mod chat;
pub mod kie;
pub mod library;
pub mod metrics;
pub mod money;
pub mod outbound;
pub mod secret;
pub mod store;
pub mod tasks;
pub mod team;

pub use money::credits::Credits;
pub use secret::Secret;
pub use store::{EmbeddedStore, RedisStore, Store, StoreError, StoreResult};
pub use tasks::lifecycle::{Lifecycle, LifecycleOptions};
pub use tasks::task::{TaskRecord, TaskState};
