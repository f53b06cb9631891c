//! The composer: pick a model, write the prompt, set the model's inputs (its priced choice and
//! its family's own fields: Veo's aspect ratio, Suno's custom mode…) and the project, submit.
//! Shown at the top of the Task Monitor; the task then appears below it, live. Pinned models
//! come first; the estimate for the exact inputs shows before submitting. "Re-run with edits"
//! in the Monitor opens an ended task here with its inputs filled; "Use as input" in the
//! Library (panel 07) opens it with that asset as the input — an image in the image field, a
//! track or a clip in the URL field of the first model that takes its media
//! (`control-room://library/<task>/<n>`, sent to KIE as a URL it can fetch).

use leptos::either::{Either, EitherOf3};
use leptos::prelude::*;

use super::market::CATEGORIES;
use std::collections::BTreeMap;

use crate::api::{start_draft, submit_task};
use crate::view::{Draft, FieldOption, ModelOption};

#[derive(Clone)]
struct Form {
    model: String,
    project: String,
    prompt: String,
    choice: Option<String>,
    mode: Option<String>,
    image_url: Option<String>,
    fields: Option<String>,
    rerun_of: Option<String>,
    send_within: Option<String>,
    priority: Option<String>,
}

/// The Monitor's "Re-run with edits": its answer is a draft to open here.
pub type Rerun = Action<String, Result<Draft, ServerFnError>>;

/// Where a Library asset ("Use as input") of `media` (`audio`, `video`; empty: an image) opens
/// the composer: the first of `models` that takes it, and the URL field it fills (empty: the
/// image field). Chosen on the server, so the browser gets the answer, not the catalog's media.
pub fn taking(media: &str, models: &[ModelOption]) -> (String, String) {
    let taken = if media.is_empty() {
        models.iter().find(|m| takes_image(m)).map(|m| (m.id.clone(), String::new()))
    } else {
        models.iter().find_map(|m| Some((m.id.clone(), m.fields.iter().find(|f| f.media.as_deref() == Some(media))?.name.clone())))
    };
    taken.unwrap_or_default()
}

/// Whether `m` takes an image input (the composer's image field).
fn takes_image(m: &ModelOption) -> bool {
    m.required.iter().any(|f| f == "image_urls")
}

