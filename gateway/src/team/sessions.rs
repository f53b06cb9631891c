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
//!   token rotates) and slows brute force: attempts are counted in the store per account and
//!   client address, per address and per account. Past the first two limits that address is
//!   refused for a while (never the rightful user elsewhere); past the account's much higher
//!   ceiling each attempt waits for the one before, except from addresses it signed in from.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;

use crate::team::accounts::{self, Actor, Role, User};
use crate::team::audit;
use crate::secret::{Secret, hex, random_hex};
use crate::store::{Store, StoreError, StoreResult, now_ms};

/// Sign-in attempts counted within [`ATTEMPT_WINDOW`], past which sign-in is refused for the
/// rest of the window: per account from one address (a guesser at one account), and per
/// address over every account (a guesser at many). The rightful user at another address is
/// not held back by either.
pub const MAX_FAILS_PER_ACCOUNT_ADDRESS: i64 = 5;
pub const MAX_FAILS_PER_ADDRESS: i64 = 20;
/// Attempts at one account from every address past which each further attempt must wait for
/// the one before (a guess spread over many addresses): one per [`account_delay`], growing
/// with the attempts, never a lock. Addresses the account signed in from before are exempt.
pub const ACCOUNT_CEILING: i64 = 100;
pub const ATTEMPT_WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long an address the account signed in from stays known.
const KNOWN_ADDRESS: Duration = Duration::from_secs(30 * 24 * 3600);

/// The wait between attempts at an account `count` attempts into the window: 1 s past the
/// ceiling, doubling every further 100 attempts, at most a minute.
pub fn account_delay(count: i64) -> Duration {
    let over = (count - ACCOUNT_CEILING).max(0) / ACCOUNT_CEILING;
    Duration::from_secs(1u64 << over.min(6)).min(Duration::from_secs(60))
}

/// Most characters of a token the server looks at (anything longer is not one of ours).
const MAX_TOKEN: usize = 128;

/// How long sessions last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Ends after this long without a request.
    pub idle: Duration,
    /// Ends this long after sign-in, however busy.
    pub absolute: Duration,
    /// Who may sign in with a password (`PASSWORD_SIGNIN`).
    pub passwords: PasswordSignIn,
}

/// Who may sign in with a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PasswordSignIn {
    /// Everyone with a password (the default).
    #[default]
    Everyone,
    /// Only break-glass admins (`control-room user break-glass EMAIL`): the team signs in
    /// through its identity provider (`PASSWORD_SIGNIN=off`).
    BreakGlassOnly,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy { idle: Duration::from_secs(2 * 3600), absolute: Duration::from_secs(24 * 3600), passwords: PasswordSignIn::Everyone }
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
    format!("session:{}", digest(token))
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
    /// The account is under a spread-out guess: one attempt per this long.
    #[error("This account is being guessed at; try again in {} seconds.", .0.as_secs().max(1))]
    SlowDown(Duration),
    /// The password was right and the account has two-step sign-in on: the code is missing.
    #[error("Enter the six-digit code from your authenticator app, or a recovery code.")]
    CodeNeeded,
    /// The password was right, the team requires two-step sign-in and this account has none:
    /// no session, but a ticket to set it up first (10 minutes).
    #[error("Set up two-step sign-in first: the team requires it.")]
    MustEnrol(Secret),
    /// Passwords are off (`PASSWORD_SIGNIN=off`) and this is no break-glass account: the
    /// answer for any password, right or wrong.
    #[error("Sign in with the team's identity provider: passwords are off here.")]
    PasswordsOff,
    #[error(transparent)]
    Account(#[from] accounts::AccountError),
}

impl From<StoreError> for SignInError {
    fn from(e: StoreError) -> Self {
        SignInError::Account(e.into())
    }
}

/// SHA-256 in hex: how the store names a session (never its token), and the throttle's
/// counters their account and address.
pub fn digest(who: &str) -> String {
    hex(&Sha256::digest(who.as_bytes()))
}

/// A throttle counter: what it counts attempts by, digested (no email or address in a key).
fn fails_key(kind: &str, who: &str) -> String {
    format!("signin:fails:{kind}:{}", digest(who))
}

/// Counts one attempt against a limit before the password is checked, so that a burst of
/// concurrent attempts is throttled too (the check and the count are one atomic step).
/// Returns the count with this attempt.
async fn count_attempt(store: &dyn Store, key: &str) -> StoreResult<i64> {
    store.counter_add(key, 1, Some(ATTEMPT_WINDOW)).await
}

/// A refused sign-in in the audit log.
async fn audit_refused(store: &dyn Store, email_key: &str, from: &str, detail: String) -> StoreResult<()> {
    audit::append(store, email_key, from, "sign-in refused", email_key, None, Some(detail)).await
}

/// Records a throttled sign-in once per window and counter: a flood is one entry (with the
/// count so far), so it cannot push real entries out of the log or its view.
async fn audit_throttled(store: &dyn Store, email_key: &str, from: &str, counter: &str, count: i64) -> StoreResult<()> {
    if store.kv_set_nx(&format!("{counter}:audited"), b"1", Some(ATTEMPT_WINDOW)).await? {
        audit_refused(store, email_key, from, format!("too many attempts ({count} in this 15-minute window; further refusals in it are counted, not logged)")).await?;
    }
    Ok(())
}

