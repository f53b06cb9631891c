//! Batches, in panel 06 (Throttle): a list of prompts or a CSV submitted as one named batch —
//! previewed first (how many tasks, their estimate together), then admitted whole or refused
//! whole — and the newest batches with their progress, each with its bulk retry and cancel
//! (through the bulk actions' preview) and a zip of its Library copies.

use leptos::prelude::*;

use super::{Acted, Fields, PanelId, act_form, field_owned, fill_bar};
use crate::api::submit_batch;
use crate::view::{BatchSubmitted, BatchView};

/// The form that submits a batch (producers and admins).
pub fn form() -> impl IntoView {
    view! {
        <details class="share">
            <summary>"Submit a batch"</summary>
            <form class="rule-form" method="post" action=act_form(PanelId::Throttle) data-testid="batch-form">
                <input type="hidden" name="do" value="batch"/>
                <label>"Batch name"<input name="name" type="text" required="" maxlength="64" placeholder="teaser-stills" data-testid="batch-name"/></label>
                <label>"Project"<input name="project" type="text" required="" maxlength="64" data-testid="batch-project"/></label>
                <label>"Model"<input name="model" type="text" required="" maxlength="120" placeholder="google/imagen4-fast" data-testid="batch-model"/></label>
                <label>"Rows are"<select name="format" data-testid="batch-format">
                    <option value="prompts">"one prompt a line"</option>
                    <option value="csv">"a CSV: a header of the model's fields, then a row a task"</option>
                </select></label>
                <label class="wide">"Rows"<textarea name="rows" rows="6" required="" data-testid="batch-rows" placeholder="prompt,aspectRatio\nA kite over the dunes,16:9"></textarea></label>
                <label>"Variants of each row"<input name="variants" type="number" min="1" max="10" value="1" data-testid="batch-variants"/></label>
                <label>"Priority"<select name="priority">
                    {["normal", "high", "low"].into_iter().map(|p| view! { <option value=p>{p}</option> }).collect_view()}
                </select></label>
                <button type="submit" data-testid="batch-preview">"Preview"</button>
            </form>
            <details class="help"><summary title="What this is and how it works">"?"</summary><p class="fine">"A preview says how many tasks the batch makes and what they are estimated at together; nothing is queued until you submit it. It is then admitted whole or not at all: if a cost rule or the queue's quota would refuse any of its tasks, it refuses the batch, and nothing of it is sent. Up to 1,000 tasks; larger lists go through the CLI (control-room batch submit)."</p></details>
        </details>
    }
}

/// The newest batches and where each stands.
pub fn list(batches: Vec<BatchView>, producer: bool) -> impl IntoView {
    (!batches.is_empty()).then(|| view! {
        <ul class="rules" data-testid="batches">{batches.into_iter().map(|b| batch(b, producer)).collect_view()}</ul>
    })
}

fn batch(b: BatchView, producer: bool) -> impl IntoView + use<> {
    let label = format!("{} · {} · project {} · by {} at {}", b.name, b.model, b.project, b.owner, b.created.replace('T', " "));
    let mut detail = b.line.clone();
    if !b.estimate.is_empty() {
        detail += &format!(" · estimated {}", b.estimate);
    }
    if b.state != "admitted" {
        detail += &format!(" · {}", b.state);
    }
    let bulk = |action: &'static str, label: String, name: String| view! {
        <form method="post" action=act_form(PanelId::Throttle) class="inline">
            <input type="hidden" name="do" value="bulk"/>
            <input type="hidden" name="action" value=action/>
            <input type="hidden" name="batch" value=name/>
            <button type="submit" class="small" data-testid=format!("batch-{action}")>{label}</button>
        </form>
    };
    view! {
        <li data-testid="batch" data-batch=b.name.clone() data-state=b.state.clone()>
            {fill_bar("batch-progress", label, b.percent, detail)}
            {b.why.clone().map(|w| view! { <div class="error small">{w}</div> })}
            <a class="small" href=format!("/batches/{}/zip", urlencode(&b.name)) data-testid="batch-zip" download="">"Download results (zip)"</a>
            {(producer && b.failed > 0).then(|| bulk("retry", format!("Retry {} failed…", b.failed), b.name.clone()))}
            {(producer && b.queued > 0).then(|| bulk("cancel", format!("Cancel {} queued…", b.queued), b.name.clone()))}
        </li>
    }
}

/// A name as one URL path segment.
fn urlencode(s: &str) -> String {
    s.bytes().map(|c| if c.is_ascii_alphanumeric() || b"-_.".contains(&c) { (c as char).to_string() } else { format!("%{c:02X}") }).collect()
}

/// A batch's preview, with the form that submits it (the same fields), or its admission.
fn outcome(b: BatchSubmitted, form: Fields) -> AnyView {
    if b.admitted {
        let text = format!("Batch {} admitted: {} tasks queued, estimated {}.", b.name, b.tasks, b.estimate);
        return view! { <p class="ok" role="status" data-testid="batch-admitted">{text}</p> }.into_any();
    }
    let sentence = format!("Batch {}: {} tasks, estimated {} together.", b.name, b.tasks, b.estimate);
    view! {
        <form method="post" action=act_form(PanelId::Throttle) class="ok" data-testid="batch-preview-result">
            <span data-testid="batch-preview-text">{sentence}</span>" "
            {form.into_iter().filter(|(k, _)| k != "run").map(|(k, v)| view! { <input type="hidden" name=k value=v/> }).collect_view()}
            <input type="hidden" name="run" value="1"/>
            <button type="submit" data-testid="batch-run">{format!("Submit {} tasks", b.tasks)}</button>
        </form>
    }
    .into_any()
}

/// Previews or submits a batch (the server function checks who may).
pub async fn act(form: Fields) -> Acted {
    let get = |n: &str| field_owned(&form, n);
    let run = get("run").as_deref() == Some("1");
    let r = submit_batch(get("name").unwrap_or_default(), get("project").unwrap_or_default(), get("model").unwrap_or_default(), get("rows").unwrap_or_default(), get("format"), get("variants"), get("priority"), run).await;
    let echo = form.clone();
    Acted::of(r, move |b| outcome(b, echo), "batch-error").also(&[PanelId::Status, PanelId::Budget])
}
