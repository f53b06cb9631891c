//! Language models: KIE's chat completions (`POST /<model>/v1/chat/completions`), called
//! synchronously, plain or streamed. They are not tasks, but each call is held to the same
//! money and limits and recorded like one, so it shows in the Task Monitor (kind "chat"), the
//! receipts and the metrics.
//!
//! - [`call`] — a call's life: admit (catalog, size, estimate, the rate guard's chat rules with
//!   a bounded wait, the cost rules, a write-ahead record), then end it at what it really used.
//! - [`draft`] — the composer's drafts: a call kept for a minute under a one-time token, taken
//!   once by the person who started it.
//! - [`limit`] — the answer's limit, decided here and sent, so a call can never cost more than
//!   it holds (the fields read, the ones refused, clamping under a per-job cap).
//! - [`usage`] — the tokens an answer reports (`usage`, the last chunk when streamed), or this
//!   console's estimate when it reports none.

pub(crate) mod call;
pub(crate) mod draft;
pub(crate) mod limit;
pub mod usage;

pub use call::{ChatEnd, ChatError, ChatOutcome, ChatPlan, ChatRequest, ChatTicket, EndsInFlight};
pub use limit::{UNPRICED, refused_in};
pub use usage::{StreamScan, estimate_prompt_tokens};
