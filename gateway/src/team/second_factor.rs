//! Two-step sign-in for password accounts: a time-based one-time code (TOTP, RFC 6238 through
//! `totp-rs`: six digits, 30 s steps, HMAC-SHA-1 — what every authenticator app reads from a QR
//! code) asked after the password, or one of ten single-use recovery codes shown once at
//! enrolment.
//!
//! - Enrolment is two steps: [`begin`] keeps a new secret aside for 10 minutes (not yet on the
//!   account) and gives its `otpauth://` address; [`confirm`] with a code the app shows puts it
//!   on the account and answers the recovery codes, kept only as SHA-256 digests.
//! - A code is accepted for the step it belongs to and the one before or after (clock drift),
//!   once: the account remembers the last step accepted, so a code seen over a shoulder cannot be
//!   used again ([`check`]).
//! - [`turn_off`]: the person themselves with a code, or an admin for someone who lost their
//!   device (audited either way).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;
use totp_rs::{Algorithm, Secret as TotpSecret, TOTP};

use super::accounts::{self, AccountError, Role};
use super::actor::Actor;
use super::audit;
use crate::store::{Store, now_ms};

/// The name an authenticator app shows above the code.
pub const ISSUER: &str = "KIE Control Room";
/// How long a secret waits for its first code before enrolment must begin again.
const PENDING_TTL: Duration = Duration::from_secs(10 * 60);
/// Where the team's rule lives: present, every password account must have two-step sign-in.
const REQUIRED_KEY: &str = "team:two-step-required";
/// How long an enrolment ticket (a right password on an account that must enrol) lasts.
pub const TICKET_TTL: Duration = Duration::from_secs(10 * 60);
/// Recovery codes given at enrolment.
const RECOVERY_CODES: usize = 10;
const STEP_SECS: u64 = 30;
const DIGITS: usize = 6;

/// What an account keeps while two-step sign-in is on. Its `Debug` never shows the secret.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SecondFactor {
    /// The shared secret (base32), never shown again after enrolment.
    secret: String,
    /// SHA-256 (hex) of each recovery code not used yet.
    recovery: Vec<String>,
    /// The last 30 s step a code was accepted for.
    last_step: u64,
    /// When it was turned on.
    pub since_ms: u64,
}

impl std::fmt::Debug for SecondFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecondFactor").field("recovery_left", &self.recovery.len()).field("since_ms", &self.since_ms).finish()
    }
}

impl SecondFactor {
    /// Recovery codes not used yet.
    pub fn recovery_left(&self) -> usize {
        self.recovery.len()
    }
}

/// A secret waiting for its first code: shown once, as text and as an `otpauth://` address
/// (what the QR code holds).
pub struct Enrolment {
    pub secret: String,
    pub uri: String,
}

fn pending_key(email: &str) -> String {
    format!("second-factor:pending:{}", crate::secret::hex(&Sha256::digest(email.as_bytes())))
}

fn totp(secret_b32: &str, email: &str) -> Result<TOTP, AccountError> {
    let bytes = TotpSecret::Encoded(secret_b32.to_string()).to_bytes().map_err(|e| AccountError::Invalid(format!("a stored two-step secret is unreadable: {e:?}")))?;
    TOTP::new(Algorithm::SHA1, DIGITS, 1, STEP_SECS, bytes, Some(ISSUER.to_string()), email.to_string()).map_err(|e| AccountError::Invalid(format!("two-step secret: {e}")))
}

fn digest(code: &str) -> String {
    crate::secret::hex(&Sha256::digest(normalise(code).as_bytes()))
}

/// A code as typed: spaces and dashes dropped, lower case.
fn normalise(code: &str) -> String {
    code.chars().filter(|c| !c.is_whitespace() && *c != '-').flat_map(char::to_lowercase).collect()
}

/// What a code typed at sign-in (or to turn two-step sign-in off) matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The app's code for this 30 s step.
    Code(u64),
    /// The recovery code at this index.
    Recovery(usize),
    Wrong,
}

/// Checks `code` against `sf` at `now_secs` (Unix seconds): the app's code of this step or the
/// one before or after, never one at or before the last step accepted; else an unused recovery
/// code.
pub fn check(sf: &SecondFactor, email: &str, code: &str, now_secs: u64) -> Result<Check, AccountError> {
    let typed = normalise(code);
    if typed.len() == DIGITS && typed.chars().all(|c| c.is_ascii_digit()) {
        let t = totp(&sf.secret, email)?;
        let step = now_secs / STEP_SECS;
        for s in [step.saturating_sub(1), step, step + 1] {
            if s > sf.last_step && crate::secret::constant_time_eq(t.generate(s * STEP_SECS).as_bytes(), typed.as_bytes()) {
                return Ok(Check::Code(s));
            }
        }
        return Ok(Check::Wrong);
    }
    let d = digest(&typed);
    Ok(sf.recovery.iter().position(|r| crate::secret::constant_time_eq(r.as_bytes(), d.as_bytes())).map_or(Check::Wrong, Check::Recovery))
}

