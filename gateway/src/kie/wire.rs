//! KIE's wire format: serde types for the Market jobs API, `chat/credit`, `common/download-url`
//! and callbacks, tolerant of every variant `KIE-API.md` lists:
//! `msg`/`message`; `failCode`/`failMsg` null, "" or a number; `param`/`resultJson` as JSON
//! strings (or, defensively, objects); `creditsConsumed`/`consumeCredits`; `taskId`/`task_id`;
//! `state` `fail`/`failed`; missing `updateTime`. No I/O here.

use serde::{Deserialize, Deserializer, Serialize};

use crate::money::credits::Credits;

/// KIE's envelope: `{"code": …, "msg": …, "data": …}`. The body `code` is the truth; the HTTP
/// status may say 200 for an error.
#[derive(Debug, Clone, Deserialize)]
pub struct Envelope<T> {
    pub code: i64,
    #[serde(default, alias = "message")]
    pub msg: Option<String>,
    #[serde(default = "none")]
    pub data: Option<T>,
}

fn none<T>() -> Option<T> {
    None
}

/// `POST /api/v1/jobs/createTask` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateTaskRequest {
    pub model: String,
    #[serde(rename = "callBackUrl", skip_serializing_if = "Option::is_none", default)]
    pub callback_url: Option<String>,
    pub input: serde_json::Value,
}

/// `createTask`'s `data` (live answers add `recordId`, equal to `taskId`; ignored).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CreateTaskData {
    #[serde(rename = "taskId", alias = "task_id")]
    pub task_id: String,
}

/// KIE's task states, with `failed` read as `fail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KieState {
    Waiting,
    Queuing,
    Generating,
    Success,
    Fail,
    /// A state this client does not know; treated as still running.
    Other(String),
}

impl<'de> Deserialize<'de> for KieState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.to_ascii_lowercase().as_str() {
            "waiting" | "wait" => KieState::Waiting,
            "queuing" | "queueing" => KieState::Queuing,
            "generating" => KieState::Generating,
            "success" => KieState::Success,
            "fail" | "failed" => KieState::Fail,
            _ => KieState::Other(s),
        })
    }
}

/// `recordInfo`'s `data`, which is also a Market callback's `data`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RecordInfo {
    #[serde(rename = "taskId", alias = "task_id")]
    pub task_id: String,
    #[serde(default)]
    pub model: Option<String>,
    pub state: KieState,
    /// The original request, a JSON string.
    #[serde(default, deserialize_with = "text_or_json")]
    pub param: Option<String>,
    /// `{"resultUrls": […]}` or `{"resultObject": …}`, a JSON string.
    #[serde(default, rename = "resultJson", deserialize_with = "text_or_json")]
    pub result_json: Option<String>,
    #[serde(default, rename = "failCode", deserialize_with = "text_or_json")]
    pub fail_code: Option<String>,
    #[serde(default, rename = "failMsg", deserialize_with = "text_or_json")]
    pub fail_msg: Option<String>,
    /// Milliseconds per the docs, seconds in a live capture: shown as given, never summed.
    #[serde(default, rename = "costTime", deserialize_with = "lenient_f64")]
    pub cost_time: Option<f64>,
    #[serde(default, rename = "createTime", deserialize_with = "lenient_f64")]
    pub create_time: Option<f64>,
    #[serde(default, rename = "completeTime", deserialize_with = "lenient_f64")]
    pub complete_time: Option<f64>,
    #[serde(default, rename = "updateTime", deserialize_with = "lenient_f64")]
    pub update_time: Option<f64>,
    #[serde(default, rename = "creditsConsumed", alias = "consumeCredits", deserialize_with = "lenient_f64")]
    pub credits_consumed: Option<f64>,
    #[serde(default, rename = "remainedCredits", deserialize_with = "lenient_f64")]
    pub remained_credits: Option<f64>,
}

/// The parsed `resultJson`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ResultJson {
    #[serde(default, rename = "resultUrls")]
    pub result_urls: Vec<String>,
    #[serde(default, rename = "firstFrameUrl")]
    pub first_frame_url: Option<String>,
    #[serde(default, rename = "lastFrameUrl")]
    pub last_frame_url: Option<String>,
    #[serde(default, rename = "resultObject")]
    pub result_object: Option<serde_json::Value>,
}

impl RecordInfo {
    /// `resultJson` parsed; an empty or unreadable one gives no URLs.
    pub fn result(&self) -> ResultJson {
        self.result_json.as_deref().and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default()
    }

    /// What KIE charged, exactly.
    pub fn credits(&self) -> Option<Credits> {
        self.credits_consumed.and_then(Credits::from_decimal)
    }
}

/// Text fields KIE writes loosely: null, "" or blank → None; a string as is; any other JSON
/// value (a number failCode, an inlined resultJson object) re-encoded as text.
fn text_or_json<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    })
}

/// A number, a numeric string, or nothing.
fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

/// `chat/credit`'s `data`: the balance, possibly fractional.
pub fn credit_balance(data: &serde_json::Value) -> Option<Credits> {
    match data {
        serde_json::Value::Number(n) => n.as_f64().and_then(Credits::from_decimal),
        serde_json::Value::String(s) => s.trim().parse().ok().and_then(Credits::from_decimal),
        _ => None,
    }
}