/// The composer, given the Market's models (pinned flags of the person looking) and whether
/// the person may submit.
#[component]
pub fn Composer(rerun: Rerun, models: Vec<ModelOption>, can_produce: bool, project: String, input: String, input_model: String, input_field: String) -> impl IntoView {
    let models = StoredValue::new(models);
    let model = RwSignal::new(input_model);
    let project = RwSignal::new(project);
    let prompt = RwSignal::new(String::new());
    let choice = RwSignal::new(String::new());
    let mode = RwSignal::new("std".to_string());
    // The model's own fields as entered, by name; unset ones show their initial value.
    let fields = RwSignal::new(BTreeMap::<String, String>::new());
    // A Library asset as the input: in the URL field named for it, else the image field.
    let image_url = RwSignal::new(String::new());
    if input_field.is_empty() {
        image_url.set(input);
    } else {
        fields.update(|m| {
            m.insert(input_field, input);
        });
    }
    let rerun_of = RwSignal::new(None::<String>);
    let send_within = RwSignal::new(String::new());
    let priority = RwSignal::new(String::new());
    let submit = Action::new(|f: &Form| {
        let f = f.clone();
        async move { submit_task(f.model, f.project, f.prompt, f.choice, f.mode, f.image_url, f.fields, f.rerun_of, f.send_within, f.priority).await }
    });
    // "Draft with": a language model rewrites the prompt, streamed into the box.
    let draft_model = RwSignal::new(String::new());
    let draft_status = RwSignal::new(None::<String>);
    let draft = Action::new(|args: &(String, String, String, String)| {
        let (model, project, prompt, for_model) = args.clone();
        async move { start_draft(model, project, prompt, for_model).await }
    });
    Effect::new(move |_| match draft.value().get() {
        Some(Ok(start)) => {
            draft_status.set(Some(format!("Drafting… {}", start.estimate)));
            read_draft(start.token, prompt, draft_status, start.estimate);
        }
        Some(Err(e)) => draft_status.set(Some(super::said(&e))),
        None => {}
    });
    // A draft from "Re-run with edits" fills the form.
    Effect::new(move |_| {
        if let Some(Ok(d)) = rerun.value().get() {
            model.set(d.model);
            project.set(d.project);
            prompt.set(d.prompt);
            choice.set(d.choice.unwrap_or_default());
            mode.set(d.mode.unwrap_or_else(|| "std".into()));
            image_url.set(d.image_url.unwrap_or_default());
            fields.set(d.fields.into_iter().collect());
            rerun_of.set(Some(d.of));
        }
    });
    let selected = move || -> Option<ModelOption> {
        let id = model.get();
        models.with_value(|list| list.iter().find(|m| m.id == id).cloned().or_else(|| ordered(list).into_iter().next()))
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
            image_url: takes_image(&m).then(|| image_url.get_untracked()).and_then(opt),
            fields: (!m.fields.is_empty()).then(|| {
                let set = fields.get_untracked();
                // A JSON object of strings (a map, not a `serde_json::Value`: its code is
                // not in the bundle).
                let values: BTreeMap<String, String> = m
                    .fields
                    .iter()
                    .map(|f| (f.name.clone(), set.get(&f.name).cloned().unwrap_or_else(|| f.initial())))
                    .filter(|(_, v)| !v.is_empty())
                    .collect();
                serde_json::to_string(&values).unwrap_or_default()
            }),
            rerun_of: rerun_of.get_untracked(),
            send_within: opt(send_within.get_untracked()),
            priority: opt(priority.get_untracked()),
        });
    };
    let outcome = move || {
        submit.value().get().map(|r| match r {
            Ok(s) => Either::Left(view! { <p class="ok" data-testid="submit-result">"Submitted "<code>{s.id}</code>" · estimate "{s.estimated_credits}" credits"</p> }),
            Err(e) => Either::Right(view! { <p class="error" data-testid="submit-error">{super::said(&e)}</p> }),
        })
    };
    view! {
        <form class="composer" id="composer" on:submit=on_submit data-testid="composer">
            {models.with_value(|list| { let list = list.clone(); view! {
                <label>"Model "
                    <select name="model" data-testid="composer-model" prop:value=move || selected().map(|m| m.id).unwrap_or_default() on:change=move |ev| { model.set(event_target_value(&ev)); choice.set(String::new()); fields.set(BTreeMap::new()); rerun_of.set(None); }>
                        {ordered(&list).into_iter().next().filter(|m| m.pinned).map(|_| view! {
                            <optgroup label="pinned">
                                {list.iter().filter(|m| m.pinned && m.category != LANGUAGE).map(|m| view! { <option value=m.id.clone() title=m.purpose.clone()>{m.id.clone()}</option> }).collect_view()}
                            </optgroup>
                        })}
                        {CATEGORIES.into_iter().filter(|c| *c != LANGUAGE).map(|cat| {
                            let in_cat: Vec<_> = list.iter().filter(|m| m.category == cat && !m.pinned).cloned().collect();
                            (!in_cat.is_empty()).then(|| view! {
                                <optgroup label=cat>
                                    {in_cat.into_iter().map(|m| view! { <option value=m.id.clone() title=m.purpose.clone()>{m.id.clone()}</option> }).collect_view()}
                                </optgroup>
                            })
                        }).collect_view()}
                    </select>
                </label>
            } })}
            <label>"Project "<input name="project" list="my-projects" data-testid="composer-project" prop:value=project on:input=move |ev| project.set(event_target_value(&ev)) maxlength="64" required=true/></label>
            <label title="Not sent to KIE by then, it ends expired and nothing is charged">"Send within "
                <select name="send_within" data-testid="composer-send-within" on:change=move |ev| send_within.set(event_target_value(&ev))>
                    {[("", "no deadline"), ("5m", "5 min"), ("15m", "15 min"), ("1h", "1 h"), ("6h", "6 h"), ("24h", "24 h")].into_iter().map(|(v, l)| view! { <option value=v>{l}</option> }).collect_view()}
                </select>
            </label>
            <label title="Among your own queued tasks; never ahead of other people's turns">"Priority "
                <select name="priority" data-testid="composer-priority" on:change=move |ev| priority.set(event_target_value(&ev))>
                    {[("", "project's default"), ("high", "high"), ("normal", "normal"), ("low", "low")].into_iter().map(|(v, l)| view! { <option value=v>{l}</option> }).collect_view()}
                </select>
            </label>
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
            {move || selected().filter(takes_image).map(|_| view! {
                <label title="A URL, or a Library asset (from the picker below, or Use as input in panel 07)">"Image URL "<input type="url" name="image_url" list=super::retention::INPUTS_LIST data-testid="composer-image" prop:value=image_url on:input=move |ev| image_url.set(event_target_value(&ev))/></label>
            })}
            {move || selected().map(|m| m.fields.into_iter().map(|f| field_input(f, fields)).collect_view())}
            <textarea name="prompt" data-testid="composer-prompt" placeholder="Prompt" aria-label="Prompt" rows="2" maxlength="5000"
                prop:value=prompt on:input=move |ev| prompt.set(event_target_value(&ev))></textarea>
            {models.with_value(|list| {
                    let language: Vec<ModelOption> = list.iter().filter(|m| m.category == LANGUAGE).cloned().collect();
                    let first = language.first().map(|m| m.id.clone()).unwrap_or_default();
                    (!language.is_empty()).then(|| view! {
                        <span class="draft">
                            <label>"Draft the prompt with"<select data-testid="draft-model" on:change=move |ev| draft_model.set(event_target_value(&ev))>
                                {language.iter().map(|m| view! { <option value=m.id.clone() title=m.rate.clone().unwrap_or_else(|| "price unknown: a per-job cap is held".into())>{m.id.clone()}</option> }).collect_view()}
                            </select></label>
                            <button type="button" class="small" data-testid="draft" disabled=move || draft.pending().get()
                                on:click=move |_| {
                                    let model = Some(draft_model.get_untracked()).filter(|m| !m.is_empty()).unwrap_or_else(|| first.clone());
                                    let for_model = selected().map(|m| m.id).unwrap_or_default();
                                    draft.dispatch((model, project.get_untracked(), prompt.get_untracked(), for_model));
                                }>"Draft with it"</button>
                        </span>
                    })
            })}
            {move || draft_status.get().map(|s| view! { <p class="muted small" data-testid="draft-status">{s}</p> })}
                <span class="estimate" data-testid="composer-estimate">
                    {move || selected().and_then(|m| if m.price_known {
                        m.price_for(&choice.get(), &mode.get()).map(|p| format!("Estimate {} credits · {}", p.credits, p.usd)).or(m.rate.map(|r| format!("Priced at {r}")))
                    } else {
                        Some("Price unknown: the per-job cap of your cost rules is held".to_string())
                    })}
                </span>
            {move || rerun_of.get().map(|of| view! {
                <p class="muted small" data-testid="composer-rerun">"Re-run of "<code>{of}</code>" with edits · "
                    <button type="button" class="small" on:click=move |_| rerun_of.set(None)>"Submit as a new task instead"</button></p>
            })}
            {move || rerun.value().get().and_then(|r| r.err()).map(|e| view! { <p class="error">{super::said(&e)}</p> })}
            {if can_produce {
                Either::Left(view! {
                    <button type="submit" data-testid="composer-submit" disabled=move || submit.pending().get()>
                        {move || if submit.pending().get() { "Submitting…" } else { "Submit task" }}
                    </button>
                })
            } else {
                Either::Right(view! { <p class="muted" data-testid="composer-read-only">"Read-only: viewers see every task but cannot submit."</p> })
            }}
            {outcome}
        </form>
    }
}

