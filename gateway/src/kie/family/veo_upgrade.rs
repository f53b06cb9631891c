//! Veo's upgrades of one video of a finished task: its 1080p (`GET
//! /api/v1/veo/get-1080p-video?taskId=&index=`, answered at once with `data.resultUrl`) and
//! its 4K (`POST /api/v1/veo/get-4k-video {taskId, index, callBackUrl}`, answered with the
//! parent's `taskId` and `resultUrls` null while KIE makes it, 5–10 minutes; a 422 "4k is
//! processing" while one runs; a callback `{code, msg, data: {taskId, creditsConsumed, info:
//! {resultUrls, imageUrls}}}` when it ends).
//!
//! KIE makes an upgrade under the parent's own task id and documents no status call of its
//! own: it is asked for again until it answers the file ("wait and retry, 30 s or more"). So an
//! upgrade task here is known at KIE by its parent's id (never indexed as that id: the parent
//! owns it), its status call is its create call again, and KIE's refusal of it (the video
//! cannot be upgraded) ends it. One adapter; what differs is [`VeoUpgrade`]'s data.

use serde_json::{Map, Value, json};

use super::{ApiFamily, Call, Family, UpstreamState, UpstreamStatus, Verb, Written, callback_hint, text, urls};
use crate::kie::KieError;

/// One of Veo's upgrades.
#[derive(Debug)]
pub struct VeoUpgrade {
    family: Family,
    path: &'static str,
    verb: Verb,
    /// Its name in KIE's messages ("1080P", "4K").
    label: &'static str,
}

/// A video's 1080p: a GET answered with the file's URL.
pub const HD: VeoUpgrade = VeoUpgrade { family: Family::Veo1080p, path: "/api/v1/veo/get-1080p-video", verb: Verb::Get, label: "1080P" };

/// A video's 4K: a POST, answered with the file's URLs once KIE has made it.
pub const UHD: VeoUpgrade = VeoUpgrade { family: Family::Veo4k, path: "/api/v1/veo/get-4k-video", verb: Verb::Post, label: "4K" };

impl VeoUpgrade {
    /// The upgrade of `kie_task`'s video `index` asked for: the fields KIE names.
    fn call(&self, kie_task: &str, index: Option<&Value>, callback_url: Option<&str>) -> Call {
        let mut fields = Map::new();
        fields.insert("taskId".into(), kie_task.into());
        fields.insert("index".into(), index.cloned().unwrap_or(json!(0)));
        if let Some(u) = callback_url.filter(|_| self.verb == Verb::Post) {
            fields.insert("callBackUrl".into(), u.into());
        }
        Call { verb: self.verb, path: self.path, fields: Value::Object(fields) }
    }
}

