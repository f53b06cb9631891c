//! 06 · Throttle — the rate guard that keeps every instance under KIE's limit.

use leptos::prelude::*;

use super::{Panel, badge};

#[component]
pub fn ThrottlePanel() -> impl IntoView {
    view! {
        <Panel number="06" kicker="Throttle" title="Rate Guard" badge=badge("off", "Not active")>
            <div class="big-figure"><span>"20"</span><small>"req/10s"</small></div>
            <div class="muted">"KIE's documented limit per account; the 21st request is rejected, not queued."</div>
            <p class="fine">
                "The guard will admit at most that many new tasks in any 10-second window across all instances, queue the rest in order and drain them as the window allows — so the team never sees a 429."
            </p>
        </Panel>
    }
}
