//! Server functions of the team: who am I (every role), users and relay keys (admin), the audit
//! log (admin). Thin: check the role, call the gateway core, map to view types.

use leptos::prelude::*;

use crate::view::{AuditView, Me, NewRelayKey, RelayKeyRow, TwoStepSetup, TwoStepView, UserRow};

#[cfg(feature = "ssr")]
pub(crate) mod server_side {
    use super::*;
    use crate::api::context::{refuse, store_error};
    use crate::view::AuditRow;
    use gateway::team::accounts::{AccountError, User};
    use gateway::team::audit::{AuditEntry, utc};
    use gateway::team::relay_keys::{RelayKey, RelayKeyError};

    pub fn account_error(e: AccountError) -> ServerFnError {
        match e {
            AccountError::Store(e) => store_error(e),
            AccountError::NotFound(_) => refuse(404, e.to_string()),
            AccountError::Exists(_) | AccountError::LastAdmin(_) => refuse(409, e.to_string()),
            AccountError::Forbidden(_) => refuse(403, e.to_string()),
            AccountError::Invalid(_) => refuse(422, e.to_string()),
        }
    }

    pub fn key_error(e: RelayKeyError) -> ServerFnError {
        match e {
            RelayKeyError::Store(e) => store_error(e),
            RelayKeyError::NotFound(_) => refuse(404, e.to_string()),
            RelayKeyError::Forbidden(_) | RelayKeyError::Unauthorized => refuse(403, e.to_string()),
            RelayKeyError::Invalid(_) => refuse(422, e.to_string()),
        }
    }

    pub fn user_row(u: User) -> UserRow {
        UserRow { two_step: u.second_factor.is_some(), projects: u.projects, email: u.email, name: u.name, role: u.role.to_string(), disabled: u.disabled, created: utc(u.created_ms) }
    }

    pub fn key_row(k: RelayKey) -> RelayKeyRow {
        RelayKeyRow { id: k.id, name: k.name, project: k.project, created: utc(k.created_ms), last_used: k.last_used_ms.map(utc), revoked: k.revoked_ms.map(utc) }
    }

    pub fn audit_row(e: AuditEntry) -> AuditRow {
        AuditRow { seq: e.seq, at: utc(e.at_ms), who: e.who, from: e.from, action: e.action, target: e.target, before: e.before, after: e.after }
    }

    pub fn role(r: &str) -> Result<gateway::team::accounts::Role, ServerFnError> {
        r.parse().map_err(account_error)
    }
}

#[cfg(feature = "ssr")]
use crate::api::context::{Role, signed_in};

/// The signed-in person.
#[server(endpoint = "whoami")]
pub async fn whoami() -> Result<Me, ServerFnError> {
    let (_, actor) = signed_in(Role::Viewer)?;
    let projects = actor.membership.projects().map(<[String]>::to_vec).unwrap_or_default();
    Ok(Me { email: actor.who, name: actor.name, role: actor.role.to_string(), projects })
}

/// Every user (admin).
#[server(endpoint = "list_users")]
pub async fn list_users() -> Result<Vec<UserRow>, ServerFnError> {
    let (ctx, _) = signed_in(Role::Admin)?;
    let users = gateway::team::accounts::list(ctx.store.as_ref()).await.map_err(server_side::account_error)?;
    Ok(users.into_iter().map(server_side::user_row).collect())
}

/// Adds a user (admin); they sign in with this password.
#[server(endpoint = "add_user")]
pub async fn add_user(email: String, name: String, role: String, password: String) -> Result<UserRow, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Admin)?;
    let role = server_side::role(&role)?;
    let u = gateway::team::accounts::add(ctx.store.as_ref(), &actor, &email, &name, role, &password).await.map_err(server_side::account_error)?;
    Ok(server_side::user_row(u))
}

/// Changes a user's role (admin); it holds from their next request.
#[server(endpoint = "set_user_role")]
pub async fn set_user_role(email: String, role: String) -> Result<UserRow, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Admin)?;
    let role = server_side::role(&role)?;
    let u = gateway::team::accounts::set_role(ctx.store.as_ref(), &actor, &email, role).await.map_err(server_side::account_error)?;
    Ok(server_side::user_row(u))
}

/// Limits a producer or viewer to `projects` (comma-separated; empty: every project), admin
/// only, audited; it holds from their next request, and their live streams start again.
#[server(endpoint = "set_user_projects")]
pub async fn set_user_projects(email: String, projects: String) -> Result<UserRow, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Admin)?;
    let u = gateway::team::membership::set_projects(ctx.store.as_ref(), &actor, &email, &projects).await.map_err(server_side::account_error)?;
    Ok(server_side::user_row(u))
}

/// Disables (their sessions end) or enables a user (admin).
#[server(endpoint = "set_user_disabled")]
pub async fn set_user_disabled(email: String, disabled: bool) -> Result<UserRow, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Admin)?;
    let u = gateway::team::accounts::set_disabled(ctx.store.as_ref(), &actor, &email, disabled).await.map_err(server_side::account_error)?;
    Ok(server_side::user_row(u))
}

/// Sets a new password for a user (admin); their sessions end.
#[server(endpoint = "reset_user_password")]
pub async fn reset_user_password(email: String, password: String) -> Result<UserRow, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Admin)?;
    let u = gateway::team::accounts::reset_password(ctx.store.as_ref(), &actor, &email, &password).await.map_err(server_side::account_error)?;
    Ok(server_side::user_row(u))
}

/// Ends every session of a user on every instance (admin, or anyone for themselves).
#[server(endpoint = "end_user_sessions")]
pub async fn end_user_sessions(email: String) -> Result<(), ServerFnError> {
    let (ctx, actor) = signed_in(Role::Viewer)?;
    gateway::team::accounts::end_sessions(ctx.store.as_ref(), &actor, &email).await.map_err(server_side::account_error)
}

