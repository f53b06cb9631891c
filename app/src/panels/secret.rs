//! 02 · Secret — the API key vault. Shows whether a key is set, where it came from and a
//! fingerprint; the key itself never leaves the server.

use leptos::prelude::*;

use super::{Panel, with_status};
use crate::view::ConsoleStatus;

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
            </dl>
        }
        .into_any(),
        _ => view! { <p class="muted" data-testid="vault-state">"Not configured — no key on the server."</p> }.into_any(),
    }
}
