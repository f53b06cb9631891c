//! One typed error for every outcome of a KIE call, classified from the **body** `code` (the
//! HTTP status may be 200 around an error). Messages carry KIE's `msg` and never the key.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KieError {
    /// 400: the request was malformed (e.g. `taskId parameter is required`).
    #[error("KIE refused the request as malformed: {0}")]
    BadRequest(String),
    /// 401: the key was rejected.
    #[error("the key was rejected by KIE (401): {0}")]
    Auth(String),
    /// 402: the account's balance is too low.
    #[error("insufficient KIE credits (402): {0}")]
    InsufficientCredits(String),
    /// 404: unknown model or task.
    #[error("not found at KIE (404): {0}")]
    NotFound(String),
    /// 422: input failed KIE's validation (or a non-KIE URL for download-url).
    #[error("KIE rejected the input (422): {0}")]
    Validation(String),
    /// 429: over 20 new requests per 10 s (or 10 recordInfo/s); rejected, not queued.
    #[error("rate limited by KIE (429): {0}")]
    RateLimited(String),
    /// 433: a sub-key's usage cap was reached.
    #[error("KIE sub-key limit reached (433): {0}")]
    SubKeyLimit(String),
    /// 455: KIE is in maintenance.
    #[error("KIE is in maintenance (455): {0}")]
    Maintenance(String),
    /// 500 and other unexpected codes: KIE's side failed.
    #[error("KIE upstream error ({code}): {msg}")]
    Upstream { code: i64, msg: String },
    /// 501: the generation failed.
    #[error("KIE generation failed (501): {0}")]
    GenerationFailed(String),
    /// 505: the feature is disabled.
    #[error("feature disabled at KIE (505): {0}")]
    FeatureDisabled(String),
    /// An HTTP 5xx without KIE's envelope: something in front of KIE failed, after the
    /// request may have reached KIE (a `createTask` is then in doubt, never resent).
    #[error("a gateway in front of KIE failed (HTTP {status}): {detail}")]
    Gateway { status: u16, detail: String },
    /// No answer in time.
    #[error("KIE did not answer within {0:?}")]
    Timeout(Duration),
    /// The connection failed before the request was sent (nothing reached KIE).
    #[error("cannot reach KIE: {0}")]
    Connect(String),
    /// The connection broke after the request may have been sent.
    #[error("connection to KIE failed: {0}")]
    Transport(String),
    /// KIE answered something this client cannot read.
    #[error("unreadable answer from KIE (HTTP {status}): {detail}")]
    Decode { status: u16, detail: String },
    /// KIE's answer is longer than this client reads for the call (in bytes): asking again
    /// would only be answered the same.
    #[error("KIE's answer is over {} MiB, more than this console reads for the call", .0 >> 20)]
    TooLarge(usize),
}

impl KieError {
    /// The error for a body `code` other than 200.
    pub fn from_code(code: i64, msg: Option<String>) -> KieError {
        let m = msg.unwrap_or_default();
        match code {
            400 => KieError::BadRequest(m),
            401 | 403 => KieError::Auth(m),
            402 => KieError::InsufficientCredits(m),
            404 => KieError::NotFound(m),
            422 => KieError::Validation(m),
            429 => KieError::RateLimited(m),
            433 => KieError::SubKeyLimit(m),
            455 => KieError::Maintenance(m),
            501 => KieError::GenerationFailed(m),
            505 => KieError::FeatureDisabled(m),
            code => KieError::Upstream { code, msg: m },
        }
    }

    /// KIE's body code for this error, if it came from one.
    pub fn code(&self) -> Option<i64> {
        Some(match self {
            KieError::BadRequest(_) => 400,
            KieError::Auth(_) => 401,
            KieError::InsufficientCredits(_) => 402,
            KieError::NotFound(_) => 404,
            KieError::Validation(_) => 422,
            KieError::RateLimited(_) => 429,
            KieError::SubKeyLimit(_) => 433,
            KieError::Maintenance(_) => 455,
            KieError::Upstream { code, .. } => *code,
            KieError::GenerationFailed(_) => 501,
            KieError::FeatureDisabled(_) => 505,
            _ => return None,
        })
    }

    /// The HTTP status that passes this error on to a caller: KIE's own code where it is a
    /// 4xx or 5xx, else 502 (KIE could not be reached or made sense of).
    pub fn http_status(&self) -> u16 {
        self.code().and_then(|c| u16::try_from(c).ok()).filter(|c| (400..600).contains(c)).unwrap_or(502)
    }

    /// Worth trying again later (the dispatcher waits; a read may retry at once with backoff).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            KieError::RateLimited(_)
                | KieError::Maintenance(_)
                | KieError::Upstream { .. }
                | KieError::Gateway { .. }
                | KieError::Timeout(_)
                | KieError::Connect(_)
                | KieError::Transport(_)
        )
    }

    /// Safe to resend a `createTask`: only when nothing can have reached KIE (connection
    /// refused) or KIE said it did not take it (429 is "rejected, not queued").
    pub fn create_never_reached(&self) -> bool {
        matches!(self, KieError::Connect(_))
    }
}
