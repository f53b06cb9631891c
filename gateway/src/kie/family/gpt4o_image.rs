//! 4o Image: `POST /api/v1/gpt4o-image/generate` (`size` 1:1 | 3:2 | 2:3 required, `prompt`,
//! `filesUrl`, `nVariants` 1 | 2 | 4…; no model field), `GET /api/v1/gpt4o-image/record-info`
//! (≤ 3/s per task) with `status` (or `successFlag`), `progress` and `response.resultUrls`;
//! callbacks carry `data.info.result_urls`.

use serde_json::{Map, Value, json};

use crate::tasks::task::{FailClass, TaskState};
use super::{ApiFamily, Family, UpstreamState, UpstreamStatus, Written, callback_hint, echoed_callback, filled, one_of, status_with, success_flag, urls};

#[derive(Debug, Clone, Copy, Default)]
pub struct Gpt4oImage;

pub const SIZES: [&str; 3] = ["1:1", "3:2", "2:3"];

impl ApiFamily for Gpt4oImage {
    fn family(&self) -> Family {
        Family::Gpt4oImage
    }
    fn create_path(&self) -> &'static str {
        "/api/v1/gpt4o-image/generate"
    }
    fn status_path(&self) -> &'static str {
        "/api/v1/gpt4o-image/record-info"
    }
    fn parse_status(&self, data: Value) -> Result<UpstreamStatus, String> {
        let state = match data.get("status").and_then(Value::as_str) {
            Some("SUCCESS") => Some(UpstreamState::Success),
            Some("CREATE_TASK_FAILED" | "GENERATE_FAILED") => Some(UpstreamState::Fail),
            Some("GENERATING") => Some(UpstreamState::Generating),
            _ => success_flag(&data),
        };
        let mut st = status_with(&data, state)?;
        st.result_urls = urls(data.pointer("/response/resultUrls"));
        st.callback_url = echoed_callback(data.get("paramJson"));
        Ok(st)
    }
    fn parse_callback(&self, body: &[u8]) -> Result<UpstreamStatus, String> {
        let (mut st, data) = callback_hint(body)?;
        st.result_urls = urls(data.pointer("/info/result_urls"));
        Ok(st)
    }
    fn check_input(&self, _model: &str, input: &Map<String, Value>) -> Result<(), String> {
        if input.get("size").and_then(Value::as_str).is_none() {
            return Err(format!("size is required: one of {}", SIZES.join(", ")));
        }
        one_of(input, "size", &SIZES)?;
        match input.get("nVariants") {
            None | Some(Value::Null) => {}
            Some(v) if [1, 2, 4].iter().any(|n| v.as_i64() == Some(*n)) => {}
            Some(_) => return Err("nVariants must be 1, 2 or 4 (a number)".into()),
        }
        let files = input.get("filesUrl").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
        if !filled(input, "prompt") && !files {
            return Err("prompt or filesUrl is required: what to make, or the images to work from".into());
        }
        match input.get("filesUrl") {
            None | Some(Value::Null) => Ok(()),
            Some(Value::Array(a)) if a.len() <= 5 && a.iter().all(Value::is_string) => Ok(()),
            Some(_) => Err("filesUrl must be a list of at most 5 image URLs".into()),
        }
    }
    fn relay_status(&self, w: &Written<'_>) -> Value {
        let t = w.task;
        let (error_code, error_message) = w.error();
        let status = match w.success_flag() {
            1 => "SUCCESS",
            0 => "GENERATING",
            _ if t.fail_class == Some(FailClass::Upstream) => "GENERATE_FAILED",
            _ => "CREATE_TASK_FAILED",
        };
        json!({
            "taskId": t.id, "paramJson": w.param(), "createTime": t.created_ms, "completeTime": t.finished_ms,
            "successFlag": w.success_flag(), "errorCode": error_code, "errorMessage": error_message,
            "status": status,
            "progress": if t.state == TaskState::Success { "1.00" } else { "0.00" },
            "response": if w.urls.is_empty() { Value::Null } else { json!({ "resultUrls": w.urls, "kieResultUrls": w.kie_urls }) },
        })
    }
    fn relay_callback(&self, w: &Written<'_>) -> Value {
        w.callback_envelope(json!({ "taskId": w.task.id, "info": { "result_urls": w.urls } }))
    }
}
