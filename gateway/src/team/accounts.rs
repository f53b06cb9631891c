//! Accounts: the people of the team, their roles and passwords.
//!
//! - Roles, lowest to highest: **viewer** (reads everything of the team), **producer** (also
//!   composes, submits, retries and pins models), **admin** (also users, relay keys, cost rules
//!   and settings). [`Role::allows`] is the one check.
//! - Passwords are hashed with argon2id (the crate's defaults: 19 MiB, 2 passes, one lane, as
//!   OWASP recommends), on the blocking pool.
//! - All users live in one document, edited under a lease ([`crate::store::edit_doc`]), so a
//!   change is atomic across instances and "at least one active admin" holds whatever races.
//! - Every change is written to the audit log by the [`Actor`] who made it.
//! - Each user carries a session generation: disabling a user, resetting a password or "sign
//!   out everywhere" bumps it, which ends every session of that user on every instance.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::team::audit;
use crate::store::{Store, StoreError, edit_doc, now_ms, read_doc};

pub use super::actor::{Actor, Role, log_name};

/// The document holding every user.
pub(super) const USERS_KEY: &str = "users";
/// Most users a deployment holds (the document stays small enough to read per request).
pub const MAX_USERS: usize = 200;
pub const MIN_PASSWORD: usize = 10;
pub const MAX_PASSWORD: usize = 256;

/// One person as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Lower-case; the user's id.
    pub email: String,
    pub name: String,
    pub role: Role,
    /// argon2id PHC string.
    pub password_hash: String,
    pub disabled: bool,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// Sessions opened under an older generation are no longer accepted.
    pub session_gen: u64,
    /// Two-step sign-in, when it is on ([`super::second_factor`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_factor: Option<super::second_factor::SecondFactor>,
    /// The identity provider's person this account belongs to, once they signed in with
    /// single sign-on ([`super::single_sign_on`]); an account made that way has no password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federated: Option<super::single_sign_on::Federated>,
    /// With `PASSWORD_SIGNIN=off`, only such admins (set by the command line) may still use
    /// a password: the way in when the identity provider is down.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub break_glass: bool,
    /// The projects a producer or viewer is limited to (empty: every project;
    /// [`super::membership`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub projects: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    Invalid(String),
    #[error("no user {0}")]
    NotFound(String),
    #[error("a user {0} exists already")]
    Exists(String),
    #[error("this needs the {0} role")]
    Forbidden(Role),
    #[error("{0}")]
    LastAdmin(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(super) type Users = BTreeMap<String, User>;

/// The canonical form of an email, or why it is not one.
pub fn normalize_email(email: &str) -> Result<String, AccountError> {
    let e = email.trim().to_ascii_lowercase();
    let ok = e.len() <= 254
        && e.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty() && !domain.contains('@'))
        && !e.chars().any(|c| c.is_whitespace() || c.is_control() || c == '|' || c == ',');
    if ok { Ok(e) } else { Err(AccountError::Invalid(format!("{:?} is not an email address", email.trim()))) }
}

pub(super) fn check_name(name: &str) -> Result<String, AccountError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 80 || n.chars().any(char::is_control) {
        return Err(AccountError::Invalid("a display name must be 1–80 printable characters".into()));
    }
    Ok(n.to_string())
}

fn check_password(p: &str) -> Result<(), AccountError> {
    let n = p.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&n) {
        return Err(AccountError::Invalid(format!("a password must be {MIN_PASSWORD}–{MAX_PASSWORD} characters")));
    }
    Ok(())
}

/// Password hashes computed at once, at most: each takes 19 MiB and tens of milliseconds on
/// purpose, so a flood of sign-ins queues here instead of exhausting memory.
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// argon2id hash of `password` (on the blocking pool: it takes tens of milliseconds on purpose).
pub async fn hash_password(password: &str) -> Result<String, AccountError> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let _slot = HASHING.acquire().await.map_err(|e| AccountError::Invalid(e.to_string()))?;
    let password = password.to_string();
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| AccountError::Invalid(format!("no randomness for a salt: {e}")))?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| AccountError::Invalid(e.to_string()))?;
        argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AccountError::Invalid(format!("cannot hash the password: {e}")))
    })
    .await
    .map_err(|e| AccountError::Invalid(e.to_string()))?
}

