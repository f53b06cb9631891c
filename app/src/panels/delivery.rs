//! 08 · Delivery — where KIE's callbacks arrive, and the fallback poller.

use leptos::prelude::*;

use super::{Panel, badge, with_status};
use crate::view::ConsoleStatus;

#[component]
pub fn DeliveryPanel() -> impl IntoView {
    view! {
        <Panel number="08" kicker="Delivery" title="Callback / Webhook Manager" badge=badge("info", "Async")>
            <p>"A task returns a task id immediately — HTTP 200 is not a result. The asset will arrive at this endpoint when generation completes; the callback receiver and the fallback poller come with the task lifecycle."</p>
            {with_status(endpoint)}
            <p class="fine">"Fallback polling will cover a missed callback, on KIE's documented schedule."</p>
        </Panel>
    }
}

fn endpoint(s: &ConsoleStatus) -> impl IntoView + use<> {
    let url = match &s.callback_base {
        Some(base) => view! { <code class="endpoint">{format!("{base}/callbacks/kie/<task token>")}</code> }.into_any(),
        None => view! { <p class="warn">"PUBLIC_URL is not set: KIE will not be able to call this console back; results will rely on polling."</p> }.into_any(),
    };
    let signed = if s.callback_signed { "KIE_WEBHOOK_HMAC_KEY is set: signatures will be checked" } else { "No KIE_WEBHOOK_HMAC_KEY: signatures cannot be checked" };
    view! { {url} <p class="muted">{signed}</p> }
}
