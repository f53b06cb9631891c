//! Who does something: an [`Actor`] (a signed-in person, or the command line) with a
//! [`Role`], the one check of what they may do ([`Actor::require`]), and how logs name them
//! ([`log_name`]: never an email in clear).

use serde::{Deserialize, Serialize};

use super::accounts::{AccountError, User};

/// What a person may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Producer,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Producer, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Producer => "producer",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may do what needs `need`.
    pub fn allows(self, need: Role) -> bool {
        self >= need
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = AccountError;
    fn from_str(s: &str) -> Result<Role, AccountError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "viewer" => Ok(Role::Viewer),
            "producer" => Ok(Role::Producer),
            "admin" => Ok(Role::Admin),
            other => Err(AccountError::Invalid(format!("unknown role {other:?}: use admin, producer or viewer"))),
        }
    }
}

/// Who does something, and from where: a signed-in person, or the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The user's email, or `cli` for the command line.
    pub who: String,
    pub name: String,
    pub role: Role,
    /// The client's address, or `local shell`.
    pub from: String,
    /// The projects they reach ([`super::membership`]).
    pub membership: super::membership::Membership,
}

/// How logs name a person or an owner: `user:` and a digest of the email (logs carry no
/// email); `cli` and relay keys (`key:<id>`, not secret) as they are.
pub fn log_name(who: &str) -> String {
    use sha2::Digest;
    if who == "cli" || who.starts_with("key:") {
        return who.to_string();
    }
    format!("user:{}", &crate::secret::hex(&sha2::Sha256::digest(who.as_bytes()))[..12])
}

impl Actor {
    /// How logs name this actor (see [`log_name`]).
    pub fn log_id(&self) -> String {
        log_name(&self.who)
    }

    /// The operator at the server's command line (full rights: they hold the data).
    pub fn cli() -> Actor {
        Actor { who: "cli".into(), name: "Command line".into(), role: Role::Admin, from: "local shell".into(), membership: super::membership::Membership::All }
    }

    pub fn user(u: &User, from: &str) -> Actor {
        Actor { who: u.email.clone(), name: u.name.clone(), role: u.role, from: from.to_string(), membership: super::membership::Membership::of(u) }
    }

    /// Whether a task or asset of `project` is theirs to see.
    pub fn sees(&self, project: &str) -> bool {
        self.membership.sees(project)
    }

    /// `Ok` if this actor's role allows `need`.
    pub fn require(&self, need: Role) -> Result<(), AccountError> {
        if self.role.allows(need) { Ok(()) } else { Err(AccountError::Forbidden(need)) }
    }
}

