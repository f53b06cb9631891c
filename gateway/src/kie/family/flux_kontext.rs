//! Flux Kontext: `POST /api/v1/flux/kontext/generate` (`prompt`, `inputImage`, `aspectRatio`,
//! `model` flux-kontext-pro | flux-kontext-max…), `GET /api/v1/flux/kontext/record-info` with
//! `successFlag` and `response.resultImageUrl`; callbacks carry `data.info.resultImageUrl`.

use serde_json::{Map, Value};

use super::{ApiFamily, Family, UpstreamStatus, callback_envelope, echoed_callback, from_callback_code, one_of, success_flag, task_id_of, text, with_error};

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
    fn create_body(&self, model: &str, input: &Value, callback_url: Option<&str>) -> Value {
        super::flat_body(Some(model), input, callback_url)
    }
    fn parse_status(&self, data: Value) -> Result<UpstreamStatus, String> {
        let id = task_id_of(&data).ok_or("record-info has no taskId")?;
        let state = success_flag(&data).ok_or("record-info has no successFlag")?;
        let mut st = with_error(UpstreamStatus::new(id, state), &data);
        st.result_urls = text(data.pointer("/response/resultImageUrl")).into_iter().collect();
        st.callback_url = echoed_callback(data.get("paramJson"));
        Ok(st)
    }
    fn parse_callback(&self, body: &[u8]) -> Result<UpstreamStatus, String> {
        let (code, msg, data) = callback_envelope(body)?;
        let id = task_id_of(&data).ok_or("callback has no taskId")?;
        let mut st = from_callback_code(id, code, msg);
        st.result_urls = text(data.pointer("/info/resultImageUrl")).into_iter().collect();
        Ok(st)
    }
    fn check_input(&self, input: &Map<String, Value>) -> Result<(), String> {
        one_of(input, "aspectRatio", &ASPECT_RATIOS)?;
        one_of(input, "outputFormat", &OUTPUT_FORMATS)
    }
}
