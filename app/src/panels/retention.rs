//! 07 · Retention — downloading results before KIE deletes them (14 days).

use leptos::prelude::*;

use super::{Panel, badge};

#[component]
pub fn RetentionPanel() -> impl IntoView {
    view! {
        <Panel number="07" kicker="Retention" title="Asset Retention Guard" badge=badge("off", "Not active")>
            <dl class="kv">
                <dt>"Retention window"</dt><dd>"~14 days — KIE deletes generated media after this"</dd>
                <dt>"Download buffer"</dt><dd>"2 days before expiry"</dd>
            </dl>
            <p class="fine">
                "Finished results will be pulled into the Library before they expire; downloaded assets flip to In Library and survive past KIE's deletion."
            </p>
        </Panel>
    }
}
