//! Midjourney: `POST /api/v1/mj/generate` with a `taskType` (`mj_txt2img`, `mj_img2img`,
//! `mj_style_reference`, `mj_omni_reference`, `mj_video`, `mj_video_hd`: the catalog's
//! upstream model), `prompt`, `fileUrls` (the input images), `aspectRatio`, `version`, `speed`,
//! `stylization`, `weirdness` (each task type is a catalog model, whose `required` names what
//! it needs: `fileUrls` for all but text-to-image); its follow-ups on a result (upscale,
//! vary, video extend) at their own paths, each naming the parent's `taskId`; `GET /api/v1/mj/record-info` with `successFlag` and
//! `resultInfoJson.resultUrls[].resultUrl` (a grid answers four images). Its callbacks carry
//! `data.resultUrls`. The request names its kind as `taskType`, not `model`.

use serde_json::{Map, Value, json};

use super::{ApiFamily, Family, UpstreamStatus, Written, callback_hint, echoed_callback, one_of, status_with, success_flag};

#[derive(Debug, Clone, Copy, Default)]
pub struct Midjourney;


pub const ASPECT_RATIOS: [&str; 11] = ["1:2", "9:16", "2:3", "3:4", "5:6", "6:5", "4:3", "3:2", "1:1", "16:9", "2:1"];
pub const VERSIONS: [&str; 6] = ["7", "6.1", "6", "5.2", "5.1", "niji6"];
pub const SPEEDS: [&str; 3] = ["relaxed", "fast", "turbo"];
/// Its follow-ups on a result: one image of a grid upscaled (`imageIndex` from 0) or varied
/// (`imageIndex` from 1, as KIE's pages give them), a video extended (`index`). The names are
/// the console's own; KIE's record-info answers them as its `taskType`.
const FOLLOW_UPS: [(&str, &str); 3] = [("mj_upscale", "/api/v1/mj/generateUpscale"), ("mj_vary", "/api/v1/mj/generateVary"), ("mj_video_extend", "/api/v1/mj/generateVideoExtend")];

/// The result URLs of `v`: a list of `{resultUrl}` objects or of strings.
fn result_urls(v: Option<&Value>) -> Vec<String> {
    let Some(list) = v.and_then(Value::as_array) else { return Vec::new() };
    list.iter().filter_map(|u| u.get("resultUrl").unwrap_or(u).as_str()).filter(|u| !u.is_empty()).map(str::to_string).collect()
}

/// A whole number field within `range`, when present.
fn within(input: &Map<String, Value>, field: &str, range: std::ops::RangeInclusive<i64>) -> Result<(), String> {
    match input.get(field) {
        None | Some(Value::Null) => Ok(()),
        // A whole number, however written (`230` or `230.0`, as JSON Schema's integer allows).
        Some(v) if v.as_f64().is_some_and(|n| n.fract() == 0.0 && (*range.start() as f64..=*range.end() as f64).contains(&n)) => Ok(()),
        Some(_) => Err(format!("{field} must be a whole number from {} to {}", range.start(), range.end())),
    }
}

impl ApiFamily for Midjourney {
    fn family(&self) -> Family {
        Family::Midjourney
    }
    fn create_path(&self) -> &'static str {
        "/api/v1/mj/generate"
    }
    fn status_path(&self) -> &'static str {
        "/api/v1/mj/record-info"
    }
    fn model_field(&self) -> &'static str {
        "taskType"
    }
    fn own_paths(&self) -> &'static [(&'static str, &'static str)] {
        &FOLLOW_UPS
    }
    fn create_body(&self, model: &str, input: &Value, callback_url: Option<&str>) -> Value {
        let mut body = super::flat_body(None, input, callback_url);
        if let Some(fields) = body.as_object_mut() {
            fields.insert("taskType".into(), model.into());
        }
        body
    }
    fn parse_status(&self, data: Value) -> Result<UpstreamStatus, String> {
        let mut st = status_with(&data, success_flag(&data))?;
        st.result_urls = result_urls(data.pointer("/resultInfoJson/resultUrls"));
        st.callback_url = echoed_callback(data.get("paramJson"));
        Ok(st)
    }
    fn parse_callback(&self, body: &[u8]) -> Result<UpstreamStatus, String> {
        let (mut st, data) = callback_hint(body)?;
        st.result_urls = result_urls(data.get("resultUrls"));
        Ok(st)
    }
    fn check_input(&self, _model: &str, input: &Map<String, Value>) -> Result<(), String> {
        one_of(input, "aspectRatio", &ASPECT_RATIOS)?;
        one_of(input, "version", &VERSIONS)?;
        one_of(input, "speed", &SPEEDS)?;
        within(input, "stylization", 0..=1000)?;
        within(input, "weirdness", 0..=3000)
    }
    fn relay_status(&self, w: &Written<'_>) -> Value {
        let t = w.task;
        let (error_code, error_message) = w.error();
        let urls: Vec<Value> = w.urls.iter().map(|u| json!({ "resultUrl": u })).collect();
        json!({
            "taskId": t.id, "taskType": w.model, "paramJson": w.param(), "createTime": t.created_ms, "completeTime": t.finished_ms,
            "successFlag": w.success_flag(), "errorCode": error_code, "errorMessage": error_message,
            "resultInfoJson": (!urls.is_empty()).then(|| json!({ "resultUrls": urls, "kieResultUrls": w.kie_urls })),
        })
    }
    fn relay_callback(&self, w: &Written<'_>) -> Value {
        w.callback_envelope(json!({ "taskId": w.task.id, "taskType": w.model, "resultUrls": w.urls }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn its_numbers_are_whole_and_in_range_however_written() {
        let check = |v: Value| Midjourney.check_input("mj_txt2img", json!({ "weirdness": v }).as_object().unwrap());
        assert!(check(json!(230)).is_ok() && check(json!(230.0)).is_ok() && check(json!(3000)).is_ok());
        for bad in [json!(230.5), json!(-1), json!(3001), json!("230")] {
            assert!(check(bad.clone()).unwrap_err().contains("whole number from 0 to 3000"), "{bad}");
        }
    }
}
