//! Settings · You — two-step sign-in for the signed-in person: set up (a QR code drawn on the
//! server and the secret as text, then a code from the app; the recovery codes are shown once),
//! or turn it off with a code. Plain forms posted to this panel: no script needed.

use leptos::prelude::*;

use super::{Acted, Fields, Panel, PanelId, act_form, badge, field_owned, ok_note};
use crate::api::{two_step_begin, two_step_confirm, two_step_off, two_step_status};
use crate::view::TwoStepSetup;

pub async fn render(flash: Option<AnyView>) -> AnyView {
    let status = two_step_status().await;
    let head = match &status {
        Ok(s) if s.since.is_some() => badge("ok", "On"),
        Ok(_) => badge("off", "Off"),
        Err(_) => badge("bad", "Unavailable"),
    };
    view! {
        <Panel id=PanelId::TwoStep badge=head flash=flash>
            {match status {
                Ok(s) => match s.since {
                    Some(since) => view! {
                        <p data-testid="two-step-state">"On since "{super::when(&since)}" · "{format!("{} recovery codes left", s.recovery_left)}</p>
                        <form class="rule-form" method="post" action=act_form(PanelId::TwoStep) data-testid="two-step-off">
                            <input type="hidden" name="do" value="off"/>
                            <label>"Code "<input name="code" required=true maxlength="32" autocomplete="one-time-code" spellcheck="false" data-testid="two-step-off-code"/></label>
                            <button type="submit">"Turn off"</button>
                        </form>
                    }.into_any(),
                    None => view! {
                        <p data-testid="two-step-state">"Off: a password alone opens your account."</p>
                        <form class="rule-form" method="post" action=act_form(PanelId::TwoStep) data-testid="two-step-begin">
                            <input type="hidden" name="do" value="begin"/>
                            <button type="submit">"Set up two-step sign-in"</button>
                        </form>
                    }.into_any(),
                },
                Err(e) => super::unavailable(&e),
            }}
            <details class="help"><summary title="What this is and how it works">"?"</summary><p class="fine">
                "With two-step sign-in on, signing in with your password also asks for the six-digit code your authenticator app (any TOTP app) shows, or one of your recovery codes, each usable once. An admin can turn it off for someone who lost their device (Team panel)."
            </p></details>
        </Panel>
    }
    .into_any()
}

/// A set-up waiting for its first code: the QR code, the secret as text, and the form.
fn setup(s: TwoStepSetup) -> AnyView {
    view! {
        <div data-testid="two-step-setup">
            <p>"Scan this with your authenticator app, or type the secret in, then enter the code it shows (within 10 minutes)."</p>
            <div class="qr" inner_html=s.qr_svg role="img" aria-label="QR code of the two-step secret"></div>
            <p class="muted small">"Secret: "<code class="once" data-testid="two-step-secret">{s.secret}</code></p>
            <form class="rule-form" method="post" action=act_form(PanelId::TwoStep)>
                <input type="hidden" name="do" value="confirm"/>
                <label>"Code "<input name="code" required=true maxlength="8" inputmode="numeric" autocomplete="one-time-code" data-testid="two-step-confirm-code"/></label>
                <button type="submit" data-testid="two-step-confirm">"Turn on"</button>
            </form>
        </div>
    }
    .into_any()
}

/// Turned on: the recovery codes, shown this once.
fn recovery(codes: Vec<String>) -> AnyView {
    view! {
        <div class="ok" role="status" data-testid="two-step-on">
            <p>"Two-step sign-in is on. Keep these recovery codes somewhere safe: each opens your account once without the app, and they are not shown again."</p>
            <ul class="codes" data-testid="two-step-recovery">{codes.into_iter().map(|c| view! { <li><code>{c}</code></li> }).collect_view()}</ul>
        </div>
    }
    .into_any()
}

pub async fn act(form: Fields) -> Acted {
    let get = |n: &str| field_owned(&form, n).unwrap_or_default();
    match get("do").as_str() {
        "begin" => Acted::of(two_step_begin().await, setup, "two-step-error"),
        "confirm" => Acted::of(two_step_confirm(get("code")).await, recovery, "two-step-error"),
        "off" => {
            let me = super::me().await.map(|m| m.email).unwrap_or_default();
            Acted::of(two_step_off(me, get("code")).await, |()| ok_note("two-step-off-done", "Two-step sign-in is off.".into()), "two-step-error")
        }
        other => Acted::new(view! { <p class="error">{format!("Unknown change {other:?}.")}</p> }.into_any()),
    }
}
