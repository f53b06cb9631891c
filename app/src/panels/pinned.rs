//! 04 · Pinned — the person's pinned models, kept in the shared store so they follow them
//! across browsers and instances; the composer lists them first.

use leptos::prelude::*;

use super::market::{market, pin_button};
use super::{Panel, badge};

#[component]
pub fn PinnedPanel() -> impl IntoView {
    let market = market();
    let pinned = move || market.models().map(|ms| ms.into_iter().filter(|m| m.pinned).collect::<Vec<_>>());
    let head = move || match pinned() {
        Some(p) => badge(if p.is_empty() { "off" } else { "info" }, format!("{} pinned", p.len())).into_any(),
        None => badge("wait", "Loading").into_any(),
    };
    view! {
        <Panel number="04" kicker="Pinned" title="Favorite Models" badge=view! { <Suspense fallback=|| ()>{head}</Suspense> }>
            <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || pinned().map(|list| {
                    if list.is_empty() {
                        return view! { <p class="empty">"No pinned models. Pin one with ☆ in the Market."</p> }.into_any();
                    }
                    view! {
                        <ul class="pins" data-testid="pinned-list">
                            {list.into_iter().map(|m| view! {
                                <li data-model=m.id.clone()>
                                    <span class="model-name">{m.id.clone()}</span>
                                    <span class="muted">{m.provider.clone()}</span>
                                    {pin_button(&m)}
                                </li>
                            }).collect_view()}
                        </ul>
                    }.into_any()
                })}
            </Suspense>
            <p class="fine">"Pins follow you across browsers and instances; the composer lists them first."</p>
        </Panel>
    }
}
