//! The KIE Control Room's gateway core. It knows nothing of HTTP or Leptos: the server and the
//! app reach it through plain Rust calls, so it is tested and benchmarked without a socket.
//!
//! Map of the crate:
//! - [`credits`] — [`Credits`], KIE's unit of money held exactly (milli-credits), and USD.
//! - [`task`] — [`TaskRecord`], [`TaskState`], listing queries and pages: what a task is.
//! - [`secret`] — [`Secret`], a string that never prints.
//! - [`kie`] — the KIE client: wire types, typed errors, callback signatures, one adapter per
//!   API family.
//! - [`store`] — the [`Store`] trait (tasks, key/value, counters, reservations, leases,
//!   publish/subscribe) and its two backends, [`RedisStore`] and [`EmbeddedStore`].
//!
//! Later layers (the KIE client, guards, the task lifecycle, workers) live here too, one job
//! per file; see `docs/architecture.md`.

pub mod credits;
pub mod kie;
pub mod secret;
pub mod store;
pub mod task;

pub use credits::Credits;
pub use secret::Secret;
pub use store::{EmbeddedStore, RedisStore, Store, StoreError, StoreResult};
pub use task::{TaskRecord, TaskState};
