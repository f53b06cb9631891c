//! The relay's side of KIE's wire format: a task record written the way KIE writes it, in the
//! shape of the task's API family, so an existing KIE client reads the relay's answers and
//! callbacks unchanged. Plain JSON, no I/O.
//!
//! The Control Room's task id stands in for KIE's; a task still queued here reads as not yet
//! started (`waiting`, `PENDING`, `successFlag` 0). Once every result of a task is in the
//! Library, its result URLs are signed Library links (absolute, from `PUBLIC_URL`) and KIE's
//! originals move to `kieResultUrls` (`resultJson.kieResultUrls` for Market tasks).
//!
//! [`status_data`] and [`callback`] write any family: what every family's answer is made of
//! is read once into a [`Written`] (the results, the failure, the request echoed), and the
//! family's adapter lays it out in its own shape ([`crate::kie::ApiFamily::relay_status`],
//! [`crate::kie::ApiFamily::relay_callback`]); `model` is the name the family's API knows the
//! model by (the catalog's `upstream_model`).

use serde_json::{Value, json};

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

/// A task as the relay writes it, whatever the family: its results, its failure and its
/// request, read once; each family's adapter lays it out.
pub struct Written<'a> {
    pub task: &'a TaskRecord,
    /// The model's name on the family's API.
    pub model: &'a str,
    pub links: Option<&'a LinkSigner>,
    /// The results a relay client is given (Library links once every result is archived).
    pub urls: Vec<String>,
    /// KIE's own result URLs when `urls` are Library links (else empty).
    pub kie_urls: Vec<String>,
    /// A written result's content, read back from its Library copy once it is kept (see
    /// [`crate::kie::ApiFamily::writes_result`]; Suno's MIDI: KIE's `midiData`).
    pub content: Option<Value>,
}

impl<'a> Written<'a> {
    pub fn new(task: &'a TaskRecord, model: &'a str, links: Option<&'a LinkSigner>, content: Option<Value>) -> Written<'a> {
        let (urls, kie_urls) = results(task, links);
        Written { task, model, links, urls, kie_urls, content }
    }

    /// The request as the client sent it, echoed (`paramJson`, Suno's `param`).
    pub fn param(&self) -> String {
        let t = self.task;
        let mut req = t.input.as_object().cloned().unwrap_or_default();
        if t.family.takes_model() {
            req.insert(t.family.adapter().model_field().into(), self.model.into());
        }
        if let Some(cb) = &t.relay_callback {
            req.insert("callBackUrl".into(), cb.url.clone().into());
        }
        Value::Object(req).to_string()
    }

    /// `errorCode` and `errorMessage`: the failure's, or null.
    pub fn error(&self) -> (Value, Value) {
        let (code, msg) = failure(self.task);
        let or_null = |v: String| if v.is_empty() { Value::Null } else { Value::String(v) };
        (or_null(code), or_null(msg))
    }

    /// Failed or expired.
    pub fn failed(&self) -> bool {
        matches!(self.task.state, TaskState::Fail | TaskState::Expired)
    }

    /// `successFlag`: 0 running, 1 success, 3 generation failed, 2 any other failure.
    pub fn success_flag(&self) -> u8 {
        match self.task.state {
            TaskState::Success => 1,
            TaskState::Fail if self.task.fail_class == Some(FailClass::Upstream) => 3,
            TaskState::Fail | TaskState::Expired => 2,
            _ => 0,
        }
    }

    /// A callback's envelope around `data`: 200 "success", or the failure's code (never 200)
    /// and message.
    pub fn callback_envelope(&self, data: Value) -> Value {
        let (code, msg) = if self.failed() {
            let (c, m) = failure(self.task);
            (c.parse::<i64>().ok().filter(|c| *c != 200).unwrap_or(500), if m.is_empty() { "Generation failed".to_string() } else { m })
        } else {
            (200, "success".to_string())
        };
        envelope(code, &msg, data)
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

/// The failure as a code and message (cancelled: 499).
fn failure(t: &TaskRecord) -> (String, String) {
    match t.state {
        TaskState::Fail => (t.fail_code.clone().unwrap_or_else(|| "500".into()), t.fail_msg.clone().unwrap_or_default()),
        TaskState::Expired => ("504".into(), t.fail_msg.clone().unwrap_or_else(|| "expired".into())),
        _ => (String::new(), String::new()),
    }
}

/// A status call's `data` for a task, in its family's shape (Market: [`record_info`]);
/// `content`: its written result's ([`Written::content`]).
pub fn status_data(t: &TaskRecord, model: &str, links: Option<&LinkSigner>, content: Option<Value>) -> Value {
    t.family.adapter().relay_status(&Written::new(t, model, links, content))
}

/// The callback KIE would send for an ended task, in its family's shape.
pub fn callback(t: &TaskRecord, links: Option<&LinkSigner>, content: Option<Value>) -> Value {
    t.family.adapter().relay_callback(&Written::new(t, &t.model, links, content))
}
