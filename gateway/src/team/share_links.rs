//! Share links: read-only access to one project's Library (and, if allowed, its receipt
//! totals) for a client or freelancer without an account.
//!
//! - An admin or a producer makes one for a project, for at most 90 days, optionally with a
//!   password (argon2id, like an account's) and optionally showing the receipt totals. The
//!   link's token (64 hex characters, shown once) is kept only as its SHA-256; its short id
//!   (the digest's first 12 characters) names it in lists, the audit log and revocation.
//! - [`open`] is the one way in: an unknown, revoked or expired token are the same answer
//!   ([`ShareError::NotFound`]); a password is checked with wrong tries counted per link (at
//!   most 20 in 15 minutes); each opening is counted.
//! - All links live in one document (at most [`MAX_LINKS`]), edited under the store's lease.
//!   Creating and revoking are audited with the link's id and project.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

use super::accounts::{self, AccountError, Actor, Role};
use super::audit;
use super::sessions::digest;
use crate::Secret;
use crate::secret::random_hex;
use crate::store::{Store, StoreError, edit_doc, now_ms, read_doc};

const LINKS_KEY: &str = "share-links";
/// Links kept at once (revoked and expired ones included until they are swept).
pub const MAX_LINKS: usize = 500;
/// The longest a link may last.
pub const MAX_DAYS: u32 = 90;
/// Wrong passwords per link and window before it refuses every try until the window ends.
const MAX_WRONG: i64 = 20;
const WRONG_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Ended links are kept this long (for the list and the audit) before they are swept.
const KEEP_ENDED_MS: u64 = 30 * 24 * 3600 * 1000;

/// One share link as stored (never its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareLink {
    /// The token's SHA-256's first 12 hex characters.
    pub id: String,
    pub project: String,
    /// Who made it.
    pub created_by: String,
    pub created_ms: u64,
    pub expires_ms: u64,
    /// argon2id of the password, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// Whether the page shows the project's receipt totals.
    pub receipts: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_ms: Option<u64>,
}

impl ShareLink {
    /// Whether it still opens at `now`.
    pub fn live(&self, now: u64) -> bool {
        self.revoked_ms.is_none() && now < self.expires_ms
    }

    /// `live`, `revoked` or `expired` at `now`, as lists show it.
    pub fn state(&self, now: u64) -> &'static str {
        if self.revoked_ms.is_some() {
            "revoked"
        } else if self.live(now) {
            "live"
        } else {
            "expired"
        }
    }
}

/// A link as listed: with how many times it was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub link: ShareLink,
    pub uses: i64,
}

/// Every link by its token's full digest.
type Links = BTreeMap<String, ShareLink>;

#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error("{0}")]
    Invalid(String),
    /// Unknown, revoked and expired alike.
    #[error("this link does not exist or has ended")]
    NotFound,
    #[error("this link needs its password")]
    PasswordNeeded,
    #[error("wrong password")]
    WrongPassword,
    #[error("too many wrong passwords for this link; try again in 15 minutes")]
    Throttled,
    /// A project outside the person's reach ([`crate::team::membership`]).
    #[error("{0}")]
    Outside(String),
    #[error(transparent)]
    Account(#[from] AccountError),
}

impl From<StoreError> for ShareError {
    fn from(e: StoreError) -> Self {
        ShareError::Account(e.into())
    }
}

fn uses_key(id: &str) -> String {
    format!("share:uses:{id}")
}

/// What to make: the project, for how many days (1–90), an optional password (10–256
/// characters), and whether the receipt totals show.
pub struct NewLink<'a> {
    pub project: &'a str,
    pub days: u32,
    pub password: Option<&'a str>,
    pub receipts: bool,
}

/// Makes a link (admins and producers); the token is in the answer only.
pub async fn create(store: &dyn Store, by: &Actor, new: &NewLink<'_>) -> Result<(Secret, ShareLink), ShareError> {
    by.require(Role::Producer)?;
    let project = new.project.trim();
    if !crate::tasks::task::valid_name(project) {
        return Err(ShareError::Invalid(format!("the project must be {}", crate::tasks::task::NAME_RULE)));
    }
    by.membership.admit(project).map_err(ShareError::Outside)?;
    if !(1..=MAX_DAYS).contains(&new.days) {
        return Err(ShareError::Invalid(format!("a share link lasts 1–{MAX_DAYS} days")));
    }
    let password_hash = match new.password.filter(|p| !p.is_empty()) {
        Some(p) => {
            let n = p.chars().count();
            if !(accounts::MIN_PASSWORD..=accounts::MAX_PASSWORD).contains(&n) {
                return Err(ShareError::Invalid(format!("a link's password must be {}–{} characters", accounts::MIN_PASSWORD, accounts::MAX_PASSWORD)));
            }
            Some(accounts::hash_password(p).await?)
        }
        None => None,
    };
    let token = random_hex(32);
    let full = digest(&token);
    let now = now_ms();
    let link = ShareLink {
        id: full[..12].to_string(),
        project: project.to_string(),
        created_by: by.who.clone(),
        created_ms: now,
        expires_ms: now + u64::from(new.days) * 24 * 3600 * 1000,
        password_hash,
        receipts: new.receipts,
        revoked_ms: None,
    };
    let stored = link.clone();
    edit_doc(store, LINKS_KEY, |links: &mut Links| {
        links.retain(|_, l| l.live(now) || now.saturating_sub(l.revoked_ms.unwrap_or(l.expires_ms)) < KEEP_ENDED_MS);
        if links.len() >= MAX_LINKS {
            return Err(ShareError::Invalid(format!("at most {MAX_LINKS} share links; revoke some first")));
        }
        links.insert(full, stored);
        Ok(())
    })
    .await?;
    let detail = format!("{} · {} days{}{}", link.id, new.days, if link.password_hash.is_some() { " · password" } else { "" }, if link.receipts { " · receipt totals" } else { "" });
    audit::record(store, by, "share link created", &link.project, None, Some(detail)).await?;
    Ok((Secret::new(token), link))
}

