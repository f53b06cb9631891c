//! API families: KIE has the Market jobs API for most models and model-specific APIs (Veo,
//! Suno, Runway…) with their own paths and status shapes. Each family is one [`ApiFamily`]
//! adapter that maps its shapes to one [`UpstreamStatus`], so the task lifecycle never forks.

use serde_json::Value;

use super::wire::{CreateTaskData, CreateTaskRequest, Envelope, KieState, RecordInfo};
use crate::money::credits::Credits;

/// Where a task stands upstream, whatever the family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamState {
    Waiting,
    Queuing,
    Generating,
    Success,
    Fail,
}

impl UpstreamState {
    pub fn is_terminal(self) -> bool {
        matches!(self, UpstreamState::Success | UpstreamState::Fail)
    }
}

/// One status answer (recordInfo or callback), normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamStatus {
    pub task_id: String,
    pub state: UpstreamState,
    pub result_urls: Vec<String>,
    pub fail_code: Option<String>,
    pub fail_msg: Option<String>,
    /// What KIE charged, when it says.
    pub credits: Option<Credits>,
    /// The `callBackUrl` the task was created with (from `param`), when KIE says: it proves
    /// which of our records an upstream task belongs to.
    pub callback_url: Option<String>,
}

/// One KIE API family.
pub trait ApiFamily: Send + Sync + 'static {
    /// A short name for logs ("market").
    fn name(&self) -> &'static str;
    fn create_path(&self) -> &'static str;
    /// Queried with `?taskId=`.
    fn status_path(&self) -> &'static str;
    fn create_body(&self, model: &str, input: &Value, callback_url: Option<&str>) -> Value;
    /// The task id from a successful create's `data`.
    fn parse_created(&self, data: Value) -> Result<String, String>;
    /// A status from a successful status call's `data`.
    fn parse_status(&self, data: Value) -> Result<UpstreamStatus, String>;
    /// A status from a callback body (the whole envelope).
    fn parse_callback(&self, body: &[u8]) -> Result<UpstreamStatus, String>;
}

/// The Market jobs API: `POST /api/v1/jobs/createTask`, `GET /api/v1/jobs/recordInfo`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MarketJobs;

impl MarketJobs {
    fn status_from(info: RecordInfo) -> UpstreamStatus {
        let state = match info.state {
            KieState::Waiting | KieState::Other(_) => UpstreamState::Waiting,
            KieState::Queuing => UpstreamState::Queuing,
            KieState::Generating => UpstreamState::Generating,
            KieState::Success => UpstreamState::Success,
            KieState::Fail => UpstreamState::Fail,
        };
        let callback_url = info
            .param
            .as_deref()
            .and_then(|p| serde_json::from_str::<Value>(p).ok())
            .and_then(|p| p.get("callBackUrl").and_then(Value::as_str).map(str::to_string));
        UpstreamStatus {
            callback_url,
            result_urls: info.result().result_urls,
            credits: info.credits(),
            task_id: info.task_id,
            state,
            fail_code: info.fail_code,
            fail_msg: info.fail_msg,
        }
    }
}

impl ApiFamily for MarketJobs {
    fn name(&self) -> &'static str {
        "market"
    }
    fn create_path(&self) -> &'static str {
        "/api/v1/jobs/createTask"
    }
    fn status_path(&self) -> &'static str {
        "/api/v1/jobs/recordInfo"
    }
    fn create_body(&self, model: &str, input: &Value, callback_url: Option<&str>) -> Value {
        let req = CreateTaskRequest { model: model.to_string(), callback_url: callback_url.map(str::to_string), input: input.clone() };
        serde_json::to_value(req).unwrap_or(Value::Null)
    }
    fn parse_created(&self, data: Value) -> Result<String, String> {
        serde_json::from_value::<CreateTaskData>(data).map(|d| d.task_id).map_err(|e| e.to_string())
    }
    fn parse_status(&self, data: Value) -> Result<UpstreamStatus, String> {
        serde_json::from_value::<RecordInfo>(data).map(Self::status_from).map_err(|e| e.to_string())
    }
    fn parse_callback(&self, body: &[u8]) -> Result<UpstreamStatus, String> {
        let env: Envelope<RecordInfo> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let info = env.data.ok_or_else(|| "callback has no data".to_string())?;
        Ok(Self::status_from(info))
    }
}
