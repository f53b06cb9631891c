//! The KIE client: everything that talks to KIE or reads what it sends.
//!
//! - [`wire`] — serde types of KIE's JSON, tolerant of every documented variant.
//! - [`error`] — [`KieError`], classified from the body code.
//! - [`client`] — [`KieClient`]: reqwest, timeouts, safe retries.
//! - [`family`] — one [`ApiFamily`] adapter per KIE API family: Market jobs, Veo, Suno,
//!   Runway, 4o Image, Flux Kontext ([`Family`] names them).
//! - [`signature`] — callback signature verification.

pub(crate) mod client;
pub(crate) mod error;
pub(crate) mod family;
pub mod signature;
pub mod wire;

pub use client::{ClientOptions, KieClient, Probe, UPLOAD_PATHS, uploaded_url};
pub use error::KieError;
pub use family::{ApiFamily, Call, Family, MarketJobs, UpstreamState, UpstreamStatus, Verb, WRITTEN_SOURCE, written_source};
