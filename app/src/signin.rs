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
        "signed-out" => ("ok", "You are signed out."),
        "signed-out-everywhere" => ("ok", "You are signed out on every browser and device."),
        _ => return None,
    })
}

#[component]
pub fn SignIn() -> impl IntoView {
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
            <form method="post" action="/auth/signin" class="signin-form" data-testid="signin-form">
                <label>"Email "<input type="email" name="email" autocomplete="username" required=true maxlength="254" data-testid="signin-email"/></label>
                <label>"Password "<input type="password" name="password" autocomplete="current-password" required=true maxlength="256" data-testid="signin-password"/></label>
                <label>"Code "<span class="muted">"(if two-step sign-in is on)"</span><input name="code" autocomplete="one-time-code" maxlength="32" spellcheck="false" data-testid="signin-code"/></label>
                <input type="hidden" name="next" value=next/>
                <button type="submit" data-testid="signin-submit">"Sign in"</button>
            </form>
            <p class="fine">"Accounts are made by an admin (Team panel) or on the server: "<code>"control-room user add EMAIL --role admin"</code>"."</p>
        </main>
    }
}
