//! The sign-in page: a plain HTML form posted to `/auth/signin`, so it works before (and
//! without) the WASM bundle. The server answers with a redirect: to the page asked for, or back
//! here with `?error=` naming what went wrong.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

/// What each `?error=` code says to the person.
fn message(code: &str) -> Option<(&'static str, &'static str)> {
    Some(match code {
        "refused" => ("error", "Wrong email or password."),
        "throttled" => ("error", "Too many failed sign-ins from this address; wait 15 minutes and try again."),
        "slow-down" => ("error", "This account is under a flood of failed sign-ins from many addresses; each attempt must wait for the one before. Try again in a minute."),
        "unavailable" => ("error", "The console's store is unavailable; try again shortly."),
        "code" => ("error", "This account has two-step sign-in on: enter your email and password again with the six-digit code from your authenticator app (or a recovery code)."),
        "enrol-expired" => ("error", "The set-up of two-step sign-in has expired (it lasts 10 minutes): sign in again to start over."),
        "passwords-off" => ("error", "Passwords are off here: sign in with the team's identity provider."),
        "sso-throttled" => ("error", "Too many sign-ins were started from this address; wait 10 minutes and try again."),
        "sso-off" => ("error", "Single sign-on is not set up on this console."),
        "sso-unreachable" => ("error", "The identity provider cannot be reached; try again shortly, or ask an admin."),
        "sso-denied" => ("error", "The identity provider did not sign you in (cancelled or refused)."),
        "sso-state" => ("error", "That sign-in link has expired or was already used: start again."),
        "sso-failed" => ("error", "The identity provider's answer could not be verified; an admin will find why in the server's log and the audit log."),
        "sso-email" => ("error", "The identity provider gave no verified email for you: ask its admin to verify it."),
        "sso-not-allowed" => ("error", "Your account at the identity provider is not one this console lets in (its domain or groups)."),
        "sso-disabled" => ("error", "Your account here is disabled: ask an admin."),
        "sso-other-person" => ("error", "This email is bound to another person of the identity provider: ask an admin."),
        "sso-full" => ("error", "The team is full here: ask an admin to make room."),
        "signed-out" => ("ok", "You are signed out."),
        "signed-out-everywhere" => ("ok", "You are signed out on every browser and device."),
        _ => return None,
    })
}

/// How the sign-in page offers to sign in (from the server's configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInOptions {
    /// The identity provider's name, when single sign-on is set up.
    pub provider: Option<String>,
    /// Whether everyone may use a password (`PASSWORD_SIGNIN` is not `off`).
    pub passwords: bool,
}

impl Default for SignInOptions {
    fn default() -> Self {
        SignInOptions { provider: None, passwords: true }
    }
}

/// `s` for a URL's query.
fn urlencode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[component]
pub fn SignIn() -> impl IntoView {
    #[cfg(feature = "ssr")]
    let options = use_context::<crate::api::ConsoleContext>().map(|c| c.sign_in).unwrap_or_default();
    #[cfg(not(feature = "ssr"))]
    let options = SignInOptions::default();
    let query = use_query_map();
    let note = move || {
        query.with(|q| q.get("error")).and_then(|c| message(&c)).map(|(class, text)| view! { <p class=class role="status" data-testid="signin-message">{text}</p> })
    };
    let next = move || query.with(|q| q.get("next")).filter(|n| n.starts_with('/') && !n.starts_with("//")).unwrap_or_else(|| "/".into());
    view! {
        <Title text="Sign in · KIE Control Room"/>
        <main class="signin">
            <div class="brand">
                <span class="brand-mark">"BROAD|CAST"</span>
                <span class="brand-sub">"Video Creation Studio"</span>
            </div>
            <h1>"KIE Control Room"</h1>
            {note}
            {options.provider.clone().map(|name| {
                let href = move || format!("/auth/oidc/start?next={}", urlencode(&next()));
                view! { <p><a class="button sso" href=href data-testid="signin-sso">{format!("Sign in with {name}")}</a></p> }
            })}
            {(options.provider.is_some() && !options.passwords).then(|| view! { <p class="fine">"Passwords are for break-glass admins only here."</p> })}
            <details open=options.provider.is_none() || options.passwords class="signin-passwords"><summary>"Sign in with a password"</summary>
            <form method="post" action="/auth/signin" class="signin-form" data-testid="signin-form">
                <label>"Email "<input type="email" name="email" autocomplete="username" required=true maxlength="254" data-testid="signin-email"/></label>
                <label>"Password "<input type="password" name="password" autocomplete="current-password" required=true maxlength="256" data-testid="signin-password"/></label>
                <label>"Code "<span class="muted">"(if two-step sign-in is on)"</span><input name="code" autocomplete="one-time-code" maxlength="32" spellcheck="false" data-testid="signin-code"/></label>
                <input type="hidden" name="next" value=next/>
                <button type="submit" data-testid="signin-submit">"Sign in"</button>
            </form>
            </details>
            <p class="fine">"Accounts are made by an admin (Team panel) or on the server: "<code>"control-room user add EMAIL --role admin"</code>"."</p>
        </main>
    }
}