fn now_secs() -> u64 {
    now_ms() / 1000
}

/// Starts enrolment for the person `by` is: a new secret, kept aside for 10 minutes.
pub async fn begin(store: &dyn Store, by: &Actor) -> Result<Enrolment, AccountError> {
    let user = accounts::get(store, &by.who).await?.ok_or_else(|| AccountError::NotFound(by.who.clone()))?;
    if user.second_factor.is_some() {
        return Err(AccountError::Invalid("two-step sign-in is on already; turn it off first to move it to another device".into()));
    }
    let secret = TotpSecret::generate_secret().to_encoded().to_string();
    let uri = totp(&secret, &user.email)?.get_url();
    store.kv_set(&pending_key(&user.email), secret.as_bytes(), Some(PENDING_TTL)).await?;
    Ok(Enrolment { secret, uri })
}

/// Finishes enrolment with a code the app shows for the secret [`begin`] gave: two-step
/// sign-in is on from now, and the recovery codes (shown once) are answered.
pub async fn confirm(store: &dyn Store, by: &Actor, code: &str) -> Result<Vec<String>, AccountError> {
    let email = accounts::normalize_email(&by.who)?;
    let key = pending_key(&email);
    let pending = store.kv_get(&key).await?.ok_or_else(|| AccountError::Invalid("no set-up is waiting (it lasts 10 minutes): start again".into()))?;
    let secret = String::from_utf8(pending).map_err(|_| AccountError::Invalid("the waiting set-up is unreadable: start again".into()))?;
    let trial = SecondFactor { secret, recovery: Vec::new(), last_step: 0, since_ms: now_ms() };
    let Check::Code(step) = check(&trial, &email, code, now_secs())? else {
        return Err(AccountError::Invalid("that code does not match: type the six digits the app shows now".into()));
    };
    let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| {
        let h = crate::secret::random_hex(5);
        format!("{}-{}", &h[..5], &h[5..])
    }).collect();
    let sf = SecondFactor { recovery: codes.iter().map(|c| digest(c)).collect(), last_step: step, ..trial };
    accounts::edit(store, &email, |u| {
        if u.second_factor.is_some() {
            return Err(AccountError::Invalid("two-step sign-in is on already".into()));
        }
        u.second_factor = Some(sf);
        Ok(())
    })
    .await?;
    store.kv_delete(&key).await?;
    audit::record(store, by, "two-step sign-in turned on", &email, None, None).await?;
    Ok(codes)
}

/// Whether `code` opens `email`'s account now, using it up (its step, or the recovery code).
/// An account without two-step sign-in passes whatever the code.
pub(crate) async fn pass(store: &dyn Store, email: &str, code: &str) -> Result<bool, AccountError> {
    let email = accounts::normalize_email(email)?;
    let now = now_secs();
    // A wrong code writes nothing; a right one is used up in one step (a second use of the same
    // code racing this one finds it used).
    let Some(user) = accounts::get(store, &email).await? else { return Ok(false) };
    match &user.second_factor {
        None => return Ok(true),
        Some(sf) if check(sf, &email, code, now)? == Check::Wrong => return Ok(false),
        Some(_) => {}
    }
    accounts::edit(store, &email, |u| {
        let Some(sf) = u.second_factor.as_mut() else { return Ok(true) };
        match check(sf, &email, code, now)? {
            Check::Code(step) => sf.last_step = step,
            Check::Recovery(i) => {
                sf.recovery.remove(i);
            }
            Check::Wrong => return Ok(false),
        }
        Ok(true)
    })
    .await
}

/// Whether the team requires two-step sign-in of every password account.
pub async fn required(store: &dyn Store) -> Result<bool, AccountError> {
    Ok(store.kv_get(REQUIRED_KEY).await?.is_some())
}

/// Requires two-step sign-in of every password account, or stops requiring it (admins).
/// Someone without it who signs in with the right password is then taken to set it up
/// ([`ticket`]) before they get a session.
pub async fn set_required(store: &dyn Store, by: &Actor, on: bool) -> Result<(), AccountError> {
    by.require(Role::Admin)?;
    let before = required(store).await?;
    if on {
        store.kv_set(REQUIRED_KEY, b"1", None).await?;
    } else {
        store.kv_delete(REQUIRED_KEY).await?;
    }
    let word = |b: bool| if b { "required" } else { "optional" }.to_string();
    audit::record(store, by, "two-step sign-in requirement", "team", Some(word(before)), Some(word(on))).await?;
    Ok(())
}

