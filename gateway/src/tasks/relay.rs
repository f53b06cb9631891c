//! The relay's side of KIE's wire format: a task record written the way KIE writes it, in the
//! shape of the task's API family, so an existing KIE client reads the relay's answers and
//! callbacks unchanged. Plain JSON, no I/O.
//!
//! The Control Room's task id stands in for KIE's; a task still queued here reads as not yet
//! started (`waiting`, `PENDING`, `successFlag` 0). Once every result of a task is in the
//! Library, its result URLs are signed Library links (absolute, from `PUBLIC_URL`) and KIE's
//! originals move to `kieResultUrls` (`resultJson.kieResultUrls` for Market tasks).
//!
//! [`status_data`] and [`callback`] write any family; `model` is the name the family's API
//! knows the model by (the catalog's `upstream_model`).

use serde_json::{Value, json};

use crate::kie::Family;
use crate::library::links::LinkSigner;
use crate::tasks::task::{FailClass, TaskRecord, TaskState};

/// KIE's envelope.
pub fn envelope(code: i64, msg: &str, data: Value) -> Value {
    json!({ "code": code, "msg": msg, "data": data })
}

/// KIE's state word for a task.
pub fn kie_state(s: TaskState) -> &'static str {
    match s {
        TaskState::Queued | TaskState::Submitted | TaskState::Waiting => "waiting",
        TaskState::Queuing => "queuing",
        TaskState::Generating => "generating",
        TaskState::Success => "success",
        TaskState::Fail | TaskState::Expired => "fail",
    }
}

/// `resultJson` for a task that succeeded: Library links once every result is archived (and
/// `links` can sign them), else KIE's own URLs.
pub fn result_json(t: &TaskRecord, links: Option<&LinkSigner>) -> Value {
    let (urls, kie) = results(t, links);
    if kie.is_empty() { json!({ "resultUrls": urls }) } else { json!({ "resultUrls": urls, "kieResultUrls": kie }) }
}

/// `recordInfo`'s `data` for a task (see [`result_json`] for its result links).
pub fn record_info(t: &TaskRecord, links: Option<&LinkSigner>) -> Value {
    let param = json!({ "model": t.model, "input": t.input }).to_string();
    let result_json = if t.state == TaskState::Success { result_json(t, links).to_string() } else { String::new() };
    let (fail_code, fail_msg) = failure(t);
    json!({
        "taskId": t.id,
        "model": t.model,
        "state": kie_state(t.state),
        "param": param,
        "resultJson": result_json,
        "failCode": fail_code,
        "failMsg": fail_msg,
        "costTime": t.finished_ms.map(|f| f.saturating_sub(t.created_ms)),
        "completeTime": t.finished_ms,
        "createTime": t.created_ms,
        "updateTime": t.updated_ms,
        "creditsConsumed": t.actual_cost.map(|c| c.as_f64()),
    })
}

/// The callback KIE would send for an ended Market task: code 200 on success, 501 otherwise.
pub fn callback_body(t: &TaskRecord, links: Option<&LinkSigner>) -> Value {
    if t.state == TaskState::Success {
        envelope(200, "Playground task completed successfully.", record_info(t, links))
    } else {
        envelope(501, "Playground task failed.", record_info(t, links))
    }
}

/// The results a relay client is given, and KIE's own (empty unless the first are Library
/// links).
fn results(t: &TaskRecord, links: Option<&LinkSigner>) -> (Vec<String>, Vec<String>) {
    if t.state != TaskState::Success {
        return (Vec::new(), Vec::new());
    }
    match (links, &t.archive) {
        (Some(signer), Some(a)) if a.complete() => {
            let now_s = crate::store::now_ms() / 1000;
            ((0..a.assets.len()).map(|n| signer.link(&t.id, n, now_s)).collect(), t.result_urls.clone())
        }
        _ => (t.result_urls.clone(), Vec::new()),
    }
}

/// The request as the client sent it, echoed (`paramJson`, Suno's `param`).
fn param(t: &TaskRecord, model: &str) -> String {
    let mut req = t.input.as_object().cloned().unwrap_or_default();
    if t.family.takes_model() {
        req.insert("model".into(), model.into());
    }
    if let Some(cb) = &t.relay_callback {
        req.insert("callBackUrl".into(), cb.url.clone().into());
    }
    Value::Object(req).to_string()
}

/// The failure as a code and message (cancelled: 499).
fn failure(t: &TaskRecord) -> (String, String) {
    match t.state {
        TaskState::Fail => (t.fail_code.clone().unwrap_or_else(|| "500".into()), t.fail_msg.clone().unwrap_or_default()),
        TaskState::Expired => ("504".into(), t.fail_msg.clone().unwrap_or_else(|| "expired".into())),
        _ => (String::new(), String::new()),
    }
}

fn failed(t: &TaskRecord) -> bool {
    matches!(t.state, TaskState::Fail | TaskState::Expired)
}

/// `successFlag`: 0 running, 1 success, 3 generation failed, 2 any other failure.
fn success_flag(t: &TaskRecord) -> u8 {
    match t.state {
        TaskState::Success => 1,
        TaskState::Fail if t.fail_class == Some(FailClass::Upstream) => 3,
        TaskState::Fail | TaskState::Expired => 2,
        _ => 0,
    }
}

