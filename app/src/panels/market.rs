//! 03 · Market — every model of the catalog by category, with its prices in credits and
//! dollars: search and a category filter, pinned models first, one line a model in a list that
//! scrolls inside the panel, and a model's page (its inputs, its price table and a calculator)
//! opened in place. All of it is rendered on the server: the filter form's values are the
//! panel's query, so a search, an open model page and the calculator's inputs survive a live
//! reload, and a pin (a post) re-renders both this panel and the Pinned panel.

use leptos::prelude::*;

use super::{Acted, Fields, Panel, PanelId, act_form, badge, field};
use crate::api::{list_models, set_pin};
use crate::view::{ModelOption, PricePoint};

/// The categories, in the order the screen shows them.
pub const CATEGORIES: [&str; 4] = ["video", "image", "audio", "language"];

fn title_case(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// The star that pins or unpins a model: a post of the form it sits in (to `panel`).
pub fn pin_button(m: &ModelOption, panel: PanelId) -> impl IntoView + use<> {
    let (id, pinned) = (m.id.clone(), m.pinned);
    let label = if pinned { format!("Unpin {id}") } else { format!("Pin {id}") };
    view! {
        <button type="submit" formmethod="post" formaction=act_form(panel) name="pin" value=format!("{}:{id}", if pinned { "off" } else { "on" })
            class="pin" class:pinned=pinned aria-pressed=pinned.to_string() aria-label=label data-testid="pin-toggle">
            {if pinned { "★" } else { "☆" }}
        </button>
    }
}

/// The cheapest price, or the rate, or "price unknown".
fn from_price(m: &ModelOption) -> String {
    m.from_price()
        .map(|p| format!("{}{} cr · {}", if m.prices.len() > 1 { "from " } else { "" }, p.credits, p.usd))
        .or_else(|| m.rate.clone())
        .unwrap_or_else(|| "price unknown".into())
}

pub async fn render(query: Fields, flash: Option<AnyView>) -> AnyView {
    let data = list_models().await;
    let q = field(&query, "q").unwrap_or_default().to_lowercase();
    let cat = field(&query, "cat").unwrap_or_default().to_string();
    let open = field(&query, "open").map(str::to_string);
    let head = match &data {
        Ok(m) => badge("ok", format!("{} models · prices of {}", m.models.len(), m.prices_taken)),
        Err(_) => badge("bad", "Catalog unavailable"),
    };
    let list = match data {
        Err(e) => view! { <p class="error">"The catalog could not be read: "{super::said(&e)}</p> }.into_any(),
        Ok(m) => {
            let shown: Vec<ModelOption> = m
                .models
                .into_iter()
                .filter(|m| cat.is_empty() || m.category == cat)
                .filter(|m| q.is_empty() || [&m.id, &m.provider, &m.purpose].iter().any(|f| f.to_lowercase().contains(&q)))
                .collect();
            if shown.is_empty() {
                view! { <p class="empty">"No model matches."</p> }.into_any()
            } else {
                let pinned: Vec<ModelOption> = shown.iter().filter(|m| m.pinned).cloned().collect();
                let groups = CATEGORIES.into_iter().map(|c| (title_case(c), shown.iter().filter(|m| m.category == c && !m.pinned).cloned().collect::<Vec<_>>()));
                let groups = std::iter::once(("Pinned".to_string(), pinned)).chain(groups).filter(|(_, ms)| !ms.is_empty());
                view! {
                    <div class="models-scroll" tabindex="0" role="region" aria-label="Models">
                        {groups.map(|(name, ms)| view! {
                            <h3 class="cat-head">{name}" · "{ms.len()}</h3>
                            <ul class="models">{ms.into_iter().map(|m| model_row(m, open.as_deref(), &query)).collect_view()}</ul>
                        }).collect_view()}
                    </div>
                }
                .into_any()
            }
        }
    };
    view! {
        <Panel id=PanelId::Market badge=head flash=flash>
            <form class="market-tools" method="get" action="/" data-filter="market">
                // The form's first button: what Enter in the search box presses.
                <button type="submit" class="sr-only">"Search"</button>
                <input type="search" name="q" value=field(&query, "q").unwrap_or_default().to_string() placeholder="Search models, providers, uses" aria-label="Search models" data-testid="market-search"/>
                <label class="small">"Category "<select name="cat" data-testid="market-category">
                    <option value="">"all"</option>
                    {CATEGORIES.map(|c| view! { <option value=c selected=cat == c>{title_case(c)}</option> }).collect_view()}
                </select></label>
                {open.clone().map(|o| view! { <input type="hidden" name="open" value=o/> })}
                {list}
            </form>
            <details class="help"><summary title="What this is and how it works">"?"</summary><p class="fine">"Credits per task as KIE lists them; 1 credit = $0.005. Operators change prices without a rebuild: edit the catalog file named by CATALOG_FILE and restart."</p></details>
        </Panel>
    }
    .into_any()
}

fn model_row(m: ModelOption, open: Option<&str>, query: &Fields) -> impl IntoView + use<> {
    let is_open = open == Some(m.id.as_str());
    let id = m.id.clone();
    view! {
        <li class="model" data-model=id.clone()>
            <div class="model-line">
                // Opening a model page is a filter change: `open` names it (empty: close).
                <button type="submit" name="open" value=if is_open { String::new() } else { id.clone() } class="model-name" aria-expanded=is_open.to_string()>{id.clone()}</button>
                <span class="model-price" data-testid="model-price">{from_price(&m)}</span>
                {pin_button(&m, PanelId::Market)}
            </div>
            <div class="muted small model-purpose">{m.purpose.clone()}" · "{m.provider.clone()}</div>
            {is_open.then(|| model_page(&m, query))}
        </li>
    }
}

/// A model's page: its inputs, its price table and a calculator (its inputs are part of the
/// filter form, so the server prices them).
fn model_page(m: &ModelOption, query: &Fields) -> AnyView {
    let choice = field(query, "choice").filter(|c| m.choices.iter().any(|x| x == c)).map(str::to_string).or_else(|| m.choices.first().cloned()).unwrap_or_default();
    let mode = if field(query, "mode") == Some("pro") { "pro" } else { "std" };
    let count: u32 = field(query, "count").and_then(|c| c.parse().ok()).unwrap_or(1).clamp(1, 1000);
    let estimate = m.price_for(&choice, mode).map(|p: &PricePoint| {
        let credits = p.credits.parse::<f64>().unwrap_or(0.0) * f64::from(count);
        format!("{count} × {} cr = {} credits · ${:.2}", p.credits, (credits * 1000.0).round() / 1000.0, credits * 0.005)
    });
    let duration = m.priced_by.as_deref() == Some("duration");
    view! {
        <div class="model-detail" data-testid="model-detail">
            <div><span class="muted">"Inputs required: "</span>{m.required.join(", ")}</div>
            {m.priced_by.clone().map(|f| view! { <div><span class="muted">"Priced by: "</span>{f}</div> })}
            {(!m.price_known).then(|| view! { <div class="muted">"No source gives this model's price: a task of it needs a per-job cap (Budget panel), and holds that cap."</div> })}
            {(m.family != "market").then(|| view! { <div><span class="muted">"API: "</span>{m.family.clone()}</div> })}
            <div class="table-wrap" tabindex="0" role="region" aria-label="Prices">
                <table class="prices">
                    <thead><tr><th scope="col">"Inputs"</th><th scope="col">"Credits"</th><th scope="col">"USD"</th></tr></thead>
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
            </div>
            <div class="calculator">
                {(!m.choices.is_empty()).then(|| view! {
                    <label>{m.priced_by.clone().unwrap_or_else(|| "Choice".into())}" "<select name="choice">
                        {m.choices.iter().map(|c| view! { <option value=c.clone() selected=*c == choice>{c.clone()}</option> }).collect_view()}
                    </select></label>
                })}
                {duration.then(|| view! {
                    <label>"mode "<select name="mode">
                        <option value="std" selected=mode == "std">"std"</option><option value="pro" selected=mode == "pro">"pro"</option>
                    </select></label>
                })}
                <label>"× "<input type="number" name="count" min="1" max="1000" aria-label="How many tasks" value=count.to_string()/></label>
                <strong data-testid="calc-estimate">{estimate}</strong>
            </div>
        </div>
    }
    .into_any()
}

/// `pin=on:<model>` or `pin=off:<model>`, from the Market or the Pinned panel.
pub async fn act(form: Fields) -> Acted {
    const MOVES: &[PanelId] = &[PanelId::Market, PanelId::Pinned];
    let Some((how, model)) = field(&form, "pin").and_then(|p| p.split_once(':')) else {
        return Acted::new(view! { <p class="error">"Say which model to pin (pin=on:<model>)."</p> }.into_any());
    };
    let on = how == "on";
    let model = model.to_string();
    Acted::of(set_pin(model.clone(), on).await, move |_| super::ok_note("pin-result", format!("{} {model}.", if on { "Pinned" } else { "Unpinned" })), "pin-error").also(MOVES)
}
