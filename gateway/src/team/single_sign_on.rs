//! Single sign-on: who a person the team's identity provider vouches for may be here.
//!
//! The protocol (OpenID Connect's code flow, the ID token's signature and claims) is the
//! server's (`server::single_sign_on`); what it hands here is an [`Identity`] whose token was
//! verified. This module decides, from the team's [`Admission`]:
//!
//! - **who may enter**: an email the provider verified, in an allowed domain
//!   (`OIDC_ALLOWED_DOMAINS`) and/or a member of an allowed group (`OIDC_ALLOWED_GROUPS`);
//! - **as what**: admin or producer when one of their groups (the role claim) is listed for
//!   it, else viewer — at every sign-in, so a change of group at the provider holds from the
//!   next one; a token without the claim leaves the role to the Team panel (new: viewer);
//! - **the account**: made just in time on a first sign-in (no password), bound to the
//!   provider's subject; an existing account of the same email is bound on its first single
//!   sign-on. Disabled here still wins, and another subject claiming a bound email is refused.
//!
//! Every entry and refusal is in the audit log; refusals name no token.

use serde::{Deserialize, Serialize};

use super::accounts::{self, AccountError, Actor, Role, User, Users};
use super::audit;
use super::sessions::{self, SessionPolicy};
use crate::Secret;
use crate::store::{Store, StoreError, edit_doc, now_ms};

/// The identity provider's person an account belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Federated {
    /// The provider (`iss`).
    pub issuer: String,
    /// Their stable id there (`sub`).
    pub subject: String,
}

/// Who the team lets in through its identity provider, and with which role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admission {
    /// Email domains allowed (lower case); empty: any domain (then groups must decide).
    pub allowed_domains: Vec<String>,
    /// Groups whose members may enter; empty: no group needed.
    pub allowed_groups: Vec<String>,
    /// Groups whose members are admins here.
    pub admin_groups: Vec<String>,
    /// Groups whose members are producers here.
    pub producer_groups: Vec<String>,
}

/// What a verified ID token says of the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    /// The role claim's values (`groups` by default); `None` when the token has no such claim
    /// (Google's, say): roles are then the Team panel's to set.
    pub groups: Option<Vec<String>>,
}

/// Why someone the provider vouched for may not enter.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("the identity provider gave no email for this person")]
    NoEmail,
    #[error("the identity provider has not verified this person's email")]
    EmailNotVerified,
    #[error("email domain {0:?} is not allowed here (OIDC_ALLOWED_DOMAINS)")]
    DomainNotAllowed(String),
    #[error("this person is in none of the groups allowed here (OIDC_ALLOWED_GROUPS)")]
    NotInGroup,
    #[error("this account is disabled here")]
    Disabled,
    #[error("this email belongs to another person of the identity provider")]
    OtherSubject,
    #[error("the team is full: at most {} people", accounts::MAX_USERS)]
    Full,
    #[error(transparent)]
    Account(#[from] AccountError),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Refusal::Account(e.into())
    }
}

impl Admission {
    /// Whether nothing restricts who may enter (then the server refuses to start: an identity
    /// provider may serve more people than the team).
    pub fn is_open(&self) -> bool {
        self.allowed_domains.is_empty() && self.allowed_groups.is_empty()
    }

    /// The email `identity` may enter with and its role here (`None`: the token has no role
    /// claim, the role is left as it is), or why not.
    pub fn admit(&self, identity: &Identity) -> Result<(String, Option<Role>), Refusal> {
        let email = identity.email.as_deref().ok_or(Refusal::NoEmail)?;
        let email = accounts::normalize_email(email).map_err(|_| Refusal::NoEmail)?;
        if !identity.email_verified {
            return Err(Refusal::EmailNotVerified);
        }
        let domain = email.rsplit_once('@').map(|(_, d)| d.to_string()).unwrap_or_default();
        if !self.allowed_domains.is_empty() && !self.allowed_domains.iter().any(|d| d.eq_ignore_ascii_case(&domain)) {
            return Err(Refusal::DomainNotAllowed(domain));
        }
        let member = |list: &[String]| identity.groups.iter().flatten().any(|g| list.contains(g));
        if !self.allowed_groups.is_empty() && !member(&self.allowed_groups) {
            return Err(Refusal::NotInGroup);
        }
        let role = identity.groups.as_ref().map(|_| {
            if member(&self.admin_groups) {
                Role::Admin
            } else if member(&self.producer_groups) {
                Role::Producer
            } else {
                Role::Viewer
            }
        });
        Ok((email, role))
    }
}

/// What one sign-in did to the account.
enum Change {
    Created,
    Bound,
    Role(Role),
    None,
}