/// Reads a started draft (`/draft/<token>`, Server-Sent Events of text) into the prompt box
/// as it arrives (in the browser; nothing on the server).
fn read_draft(token: String, prompt: RwSignal<String>, status: RwSignal<Option<String>>, estimate: String) {
    #[cfg(feature = "hydrate")]
    leptos::task::spawn_local(async move {
        use futures::StreamExt;
        use gloo_net::eventsource::futures::EventSource;
        let Ok(mut es) = EventSource::new(&format!("/draft/{token}")) else {
            status.set(Some("The draft could not be opened.".into()));
            return;
        };
        let (Ok(text), Ok(done), Ok(failed)) = (es.subscribe("message"), es.subscribe("done"), es.subscribe("failed")) else { return };
        let mut events = futures::stream::select(futures::stream::select(text, done), failed);
        let mut first = true;
        while let Some(Ok((kind, msg))) = events.next().await {
            let data: String = msg.data().as_string().and_then(|d| serde_json::from_str(&d).ok()).unwrap_or_default();
            match kind.as_str() {
                "message" => {
                    if std::mem::take(&mut first) {
                        prompt.set(String::new());
                    }
                    prompt.update(|p| p.push_str(&data));
                }
                "done" => {
                    status.set(Some(format!("Drafted · {estimate}")));
                    break;
                }
                _ => {
                    status.set(Some(data));
                    break;
                }
            }
        }
        es.close();
    });
    #[cfg(not(feature = "hydrate"))]
    let _ = (token, prompt, status, estimate);
}