fn ticket_key(ticket: &str) -> String {
    format!("second-factor:ticket:{}", super::sessions::digest(ticket))
}

/// A ticket for `email` to set up two-step sign-in before it may sign in (its password was
/// right; the team requires it): good for 10 minutes, for enrolment only.
pub(crate) async fn ticket(store: &dyn Store, email: &str) -> Result<crate::Secret, AccountError> {
    let t = crate::secret::random_hex(32);
    store.kv_set(&ticket_key(&t), email.as_bytes(), Some(TICKET_TTL)).await?;
    Ok(crate::Secret::new(t))
}

/// The person a ticket from [`ticket`] was given to, while it lasts (and they exist, enabled).
pub async fn ticket_holder(store: &dyn Store, ticket: &str) -> Result<Option<accounts::User>, AccountError> {
    if ticket.is_empty() || ticket.len() > 128 {
        return Ok(None);
    }
    let Some(email) = store.kv_get(&ticket_key(ticket)).await? else { return Ok(None) };
    let email = String::from_utf8_lossy(&email).to_string();
    Ok(accounts::get(store, &email).await?.filter(|u| !u.disabled))
}

/// Ends a ticket (enrolment done).
pub async fn end_ticket(store: &dyn Store, ticket: &str) -> Result<(), AccountError> {
    store.kv_delete(&ticket_key(ticket)).await?;
    Ok(())
}

/// Turns two-step sign-in off for `email`: the person themselves with a code (`code`), or an
/// admin for anyone (someone who lost their device).
pub async fn turn_off(store: &dyn Store, by: &Actor, email: &str, code: Option<&str>) -> Result<(), AccountError> {
    let email = accounts::normalize_email(email)?;
    let own = by.who == email;
    if !own {
        by.require(Role::Admin)?;
    }
    let now = now_secs();
    accounts::edit(store, &email, |u| {
        let Some(sf) = u.second_factor.as_ref() else { return Err(AccountError::Invalid(format!("two-step sign-in is not on for {email}"))) };
        if own && check(sf, &email, code.unwrap_or_default(), now)? == Check::Wrong {
            return Err(AccountError::Invalid("that code does not match: type the six digits the app shows now, or a recovery code".into()));
        }
        u.second_factor = None;
        Ok(())
    })
    .await?;
    let action = if own { "two-step sign-in turned off" } else { "two-step sign-in reset" };
    audit::record(store, by, action, &email, None, None).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enrolled(last_step: u64) -> SecondFactor {
        // RFC 6238's SHA-1 test secret ("12345678901234567890"), base32.
        SecondFactor { secret: "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ".into(), recovery: vec![digest("abcde-12345")], last_step, since_ms: 0 }
    }

    #[test]
    fn the_rfc_6238_vectors_pass_once_and_a_neighbouring_step_is_allowed() {
        // RFC 6238, Appendix B (SHA-1), the last six digits: 59 s → 287082, 1111111109 s → 081804.
        let sf = enrolled(0);
        assert_eq!(check(&sf, "a@b.test", "287082", 59).ok(), Some(Check::Code(1)));
        assert_eq!(check(&sf, "a@b.test", "081 804", 1_111_111_109).ok(), Some(Check::Code(37_037_036)));
        // The next step's time still takes the code of the step before (30 s of drift).
        assert_eq!(check(&sf, "a@b.test", "081804", 1_111_111_109 + 30).ok(), Some(Check::Code(37_037_036)));
        assert_eq!(check(&sf, "a@b.test", "081804", 1_111_111_109 + 90).ok(), Some(Check::Wrong));
        // Used once: its step is the last accepted, so it no longer passes.
        let used = enrolled(37_037_036);
        assert_eq!(check(&used, "a@b.test", "081804", 1_111_111_109).ok(), Some(Check::Wrong));
        assert_eq!(check(&sf, "a@b.test", "000000", 59).ok(), Some(Check::Wrong));
    }

    #[test]
    fn a_recovery_code_matches_however_typed_and_nothing_else_does() {
        let sf = enrolled(0);
        assert_eq!(check(&sf, "a@b.test", " ABCDE 12345 ", 59).ok(), Some(Check::Recovery(0)));
        assert_eq!(check(&sf, "a@b.test", "abcde-12346", 59).ok(), Some(Check::Wrong));
        assert_eq!(check(&sf, "a@b.test", "", 59).ok(), Some(Check::Wrong));
        assert!(!format!("{sf:?}").contains("GEZDG"), "Debug never shows the secret");
    }
}
