//! The edge: what the console accepts from the network before any handler runs.
//!
//! - [`connections`] — serving HTTP/1.1 connections: a cap on open connections
//!   (`MAX_CONNECTIONS`), a deadline for a request's head that also closes idle keep-alive
//!   connections, and a graceful shutdown with a grace period.
//! - [`limits`] — per request: a body limit that fits the route, a deadline for a body and
//!   for an answer's head (live streams and the relay are exempt from the latter).
//! - [`client_address`] — who the client is behind a reverse proxy: `X-Forwarded-For` and
//!   `Forwarded` are believed only from `TRUSTED_PROXIES`.

pub mod client_address;
pub mod connections;
pub mod limits;
