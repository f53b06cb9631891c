//! 02 · Secret — the API key vault. Shows whether a key is set, where it came from, a
//! fingerprint and when KIE last accepted it; the key itself never leaves the server. Admins
//! also manage the relay keys here: create (the key is shown once), revoke, last use.

use leptos::prelude::*;

use super::{Panel, badge, said, with_status};
use crate::api::{create_relay_key, list_relay_keys, revoke_relay_key};
use crate::view::{ConsoleStatus, Me, NewRelayKey, RelayKeyRow};

#[component]
pub fn SecretPanel() -> impl IntoView {
    view! {
        <Panel number="02" kicker="Secret" title="API Key Vault" badge=with_status(vault_badge)>
            <div class="vault">
                <div class="vault-name">"KIE_API_KEY"</div>
                <div class="muted">"Server-managed environment secret"</div>
                <div class="vault-mask" aria-label="key hidden">"•••• •••• •••• ••••" <span class="muted">" hidden"</span></div>
                {with_status(details)}
            </div>
            <p class="fine">
                "Keys never touch the browser. The gateway secret is set as a backend environment variable by an operator and is never entered, echoed, or stored on this page."
            </p>
            <p class="fine strong">"Configure via backend secret store"</p>
            {crate::when_role(Me::is_admin, || view! { <RelayKeys/> }, || ())}
        </Panel>
    }
}

fn vault_badge(s: &ConsoleStatus) -> impl IntoView + use<> {
    if s.key.configured { super::badge("ok", "Configured").into_any() } else { super::badge("off", "Not configured").into_any() }
}

fn details(s: &ConsoleStatus) -> impl IntoView + use<> {
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
        Some(g) if g.error.is_none() => format!("accepted by the balance call, {} (UTC)", crate::panels::clock(g.checked_ms)),
        Some(g) => format!("failed at {} (UTC): {}", crate::panels::clock(g.checked_ms), g.error.clone().unwrap_or_default()),
        None => "not probed".into(),
    }
}

#[derive(Clone)]
enum KeyChange {
    Create(String, String),
    Revoke(String),
}

/// Relay keys (admins): what programs use on the KIE-compatible API under /kie.
#[component]
fn RelayKeys() -> impl IntoView {
    let created = RwSignal::new(None::<NewRelayKey>);
    let change = Action::new(move |c: &KeyChange| {
        let c = c.clone();
        async move {
            match c {
                KeyChange::Create(project, name) => create_relay_key(project, name).await.map(|k| { created.set(Some(k)); }),
                KeyChange::Revoke(id) => revoke_relay_key(id).await.map(|_| ()),
            }
        }
    });
    // Loaded in the browser: this list is built there, for admins only (see `when_role`).
    let keys = LocalResource::new(move || {
        change.version().track();
        list_relay_keys()
    });
    let (project, name) = (RwSignal::new(String::new()), RwSignal::new(String::new()));
    let on_create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        change.dispatch(KeyChange::Create(project.get_untracked(), name.get_untracked()));
    };
    view! {
        <h3 class="sub">"Relay keys"</h3>
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || keys.get().map(|r| match r {
                Ok(list) if list.is_empty() => view! { <p class="empty">"No relay keys yet."</p> }.into_any(),
                Ok(list) => view! {
                    <ul class="keys" data-testid="relay-keys">{list.into_iter().map(|k| key_row(k, change)).collect_view()}</ul>
                }.into_any(),
                Err(e) => view! { <p class="error">{said(&e)}</p> }.into_any(),
            })}
        </Suspense>
        <form class="rule-form" on:submit=on_create data-testid="relay-key-form">
            <label>"Project "<input required=true maxlength="64" prop:value=project on:input=move |ev| project.set(event_target_value(&ev)) data-testid="relay-key-project"/></label>
            <label>"Label "<input required=true maxlength="64" prop:value=name on:input=move |ev| name.set(event_target_value(&ev)) data-testid="relay-key-name"/></label>
            <button type="submit" disabled=move || change.pending().get()>"Create key"</button>
        </form>
        {move || created.get().map(|k| view! {
            <div class="ok" data-testid="relay-key-created">
                <p>"Key for "{k.row.project.clone()}" ("{k.row.name.clone()}"). Copy it now: it is shown once, the console keeps only its hash."</p>
                <code class="once">{k.key.clone()}</code>
                <p class="muted small">"Callback signing secret: "<code>{k.webhook_secret.clone()}</code></p>
                <button type="button" class="link" on:click=move |_| created.set(None)>"I have copied it"</button>
            </div>
        })}
        {move || change.value().get().and_then(Result::err).map(|e| view! { <p class="error">{said(&e)}</p> })}
    }
}

fn key_row(k: RelayKeyRow, change: Action<KeyChange, Result<(), ServerFnError>>) -> impl IntoView {
    let id = k.id.clone();
    let live = k.revoked.is_none();
    view! {
        <li data-key=k.id.clone()>
            <code>{k.id.clone()}</code>" · "{k.name.clone()}" · project "{k.project.clone()}
            " "{if live { badge("ok", "live").into_any() } else { badge("bad", "revoked").into_any() }}
            <div class="muted small">
                "created "{k.created.clone()}" · last used "{k.last_used.clone().unwrap_or_else(|| "never".into())}
                {k.revoked.clone().map(|r| format!(" · revoked {r}"))}
            </div>
            {live.then(|| view! { <button type="button" class="link" on:click=move |_| { change.dispatch(KeyChange::Revoke(id.clone())); }>"Revoke"</button> })}
        </li>
    }
}
