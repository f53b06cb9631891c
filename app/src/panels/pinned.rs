//! 04 · Pinned — each user's favourite models, kept in the shared store.

use leptos::prelude::*;

use super::{Panel, badge};

#[component]
pub fn PinnedPanel() -> impl IntoView {
    view! {
        <Panel number="04" kicker="Pinned" title="Favorite Models" badge=badge("off", "0 pinned")>
            <p class="empty">"No pinned models."</p>
            <p class="fine">
                "Pin models from the Market; pins follow you across browsers and instances, and the composer lists them first."
            </p>
        </Panel>
    }
}
