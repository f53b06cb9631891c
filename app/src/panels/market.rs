//! 03 · Market — the model catalog with KIE's prices. The catalog itself lands with the
//! Market work; until then the panel says what it will hold and shows no invented prices.

use leptos::prelude::*;

use super::{Panel, badge};

#[component]
pub fn MarketPanel() -> impl IntoView {
    view! {
        <Panel number="03" kicker="Market" title="Model Market" badge=badge("off", "Catalog not loaded") class="tall">
            <ul class="categories">
                <li>"Video"</li>
                <li>"Image"</li>
                <li>"Audio"</li>
                <li>"Language"</li>
            </ul>
            <p>
                "Every model KIE offers, by category, with its inputs and its price in credits and dollars (1 credit = $0.005), and an estimate for your exact inputs before you submit."
            </p>
            <p class="fine">"No catalog is loaded in this build, so no prices are shown."</p>
        </Panel>
    }
}
