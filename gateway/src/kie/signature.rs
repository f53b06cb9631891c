//! Callback signatures: `X-Webhook-Signature = base64(HMAC-SHA256(key, taskId + "." + ts))`
//! with `X-Webhook-Timestamp = ts` (Unix seconds). Compared in constant time; timestamps
//! outside the replay window are refused. The body is not signed: a valid signature proves
//! only the task id and the time, so the result must still be confirmed with `recordInfo`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

type HmacSha256 = Hmac<Sha256>;

/// Default replay window: how far a callback's timestamp may be from now.
pub const DEFAULT_REPLAY_WINDOW: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Webhook-Signature or X-Webhook-Timestamp header")]
    Missing,
    #[error("X-Webhook-Timestamp is not Unix seconds")]
    BadTimestamp,
    #[error("X-Webhook-Timestamp is outside the replay window")]
    Stale,
    #[error("signature does not match")]
    Mismatch,
}

/// The signature KIE would send (also used to sign the relay's own callbacks).
pub fn sign(key: &[u8], task_id: &str, timestamp: &str) -> String {
    let mut mac = mac(key);
    mac.update(task_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

/// Checks a callback's headers for `task_id` at `now_secs`.
pub fn verify(
    key: &[u8],
    task_id: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    now_secs: u64,
    window: Duration,
) -> Result<(), SignatureError> {
    let (Some(ts), Some(sig)) = (timestamp, signature) else { return Err(SignatureError::Missing) };
    let ts_num: u64 = ts.trim().parse().map_err(|_| SignatureError::BadTimestamp)?;
    if ts_num.abs_diff(now_secs) > window.as_secs() {
        return Err(SignatureError::Stale);
    }
    let given = STANDARD.decode(sig.trim()).map_err(|_| SignatureError::Mismatch)?;
    let mut mac = mac(key);
    mac.update(task_id.as_bytes());
    mac.update(b".");
    mac.update(ts.trim().as_bytes());
    // verify_slice compares in constant time.
    mac.verify_slice(&given).map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_correct_signature_passes_and_anything_else_fails() {
        let key = b"webhook-hmac-key";
        let sig = sign(key, "task_1", "1700000000");
        let w = DEFAULT_REPLAY_WINDOW;
        assert_eq!(verify(key, "task_1", Some("1700000000"), Some(&sig), 1_700_000_010, w), Ok(()));
        assert_eq!(verify(key, "task_2", Some("1700000000"), Some(&sig), 1_700_000_010, w), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"other", "task_1", Some("1700000000"), Some(&sig), 1_700_000_010, w), Err(SignatureError::Mismatch));
        assert_eq!(verify(key, "task_1", Some("1700000000"), Some(&sig), 1_700_000_301, w), Err(SignatureError::Stale));
        assert_eq!(verify(key, "task_1", Some("soon"), Some(&sig), 1_700_000_000, w), Err(SignatureError::BadTimestamp));
        assert_eq!(verify(key, "task_1", None, Some(&sig), 1_700_000_000, w), Err(SignatureError::Missing));
        assert_eq!(verify(key, "task_1", Some("1700000000"), Some("!!"), 1_700_000_000, w), Err(SignatureError::Mismatch));
    }

    #[test]
    fn matches_an_independent_hmac_computation() {
        // Computed with Python's hmac module:
        // base64(hmac.new(b"kie-hmac-key", b"task_abc123.1774509366", sha256).digest())
        assert_eq!(sign(b"kie-hmac-key", "task_abc123", "1774509366"), "04EVZu17bTb6gnvhlZz4IVr6tY1f4BV6ofMjYXhku+0=");
    }
}