/// One of a model's own fields: a list for choices, a box for flags, a text box otherwise.
fn field_input(f: FieldOption, fields: RwSignal<BTreeMap<String, String>>) -> impl IntoView {
    let name = f.name.clone();
    let initial = f.initial();
    let value = {
        let name = name.clone();
        move || fields.with(|m| m.get(&name).cloned()).unwrap_or_else(|| initial.clone())
    };
    let set = {
        let name = name.clone();
        move |v: String| fields.update(|m| {
            m.insert(name.clone(), v);
        })
    };
    match f.kind.as_str() {
        "choice" | "number" => EitherOf3::A(view! {
            <label>{name.clone()}" "
                <select name=name.clone() data-field=name.clone() prop:value=value on:change=move |ev| set(event_target_value(&ev))>
                    {f.choices.iter().map(|c| view! { <option value=c.clone()>{c.clone()}</option> }).collect_view()}
                </select>
            </label>
        }),
        "flag" => EitherOf3::B(view! {
            <label><input type="checkbox" name=name.clone() data-field=name.clone() prop:checked=move || value() == "true"
                on:change=move |ev| set(event_target_checked(&ev).to_string())/>" "{name.clone()}</label>
        }),
        kind => {
            let input_type = if kind == "text" { "text" } else { "url" };
            EitherOf3::C(view! {
                <label>{name.clone()}" "<input type=input_type list=(kind != "text").then_some(super::retention::INPUTS_LIST) name=name.clone() data-field=name.clone() maxlength="2000" prop:value=value on:input=move |ev| set(event_target_value(&ev))/></label>
            })
        }
    }
}

/// Language models draft prompts; they are not tasks.
const LANGUAGE: &str = "language";

/// Pinned models first (in pin order as listed), then the rest by category; no language
/// models.
fn ordered(list: &[ModelOption]) -> Vec<ModelOption> {
    let mut out: Vec<ModelOption> = list.iter().filter(|m| m.pinned && m.category != LANGUAGE).cloned().collect();
    for cat in CATEGORIES.into_iter().filter(|c| *c != LANGUAGE) {
        out.extend(list.iter().filter(|m| !m.pinned && m.category == cat).cloned());
    }
    out
}