/// Suno's status word.
fn suno_status(t: &TaskRecord) -> &'static str {
    match t.state {
        TaskState::Success => "SUCCESS",
        TaskState::Generating => "TEXT_SUCCESS",
        TaskState::Fail if t.fail_class == Some(FailClass::Policy) => "SENSITIVE_WORD_ERROR",
        TaskState::Fail if matches!(t.fail_class, Some(FailClass::Cancelled | FailClass::Budget)) => "CREATE_TASK_FAILED",
        TaskState::Fail | TaskState::Expired => "GENERATE_AUDIO_FAILED",
        _ => "PENDING",
    }
}

/// Suno's tracks, one per result, in record-info's camelCase or the callback's snake_case.
fn suno_tracks(t: &TaskRecord, urls: &[String], snake: bool) -> Vec<Value> {
    let title = t.input.get("title").cloned().unwrap_or(Value::Null);
    urls.iter()
        .enumerate()
        .map(|(n, u)| {
            let id = format!("{}-{n}", t.id);
            if snake {
                json!({ "id": id, "audio_url": u, "stream_audio_url": u, "image_url": null, "title": title })
            } else {
                json!({ "id": id, "audioUrl": u, "streamAudioUrl": u, "imageUrl": null, "title": title })
            }
        })
        .collect()
}

/// A status call's `data` for a task, in its family's shape (Market: [`record_info`]).
pub fn status_data(t: &TaskRecord, model: &str, links: Option<&LinkSigner>) -> Value {
    let (urls, kie_urls) = results(t, links);
    let (code, msg) = failure(t);
    let err = |v: String| if v.is_empty() { Value::Null } else { Value::String(v) };
    let (error_code, error_message) = (err(code), err(msg));
    match t.family {
        Family::Market => record_info(t, links),
        Family::Veo => json!({
            "taskId": t.id, "paramJson": param(t, model), "createTime": t.created_ms, "completeTime": t.finished_ms,
            "successFlag": success_flag(t), "errorCode": error_code, "errorMessage": error_message, "fallbackFlag": false,
            "response": if urls.is_empty() { Value::Null } else { json!({ "taskId": t.id, "resultUrls": urls, "originUrls": [], "kieResultUrls": kie_urls }) },
        }),
        Family::FluxKontext => json!({
            "taskId": t.id, "paramJson": param(t, model), "createTime": t.created_ms, "completeTime": t.finished_ms,
            "successFlag": success_flag(t), "errorCode": error_code, "errorMessage": error_message,
            "response": urls.first().map(|u| json!({ "resultImageUrl": u, "originImageUrl": null, "kieResultUrls": kie_urls })),
        }),
        Family::Gpt4oImage => json!({
            "taskId": t.id, "paramJson": param(t, model), "createTime": t.created_ms, "completeTime": t.finished_ms,
            "successFlag": success_flag(t), "errorCode": error_code, "errorMessage": error_message,
            "status": match success_flag(t) { 1 => "SUCCESS", 0 => "GENERATING", _ if t.fail_class == Some(FailClass::Upstream) => "GENERATE_FAILED", _ => "CREATE_TASK_FAILED" },
            "progress": if t.state == TaskState::Success { "1.00" } else { "0.00" },
            "response": if urls.is_empty() { Value::Null } else { json!({ "resultUrls": urls, "kieResultUrls": kie_urls }) },
        }),
        Family::Suno => json!({
            "taskId": t.id, "param": param(t, model), "status": suno_status(t), "type": "GENERATE",
            "errorCode": error_code, "errorMessage": error_message,
            "response": { "taskId": t.id, "sunoData": suno_tracks(t, &urls, false), "kieResultUrls": kie_urls },
        }),
        Family::Runway => json!({
            "taskId": t.id, "state": kie_state(t.state).replace("waiting", "wait").replace("queuing", "queueing"),
            "generateTime": t.finished_ms, "generateParam": serde_json::from_str::<Value>(&param(t, model)).unwrap_or(Value::Null),
            "videoInfo": urls.first().map(|u| json!({ "videoId": t.id, "taskId": t.id, "videoUrl": u, "imageUrl": null, "kieResultUrls": kie_urls })),
            "failCode": error_code, "failMsg": error_message, "expireFlag": 0,
        }),
    }
}

/// The callback KIE would send for an ended task, in its family's shape.
pub fn callback(t: &TaskRecord, links: Option<&LinkSigner>) -> Value {
    if t.family == Family::Market {
        return callback_body(t, links);
    }
    let (urls, _) = results(t, links);
    let (code, msg) = if failed(t) {
        let (c, m) = failure(t);
        (c.parse::<i64>().ok().filter(|c| *c != 200).unwrap_or(500), if m.is_empty() { "Generation failed".to_string() } else { m })
    } else {
        (200, "success".to_string())
    };
    let data = match t.family {
        Family::Veo => json!({ "taskId": t.id, "info": { "resultUrls": urls, "originUrls": [], "resolution": null }, "fallbackFlag": false }),
        Family::Suno => json!({ "callbackType": if failed(t) { "error" } else { "complete" }, "task_id": t.id, "data": suno_tracks(t, &urls, true) }),
        Family::Runway => json!({ "task_id": t.id, "video_id": t.id, "video_url": urls.first(), "image_url": null }),
        Family::Gpt4oImage => json!({ "taskId": t.id, "info": { "result_urls": urls } }),
        Family::FluxKontext | Family::Market => json!({ "taskId": t.id, "info": { "resultImageUrl": urls.first(), "originImageUrl": null } }),
    };
    envelope(code, &msg, data)
}
