//! Veo 3.1: `POST /api/v1/veo/generate` with the fields flat (`prompt`, `model` veo3 |
//! veo3_fast, `aspectRatio`, `generationType`, `imageUrls`…), `GET /api/v1/veo/record-info`
//! with `successFlag` and `response.resultUrls`; callbacks carry `data.info.resultUrls`. Its
//! follow-up `POST /api/v1/veo/extend` (`taskId`, `prompt`) makes a video longer; record-info
//! answers it too.

use serde_json::{Map, Value, json};

use super::{ApiFamily, Family, UpstreamStatus, Written, callback_hint, echoed_callback, one_of, status_with, success_flag, urls};

#[derive(Debug, Clone, Copy, Default)]
pub struct Veo;

pub const GENERATION_TYPES: [&str; 3] = ["TEXT_2_VIDEO", "FIRST_AND_LAST_FRAMES_2_VIDEO", "REFERENCE_2_VIDEO"];
pub const ASPECT_RATIOS: [&str; 3] = ["16:9", "9:16", "Auto"];

impl ApiFamily for Veo {
    fn family(&self) -> Family {
        Family::Veo
    }
    fn create_path(&self) -> &'static str {
        "/api/v1/veo/generate"
    }
    fn status_path(&self) -> &'static str {
        "/api/v1/veo/record-info"
    }
    fn own_paths(&self) -> &'static [(&'static str, &'static str)] {
        &[("veo_extend", "/api/v1/veo/extend")]
    }
    fn create_body(&self, model: &str, input: &Value, callback_url: Option<&str>) -> Value {
        let mut body = super::flat_body(Some(model), input, callback_url);
        // The docs spell it both ways; the documented English form is sent.
        if let Some(obj) = body.as_object_mut()
            && let Some(v) = obj.remove("aspect_ratio")
        {
            obj.entry("aspectRatio").or_insert(v);
        }
        body
    }
    fn parse_status(&self, data: Value) -> Result<UpstreamStatus, String> {
        let mut st = status_with(&data, success_flag(&data))?;
        st.result_urls = urls(data.pointer("/response/resultUrls"));
        st.callback_url = echoed_callback(data.get("paramJson"));
        Ok(st)
    }
    fn parse_callback(&self, body: &[u8]) -> Result<UpstreamStatus, String> {
        let (mut st, data) = callback_hint(body)?;
        st.result_urls = urls(data.pointer("/info/resultUrls"));
        Ok(st)
    }
    fn check_input(&self, _model: &str, input: &Map<String, Value>) -> Result<(), String> {
        one_of(input, "generationType", &GENERATION_TYPES)?;
        one_of(input, "aspectRatio", &ASPECT_RATIOS)?;
        one_of(input, "aspect_ratio", &ASPECT_RATIOS)?;
        match input.get("imageUrls") {
            None | Some(Value::Null) => Ok(()),
            Some(Value::Array(a)) if a.len() <= 2 && a.iter().all(Value::is_string) => Ok(()),
            Some(_) => Err("imageUrls must be a list of one or two image URLs".into()),
        }
    }
    fn relay_status(&self, w: &Written<'_>) -> Value {
        let t = w.task;
        let (error_code, error_message) = w.error();
        json!({
            "taskId": t.id, "paramJson": w.param(), "createTime": t.created_ms, "completeTime": t.finished_ms,
            "successFlag": w.success_flag(), "errorCode": error_code, "errorMessage": error_message, "fallbackFlag": false,
            "response": if w.urls.is_empty() { Value::Null } else { json!({ "taskId": t.id, "resultUrls": w.urls, "originUrls": [], "kieResultUrls": w.kie_urls }) },
        })
    }
    fn relay_callback(&self, w: &Written<'_>) -> Value {
        w.callback_envelope(json!({ "taskId": w.task.id, "info": { "resultUrls": w.urls, "originUrls": [], "resolution": null }, "fallbackFlag": false }))
    }
}
