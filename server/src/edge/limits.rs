//! Per-request bounds, in one middleware ([`bound`]):
//!
//! - **Body size by route** ([`BODY_LIMITS`]): a body declared larger is answered 413 before
//!   it is read; one that turns out larger is cut off there and answered 413 by whatever
//!   reads it.
//! - **A deadline for the body** ([`BODY_DEADLINE`]): a body still unsent by then fails to
//!   read, the request is refused and its connection closed.
//! - **A deadline for the answer's head** ([`ANSWER_DEADLINE`]): a handler that has not
//!   answered by then is answered 503 (a store that hangs does not hold connections for
//!   ever). Live streams, the relay, the MCP server (a `wait` answers when its task ends) and the desk upload (its answer waits on the file) are exempt: their answers start at once or wait on KIE
//!   under the KIE client's own timeouts.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Duration;

use crate::error::{Refusal, Shape};

/// The largest body each route takes: the first prefix that matches decides.
pub const BODY_LIMITS: &[(&str, usize)] = &[
    // The relay's uploads: a file (`UPLOAD_MAX_MB` at most 2 GiB, base64 a third more); the
    // handler holds each to `UPLOAD_MAX_MB`.
    (UPLOADS[0], 3 << 30),
    // A file from the desk into the Library (held to `UPLOAD_MAX_MB` by its handler).
    (UPLOADS[1], 3 << 30),
    // The relay: KIE's JSON bodies, a chat call's messages.
    ("/kie/", 1 << 20),
    // The MCP server: a tool call's arguments (a model's input).
    ("/mcp", 1 << 20),
    // KIE's callbacks: a task's record with its result URLs.
    ("/callbacks/", 256 << 10),
    // Server functions: a prompt with its settings.
    ("/api/", 256 << 10),
    // Panel 06's forms: a batch's rows (a list of prompts or a CSV).
    ("/panel/throttle", 512 << 10),
    // Panels' forms, sign-in, everything else.
    ("", 64 << 10),
];
/// How long a client may take to send a request's body.
pub const BODY_DEADLINE: Duration = Duration::from_secs(30);
/// The routes whose bodies are files: the relay's upload calls, the Library's desk upload.
const UPLOADS: [&str; 2] = ["/kie/api/file-", "/library/upload"];
/// How long a client may take to send a file to an upload call.
pub const UPLOAD_DEADLINE: Duration = Duration::from_secs(15 * 60);
/// How long a handler may take to start its answer (see the module documentation).
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(60);

/// The body limit for `path`.
pub fn body_limit(path: &str) -> usize {
    BODY_LIMITS
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix))
        .map_or(64 << 10, |(_, limit)| *limit)
}

/// Routes whose answers may take longer than [`ANSWER_DEADLINE`] to start, or never end.
fn exempt_from_answer_deadline(path: &str) -> bool {
    path == "/events" || path.starts_with("/draft/") || path.starts_with("/kie/") || path == crate::mcp::PATH || path == UPLOADS[1]
}

/// The middleware: see the module documentation.
pub async fn bound(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let limit = body_limit(path);
    let exempt = exempt_from_answer_deadline(path);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        let msg = format!(
            "The request body is larger than this route takes ({} KiB).",
            limit >> 10
        );
        // The relay answers in KIE's envelope, as its clients expect.
        let shape = if path.starts_with("/kie/") { Shape::Kie } else { Shape::Plain };
        return Refusal::new(shape, StatusCode::PAYLOAD_TOO_LARGE, msg).into_response();
    }
    // A request with a body (declared, or chunked) reads it under the limit and the deadline;
    // one without (most GETs) costs no timer.
    let has_body = declared.is_some_and(|n| n > 0) || req.headers().contains_key(header::TRANSFER_ENCODING);
    let within = if UPLOADS.iter().any(|u| path.starts_with(u)) { UPLOAD_DEADLINE } else { BODY_DEADLINE };
    let req = if has_body { req.map(|body| Body::new(Deadline::new(http_body_util::Limited::new(body, limit), within))) } else { req };
    if exempt {
        return next.run(req).await;
    }
    match tokio::time::timeout(ANSWER_DEADLINE, next.run(req)).await {
        Ok(answer) => answer,
        Err(_) => {
            tracing::warn!(deadline = ?ANSWER_DEADLINE, "a request took too long to answer; answered 503");
            Refusal::plain(StatusCode::SERVICE_UNAVAILABLE, "This took too long to answer; try again shortly.").into_response()
        }
    }
}

/// A body that fails once its deadline passes.
struct Deadline<B> {
    inner: B,
    within: Duration,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl<B> Deadline<B> {
    fn new(inner: B, within: Duration) -> Self {
        Deadline {
            inner,
            within,
            sleep: Box::pin(tokio::time::sleep(within)),
        }
    }
}

/// The body's error once its deadline passed.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not sent within {0:?}")]
pub struct BodyTooSlow(Duration);

impl<B> http_body::Body for Deadline<B>
where
    B: http_body::Body + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = B::Data;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::future::Future;
        use std::task::Poll;
        match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTooSlow(self.within))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_has_the_body_limit_that_fits_it() {
        assert_eq!(body_limit("/kie/api/v1/jobs/createTask"), 1 << 20);
        assert_eq!(body_limit("/kie/api/file-stream-upload"), 3 << 30);
        assert_eq!(body_limit("/callbacks/kie/abc"), 256 << 10);
        assert_eq!(body_limit("/api/submit_task"), 256 << 10);
        assert_eq!(body_limit("/panel/budget"), 64 << 10);
        assert_eq!(body_limit("/panel/throttle"), 512 << 10, "a batch's rows");
        assert_eq!(body_limit("/auth/signin"), 64 << 10);
    }
}
