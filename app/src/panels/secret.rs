//! 02 · Secret — the API key vault. Shows whether a key is set, where it came from, a
//! fingerprint and when KIE last accepted it; the key itself never leaves the server. Admins
//! also manage the relay keys here: create (the key is shown once), revoke, last use.

use leptos::prelude::*;

use super::{Acted, Fields, Panel, PanelId, act_form, badge, field_owned, ok_note};
use crate::api::{create_relay_key, list_relay_keys, revoke_relay_key};
use crate::view::{ConsoleStatus, NewRelayKey, RelayKeyRow};

pub async fn render(flash: Option<AnyView>) -> AnyView {
    let status = crate::api::load_console_status().await.ok();
    let admin = super::me().await.is_some_and(|m| m.is_admin());
    let keys = if admin { Some(list_relay_keys().await) } else { None };
    let vault_badge = match &status {
        Some(s) if s.key.configured => badge("ok", "Configured"),
        Some(_) => badge("off", "Not configured"),
        None => badge("bad", "Unavailable"),
    };
    view! {
        <Panel id=PanelId::Secret badge=vault_badge flash=flash>
            <div class="vault">
                <div class="vault-name">"KIE_API_KEY"</div>
                <div class="muted">"Server-managed environment secret"</div>
                <div class="vault-mask">"•••• •••• •••• ••••" <span class="muted">" hidden"</span></div>
                {status.as_ref().map(details)}
            </div>
            <details class="help"><summary title="What this is and how it works">"?"</summary><p class="fine">
                "Keys never touch the browser. The gateway secret is set as a backend environment variable by an operator and is never entered, echoed, or stored on this page."
            </p></details>
            {keys.map(relay_keys)}
        </Panel>
    }
    .into_any()
}

fn details(s: &ConsoleStatus) -> AnyView {
    match (&s.key.source, &s.key.fingerprint) {
        (Some(source), Some(fp)) => view! {
            <dl class="kv">
                <dt>"Source"</dt><dd>{source.clone()}</dd>
                <dt>"Fingerprint"</dt><dd><code>{fp.clone()}</code></dd>
                <dt>"Last verification"</dt><dd data-testid="vault-verified">{verification(s)}</dd>
            </dl>
        }
        .into_any(),
        _ => view! { <p class="muted" data-testid="vault-state">"Not configured — no key on the server."</p> }.into_any(),
    }
}

/// When KIE last answered the balance probe with this key, from the probe's own record.
fn verification(s: &ConsoleStatus) -> String {
    match &s.gateway {
        Some(g) if g.error.is_none() => format!("accepted by the balance call, {} (UTC)", super::clock(g.checked_ms)),
        Some(g) => format!("failed at {} (UTC): {}", super::clock(g.checked_ms), g.error.clone().unwrap_or_default()),
        None => "not probed".into(),
    }
}

/// Relay keys (admins): what programs use on the KIE-compatible API under /kie.
fn relay_keys(keys: Result<Vec<RelayKeyRow>, ServerFnError>) -> AnyView {
    view! {
        <h3 class="sub">"Relay keys"</h3>
        {match keys {
            Ok(list) if list.is_empty() => view! { <p class="empty">"No relay keys yet."</p> }.into_any(),
            Ok(list) => view! { <ul class="keys" data-testid="relay-keys">{list.into_iter().map(key_row).collect_view()}</ul> }.into_any(),
            Err(e) => super::unavailable(&e),
        }}
        <form class="rule-form" method="post" action=act_form(PanelId::Secret) data-testid="relay-key-form">
            <input type="hidden" name="do" value="create"/>
            <label>"Project "<input name="project" required=true maxlength="64" data-testid="relay-key-project"/></label>
            <label>"Label "<input name="name" required=true maxlength="64" data-testid="relay-key-name"/></label>
            <button type="submit">"Create key"</button>
        </form>
    }
    .into_any()
}

fn key_row(k: RelayKeyRow) -> impl IntoView {
    let live = k.revoked.is_none();
    view! {
        <li data-key=k.id.clone()>
            <code>{k.id.clone()}</code>" · "{k.name.clone()}" · project "{k.project.clone()}
            " "{if live { badge("ok", "live") } else { badge("bad", "revoked") }}
            <div class="muted small">
                "created "{super::when(&k.created)}" · last used "{k.last_used.as_deref().map_or_else(|| "never".into_any(), super::when)}
                {k.revoked.as_deref().map(|r| view! { " · revoked "{super::when(r)} })}
            </div>
            {live.then(|| view! {
                <form method="post" action=act_form(PanelId::Secret) class="inline">
                    <input type="hidden" name="do" value="revoke"/>
                    <button type="submit" class="link" name="id" value=k.id.clone()>"Revoke"</button>
                </form>
            })}
        </li>
    }
}

/// The key just made, shown once.
fn created(k: NewRelayKey) -> AnyView {
    view! {
        <div class="ok" role="status" data-testid="relay-key-created">
            <p>"Key for "{k.row.project.clone()}" ("{k.row.name.clone()}"). Copy it now: it is shown once, the console keeps only its hash."</p>
            <code class="once">{k.key.clone()}</code>
            <p class="muted small">"Callback signing secret: "<code>{k.webhook_secret.clone()}</code></p>
        </div>
    }
    .into_any()
}

pub async fn act(form: Fields) -> Acted {
    let get = |n: &str| field_owned(&form, n).unwrap_or_default();
    match get("do").as_str() {
        "create" => Acted::of(create_relay_key(get("project"), get("name")).await, created, "relay-key-error"),
        "revoke" => Acted::of(revoke_relay_key(get("id")).await, |k| ok_note("relay-key-revoked", format!("Revoked {}.", k.id)), "relay-key-error"),
        other => Acted::new(view! { <p class="error">{format!("Unknown change {other:?}.")}</p> }.into_any()),
    }
}