/// Admits `identity`, makes or updates its account, opens a session (closing `previous`),
/// and audits it all. `from`: the client's address.
pub async fn sign_in(store: &dyn Store, admission: &Admission, identity: &Identity, from: &str, previous: Option<&str>, policy: &SessionPolicy) -> Result<(Secret, User), Refusal> {
    let (email, role) = match admission.admit(identity) {
        Ok(v) => v,
        Err(e) => {
            let who = identity.email.as_deref().unwrap_or("(no email)").trim().to_ascii_lowercase();
            audit::append(store, &who, from, "sign-in refused", &who, None, Some(format!("single sign-on: {e}"))).await?;
            return Err(e);
        }
    };
    let federated = Federated { issuer: identity.issuer.clone(), subject: identity.subject.clone() };
    let name = identity.name.as_deref().and_then(|n| accounts::check_name(n).ok()).unwrap_or_else(|| email.split('@').next().unwrap_or_default().to_string());
    let now = now_ms();
    let outcome = edit_doc(store, accounts::USERS_KEY, |users: &mut Users| {
        let change = match users.get_mut(&email) {
            None => {
                if users.len() >= accounts::MAX_USERS {
                    return Err(Refusal::Full);
                }
                let user = User { email: email.clone(), name: name.clone(), role: role.unwrap_or(Role::Viewer), password_hash: String::new(), disabled: false, created_ms: now, updated_ms: now, session_gen: 1, second_factor: None, federated: Some(federated.clone()), break_glass: false, projects: Vec::new() };
                users.insert(email.clone(), user);
                Change::Created
            }
            Some(user) => {
                if user.disabled {
                    return Err(Refusal::Disabled);
                }
                let change = match &user.federated {
                    Some(f) if *f != federated => return Err(Refusal::OtherSubject),
                    Some(_) if role.is_some_and(|r| r != user.role) => Change::Role(user.role),
                    Some(_) => Change::None,
                    None => Change::Bound,
                };
                if !matches!(change, Change::None) {
                    user.federated = Some(federated.clone());
                    user.role = role.unwrap_or(user.role);
                    user.updated_ms = now;
                }
                change
            }
        };
        let user = users.get(&email).cloned().ok_or_else(|| Refusal::Account(AccountError::NotFound(email.clone())))?;
        Ok::<_, Refusal>((change, user))
    })
    .await;
    let (change, user) = match outcome {
        Ok(v) => v,
        Err(e @ (Refusal::Disabled | Refusal::OtherSubject | Refusal::Full)) => {
            audit::append(store, &email, from, "sign-in refused", &email, None, Some(format!("single sign-on: {e}"))).await?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let actor = Actor::user(&user, from);
    match change {
        Change::Created => audit::record(store, &actor, "user added", &email, None, Some(format!("{} · {} (single sign-on)", user.name, user.role))).await?,
        Change::Bound => audit::record(store, &actor, "single sign-on bound", &email, None, Some(format!("{} · {}", identity.issuer, user.role))).await?,
        Change::Role(before) => audit::record(store, &actor, "role changed", &email, Some(before.to_string()), Some(format!("{} (from the identity provider's groups)", user.role))).await?,
        Change::None => {}
    }
    if let Some(old) = previous {
        sessions::close(store, old).await?;
    }
    let token = sessions::open(store, &user, from, policy).await?;
    audit::record(store, &actor, "sign-in", &email, None, Some(format!("{} (single sign-on)", user.role))).await?;
    Ok((token, user))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(email: &str, verified: bool, groups: &[&str]) -> Identity {
        Identity { issuer: "https://id.example".into(), subject: "s1".into(), email: Some(email.into()), email_verified: verified, name: None, groups: Some(groups.iter().map(|g| g.to_string()).collect()) }
    }

    fn team() -> Admission {
        Admission { allowed_domains: vec!["studio.test".into()], allowed_groups: vec![], admin_groups: vec!["cr-admins".into()], producer_groups: vec!["cr-producers".into()] }
    }

    #[test]
    fn roles_follow_groups_and_everyone_else_is_a_viewer() {
        let t = team();
        assert_eq!(t.admit(&person("Ada@Studio.test", true, &["x", "cr-admins"])).expect("in").1, Some(Role::Admin));
        assert_eq!(t.admit(&person("pat@studio.test", true, &["cr-producers"])).expect("in").1, Some(Role::Producer));
        let (email, role) = t.admit(&person("vic@studio.test", true, &[])).expect("in");
        assert_eq!((email.as_str(), role), ("vic@studio.test", Some(Role::Viewer)));
        let no_claim = Identity { groups: None, ..person("gil@studio.test", true, &[]) };
        assert_eq!(t.admit(&no_claim).expect("in").1, None, "no role claim: the role is left to the Team panel");
    }

    #[test]
    fn unverified_emails_other_domains_and_outsiders_stay_out() {
        let t = team();
        assert!(matches!(t.admit(&person("una@studio.test", false, &[])), Err(Refusal::EmailNotVerified)));
        assert!(matches!(t.admit(&person("eve@elsewhere.test", true, &["cr-admins"])), Err(Refusal::DomainNotAllowed(d)) if d == "elsewhere.test"));
        assert!(matches!(t.admit(&Identity { email: None, ..person("x@studio.test", true, &[]) }), Err(Refusal::NoEmail)));
        let groups_only = Admission { allowed_domains: vec![], allowed_groups: vec!["staff".into()], ..team() };
        assert!(matches!(groups_only.admit(&person("a@any.test", true, &["other"])), Err(Refusal::NotInGroup)));
        assert!(groups_only.admit(&person("a@any.test", true, &["staff"])).is_ok());
        assert!(matches!(groups_only.admit(&Identity { groups: None, ..person("a@any.test", true, &[]) }), Err(Refusal::NotInGroup)));
        assert!(Admission::default().is_open() && !team().is_open());
    }
}
