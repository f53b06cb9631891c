//! The composer: pick a model, write the prompt, set the model's main inputs and the project,
//! submit. Shown at the top of the Task Monitor; the task then appears below it, live. Pinned
//! models come first; the estimate for the exact inputs shows before submitting.

use leptos::prelude::*;

use super::market::{CATEGORIES, market};
use crate::api::submit_task;
use crate::view::ModelOption;

#[derive(Clone)]
struct Form {
    model: String,
    project: String,
    prompt: String,
    choice: Option<String>,
    mode: Option<String>,
    image_url: Option<String>,
}

#[component]
pub fn Composer() -> impl IntoView {
    let market = market();
    let models = market.data;
    let model = RwSignal::new(String::new());
    let project = RwSignal::new("default".to_string());
    let prompt = RwSignal::new(String::new());
    let choice = RwSignal::new(String::new());
    let mode = RwSignal::new("std".to_string());
    let image_url = RwSignal::new(String::new());
    let submit = Action::new(|f: &Form| {
        let f = f.clone();
        async move { submit_task(f.model, f.project, f.prompt, f.choice, f.mode, f.image_url).await }
    });
    let selected = move || -> Option<ModelOption> {
        let list = market.models()?;
        let id = model.get();
        list.iter().find(|m| m.id == id).cloned().or_else(|| ordered(&list).into_iter().next())
    };
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(m) = selected() else { return };
        let opt = |s: String| Some(s).filter(|s| !s.trim().is_empty());
        submit.dispatch(Form {
            model: m.id.clone(),
            project: project.get_untracked(),
            prompt: prompt.get_untracked(),
            choice: opt(choice.get_untracked()).or_else(|| m.choices.first().cloned()),
            mode: (m.priced_by.as_deref() == Some("duration")).then(|| mode.get_untracked()),
            image_url: m.required.iter().any(|f| f == "image_urls").then(|| image_url.get_untracked()).and_then(opt),
        });
    };
    let outcome = move || {
        submit.value().get().map(|r| match r {
            Ok(s) => view! { <p class="ok" data-testid="submit-result">"Submitted "<code>{s.id}</code>" · estimate "{s.estimated_credits}" credits"</p> }.into_any(),
            Err(e) => view! { <p class="error" data-testid="submit-error">{super::said(&e)}</p> }.into_any(),
        })
    };
    view! {
        <form class="composer" on:submit=on_submit data-testid="composer">
            <Suspense fallback=|| view! { <span class="muted">"Loading models…"</span> }>
                {move || models.get().map(|r| match r {
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                    Ok(market_view) => { let list = market_view.models; view! {
                        <label>"Model "
                            <select name="model" data-testid="composer-model" on:change=move |ev| { model.set(event_target_value(&ev)); choice.set(String::new()); }>
                                {ordered(&list).into_iter().next().filter(|m| m.pinned).map(|_| view! {
                                    <optgroup label="pinned">
                                        {list.iter().filter(|m| m.pinned).map(|m| view! { <option value=m.id.clone() title=m.purpose.clone()>{m.id.clone()}</option> }).collect_view()}
                                    </optgroup>
                                })}
                                {CATEGORIES.into_iter().map(|cat| {
                                    let in_cat: Vec<_> = list.iter().filter(|m| m.category == cat && !m.pinned).cloned().collect();
                                    (!in_cat.is_empty()).then(|| view! {
                                        <optgroup label=cat>
                                            {in_cat.into_iter().map(|m| view! { <option value=m.id.clone() title=m.purpose.clone()>{m.id.clone()}</option> }).collect_view()}
                                        </optgroup>
                                    })
                                }).collect_view()}
                            </select>
                        </label>
                    }.into_any() }
                })}
            </Suspense>
            <label>"Project "<input name="project" data-testid="composer-project" prop:value=project on:input=move |ev| project.set(event_target_value(&ev)) maxlength="64" required=true/></label>
            // Read from the Market's resource: inside Suspense so the server renders them too.
            <Suspense fallback=|| ()>
            {move || selected().and_then(|m| m.priced_by.clone().map(|field| {
                let choices = m.choices.clone();
                view! {
                    <label>{field.clone()}" "
                        <select name="choice" on:change=move |ev| choice.set(event_target_value(&ev))>
                            {choices.into_iter().map(|c| view! { <option value=c.clone()>{c.clone()}</option> }).collect_view()}
                        </select>
                    </label>
                    {(field == "duration").then(|| view! {
                        <label>"mode "
                            <select name="mode" on:change=move |ev| mode.set(event_target_value(&ev))>
                                <option value="std">"std"</option><option value="pro">"pro"</option>
                            </select>
                        </label>
                    })}
                }
            }))}
            {move || selected().filter(|m| m.required.iter().any(|f| f == "image_urls")).map(|_| view! {
                <label>"Image URL "<input type="url" name="image_url" prop:value=image_url on:input=move |ev| image_url.set(event_target_value(&ev))/></label>
            })}
            </Suspense>
            <textarea name="prompt" data-testid="composer-prompt" placeholder="Prompt" rows="2" maxlength="5000"
                prop:value=prompt on:input=move |ev| prompt.set(event_target_value(&ev))></textarea>
            <Suspense fallback=|| ()>
                <span class="estimate" data-testid="composer-estimate">
                    {move || selected().and_then(|m| m.price_for(&choice.get(), &mode.get()).map(|p| format!("Estimate {} credits · {}", p.credits, p.usd)))}
                </span>
            </Suspense>
            {crate::when_role(crate::view::Me::can_produce, move || view! {
                <button type="submit" data-testid="composer-submit" disabled=move || submit.pending().get()>
                    {move || if submit.pending().get() { "Submitting…" } else { "Submit task" }}
                </button>
            }, || view! { <p class="muted" data-testid="composer-read-only">"Read-only: viewers see every task but cannot submit."</p> })}
            {outcome}
        </form>
    }
}

/// Pinned models first (in pin order as listed), then the rest by category.
fn ordered(list: &[ModelOption]) -> Vec<ModelOption> {
    let mut out: Vec<ModelOption> = list.iter().filter(|m| m.pinned).cloned().collect();
    for cat in CATEGORIES {
        out.extend(list.iter().filter(|m| !m.pinned && m.category == cat).cloned());
    }
    out
}
