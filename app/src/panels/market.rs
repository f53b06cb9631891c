//! 03 · Market — every model of the catalog by category, with its prices in credits and
//! dollars, search and category filter, and a model's page: its inputs and a price calculator.
//!
//! The Market's data ([`Market`]) is shared through context with the Pinned panel and the
//! composer, so pinning a model shows everywhere at once.

use leptos::prelude::*;

use super::{Panel, badge};
use crate::api::{list_models, set_pin};
use crate::view::{MarketView, ModelOption};

/// The categories, in the order the screen shows them.
pub const CATEGORIES: [&str; 4] = ["video", "image", "audio", "language"];

/// The Market, shared by the Market and Pinned panels and the composer.
#[derive(Clone, Copy)]
pub struct Market {
    pub data: Resource<Result<MarketView, ServerFnError>>,
    /// Bumped after a pin changes: reloads `data`.
    changed: RwSignal<u64>,
}

impl Market {
    pub fn provide() -> Market {
        let changed = RwSignal::new(0u64);
        let market = Market { data: Resource::new(move || changed.get(), |_| list_models()), changed };
        provide_context(market);
        market
    }

    /// The models, once loaded.
    pub fn models(&self) -> Option<Vec<ModelOption>> {
        self.data.get().and_then(Result::ok).map(|m| m.models)
    }

    /// Pins or unpins a model, then reloads.
    pub fn pin(&self, model: String, pinned: bool) {
        let changed = self.changed;
        leptos::task::spawn_local(async move {
            if let Err(e) = set_pin(model, pinned).await {
                leptos::logging::warn!("pin failed: {e}");
            }
            changed.update(|n| *n += 1);
        });
    }
}

pub fn market() -> Market {
    expect_context::<Market>()
}

fn title_case(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// The star that pins or unpins a model.
pub fn pin_button(m: &ModelOption) -> AnyView {
    let market = market();
    let (id, pinned) = (m.id.clone(), m.pinned);
    let label = if pinned { format!("Unpin {id}") } else { format!("Pin {id}") };
    view! {
        <button type="button" class="pin" class:pinned=pinned aria-pressed=pinned.to_string() aria-label=label data-testid="pin-toggle"
            on:click=move |_| market.pin(id.clone(), !pinned)>
            {if pinned { "★" } else { "☆" }}
        </button>
    }
    .into_any()
}

#[component]
pub fn MarketPanel() -> impl IntoView {
    let market = market();
    let search = RwSignal::new(String::new());
    let category = RwSignal::new(String::new());
    let open = RwSignal::new(None::<String>);
    let shown = move || -> Vec<ModelOption> {
        let q = search.get().to_lowercase();
        let cat = category.get();
        market
            .models()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| cat.is_empty() || m.category == cat)
            .filter(|m| q.is_empty() || [&m.id, &m.provider, &m.purpose].iter().any(|f| f.to_lowercase().contains(&q)))
            .collect()
    };
    let head = move || match market.data.get() {
        Some(Ok(m)) => badge("ok", format!("{} models · prices of {}", m.models.len(), m.prices_taken)).into_any(),
        Some(Err(_)) => badge("bad", "Catalog unavailable").into_any(),
        None => badge("wait", "Loading").into_any(),
    };
    view! {
        <Panel number="03" kicker="Market" title="Model Market" badge=view! { <Suspense fallback=|| ()>{head}</Suspense> } class="tall">
            <div class="market-tools">
                <input type="search" placeholder="Search models, providers, uses" aria-label="Search models" data-testid="market-search"
                    prop:value=search on:input=move |ev| search.set(event_target_value(&ev))/>
                <select aria-label="Category" data-testid="market-category" on:change=move |ev| category.set(event_target_value(&ev))>
                    <option value="">"All categories"</option>
                    {CATEGORIES.map(|c| view! { <option value=c>{title_case(c)}</option> }).collect_view()}
                </select>
            </div>
            <Suspense fallback=|| view! { <p class="muted">"Loading the catalog…"</p> }>
                {move || market.data.get().map(|r| match r {
                    Err(e) => view! { <p class="error">"The catalog could not be read: "{e.to_string()}</p> }.into_any(),
                    Ok(_) => {
                        let models = shown();
                        if models.is_empty() {
                            return view! { <p class="empty">"No model matches."</p> }.into_any();
                        }
                        CATEGORIES.into_iter().map(|cat| {
                            let in_cat: Vec<ModelOption> = models.iter().filter(|m| m.category == cat).cloned().collect();
                            (!in_cat.is_empty()).then(|| view! {
                                <h3 class="cat-head">{title_case(cat)}" · "{in_cat.len()}</h3>
                                <ul class="models">
                                    {in_cat.into_iter().map(|m| model_row(m, open)).collect_view()}
                                </ul>
                            }.into_any())
                        }).collect_view().into_any()
                    }
                })}
            </Suspense>
            <p class="fine">"Credits per task as KIE lists them; 1 credit = $0.005. Operators can change prices without a rebuild: edit the catalog file named by CATALOG_FILE and restart."</p>
        </Panel>
    }
}

