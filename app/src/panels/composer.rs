//! The composer: pick a model, write the prompt, set the model's main inputs and the project,
//! submit. Shown at the top of the Task Monitor; the task then appears below it, live.

use leptos::prelude::*;

use crate::api::{list_models, submit_task};
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
    let models = Resource::new(|| (), |_| list_models());
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
        let list = models.get()?.ok()?;
        let id = model.get();
        list.iter().find(|m| m.id == id).cloned().or_else(|| list.first().cloned())
    };
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(m) = selected() else { return };
        let opt = |s: String| Some(s).filter(|s| !s.trim().is_empty());
        submit.dispatch(Form {
            model: m.id.clone(),
            project: project.get_untracked(),
            prompt: prompt.get_untracked(),
            choice: opt(choice.get_untracked()),
            mode: (m.priced_by.as_deref() == Some("duration")).then(|| mode.get_untracked()),
            image_url: m.required.iter().any(|f| f == "image_urls").then(|| image_url.get_untracked()).and_then(opt),
        });
    };
    let outcome = move || {
        submit.value().get().map(|r| match r {
            Ok(s) => view! { <p class="ok" data-testid="submit-result">"Submitted "<code>{s.id}</code>" · estimate "{s.estimated_credits}" credits"</p> }.into_any(),
            Err(e) => view! { <p class="error" data-testid="submit-error">{e.to_string().trim_start_matches("error running server function: ").to_string()}</p> }.into_any(),
        })
    };
    view! {
        <form class="composer" on:submit=on_submit data-testid="composer">
            <Suspense fallback=|| view! { <span class="muted">"Loading models…"</span> }>
                {move || models.get().map(|r| match r {
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                    Ok(list) => view! {
                        <label>"Model "
                            <select name="model" data-testid="composer-model" on:change=move |ev| { model.set(event_target_value(&ev)); choice.set(String::new()); }>
                                {["video", "image", "audio", "language"].into_iter().map(|cat| {
                                    let in_cat: Vec<_> = list.iter().filter(|m| m.category == cat).cloned().collect();
                                    (!in_cat.is_empty()).then(|| view! {
                                        <optgroup label=cat>
                                            {in_cat.into_iter().map(|m| view! { <option value=m.id.clone() title=m.purpose.clone()>{m.id.clone()}</option> }).collect_view()}
                                        </optgroup>
                                    })
                                }).collect_view()}
                            </select>
                        </label>
                    }.into_any(),
                })}
            </Suspense>
            <label>"Project "<input name="project" data-testid="composer-project" prop:value=project on:input=move |ev| project.set(event_target_value(&ev)) maxlength="64" required=true/></label>
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
            <textarea name="prompt" data-testid="composer-prompt" placeholder="Prompt" rows="2" maxlength="5000"
                prop:value=prompt on:input=move |ev| prompt.set(event_target_value(&ev))></textarea>
            <button type="submit" data-testid="composer-submit" disabled=move || submit.pending().get()>
                {move || if submit.pending().get() { "Submitting…" } else { "Submit task" }}
            </button>
            {outcome}
        </form>
    }
}
