//! Who is signed in, and the admins' panels: Team (12), the Key Vault (02) and the Audit log (13).

use serde::{Deserialize, Serialize};

/// The signed-in person, as the page needs them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Me {
    pub email: String,
    pub name: String,
    /// "viewer", "producer" or "admin".
    pub role: String,
    /// The projects they are limited to (empty: every project).
    #[serde(default)]
    pub projects: Vec<String>,
}

impl Me {
    pub fn can_produce(&self) -> bool {
        self.role == "producer" || self.role == "admin"
    }

    pub fn is_admin(&self) -> bool {
        self.role == "admin"
    }
}

/// One user in the Team panel (never a password hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRow {
    pub email: String,
    pub name: String,
    pub role: String,
    pub disabled: bool,
    /// UTC, RFC 3339.
    pub created: String,
    /// Two-step sign-in is on.
    #[serde(default)]
    pub two_step: bool,
    /// The projects they are limited to (empty: every project).
    #[serde(default)]
    pub projects: Vec<String>,
}

/// The signed-in person's two-step sign-in (never its secret once enrolled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TwoStepView {
    /// On since (UTC, RFC 3339), or off.
    pub since: Option<String>,
    pub recovery_left: usize,
}

/// A set-up waiting for its first code: shown once, as text and as a QR code (an SVG drawn on
/// the server).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TwoStepSetup {
    pub secret: String,
    pub qr_svg: String,
}

/// One relay key in the vault panel (never the key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayKeyRow {
    pub id: String,
    pub name: String,
    pub project: String,
    /// Times in UTC, RFC 3339.
    pub created: String,
    pub last_used: Option<String>,
    pub revoked: Option<String>,
}

/// A relay key just created: the only time its text is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRelayKey {
    pub row: RelayKeyRow,
    pub key: String,
    pub webhook_secret: String,
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRow {
    pub seq: u64,
    /// UTC, RFC 3339.
    pub at: String,
    pub who: String,
    pub from: String,
    pub action: String,
    pub target: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// A page of the audit log, newest first; `next` continues it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditView {
    pub rows: Vec<AuditRow>,
    pub next: Option<u64>,
}
