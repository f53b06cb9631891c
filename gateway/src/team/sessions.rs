//! Sessions: who a browser is, kept in the shared store so that any instance accepts a session
//! and signing out holds everywhere at once.
//!
//! - A session token is 256 random bits, given to the browser once (in a cookie); the store
//!   keeps only its SHA-256, with the user, the user's session generation, and when it was
//!   opened and last seen.
//! - It ends after [`SessionPolicy::idle`] without use, after [`SessionPolicy::absolute`] in
//!   any case, when its user signs out, and when the user's generation moves on (sign out
//!   everywhere, disabled, password reset). Role changes hold at the next request: the role is
//!   read from the user, not from the session.
//! - [`sign_in`] opens a new session on every sign-in (the old one, if any, is closed: the
//!   token rotates) and slows brute force: failures are counted per account and per client
//!   address in the store, and past the limits sign-in is refused for a while.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;

use crate::team::accounts::{self, Actor, User};
use crate::team::audit;
use crate::secret::{Secret, hex, random_hex};
use crate::store::{Store, StoreError, StoreResult, now_ms};

/// Failed sign-ins counted per account and per address within [`ATTEMPT_WINDOW`].
pub const MAX_FAILS_PER_ACCOUNT: i64 = 5;
pub const MAX_FAILS_PER_ADDRESS: i64 = 20;
pub const ATTEMPT_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Most characters of a token the server looks at (anything longer is not one of ours).
const MAX_TOKEN: usize = 128;

/// How long sessions last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Ends after this long without a request.
    pub idle: Duration,
    /// Ends this long after sign-in, however busy.
    pub absolute: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy { idle: Duration::from_secs(2 * 3600), absolute: Duration::from_secs(24 * 3600) }
    }
}

impl SessionPolicy {
    /// How often `seen_ms` is written at most (a tenth of the idle time, at most a minute).
    fn touch_every(&self) -> u64 {
        (self.idle.as_millis() as u64 / 10).min(60_000)
    }
}

/// One session as stored (never the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user: String,
    pub generation: u64,
    pub created_ms: u64,
    pub seen_ms: u64,
    pub from: String,
}

fn key(token: &str) -> String {
    format!("session:{}", hex(&Sha256::digest(token.as_bytes())))
}

fn ttl(policy: &SessionPolicy, s: &Session, now: u64) -> Option<Duration> {
    let absolute_end = s.created_ms.saturating_add(policy.absolute.as_millis() as u64);
    let idle_end = now.saturating_add(policy.idle.as_millis() as u64);
    let end = absolute_end.min(idle_end);
    (end > now).then(|| Duration::from_millis(end - now))
}

/// Writes a session: a new one (`fresh`), or an update of one that must still exist, so a
/// touch racing a sign-out cannot bring the session back.
async fn put(store: &dyn Store, token: &str, s: &Session, policy: &SessionPolicy, fresh: bool) -> StoreResult<bool> {
    let Some(ttl) = ttl(policy, s, now_ms()) else { return Ok(false) };
    let bytes = serde_json::to_vec(s).map_err(|e| StoreError::Invalid(e.to_string()))?;
    if fresh {
        store.kv_set(&key(token), &bytes, Some(ttl)).await?;
        Ok(true)
    } else {
        store.kv_replace(&key(token), &bytes, Some(ttl)).await
    }
}

/// Whether a request counts as activity (it keeps the session from idling out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// A person's request.
    Activity,
    /// A check made on the person's behalf (an open live stream rechecking its session):
    /// it does not keep the session alive.
    Check,
}

/// Opens a session for `user`; the token is for the cookie and nowhere else.
pub async fn open(store: &dyn Store, user: &User, from: &str, policy: &SessionPolicy) -> StoreResult<Secret> {
    let token = random_hex(32);
    let now = now_ms();
    let s = Session { user: user.email.clone(), generation: user.session_gen, created_ms: now, seen_ms: now, from: from.to_string() };
    put(store, &token, &s, policy, true).await?;
    Ok(Secret::new(token))
}

/// The user a token stands for now, or `None` (unknown, expired, signed out, disabled).
pub async fn resolve(store: &dyn Store, token: &str, policy: &SessionPolicy, used: Use) -> Result<Option<User>, accounts::AccountError> {
    if token.is_empty() || token.len() > MAX_TOKEN {
        return Ok(None);
    }
    let k = key(token);
    let Some(raw) = store.kv_get(&k).await? else { return Ok(None) };
    let Ok(mut s) = serde_json::from_slice::<Session>(&raw) else {
        store.kv_delete(&k).await?;
        return Ok(None);
    };
    let now = now_ms();
    let idle_over = now.saturating_sub(s.seen_ms) >= policy.idle.as_millis() as u64;
    let absolute_over = now.saturating_sub(s.created_ms) >= policy.absolute.as_millis() as u64;
    let user = accounts::get(store, &s.user).await?.filter(|u| !u.disabled && u.session_gen == s.generation);
    if idle_over || absolute_over || user.is_none() {
        store.kv_delete(&k).await?;
        return Ok(None);
    }
    if used == Use::Activity && now.saturating_sub(s.seen_ms) >= policy.touch_every() {
        s.seen_ms = now;
        if !put(store, token, &s, policy, false).await? {
            // Signed out (or expired) between the read and the touch.
            return Ok(None);
        }
    }
    Ok(user)
}

