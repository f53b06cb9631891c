//! Projects people belong to. A producer or viewer may be limited to some projects (a
//! freelancer on one production); admins, and anyone with no limit, reach every project —
//! the default. What a person may see and touch is their [`Membership`], carried by their
//! [`Actor`]; every read of tasks goes through [`crate::tasks::visible`] with it, and every
//! other read (the Library, receipts, the Ledger, cost rules…) asks [`Membership::sees`].
//!
//! A task of a project outside a person's reach does not exist for them: asked for by id it is
//! "not found" (404), never "forbidden" (403), so its id tells them nothing.

use serde::{Deserialize, Serialize};

use super::accounts::{AccountError, Role, User, change_user};
use super::actor::Actor;
use crate::store::Store;

/// Most projects one person may be limited to.
pub const MAX_PROJECTS: usize = 50;

/// Which projects a person reaches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Membership {
    /// Every project (admins, the command line, anyone with no limit).
    #[default]
    All,
    /// Only these (sorted, no repeats, never empty).
    Only(Vec<String>),
}

impl Membership {
    /// What `user` reaches: an admin every project, anyone else their list (none: every one).
    pub fn of(user: &User) -> Membership {
        if user.role == Role::Admin || user.projects.is_empty() {
            Membership::All
        } else {
            Membership::Only(user.projects.clone())
        }
    }

    /// Whether a task or asset of `project` is theirs to see.
    pub fn sees(&self, project: &str) -> bool {
        match self {
            Membership::All => true,
            Membership::Only(ps) => ps.binary_search_by(|p| p.as_str().cmp(project)).is_ok(),
        }
    }

    /// The projects they are limited to (`None`: every one).
    pub fn projects(&self) -> Option<&[String]> {
        match self {
            Membership::All => None,
            Membership::Only(ps) => Some(ps),
        }
    }

    pub fn is_limited(&self) -> bool {
        matches!(self, Membership::Only(_))
    }

    /// `Ok` when they may start work in `project`; else a sentence naming what they may.
    pub fn admit(&self, project: &str) -> Result<(), String> {
        match self {
            _ if self.sees(project) => Ok(()),
            Membership::Only(ps) => Err(format!("You work on {}; {:?} is not one of your projects (an admin can add you to it).", ps.join(", "), project.chars().take(64).collect::<String>())),
            Membership::All => Ok(()),
        }
    }
}

impl std::fmt::Display for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Membership::All => f.write_str("all projects"),
            Membership::Only(ps) => f.write_str(&ps.join(", ")),
        }
    }
}

/// A list of projects as people write it (`trailer, teaser`): each checked, sorted, no
/// repeats. Empty means every project.
pub fn parse(list: &str) -> Result<Vec<String>, AccountError> {
    let mut out: Vec<String> = Vec::new();
    for p in list.split([',', '\n']).map(str::trim).filter(|p| !p.is_empty()) {
        if !crate::tasks::task::valid_name(p) {
            return Err(AccountError::Invalid(format!("{:?} is not a project name: a project name is {}", p.chars().take(64).collect::<String>(), crate::tasks::task::NAME_RULE)));
        }
        out.push(p.to_string());
    }
    out.sort();
    out.dedup();
    if out.len() > MAX_PROJECTS {
        return Err(AccountError::Invalid(format!("at most {MAX_PROJECTS} projects per person; leave the list empty for all of them")));
    }
    Ok(out)
}

/// Limits `email` to the projects of `list` (as [`parse`] reads it; empty: every project), audited. Admins only; an admin's
/// list is kept but does not limit them while they are admin. Their open live streams end, so
/// every view they hold is read again under the new reach.
pub async fn set_projects(store: &dyn Store, by: &Actor, email: &str, list: &str) -> Result<User, AccountError> {
    let projects = parse(list)?;
    let (_, after) = change_user(
        store,
        by,
        email,
        "projects changed",
        |u| {
            u.projects = projects;
            Ok(())
        },
        |u| if u.projects.is_empty() { "all projects".into() } else { u.projects.join(", ") },
    )
    .await?;
    Ok(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_membership_sees_only_its_projects() {
        let only = Membership::Only(parse("teaser, trailer,teaser").unwrap());
        assert_eq!(only, Membership::Only(vec!["teaser".into(), "trailer".into()]));
        assert!(only.sees("trailer") && only.sees("teaser"));
        assert!(!only.sees("trail") && !only.sees("") && !only.sees("zeta"));
        assert!(Membership::All.sees("anything"));
        assert!(only.admit("zeta").unwrap_err().contains("teaser, trailer"));
        assert!(parse("ok, bad/name").is_err());
        assert!(parse(&(0..=MAX_PROJECTS).map(|i| format!("p{i}")).collect::<Vec<_>>().join(",")).is_err());
        assert_eq!(parse(" , ").unwrap(), Vec::<String>::new());
    }
}