fn model_row(m: ModelOption, open: RwSignal<Option<String>>) -> AnyView {
    let id = m.id.clone();
    let is_open = {
        let id = id.clone();
        Signal::derive(move || open.get().as_deref() == Some(id.as_str()))
    };
    let from = m.from_price().map(|p| format!("{}{} cr · {}", if m.prices.len() > 1 { "from " } else { "" }, p.credits, p.usd)).or_else(|| m.rate.clone()).unwrap_or_else(|| "price unknown".into());
    let toggle = {
        let id = id.clone();
        move |_| open.update(|o| *o = if o.as_deref() == Some(id.as_str()) { None } else { Some(id.clone()) })
    };
    let detail = m.clone();
    view! {
        <li class="model" data-model=id.clone()>
            <div class="model-line">
                <button type="button" class="model-name" on:click=toggle aria-expanded=move || is_open.get().to_string()>{id.clone()}</button>
                <span class="model-price" data-testid="model-price">{from}</span>
                {pin_button(&m)}
            </div>
            <div class="muted">{m.purpose.clone()}" · "{m.provider.clone()}</div>
            {move || is_open.get().then(|| model_page(detail.clone()))}
        </li>
    }
    .into_any()
}

/// A model's page: its inputs, its price table and a calculator.
fn model_page(m: ModelOption) -> AnyView {
    let choice = RwSignal::new(m.choices.first().cloned().unwrap_or_default());
    let mode = RwSignal::new("std".to_string());
    let count = RwSignal::new(1u32);
    let calc = m.clone();
    let estimate = move || {
        calc.price_for(&choice.get(), &mode.get()).map(|p| {
            let n = count.get().max(1);
            let credits = p.credits.parse::<f64>().unwrap_or(0.0) * f64::from(n);
            format!("{n} × {} cr = {} credits · ${:.2}", p.credits, (credits * 1000.0).round() / 1000.0, credits * 0.005)
        })
    };
    let duration = m.priced_by.as_deref() == Some("duration");
    view! {
        <div class="model-detail" data-testid="model-detail">
            <div><span class="muted">"Inputs required: "</span>{m.required.join(", ")}</div>
            {m.priced_by.clone().map(|f| view! { <div><span class="muted">"Priced by: "</span>{f}</div> })}
            {(!m.price_known).then(|| view! { <div class="muted">"No source gives this model's price: a task of it needs a per-job cap (Budget panel), and holds that cap."</div> })}
            {(m.family != "market").then(|| view! { <div><span class="muted">"API: "</span>{m.family.clone()}</div> })}
            <table class="prices">
                <tbody>
                    {m.prices.iter().map(|p| view! {
                        <tr>
                            <td>{p.choice.clone().unwrap_or_else(|| "per task".into())}{p.mode.clone().map(|m| format!(" · {m}"))}</td>
                            <td>{p.credits.clone()}" cr"</td>
                            <td>{p.usd.clone()}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
            <div class="calculator">
                {(!m.choices.is_empty()).then(|| view! {
                    <select aria-label="Choice" on:change=move |ev| choice.set(event_target_value(&ev))>
                        {m.choices.iter().map(|c| view! { <option value=c.clone()>{c.clone()}</option> }).collect_view()}
                    </select>
                })}
                {duration.then(|| view! {
                    <select aria-label="Mode" on:change=move |ev| mode.set(event_target_value(&ev))>
                        <option value="std">"std"</option><option value="pro">"pro"</option>
                    </select>
                })}
                <label>"× "<input type="number" min="1" max="1000" aria-label="How many tasks" prop:value=move || count.get().to_string()
                    on:input=move |ev| count.set(event_target_value(&ev).parse().unwrap_or(1).clamp(1, 1000))/></label>
                <strong data-testid="calc-estimate">{estimate}</strong>
            </div>
        </div>
    }
    .into_any()
}
