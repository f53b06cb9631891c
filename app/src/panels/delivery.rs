//! 08 · Delivery — where KIE's callbacks arrive, and the fallback poller.

use leptos::prelude::*;

use super::{Panel, PanelId, badge};
use crate::view::ConsoleStatus;

pub async fn render() -> AnyView {
    let status = crate::api::load_console_status().await;
    view! {
        <Panel id=PanelId::Delivery badge=badge("info", "Async")>
            <p>"A task returns a task id immediately — HTTP 200 is not a result. KIE calls this endpoint when generation ends; every callback is confirmed with recordInfo before it is trusted, and duplicates or late ones change nothing."</p>
            {match status {
                Ok(s) => endpoint(&s).into_any(),
                Err(e) => super::unavailable(&e),
            }}
            <details class="help"><summary title="What this is and how it works">"?"</summary><p class="fine">"The fallback poller follows every running task on KIE's documented schedule (2–3 s, then 5–10 s, then 15–30 s), so a missed callback delays a result, never loses it."</p></details>
        </Panel>
    }
    .into_any()
}

fn endpoint(s: &ConsoleStatus) -> impl IntoView + use<> {
    let url = match &s.callback_base {
        Some(base) => view! { <code class="endpoint">{format!("{base}/callbacks/kie/<task token>")}</code> }.into_any(),
        None => view! { <p class="warn">"PUBLIC_URL is not set: KIE cannot call this console back; results come by polling."</p> }.into_any(),
    };
    let signed = if s.callback_signed { "KIE_WEBHOOK_HMAC_KEY is set: unsigned or wrongly signed callbacks are refused" } else { "No KIE_WEBHOOK_HMAC_KEY: signatures are not checked (results are still confirmed with recordInfo)" };
    view! { {url} <p class="muted">{signed}</p> }
}