impl ApiFamily for VeoUpgrade {
    fn family(&self) -> Family {
        self.family
    }
    fn create_path(&self) -> &'static str {
        self.path
    }
    fn status_path(&self) -> &'static str {
        self.path
    }
    fn acts_on(&self) -> Option<Family> {
        Some(Family::Veo)
    }
    fn upgrade(&self) -> Option<Verb> {
        Some(self.verb)
    }
    fn create_call(&self, _model: &str, input: &Value, callback_url: Option<&str>) -> Call {
        let parent = input.get("taskId").and_then(Value::as_str).unwrap_or_default();
        self.call(parent, input.get("index"), callback_url)
    }
    fn status_call(&self, kie_task: &str, input: &Value) -> Call {
        self.call(kie_task, input.get("index"), None)
    }
    /// Known at KIE by its parent's id, which it was asked with.
    fn created_id(&self, _data: Value, input: &Value) -> Result<String, String> {
        input.get("taskId").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string).ok_or_else(|| "the upgrade names no task".to_string())
    }
    /// The file once KIE has it (1080p's `resultUrl`, 4K's `resultUrls`), else still making.
    fn parse_status(&self, data: Value) -> Result<UpstreamStatus, String> {
        let mut files = urls(data.get("resultUrls"));
        files.extend(text(data.get("resultUrl")));
        let id = super::task_id_of(&data).unwrap_or_default();
        let mut st = UpstreamStatus::new(id, if files.is_empty() { UpstreamState::Generating } else { UpstreamState::Success });
        st.result_urls = files;
        Ok(st)
    }
    fn parse_callback(&self, body: &[u8]) -> Result<UpstreamStatus, String> {
        let (mut st, data) = callback_hint(body)?;
        st.result_urls = urls(data.pointer("/info/resultUrls"));
        st.credits = data.get("creditsConsumed").and_then(Value::as_f64).and_then(crate::money::credits::Credits::from_decimal);
        Ok(st)
    }
    /// Asked again, KIE answers "processing" (422), a rate limit or maintenance while it works:
    /// asked again later. Any other refusal (the video cannot be upgraded, the task is gone)
    /// ends the upgrade with KIE's words.
    fn status_of_refusal(&self, kie_task: &str, e: &KieError) -> Option<UpstreamStatus> {
        let code = e.code()?;
        if matches!(code, 422 | 429 | 455 | 502 | 503 | 504) {
            return None;
        }
        let mut st = UpstreamStatus::new(kie_task.to_string(), UpstreamState::Fail);
        st.fail_code = Some(code.to_string());
        st.fail_msg = Some(format!("KIE could not make the {} version: {e}", self.label));
        Some(st)
    }
    fn check_input(&self, _model: &str, input: &Map<String, Value>) -> Result<(), String> {
        match input.get("index") {
            None | Some(Value::Null) => Ok(()),
            Some(v) if v.as_u64().is_some_and(|n| n < 4) => Ok(()),
            Some(_) => Err("index must be a whole number from 0: which of the task's videos".into()),
        }
    }
    /// A relay client reads an upgrade where it asked for it (the relay's own route): here,
    /// in the shape that route answers.
    fn relay_status(&self, w: &Written<'_>) -> Value {
        let parent = w.task.input.get("taskId").cloned().unwrap_or(Value::Null);
        match self.verb {
            Verb::Get => json!({ "resultUrl": w.urls.first() }),
            Verb::Post => json!({ "taskId": parent, "resultUrls": if w.urls.is_empty() { Value::Null } else { json!(w.urls) }, "imageUrls": null }),
        }
    }
    fn relay_callback(&self, w: &Written<'_>) -> Value {
        let parent = w.task.input.get("taskId").cloned().unwrap_or(Value::Null);
        w.callback_envelope(json!({ "taskId": parent, "info": { "resultUrls": w.urls, "imageUrls": [] } }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upgrade_is_asked_for_again_by_its_parents_id_and_index() {
        let input = json!({"taskId": "veo_k1", "index": 1});
        let create = UHD.create_call("veo_4k", &input, Some("https://cr.example/callbacks/kie/t"));
        assert_eq!((create.verb, create.path), (Verb::Post, "/api/v1/veo/get-4k-video"));
        assert_eq!(create.fields, json!({"taskId": "veo_k1", "index": 1, "callBackUrl": "https://cr.example/callbacks/kie/t"}));
        let again = UHD.status_call("veo_k1", &input);
        assert_eq!(again.fields, json!({"taskId": "veo_k1", "index": 1}), "asked again with no callback");
        let hd = HD.create_call("veo_1080p", &json!({"taskId": "veo_k1"}), Some("https://cr.example/cb"));
        assert_eq!((hd.verb, hd.fields), (Verb::Get, json!({"taskId": "veo_k1", "index": 0})), "a GET takes no callback");
        assert_eq!(HD.created_id(json!({"resultUrl": "https://f/1080.mp4"}), &input).unwrap(), "veo_k1");
    }

    #[test]
    fn the_file_ends_it_and_a_refusal_other_than_processing_fails_it() {
        let hd = HD.parse_status(json!({"resultUrl": "https://f/1080.mp4"})).unwrap();
        assert_eq!((hd.state, hd.result_urls), (UpstreamState::Success, vec!["https://f/1080.mp4".to_string()]));
        let making = UHD.parse_status(json!({"taskId": "veo_k1", "resultUrls": null, "imageUrls": null})).unwrap();
        assert_eq!(making.state, UpstreamState::Generating);
        assert!(UHD.status_of_refusal("veo_k1", &KieError::from_code(422, Some("4k is processing".into()))).is_none());
        assert!(UHD.status_of_refusal("veo_k1", &KieError::from_code(429, None)).is_none());
        assert!(UHD.status_of_refusal("veo_k1", &KieError::Timeout(std::time::Duration::from_secs(1))).is_none());
        let gone = UHD.status_of_refusal("veo_k1", &KieError::from_code(500, Some("The 4K version of this video is unavailable".into()))).unwrap();
        assert_eq!((gone.state, gone.fail_code.as_deref()), (UpstreamState::Fail, Some("500")));
        assert!(gone.fail_msg.unwrap().contains("unavailable"));
        let cb = UHD.parse_callback(br#"{"code":200,"msg":"4K Video generated successfully.","data":{"taskId":"veo_k1","creditsConsumed":120,"info":{"resultUrls":["https://f/4k.mp4"],"imageUrls":["https://f/4k.jpg"]}}}"#).unwrap();
        assert_eq!((cb.task_id.as_str(), cb.state, cb.result_urls.len()), ("veo_k1", UpstreamState::Success, 1));
        assert_eq!(cb.credits.map(|c| c.as_f64()), Some(120.0));
    }

    #[test]
    fn the_index_names_one_video() {
        assert!(HD.check_input("", json!({"index": 0}).as_object().unwrap()).is_ok());
        assert!(HD.check_input("", json!({"index": "first"}).as_object().unwrap()).is_err());
    }
}
