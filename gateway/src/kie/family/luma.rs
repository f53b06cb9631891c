//! Luma's modify video: `POST /api/v1/modify/generate` (`prompt`, `videoUrl` — the clip to
//! change, at most 10 s — `watermark`; no model field), `GET /api/v1/modify/record-info` with
//! `successFlag` (0 generating, 1 success, 2 and 3 failed, 4 success whose callback KIE could
//! not deliver) and `response.resultUrls`; callbacks carry `data.resultUrls`.

use serde_json::{Value, json};

use super::{ApiFamily, Family, UpstreamState, UpstreamStatus, Written, callback_hint, echoed_callback, status_with, success_flag, urls};

#[derive(Debug, Clone, Copy, Default)]
pub struct Luma;

/// Its state: `successFlag` as the other families read it, and 4 — made, but KIE's callback
/// to its client failed — a success.
fn state_of(data: &Value) -> Option<UpstreamState> {
    match data.get("successFlag").and_then(Value::as_i64) {
        Some(4) => Some(UpstreamState::Success),
        _ => success_flag(data),
    }
}

impl ApiFamily for Luma {
    fn family(&self) -> Family {
        Family::Luma
    }
    fn create_path(&self) -> &'static str {
        "/api/v1/modify/generate"
    }
    fn status_path(&self) -> &'static str {
        "/api/v1/modify/record-info"
    }
    fn parse_status(&self, data: Value) -> Result<UpstreamStatus, String> {
        let mut st = status_with(&data, state_of(&data))?;
        st.result_urls = urls(data.pointer("/response/resultUrls"));
        st.callback_url = echoed_callback(data.get("paramJson"));
        Ok(st)
    }
    fn parse_callback(&self, body: &[u8]) -> Result<UpstreamStatus, String> {
        let (mut st, data) = callback_hint(body)?;
        st.result_urls = urls(data.get("resultUrls"));
        Ok(st)
    }
    fn relay_status(&self, w: &Written<'_>) -> Value {
        let t = w.task;
        let (error_code, error_message) = w.error();
        json!({
            "taskId": t.id, "paramJson": w.param(), "createTime": t.created_ms, "completeTime": t.finished_ms,
            "successFlag": w.success_flag(), "errorCode": error_code, "errorMessage": error_message,
            "response": (!w.urls.is_empty()).then(|| json!({ "taskId": t.id, "resultUrls": w.urls, "originUrls": [], "kieResultUrls": w.kie_urls })),
        })
    }
    fn relay_callback(&self, w: &Written<'_>) -> Value {
        w.callback_envelope(json!({ "taskId": w.task.id, "promptJson": w.param(), "resultUrls": w.urls }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_whose_callback_failed_is_still_a_success() {
        let made = |flag: i64| Luma.parse_status(json!({ "taskId": "t1", "successFlag": flag, "response": { "resultUrls": ["https://f/x.mp4"] } })).unwrap();
        assert_eq!((made(4).state, made(4).result_urls.len()), (UpstreamState::Success, 1));
        assert_eq!(made(1).state, UpstreamState::Success);
        assert_eq!(made(3).state, UpstreamState::Fail);
        assert_eq!(made(0).state, UpstreamState::Generating);
    }
}