/// Whether `password` matches `hash` (false for a malformed hash).
pub(super) async fn password_matches(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    let Ok(_slot) = HASHING.acquire().await else { return false };
    let (password, hash) = (password.to_string(), hash.to_string());
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash).is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
    })
    .await
    .unwrap_or(false)
}

/// A hash of nothing anybody knows, verified against when the email is unknown, so that an
/// unknown email takes as long to refuse as a wrong password.
const DECOY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$ZJHb2Ojmx3rbxWXJCa8OuiInXyZPXwX1TGkqR6xEatg";

async fn all(store: &dyn Store) -> Result<Users, AccountError> {
    Ok(read_doc(store, USERS_KEY).await?)
}

/// One user, if there is one with this email.
pub async fn get(store: &dyn Store, email: &str) -> Result<Option<User>, AccountError> {
    let email = email.trim().to_ascii_lowercase();
    Ok(all(store).await?.remove(&email))
}

/// Every user, by email.
pub async fn list(store: &dyn Store) -> Result<Vec<User>, AccountError> {
    Ok(all(store).await?.into_values().collect())
}

/// Whether anyone can sign in yet.
pub async fn any(store: &dyn Store) -> Result<bool, AccountError> {
    Ok(!all(store).await?.is_empty())
}

/// The user this email and password open, if any: `None` for an unknown email, a wrong
/// password or a disabled user alike.
pub async fn verify(store: &dyn Store, email: &str, password: &str) -> Result<Option<User>, AccountError> {
    let user = get(store, email).await?;
    let hash = user.as_ref().map_or(DECOY_HASH, |u| u.password_hash.as_str());
    let ok = password.len() <= MAX_PASSWORD * 4 && password_matches(password, hash).await;
    Ok(user.filter(|u| ok && !u.disabled))
}

pub(super) fn active_admins(users: &Users) -> usize {
    users.values().filter(|u| u.role == Role::Admin && !u.disabled).count()
}

/// Applies `change` to one user under the lease and records it; refuses a change that would
/// leave no active admin. Returns (before, after).
pub(crate) async fn change_user(
    store: &dyn Store,
    by: &Actor,
    email: &str,
    action: &str,
    change: impl FnOnce(&mut User) -> Result<(), AccountError>,
    describe: impl Fn(&User) -> String,
) -> Result<(User, User), AccountError> {
    by.require(Role::Admin)?;
    let email = normalize_email(email)?;
    let (before, after) = edit_doc(store, USERS_KEY, |users: &mut Users| {
        let user = users.get_mut(&email).ok_or_else(|| AccountError::NotFound(email.clone()))?;
        let before = user.clone();
        change(user)?;
        user.updated_ms = now_ms();
        let after = user.clone();
        if active_admins(users) == 0 {
            return Err(AccountError::LastAdmin(format!("{email} is the last active admin; make someone else admin first")));
        }
        Ok::<_, AccountError>((before, after))
    })
    .await?;
    audit::record(store, by, action, &email, Some(describe(&before)), Some(describe(&after))).await?;
    Ok((before, after))
}

/// Applies `change` to one user's record as one step (no audit: its caller records what it
/// means), answering what `change` answers.
pub(crate) async fn edit<T>(store: &dyn Store, email: &str, change: impl FnOnce(&mut User) -> Result<T, AccountError>) -> Result<T, AccountError> {
    let email = normalize_email(email)?;
    edit_doc(store, USERS_KEY, |users: &mut Users| {
        let user = users.get_mut(&email).ok_or_else(|| AccountError::NotFound(email.clone()))?;
        let out = change(user)?;
        user.updated_ms = now_ms();
        Ok::<_, AccountError>(out)
    })
    .await
}

/// Adds a user. `by` must be an admin.
pub async fn add(store: &dyn Store, by: &Actor, email: &str, name: &str, role: Role, password: &str) -> Result<User, AccountError> {
    by.require(Role::Admin)?;
    let email = normalize_email(email)?;
    let name = if name.trim().is_empty() { email.split('@').next().unwrap_or_default().to_string() } else { name.to_string() };
    let name = check_name(&name)?;
    check_password(password)?;
    let now = now_ms();
    let user = User { email: email.clone(), name, role, password_hash: hash_password(password).await?, disabled: false, created_ms: now, updated_ms: now, session_gen: 1, second_factor: None, federated: None, break_glass: false, projects: Vec::new() };
    let stored = user.clone();
    edit_doc(store, USERS_KEY, |users: &mut Users| {
        if users.contains_key(&email) {
            return Err(AccountError::Exists(email.clone()));
        }
        if users.len() >= MAX_USERS {
            return Err(AccountError::Invalid(format!("at most {MAX_USERS} users; disable and remove some first")));
        }
        users.insert(email.clone(), stored);
        Ok(())
    })
    .await?;
    audit::record(store, by, "user added", &email, None, Some(format!("{} · {}", user.name, user.role))).await?;
    Ok(user)
}