/// Ends one session (sign out). Harmless if it has ended already.
pub async fn close(store: &dyn Store, token: &str) -> StoreResult<()> {
    if !token.is_empty() && token.len() <= MAX_TOKEN {
        store.kv_delete(&key(token)).await?;
    }
    Ok(())
}

/// Why a sign-in did not open a session.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// One answer for an unknown email, a wrong password and a disabled account.
    #[error("Wrong email or password.")]
    Refused,
    #[error("Too many failed sign-ins; try again in {} minutes.", .0.as_secs().div_ceil(60))]
    Throttled(Duration),
    #[error(transparent)]
    Account(#[from] accounts::AccountError),
}

impl From<StoreError> for SignInError {
    fn from(e: StoreError) -> Self {
        SignInError::Account(e.into())
    }
}

fn fails_key(kind: &str, who: &str) -> String {
    format!("signin:fails:{kind}:{}", hex(&Sha256::digest(who.as_bytes())))
}

/// Counts one attempt against a limit before the password is checked, so that a burst of
/// concurrent attempts is throttled too (the check and the count are one atomic step).
/// Returns the count with this attempt.
async fn count_attempt(store: &dyn Store, key: &str) -> StoreResult<i64> {
    store.counter_add(key, 1, Some(ATTEMPT_WINDOW)).await
}

/// Records a throttled sign-in once per window and account or address: a flood is one entry
/// (with the count so far), so it cannot push real entries out of the bounded log.
async fn audit_throttled(store: &dyn Store, email_key: &str, from: &str, counter: &str, count: i64) -> StoreResult<()> {
    if store.kv_set_nx(&format!("{counter}:audited"), b"1", Some(ATTEMPT_WINDOW)).await? {
        let detail = format!("too many attempts ({count} in this 15-minute window; further refusals in it are counted, not logged)");
        audit::append(store, email_key, from, "sign-in refused", email_key, None, Some(detail)).await?;
    }
    Ok(())
}

/// Checks the password and opens a new session, closing `previous` (rotation). Every attempt
/// is counted before the password is checked; failures and successes are in the audit log
/// with the address they came from, throttled attempts once per window.
pub async fn sign_in(store: &dyn Store, email: &str, password: &str, from: &str, previous: Option<&str>, policy: &SessionPolicy) -> Result<(Secret, User), SignInError> {
    let email_key = email.trim().to_ascii_lowercase();
    let account = fails_key("account", &email_key);
    let address = fails_key("address", from);
    let (a, b) = tokio::join!(count_attempt(store, &account), count_attempt(store, &address));
    let (account_count, address_count) = (a?, b?);
    if account_count > MAX_FAILS_PER_ACCOUNT || address_count > MAX_FAILS_PER_ADDRESS {
        let (counter, count) = if account_count > MAX_FAILS_PER_ACCOUNT { (&account, account_count) } else { (&address, address_count) };
        audit_throttled(store, &email_key, from, counter, count).await?;
        return Err(SignInError::Throttled(ATTEMPT_WINDOW));
    }
    let Some(user) = accounts::verify(store, email, password).await? else {
        audit::append(store, &email_key, from, "sign-in refused", &email_key, None, Some("wrong email or password".into())).await?;
        return Err(SignInError::Refused);
    };
    if let Some(old) = previous {
        close(store, old).await?;
    }
    // A success clears the account's count, and is taken off the address's (which counts
    // only failures).
    let (a, b) = tokio::join!(store.counter_add(&account, -account_count, None), store.counter_add(&address, -1, None));
    a?;
    b?;
    let token = open(store, &user, from, policy).await?;
    audit::record(store, &Actor::user(&user, from), "sign-in", &user.email, None, Some(user.role.to_string())).await?;
    Ok((token, user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_the_nearer_of_idle_and_absolute_ends() {
        let p = SessionPolicy { idle: Duration::from_secs(60), absolute: Duration::from_secs(100) };
        let s = Session { user: "a@b".into(), generation: 1, created_ms: 1_000_000, seen_ms: 1_000_000, from: "x".into() };
        assert_eq!(ttl(&p, &s, 1_000_000), Some(Duration::from_secs(60)));
        assert_eq!(ttl(&p, &s, 1_050_000), Some(Duration::from_secs(50)), "absolute end is nearer");
        assert_eq!(ttl(&p, &s, 1_100_000), None, "over");
    }
}