/// `text` as a QR code, an SVG drawn on the server (two-step sign-in's `otpauth://` address).
#[cfg(feature = "ssr")]
pub fn qr_svg(text: &str) -> Result<String, String> {
    let qr = qrcode::QrCode::new(text.as_bytes()).map_err(|e| format!("cannot draw the QR code: {e}"))?;
    Ok(qr.render::<qrcode::render::svg::Color>().min_dimensions(200, 200).quiet_zone(true).build())
}

/// The signed-in person's two-step sign-in.
#[server(endpoint = "two_step_status")]
pub async fn two_step_status() -> Result<TwoStepView, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Viewer)?;
    let user = gateway::team::accounts::get(ctx.store.as_ref(), &actor.who).await.map_err(server_side::account_error)?;
    let sf = user.and_then(|u| u.second_factor);
    Ok(TwoStepView { since: sf.as_ref().map(|s| gateway::team::audit::utc(s.since_ms)), recovery_left: sf.map_or(0, |s| s.recovery_left()) })
}

/// Starts two-step sign-in's set-up for the signed-in person: a new secret, as text and as a
/// QR code, waiting 10 minutes for its first code.
#[server(endpoint = "two_step_begin")]
pub async fn two_step_begin() -> Result<TwoStepSetup, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Viewer)?;
    let e = gateway::team::second_factor::begin(ctx.store.as_ref(), &actor).await.map_err(server_side::account_error)?;
    let qr_svg = qr_svg(&e.uri).map_err(ServerFnError::new)?;
    Ok(TwoStepSetup { secret: e.secret, qr_svg })
}

/// Finishes the set-up with a code from the app; answers the recovery codes (shown once).
#[server(endpoint = "two_step_confirm")]
pub async fn two_step_confirm(code: String) -> Result<Vec<String>, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Viewer)?;
    gateway::team::second_factor::confirm(ctx.store.as_ref(), &actor, &code).await.map_err(server_side::account_error)
}

/// Turns two-step sign-in off: the person themselves with a code, or an admin for anyone
/// (`code` then unused).
#[server(endpoint = "two_step_off")]
pub async fn two_step_off(email: String, code: String) -> Result<(), ServerFnError> {
    let (ctx, actor) = signed_in(Role::Viewer)?;
    gateway::team::second_factor::turn_off(ctx.store.as_ref(), &actor, &email, Some(&code)).await.map_err(server_side::account_error)
}

/// Whether the team requires two-step sign-in of every password account (admin).
#[server(endpoint = "two_step_required")]
pub async fn two_step_required() -> Result<bool, ServerFnError> {
    let (ctx, _) = signed_in(Role::Admin)?;
    gateway::team::second_factor::required(ctx.store.as_ref()).await.map_err(server_side::account_error)
}

/// Requires two-step sign-in of every password account, or stops requiring it (admin).
#[server(endpoint = "require_two_step")]
pub async fn require_two_step(on: bool) -> Result<(), ServerFnError> {
    let (ctx, actor) = signed_in(Role::Admin)?;
    gateway::team::second_factor::set_required(ctx.store.as_ref(), &actor, on).await.map_err(server_side::account_error)
}

/// Every relay key (admin), newest first.
#[server(endpoint = "list_relay_keys")]
pub async fn list_relay_keys() -> Result<Vec<RelayKeyRow>, ServerFnError> {
    let (ctx, _) = signed_in(Role::Admin)?;
    let keys = gateway::team::relay_keys::list(ctx.store.as_ref()).await.map_err(server_side::key_error)?;
    Ok(keys.into_iter().map(server_side::key_row).collect())
}

/// Creates a relay key (admin); its text is in this answer and nowhere else, ever.
#[server(endpoint = "create_relay_key")]
pub async fn create_relay_key(project: String, name: String) -> Result<NewRelayKey, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Admin)?;
    let new = gateway::team::relay_keys::create(ctx.store.as_ref(), &actor, &project, &name).await.map_err(server_side::key_error)?;
    let webhook_secret = new.key.webhook_secret.clone();
    Ok(NewRelayKey { key: new.text.expose().to_string(), webhook_secret, row: server_side::key_row(new.key) })
}

/// Revokes a relay key at once, on every instance (admin).
#[server(endpoint = "revoke_relay_key")]
pub async fn revoke_relay_key(id: String) -> Result<RelayKeyRow, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Admin)?;
    let k = gateway::team::relay_keys::revoke(ctx.store.as_ref(), &actor, id.trim()).await.map_err(server_side::key_error)?;
    Ok(server_side::key_row(k))
}

/// A page of the audit log (admin), newest first, filtered.
#[server(endpoint = "audit_log")]
pub async fn audit_log(#[server(default)] filter: AuditQuery, before: Option<u64>) -> Result<AuditView, ServerFnError> {
    let (ctx, _) = signed_in(Role::Admin)?;
    let clip = |v: Option<String>| v.map(|s| s.trim().chars().take(200).collect::<String>()).filter(|s| !s.is_empty());
    let f = gateway::team::audit::AuditFilter { who: clip(filter.who), action: clip(filter.action), text: clip(filter.text), since_ms: None };
    let page = gateway::team::audit::search(ctx.store.as_ref(), &f, before, 100).await.map_err(crate::api::context::store_error)?;
    Ok(AuditView { rows: page.entries.into_iter().map(server_side::audit_row).collect(), next: page.next_before })
}

/// The Audit panel's filter: all optional, all must match, case-insensitive.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditQuery {
    pub who: Option<String>,
    pub action: Option<String>,
    /// Anywhere in the target, before or after.
    pub text: Option<String>,
}
