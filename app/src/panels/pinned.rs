//! 04 · Pinned — the person's pinned models, kept in the shared store so they follow them
//! across browsers and instances; the composer lists them first. Unpinning posts to this
//! panel and re-renders the Market too.

use leptos::prelude::*;

use super::market::pin_button;
use super::{Panel, PanelId, badge};
use crate::api::list_models;

pub async fn render() -> AnyView {
    let pinned = list_models().await.map(|m| m.models.into_iter().filter(|m| m.pinned).collect::<Vec<_>>());
    let head = match &pinned {
        Ok(p) => badge(if p.is_empty() { "off" } else { "info" }, format!("{} pinned", p.len())),
        Err(_) => badge("bad", "Unavailable"),
    };
    let body = match pinned {
        Err(e) => super::unavailable(&e),
        Ok(list) if list.is_empty() => view! { <p class="empty">"No pinned models. Pin one with ☆ in the Market."</p> }.into_any(),
        Ok(list) => view! {
            <form method="post" action=super::act_form(PanelId::Pinned)>
                <ul class="pins" data-testid="pinned-list">
                    {list.into_iter().map(|m| view! {
                        <li data-model=m.id.clone()>
                            <span class="model-name">{m.id.clone()}</span>
                            <span class="muted">{m.provider.clone()}</span>
                            {pin_button(&m, PanelId::Pinned)}
                        </li>
                    }).collect_view()}
                </ul>
            </form>
        }
        .into_any(),
    };
    view! {
        <Panel id=PanelId::Pinned badge=head>
            {body}
            <details class="help"><summary title="What this is and how it works">"?"</summary><p class="fine">"Pins follow you across browsers and instances; the composer lists them first."</p></details>
        </Panel>
    }
    .into_any()
}
