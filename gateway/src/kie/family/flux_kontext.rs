//! Flux Kontext: `POST /api/v1/flux/kontext/generate` (`prompt`, `inputImage`, `aspectRatio`,
//! `model` flux-kontext-pro | flux-kontext-max…), `GET /api/v1/flux/kontext/record-info` with
//! `successFlag` and `response.resultImageUrl`; callbacks carry `data.info.resultImageUrl`.

use serde_json::{Map, Value, json};

use super::{ApiFamily, Family, UpstreamStatus, Written, callback_hint, echoed_callback, one_of, status_with, success_flag, text};

#[derive(Debug, Clone, Copy, Default)]
pub struct FluxKontext;

pub const ASPECT_RATIOS: [&str; 6] = ["21:9", "16:9", "4:3", "1:1", "3:4", "9:16"];
pub const OUTPUT_FORMATS: [&str; 2] = ["jpeg", "png"];

impl ApiFamily for FluxKontext {
    fn family(&self) -> Family {
        Family::FluxKontext
    }
    fn create_path(&self) -> &'static str {
        "/api/v1/flux/kontext/generate"
    }
    fn status_path(&self) -> &'static str {
        "/api/v1/flux/kontext/record-info"
    }
    fn parse_status(&self, data: Value) -> Result<UpstreamStatus, String> {
        let mut st = status_with(&data, success_flag(&data))?;
        st.result_urls = text(data.pointer("/response/resultImageUrl")).into_iter().collect();
        st.callback_url = echoed_callback(data.get("paramJson"));
        Ok(st)
    }
    fn parse_callback(&self, body: &[u8]) -> Result<UpstreamStatus, String> {
        let (mut st, data) = callback_hint(body)?;
        st.result_urls = text(data.pointer("/info/resultImageUrl")).into_iter().collect();
        Ok(st)
    }
    fn check_input(&self, _model: &str, input: &Map<String, Value>) -> Result<(), String> {
        one_of(input, "aspectRatio", &ASPECT_RATIOS)?;
        one_of(input, "outputFormat", &OUTPUT_FORMATS)
    }
    fn relay_status(&self, w: &Written<'_>) -> Value {
        let t = w.task;
        let (error_code, error_message) = w.error();
        json!({
            "taskId": t.id, "paramJson": w.param(), "createTime": t.created_ms, "completeTime": t.finished_ms,
            "successFlag": w.success_flag(), "errorCode": error_code, "errorMessage": error_message,
            "response": w.urls.first().map(|u| json!({ "resultImageUrl": u, "originImageUrl": null, "kieResultUrls": w.kie_urls })),
        })
    }
    fn relay_callback(&self, w: &Written<'_>) -> Value {
        w.callback_envelope(json!({ "taskId": w.task.id, "info": { "resultImageUrl": w.urls.first(), "originImageUrl": null } }))
    }
}
