//! The relay's side of KIE's wire format: a task record written the way KIE writes it, so an
//! existing KIE client reads the relay's answers and callbacks unchanged. Plain JSON, no I/O.
//!
//! The Control Room's task id stands in for KIE's; a task still queued here reads `waiting`.
//! Once every result of a task is in the Library, `resultJson.resultUrls` are signed Library
//! links (absolute, from `PUBLIC_URL`) and KIE's originals move to `resultJson.kieResultUrls`.

use serde_json::{Value, json};

use crate::library::links::LinkSigner;
use crate::tasks::task::{TaskRecord, TaskState};

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
    match (links, &t.archive) {
        (Some(signer), Some(a)) if a.complete() => {
            let now_s = crate::store::now_ms() / 1000;
            let ours: Vec<String> = (0..a.assets.len()).map(|n| signer.link(&t.id, n, now_s)).collect();
            json!({ "resultUrls": ours, "kieResultUrls": t.result_urls })
        }
        _ => json!({ "resultUrls": t.result_urls }),
    }
}

/// `recordInfo`'s `data` for a task (see [`result_json`] for its result links).
pub fn record_info(t: &TaskRecord, links: Option<&LinkSigner>) -> Value {
    let param = json!({ "model": t.model, "input": t.input }).to_string();
    let result_json = if t.state == TaskState::Success { result_json(t, links).to_string() } else { String::new() };
    let (fail_code, fail_msg) = match t.state {
        TaskState::Fail => (t.fail_code.clone().unwrap_or_else(|| "500".into()), t.fail_msg.clone().unwrap_or_default()),
        TaskState::Expired => ("504".into(), t.fail_msg.clone().unwrap_or_else(|| "expired".into())),
        _ => (String::new(), String::new()),
    };
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

/// The callback KIE would send for an ended task: code 200 on success, 501 otherwise.
pub fn callback_body(t: &TaskRecord, links: Option<&LinkSigner>) -> Value {
    if t.state == TaskState::Success {
        envelope(200, "Playground task completed successfully.", record_info(t, links))
    } else {
        envelope(501, "Playground task failed.", record_info(t, links))
    }
}
