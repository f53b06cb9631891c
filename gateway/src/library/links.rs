//! Signed Library links: `/library/<task>/<n>?exp=<unix s>&sig=<mac>` work with no other
//! credential until `exp` (relay clients, sharing). `sig` is base64url(HMAC-SHA256(key,
//! "<task>/<n>.<exp>")) with a key kept in the store, so every instance signs and checks
//! alike. Expiry times are rounded up to the hour, so the links a task is answered with stay
//! the same for an hour (a client or a cache sees one URL, not a new one per request).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;

use crate::store::{Store, StoreResult};

type HmacSha256 = Hmac<Sha256>;

/// The store key of the signing key (64 hex digits, written once by the first instance).
const KEY: &str = "library:link-key";

/// Why a link was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this Library link has expired; ask for a new one")]
    Expired,
    #[error("this Library link is not valid (its signature does not match)")]
    Invalid,
}

/// Makes and checks signed links; cheap to clone. Its `Debug` shows no key.
#[derive(Clone)]
pub struct LinkSigner {
    key: Arc<Vec<u8>>,
    /// `PUBLIC_URL` without a trailing slash ("" for links relative to the console).
    base: String,
    ttl: Duration,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSigner").field("base", &self.base).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl LinkSigner {
    /// The deployment's signer: its key from the store (made now if there is none yet).
    pub async fn load(store: &dyn Store, public_base: Option<&str>, ttl: Duration) -> StoreResult<LinkSigner> {
        store.kv_set_nx(KEY, crate::secret::random_hex(32).as_bytes(), None).await?;
        let key = store.kv_get(KEY).await?.ok_or_else(|| crate::StoreError::Unavailable("the Library's link key vanished as it was written".into()))?;
        Ok(LinkSigner::with_key(key, public_base, ttl))
    }

    pub fn with_key(key: Vec<u8>, public_base: Option<&str>, ttl: Duration) -> LinkSigner {
        LinkSigner { key: Arc::new(key), base: public_base.unwrap_or("").trim_end_matches('/').to_string(), ttl: ttl.max(Duration::from_secs(60)) }
    }

    /// `PUBLIC_URL` without a trailing slash ("" when links are relative to the console).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// How long a new link is valid (at least; see the module doc).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn sig(&self, task: &str, n: usize, exp: u64) -> String {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(format!("{task}/{n}.{exp}").as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// The expiry of a link made at `now_s`: `ttl` from now, rounded up to the next hour.
    pub fn expiry(&self, now_s: u64) -> u64 {
        (now_s.saturating_add(self.ttl.as_secs()) / 3600 + 1) * 3600
    }

    /// The path and query of asset `n` of `task` (relative to the console).
    pub fn path(&self, task: &str, n: usize, now_s: u64) -> String {
        let exp = self.expiry(now_s);
        format!("{}?exp={exp}&sig={}", unsigned_path(task, n), self.sig(task, n, exp))
    }

    /// The absolute link (from `PUBLIC_URL`), for relay clients.
    pub fn link(&self, task: &str, n: usize, now_s: u64) -> String {
        format!("{}{}", self.base, self.path(task, n, now_s))
    }

    /// Checks a link's `exp` and `sig` for asset `n` of `task` at `now_s`.
    pub fn verify(&self, task: &str, n: usize, exp: u64, sig: &str, now_s: u64) -> Result<(), LinkError> {
        if !crate::secret::constant_time_eq(self.sig(task, n, exp).as_bytes(), sig.as_bytes()) {
            return Err(LinkError::Invalid);
        }
        if now_s > exp {
            return Err(LinkError::Expired);
        }
        Ok(())
    }
}

/// `/library/<task>/<n>`: where a signed-in person reads asset `n` of `task`.
pub fn unsigned_path(task: &str, n: usize) -> String {
    format!("/library/{task}/{n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_verifies_until_it_expires_and_not_when_changed() {
        let s = LinkSigner::with_key(b"s3cret-link-key".to_vec(), Some("https://console.test/"), Duration::from_secs(24 * 3600));
        let now = 1_800_000_000;
        let link = s.link("t1", 0, now);
        assert!(link.starts_with("https://console.test/library/t1/0?exp="), "{link}");
        let q: std::collections::HashMap<String, String> = url::Url::parse(&link).unwrap().query_pairs().into_owned().collect();
        let exp: u64 = q["exp"].parse().unwrap();
        assert!(exp >= now + 24 * 3600 && exp <= now + 25 * 3600 && exp.is_multiple_of(3600));
        assert_eq!(s.verify("t1", 0, exp, &q["sig"], now), Ok(()));
        assert_eq!(s.verify("t1", 0, exp, &q["sig"], exp + 1), Err(LinkError::Expired));
        assert_eq!(s.verify("t1", 1, exp, &q["sig"], now), Err(LinkError::Invalid), "another asset");
        assert_eq!(s.verify("t2", 0, exp, &q["sig"], now), Err(LinkError::Invalid), "another task");
        assert_eq!(s.verify("t1", 0, exp + 3600, &q["sig"], now), Err(LinkError::Invalid), "a later expiry");
        let other = LinkSigner::with_key(b"other".to_vec(), None, Duration::from_secs(3600));
        assert_eq!(other.verify("t1", 0, exp, &q["sig"], now), Err(LinkError::Invalid), "another deployment's key");
        assert_eq!(s.link("t1", 0, now), s.link("t1", 0, now + 60), "stable within the hour");
        assert!(!format!("{s:?}").contains("s3cret") && !format!("{s:?}").contains("115, 51"), "{s:?}");
    }
}
