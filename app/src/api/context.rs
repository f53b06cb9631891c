//! What every server function starts from (server side only): the [`ConsoleContext`] the
//! server provides, who is asking ([`signed_in`]), and how a refusal or a store failure is
//! answered ([`refuse`], [`store_error`]). The Gateway panel's probe is cached here, so many
//! open consoles do not hammer KIE.

use leptos::prelude::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::view::{ConsoleStatus, GatewayView, KeyView, Upstream};
use gateway::kie::{KieClient, KieError};
pub use gateway::team::accounts::{Actor, Role};
use gateway::{Lifecycle, Store};

/// The console status read for this request, shared by every panel it renders (the
/// server provides a new one per request).
#[derive(Clone, Default)]
pub struct StatusMemo(pub Arc<tokio::sync::OnceCell<ConsoleStatus>>);

/// How long one probe answer is reused, so many open consoles do not hammer KIE.
const PROBE_TTL: Duration = Duration::from_secs(5);

/// What the server hands to every render and server function.
#[derive(Clone)]
pub struct ConsoleContext {
    pub store: Arc<dyn Store>,
    /// Submit, retry, and everything else that moves a task.
    pub lifecycle: Lifecycle,
    pub upstream: Upstream,
    pub key: KeyView,
    pub callback_base: Option<String>,
    pub callback_signed: bool,
    /// A client for the Gateway panel's probe (short timeout), when there is an upstream.
    pub probe_client: Option<KieClient>,
    pub probe_cache: Arc<Mutex<Option<(Instant, GatewayView)>>>,
    /// The Library (`None`: LIBRARY_URL=off).
    pub library: Option<gateway::library::Library>,
    /// `RUNWAY_ALERT_DAYS`.
    pub runway_alert_days: u64,
    /// `CREDITS_EXPIRE_ON` (UTC day): prepaid credits expire then.
    pub credits_expire_on: Option<String>,
    /// How the sign-in page offers to sign in.
    pub sign_in: crate::SignInOptions,
}

impl ConsoleContext {
    /// The last probe if fresh, else a new one.
    pub async fn gateway(&self) -> Option<GatewayView> {
        let client = self.probe_client.as_ref()?;
        if let Ok(cache) = self.probe_cache.lock()
            && let Some((at, view)) = cache.as_ref()
            && at.elapsed() < PROBE_TTL
        {
            return Some(view.clone());
        }
        let probe = client.probe().await;
        let host = client.base().host_str().unwrap_or("the upstream").to_string();
        let (reachable, balance, error) = match probe.balance {
            Ok(b) => (true, Some(b.to_string()), None),
            Err(e) => {
                tracing::warn!(error = %e, "gateway probe failed");
                (matches!(e, KieError::Auth(_) | KieError::Maintenance(_) | KieError::Upstream { .. }), None, Some(probe_message(&e, &host)))
            }
        };
        let view = GatewayView { reachable, latency_us: probe.latency.as_micros() as u64, balance, error, checked_ms: gateway::store::now_ms() };
        if let Ok(mut cache) = self.probe_cache.lock() {
            *cache = Some((Instant::now(), view.clone()));
        }
        Some(view)
    }
}

/// An operator-facing sentence for a failed probe.
fn probe_message(e: &KieError, host: &str) -> String {
    match e {
        KieError::Auth(_) => "The key was rejected (401): check KIE_API_KEY.".into(),
        KieError::Connect(_) => format!("Cannot reach {host}: the connection failed."),
        KieError::Timeout(d) => format!("{host} did not answer within {} s.", d.as_secs()),
        KieError::Maintenance(_) => "KIE is in maintenance (455).".into(),
        other => other.to_string(),
    }
}

/// A store failure, logged here; the person sees only that the store is unavailable.
pub fn store_error(e: impl std::fmt::Display) -> ServerFnError {
    tracing::warn!(error = %e, "store call failed");
    ServerFnError::new("the store is unavailable; try again shortly")
}

pub fn context() -> Result<ConsoleContext, ServerFnError> {
    use_context::<ConsoleContext>().ok_or_else(|| ServerFnError::new("console context missing (server misconfigured)"))
}

/// An error with this HTTP status (instead of server functions' default 500).
pub fn refuse(status: u16, msg: impl Into<String>) -> ServerFnError {
    if let Some(opts) = use_context::<leptos_axum::ResponseOptions>() {
        opts.set_status(http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST));
    }
    ServerFnError::new(msg.into())
}

/// The console and the signed-in person, if their role allows `need`: else 401 (no
/// session) or 403 (role), each with a sentence.
pub fn signed_in(need: Role) -> Result<(ConsoleContext, Actor), ServerFnError> {
    let ctx = context()?;
    let actor = use_context::<http::request::Parts>().and_then(|p| p.extensions.get::<Actor>().cloned());
    let Some(actor) = actor else { return Err(refuse(401, "Sign in first.")) };
    if !actor.role.allows(need) {
        return Err(refuse(403, format!("This needs the {need} role; you are signed in as {} ({}).", actor.who, actor.role)));
    }
    Ok((ctx, actor))
}
