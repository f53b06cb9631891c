//! The Market jobs API (most models): `POST /api/v1/jobs/createTask {model, callBackUrl,
//! input}`, `GET /api/v1/jobs/recordInfo`; callbacks carry the recordInfo object.

use serde_json::Value;

use super::{ApiFamily, Family, UpstreamState, UpstreamStatus, Written};
use crate::kie::wire::{CreateTaskData, CreateTaskRequest, Envelope, KieState, RecordInfo};

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
            media_seconds: None,
            result_names: Vec::new(),
            result_ids: Vec::new(),
        }
    }
}

impl ApiFamily for MarketJobs {
    fn family(&self) -> Family {
        Family::Market
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
    fn relay_status(&self, w: &Written<'_>) -> Value {
        crate::tasks::relay::record_info(w.task, w.links)
    }
    fn relay_callback(&self, w: &Written<'_>) -> Value {
        crate::tasks::relay::callback_body(w.task, w.links)
    }
}