/// Every link, newest first, with its use count (admins and producers).
pub async fn list(store: &dyn Store, by: &Actor) -> Result<Vec<Listed>, ShareError> {
    by.require(Role::Producer)?;
    let links: Links = read_doc(store, LINKS_KEY).await?;
    let mut out = Vec::with_capacity(links.len());
    for link in links.into_values().filter(|l| by.sees(&l.project)) {
        let uses = store.counter_get(&uses_key(&link.id)).await?;
        out.push(Listed { link, uses });
    }
    out.sort_by(|a, b| b.link.created_ms.cmp(&a.link.created_ms));
    Ok(out)
}

/// Ends a link at once, by its id (admins, or the producer who made it).
pub async fn revoke(store: &dyn Store, by: &Actor, id: &str) -> Result<ShareLink, ShareError> {
    by.require(Role::Producer)?;
    let now = now_ms();
    let link = edit_doc(store, LINKS_KEY, |links: &mut Links| {
        let link = links.values_mut().find(|l| l.id == id.trim() && by.sees(&l.project)).ok_or(ShareError::NotFound)?;
        if by.role != Role::Admin && link.created_by != by.who {
            return Err(ShareError::Account(AccountError::Forbidden(Role::Admin)));
        }
        link.revoked_ms.get_or_insert(now);
        Ok(link.clone())
    })
    .await?;
    audit::record(store, by, "share link revoked", &link.project, Some(link.id.clone()), None).await?;
    Ok(link)
}

/// How long a right password holds in one browser ([`unlock`]).
pub const PASS_TTL: Duration = Duration::from_secs(12 * 3600);

fn pass_key(pass: &str) -> String {
    format!("share:pass:{}", digest(pass))
}

/// The link `token` opens for someone who holds `pass` (from [`unlock`]; `None`: they hold
/// none), counting the opening; [`ShareError::PasswordNeeded`] when its password must be
/// given first.
pub async fn open(store: &dyn Store, token: &str, pass: Option<&str>) -> Result<ShareLink, ShareError> {
    let link = find(store, token).await?;
    if link.password_hash.is_some() {
        let held = match pass.filter(|p| p.len() == 64) {
            Some(p) => store.kv_get(&pass_key(p)).await?.is_some_and(|id| id == link.id.as_bytes()),
            None => false,
        };
        if !held {
            return Err(ShareError::PasswordNeeded);
        }
    }
    store.counter_add(&uses_key(&link.id), 1, None).await?;
    Ok(link)
}

/// Checks a link's password (wrong tries counted per link): a pass for [`open`], good for
/// [`PASS_TTL`].
pub async fn unlock(store: &dyn Store, token: &str, password: &str) -> Result<Secret, ShareError> {
    let link = find(store, token).await?;
    let Some(hash) = &link.password_hash else { return Err(ShareError::Invalid("this link has no password".into())) };
    let wrong_key = format!("share:wrong:{}", link.id);
    if store.counter_get(&wrong_key).await? >= MAX_WRONG {
        return Err(ShareError::Throttled);
    }
    if password.len() > accounts::MAX_PASSWORD * 4 || !accounts::password_matches(password, hash).await {
        store.counter_add(&wrong_key, 1, Some(WRONG_WINDOW)).await?;
        return Err(ShareError::WrongPassword);
    }
    let pass = random_hex(32);
    store.kv_set(&pass_key(&pass), link.id.as_bytes(), Some(PASS_TTL)).await?;
    Ok(Secret::new(pass))
}

/// The live link `token` names (no password asked, nothing counted).
pub async fn find(store: &dyn Store, token: &str) -> Result<ShareLink, ShareError> {
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ShareError::NotFound);
    }
    let links: Links = read_doc(store, LINKS_KEY).await?;
    links.get(&digest(token)).filter(|l| l.live(now_ms())).cloned().ok_or(ShareError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(expires_ms: u64, revoked_ms: Option<u64>) -> ShareLink {
        ShareLink { id: "abc".into(), project: "p".into(), created_by: "cli".into(), created_ms: 0, expires_ms, password_hash: None, receipts: false, revoked_ms }
    }

    #[test]
    fn a_link_opens_until_it_expires_or_is_revoked() {
        assert!(link(1_000, None).live(999));
        assert!(!link(1_000, None).live(1_000), "expired at its end");
        assert!(!link(1_000, Some(500)).live(600), "revoked");
        assert_eq!((link(1_000, None).state(999), link(1_000, None).state(1_000), link(1_000, Some(5)).state(6)), ("live", "expired", "revoked"));
    }
}