/// Records a wrong password in aggregate: an address's failures in a window are entries at
/// the 1st, 10th, 100th… failure, each with the count, so a flood from one address is a few
/// entries, not one per guess.
async fn audit_failure(store: &dyn Store, email_key: &str, from: &str) -> StoreResult<()> {
    let failures = store.counter_add(&fails_key("failed", from), 1, Some(ATTEMPT_WINDOW)).await?;
    let detail = match failures {
        1 => "wrong email or password (further failures from this address in this 15-minute window are counted: an entry at the 10th, the 100th…)".to_string(),
        n if n >= 10 && 10i64.pow(n.ilog10()) == n => format!("wrong email or password: {n} failures from this address in this 15-minute window"),
        _ => return Ok(()),
    };
    audit_refused(store, email_key, from, detail).await
}

/// Checks the password and opens a new session, closing `previous` (rotation). Every attempt
/// is counted before the password is checked (per account and address, per address, per
/// account); failures are in the audit log in aggregate, successes each with the address.
pub async fn sign_in(store: &dyn Store, email: &str, password: &str, code: &str, from: &str, previous: Option<&str>, policy: &SessionPolicy) -> Result<(Secret, User), SignInError> {
    let email_key = email.trim().to_ascii_lowercase();
    let pair = fails_key("account-address", &format!("{email_key}\n{from}"));
    let address = fails_key("address", from);
    let account = fails_key("account", &email_key);
    let known = format!("signin:known:{}", digest(&format!("{email_key}\n{from}")));
    let (a, b, c) = tokio::join!(count_attempt(store, &pair), count_attempt(store, &address), count_attempt(store, &account));
    let (pair_count, address_count, account_count) = (a?, b?, c?);
    let refused = if pair_count > MAX_FAILS_PER_ACCOUNT_ADDRESS {
        Some((&pair, pair_count))
    } else if address_count > MAX_FAILS_PER_ADDRESS {
        Some((&address, address_count))
    } else {
        None
    };
    if let Some((counter, count)) = refused {
        audit_throttled(store, &email_key, from, counter, count).await?;
        return Err(SignInError::Throttled(ATTEMPT_WINDOW));
    }
    if account_count > ACCOUNT_CEILING && store.kv_get(&known).await?.is_none() {
        let delay = account_delay(account_count);
        if !store.kv_set_nx(&format!("signin:gate:{}", digest(&email_key)), b"1", Some(delay)).await? {
            audit_throttled(store, &email_key, from, &account, account_count).await?;
            return Err(SignInError::SlowDown(delay));
        }
    }
    if policy.passwords == PasswordSignIn::BreakGlassOnly && !accounts::get(store, &email_key).await?.is_some_and(|u| u.break_glass && u.role == Role::Admin) {
        audit_refused(store, &email_key, from, "password sign-in is off (PASSWORD_SIGNIN=off) and this is no break-glass admin".into()).await?;
        return Err(SignInError::PasswordsOff);
    }
    let Some(user) = accounts::verify(store, email, password).await? else {
        audit_failure(store, &email_key, from).await?;
        return Err(SignInError::Refused);
    };
    // Two-step sign-in: with no code, the form asks for one (nothing counted: the password was
    // right); a wrong code counts as a failed sign-in.
    if user.second_factor.is_some() {
        if code.trim().is_empty() {
            return Err(SignInError::CodeNeeded);
        }
        if !super::second_factor::pass(store, &user.email, code).await? {
            audit_failure(store, &email_key, from).await?;
            return Err(SignInError::Refused);
        }
    } else if super::second_factor::required(store).await? {
        return Err(SignInError::MustEnrol(super::second_factor::ticket(store, &user.email).await?));
    }
    if let Some(old) = previous {
        close(store, old).await?;
    }
    // A success clears the count from this address, takes this attempt off the others
    // (which count failures), and makes the address known.
    let (a, b, c, d) = tokio::join!(
        store.counter_add(&pair, -pair_count, None),
        store.counter_add(&address, -1, None),
        store.counter_add(&account, -1, None),
        store.kv_set(&known, b"1", Some(KNOWN_ADDRESS)),
    );
    a?;
    b?;
    c?;
    d?;
    let token = open(store, &user, from, policy).await?;
    audit::record(store, &Actor::user(&user, from), "sign-in", &user.email, None, Some(user.role.to_string())).await?;
    Ok((token, user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_delay_grows_and_stops_at_a_minute() {
        assert_eq!(account_delay(ACCOUNT_CEILING + 1), Duration::from_secs(1));
        assert_eq!(account_delay(ACCOUNT_CEILING * 2 + 1), Duration::from_secs(2));
        assert_eq!(account_delay(ACCOUNT_CEILING * 5), Duration::from_secs(16));
        assert_eq!(account_delay(i64::MAX), Duration::from_secs(60));
    }

    #[test]
    fn ttl_is_the_nearer_of_idle_and_absolute_ends() {
        let p = SessionPolicy { idle: Duration::from_secs(60), absolute: Duration::from_secs(100), ..Default::default() };
        let s = Session { user: "a@b".into(), generation: 1, created_ms: 1_000_000, seen_ms: 1_000_000, from: "x".into() };
        assert_eq!(ttl(&p, &s, 1_000_000), Some(Duration::from_secs(60)));
        assert_eq!(ttl(&p, &s, 1_050_000), Some(Duration::from_secs(50)), "absolute end is nearer");
        assert_eq!(ttl(&p, &s, 1_100_000), None, "over");
    }
}
