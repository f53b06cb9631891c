//! Runway Aleph, video to video: `POST /api/v1/aleph/generate` (`prompt`, `videoUrl` — the
//! clip to change; its first 5 seconds are made — `waterMark`, `uploadCn`, `aspectRatio`,
//! `seed`; no model field), `GET /api/v1/aleph/record-info` with `successFlag` (1 done; 0
//! still running, or failed when `errorMessage` says why) and `response.resultVideoUrl`. Its
//! callbacks name the task beside `data`, not in it: `{code, msg, data: {result_video_url,
//! result_image_url} | null, taskId}`.

use serde_json::{Map, Value, json};

use super::{ApiFamily, Family, UpstreamState, UpstreamStatus, Written, boolean, echoed_callback, from_callback_code, status_with, success_flag, text};

#[derive(Debug, Clone, Copy, Default)]
pub struct Aleph;

pub const ASPECT_RATIOS: [&str; 6] = ["16:9", "9:16", "4:3", "3:4", "1:1", "21:9"];

/// Its state: `successFlag` as the other families read it, except that 0 with an
/// `errorMessage` is a failure (Aleph's pages say so).
fn state_of(data: &Value) -> Option<UpstreamState> {
    let failed = text(data.get("errorMessage")).is_some();
    match success_flag(data)? {
        UpstreamState::Generating if failed => Some(UpstreamState::Fail),
        other => Some(other),
    }
}

impl ApiFamily for Aleph {
    fn family(&self) -> Family {
        Family::Aleph
    }
    fn create_path(&self) -> &'static str {
        "/api/v1/aleph/generate"
    }
    fn status_path(&self) -> &'static str {
        "/api/v1/aleph/record-info"
    }
    fn parse_status(&self, data: Value) -> Result<UpstreamStatus, String> {
        let mut st = status_with(&data, state_of(&data))?;
        st.result_urls = text(data.pointer("/response/resultVideoUrl")).into_iter().collect();
        st.callback_url = echoed_callback(data.get("paramJson"));
        Ok(st)
    }
    fn parse_callback(&self, body: &[u8]) -> Result<UpstreamStatus, String> {
        let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let code = v.get("code").and_then(Value::as_i64).ok_or("callback has no code")?;
        let id = text(v.get("taskId")).or_else(|| text(v.pointer("/data/taskId"))).ok_or("callback has no task id")?;
        let mut st = from_callback_code(id, code, text(v.get("msg")));
        st.result_urls = text(v.pointer("/data/result_video_url")).into_iter().collect();
        Ok(st)
    }
    fn check_input(&self, _model: &str, input: &Map<String, Value>) -> Result<(), String> {
        super::one_of(input, "aspectRatio", &ASPECT_RATIOS)?;
        boolean(input, "uploadCn").map(|_| ())
    }
    fn relay_status(&self, w: &Written<'_>) -> Value {
        let t = w.task;
        let (error_code, error_message) = w.error();
        json!({
            "taskId": t.id, "paramJson": w.param(), "createTime": t.created_ms, "completeTime": t.finished_ms,
            "successFlag": w.success_flag(), "errorCode": error_code, "errorMessage": error_message,
            "response": w.urls.first().map(|u| json!({ "taskId": t.id, "resultVideoUrl": u, "resultImageUrl": null, "kieResultUrls": w.kie_urls })),
        })
    }
    fn relay_callback(&self, w: &Written<'_>) -> Value {
        let data = w.urls.first().filter(|_| !w.failed()).map(|u| json!({ "result_video_url": u, "result_image_url": null }));
        let mut body = w.callback_envelope(data.unwrap_or(Value::Null));
        body["taskId"] = w.task.id.clone().into();
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_flag_with_an_error_message_is_a_failure_and_a_callback_names_its_task_beside_data() {
        let st = Aleph.parse_status(json!({ "taskId": "t1", "successFlag": 0, "errorMessage": "Your prompt was caught by our AI moderator", "errorCode": 400 })).unwrap();
        assert_eq!((st.state, st.fail_code.as_deref()), (UpstreamState::Fail, Some("400")));
        let running = Aleph.parse_status(json!({ "taskId": "t1", "successFlag": 0, "errorMessage": "", "errorCode": 0 })).unwrap();
        assert_eq!(running.state, UpstreamState::Generating);
        let done = Aleph.parse_status(json!({ "taskId": "t1", "successFlag": 1, "response": { "resultVideoUrl": "https://f/x.mp4" } })).unwrap();
        assert_eq!((done.state, done.result_urls), (UpstreamState::Success, vec!["https://f/x.mp4".to_string()]));
        let cb = Aleph.parse_callback(br#"{"code":200,"msg":"success","data":{"result_video_url":"https://f/x.mp4","result_image_url":"https://f/x.png"},"taskId":"t1"}"#).unwrap();
        assert_eq!((cb.task_id.as_str(), cb.state, cb.result_urls.len()), ("t1", UpstreamState::Success, 1));
        let failed = Aleph.parse_callback(br#"{"code":400,"msg":"caught by our AI moderator","data":null,"taskId":"t1"}"#).unwrap();
        assert_eq!((failed.state, failed.fail_code.as_deref()), (UpstreamState::Fail, Some("400")));
    }
}
