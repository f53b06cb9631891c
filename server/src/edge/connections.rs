//! Serving connections. Each accepted connection speaks HTTP/1.1 (HTTP/2 ends at the reverse
//! proxy in front, which the README's examples set up), under three bounds:
//!
//! - **A cap on open connections** ([`ConnectionLimits::max`], `MAX_CONNECTIONS`). At the cap
//!   the server stops accepting until one closes; new clients wait in the kernel's backlog.
//!   The default comes from the open-file limit, raised to its hard limit at start
//!   ([`raise_file_limit`]): half of it, leaving the rest for Redis, KIE and the Library.
//! - **A deadline for a request's head** ([`ConnectionLimits::head`]). A client that has not
//!   sent a whole request line and headers this long after the server began waiting for them
//!   is disconnected. The same timer runs while a keep-alive connection is idle between
//!   requests, so idle connections close after it too. Until this, 1,500 half-sent requests
//!   were held for as long as their senders liked (slowloris).
//! - **A bound on a request's head**: more than [`MAX_HEAD_BYTES`] of headers is answered
//!   431 before anything else reads it.
//!
//! On shutdown the listener closes at once, open connections finish the request they are in,
//! and whatever is still open after the grace period is dropped.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Most bytes of a request line and headers (more: 431).
pub const MAX_HEAD_BYTES: usize = 64 << 10;
/// How long a client has to send a request's head, and how long a keep-alive connection may
/// sit idle.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(10);
/// Fewest and most connections the default allows, whatever the file limit.
const DEFAULT_RANGE: (u64, u64) = (64, 65_536);

/// The bounds one server runs under.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Most connections open at once.
    pub max: usize,
    /// See [`HEAD_DEADLINE`].
    pub head: Duration,
    /// How long open connections may take to finish once shutdown has begun.
    pub grace: Duration,
}

impl ConnectionLimits {
    /// `max` connections (0: the default for this process's file limit).
    pub fn new(max: u32, grace: Duration) -> ConnectionLimits {
        let max = if max == 0 {
            default_max(raise_file_limit())
        } else {
            max as usize
        };
        ConnectionLimits {
            max,
            head: HEAD_DEADLINE,
            grace,
        }
    }
}

/// Half the open-file limit, within [`DEFAULT_RANGE`].
pub fn default_max(file_limit: u64) -> usize {
    (file_limit / 2).clamp(DEFAULT_RANGE.0, DEFAULT_RANGE.1) as usize
}

/// Raises this process's open-file limit to its hard limit and returns the limit in force.
pub fn raise_file_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    lim.rlim_cur
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets open connections finish
/// within the grace period.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.head)
        .max_header_size(MAX_HEAD_BYTES);
    tokio::pin!(shutdown);
    loop {
        // At the cap, wait for a connection to close before accepting the next.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(req.map(axum::body::Body::new))
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // A client that goes away or breaks the protocol is its own business.
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.grace) => tracing::warn!(grace = ?limits.grace, "connections still open after the shutdown grace; closing them"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_is_half_the_file_limit_within_bounds() {
        assert_eq!(default_max(1024), 512);
        assert_eq!(default_max(100), 64);
        assert_eq!(default_max(1 << 20), 65_536);
    }
}