pub async fn set_role(store: &dyn Store, by: &Actor, email: &str, role: Role) -> Result<User, AccountError> {
    let (_, after) = change_user(store, by, email, "role changed", |u| {
        u.role = role;
        Ok(())
    }, |u| u.role.to_string())
    .await?;
    Ok(after)
}

/// Disables (or enables again) a user; disabling ends their sessions at once.
pub async fn set_disabled(store: &dyn Store, by: &Actor, email: &str, disabled: bool) -> Result<User, AccountError> {
    let action = if disabled { "user disabled" } else { "user enabled" };
    let (_, after) = change_user(store, by, email, action, |u| {
        u.disabled = disabled;
        if disabled {
            u.session_gen += 1;
        }
        Ok(())
    }, |u| if u.disabled { "disabled".into() } else { "active".into() })
    .await?;
    Ok(after)
}

/// Marks an admin as break-glass (or no longer): with `PASSWORD_SIGNIN=off`, only they may
/// still sign in with a password. Only admins can be.
pub async fn set_break_glass(store: &dyn Store, by: &Actor, email: &str, on: bool) -> Result<User, AccountError> {
    let (_, after) = change_user(store, by, email, "break-glass access", |u| {
        if on && (u.role != Role::Admin || u.password_hash.is_empty()) {
            return Err(AccountError::Invalid(format!("{} must be an admin with a password to be break-glass", u.email)));
        }
        u.break_glass = on;
        Ok(())
    }, |u| if u.break_glass { "break-glass".into() } else { "none".into() })
    .await?;
    Ok(after)
}

/// Sets a new password and ends the user's sessions.
pub async fn reset_password(store: &dyn Store, by: &Actor, email: &str, password: &str) -> Result<User, AccountError> {
    check_password(password)?;
    let hash = hash_password(password).await?;
    let (_, after) = change_user(store, by, email, "password reset", |u| {
        u.password_hash = hash;
        u.session_gen += 1;
        Ok(())
    }, |u| format!("session generation {}", u.session_gen))
    .await?;
    Ok(after)
}

/// Ends every session of `email` on every instance ("sign out everywhere"). Anyone may do it
/// for themselves; an admin for anyone.
pub async fn end_sessions(store: &dyn Store, by: &Actor, email: &str) -> Result<(), AccountError> {
    let email = normalize_email(email)?;
    if by.who != email {
        by.require(Role::Admin)?;
    }
    edit_doc(store, USERS_KEY, |users: &mut Users| {
        let user = users.get_mut(&email).ok_or_else(|| AccountError::NotFound(email.clone()))?;
        user.session_gen += 1;
        Ok::<_, AccountError>(())
    })
    .await?;
    audit::record(store, by, "signed out everywhere", &email, None, None).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_parse() {
        assert!(Role::Admin.allows(Role::Producer) && Role::Producer.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Producer) && !Role::Producer.allows(Role::Admin));
        assert_eq!("Producer".parse::<Role>().ok(), Some(Role::Producer));
        assert!("owner".parse::<Role>().is_err());
    }

    #[test]
    fn emails_are_normalized_or_refused() {
        assert_eq!(normalize_email("  Ana@Studio.TEST ").ok().as_deref(), Some("ana@studio.test"));
        for bad in ["", "ana", "@studio.test", "ana@", "a b@studio.test", "ana@x@y"] {
            assert!(normalize_email(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[tokio::test]
    async fn the_decoy_hash_is_a_valid_argon2_hash() {
        assert!(argon2::password_hash::PasswordHash::new(DECOY_HASH).is_ok());
        let h = hash_password("correct horse battery").await.unwrap_or_default();
        assert!(password_matches("correct horse battery", &h).await);
        assert!(!password_matches("correct horse batterY", &h).await);
    }
}
