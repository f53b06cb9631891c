//! Runway: `POST /api/v1/runway/generate` (`prompt`, `imageUrl`, `duration` 5 | 10, `quality`
//! 720p | 1080p, 1080p not with 10 s, `aspectRatio`, `waterMark`; no model field), `GET
//! /api/v1/runway/record-detail` with `state` and `videoInfo.videoUrl` (`expireFlag` 1 once the
//! media lapsed: the Library's copy then finds it gone, as for any lapsed result); callbacks
//! carry `data.video_url`. Its follow-up `POST /api/v1/runway/extend` (`taskId`, `prompt`,
//! `quality`) makes a video longer; record-detail answers it too.

use serde_json::{Map, Value, json};

use super::{ApiFamily, Family, UpstreamState, UpstreamStatus, Written, callback_hint, one_of, status_with, text};

#[derive(Debug, Clone, Copy, Default)]
pub struct Runway;

pub const QUALITIES: [&str; 2] = ["720p", "1080p"];
pub const ASPECT_RATIOS: [&str; 5] = ["16:9", "4:3", "1:1", "3:4", "9:16"];

/// `duration` as seconds, whether sent as a number or a string.
fn seconds(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl ApiFamily for Runway {
    fn family(&self) -> Family {
        Family::Runway
    }
    fn create_path(&self) -> &'static str {
        "/api/v1/runway/generate"
    }
    fn own_paths(&self) -> &'static [(&'static str, &'static str)] {
        &[("runway_extend", "/api/v1/runway/extend")]
    }
    fn status_path(&self) -> &'static str {
        "/api/v1/runway/record-detail"
    }
    fn parse_status(&self, data: Value) -> Result<UpstreamStatus, String> {
        let state = data.get("state").and_then(Value::as_str).map(|s| match s {
            "success" => UpstreamState::Success,
            "fail" | "failed" => UpstreamState::Fail,
            "generating" => UpstreamState::Generating,
            "queueing" | "queuing" => UpstreamState::Queuing,
            _ => UpstreamState::Waiting,
        });
        let mut st = status_with(&data, state)?;
        st.result_urls = text(data.pointer("/videoInfo/videoUrl")).into_iter().collect();
        st.callback_url = super::echoed_callback(data.get("generateParam"));
        Ok(st)
    }
    fn parse_callback(&self, body: &[u8]) -> Result<UpstreamStatus, String> {
        let (mut st, data) = callback_hint(body)?;
        st.result_urls = text(data.get("video_url")).into_iter().collect();
        Ok(st)
    }
    fn check_input(&self, _model: &str, input: &Map<String, Value>) -> Result<(), String> {
        one_of(input, "quality", &QUALITIES)?;
        one_of(input, "aspectRatio", &ASPECT_RATIOS)?;
        let secs = match input.get("duration") {
            None | Some(Value::Null) => None,
            v => Some(seconds(v).filter(|s| [5, 10].contains(s)).ok_or("duration must be 5 or 10 (seconds)")?),
        };
        if secs == Some(10) && input.get("quality").and_then(Value::as_str) == Some("1080p") {
            return Err("Runway makes 1080p only for 5-second videos: pick 720p or 5 s".into());
        }
        Ok(())
    }
    fn relay_status(&self, w: &Written<'_>) -> Value {
        let t = w.task;
        let (error_code, error_message) = w.error();
        json!({
            "taskId": t.id, "state": crate::tasks::relay::kie_state(t.state).replace("waiting", "wait").replace("queuing", "queueing"),
            "generateTime": t.finished_ms, "generateParam": serde_json::from_str::<Value>(&w.param()).unwrap_or(Value::Null),
            "videoInfo": w.urls.first().map(|u| json!({ "videoId": t.id, "taskId": t.id, "videoUrl": u, "imageUrl": null, "kieResultUrls": w.kie_urls })),
            "failCode": error_code, "failMsg": error_message, "expireFlag": 0,
        })
    }
    fn relay_callback(&self, w: &Written<'_>) -> Value {
        let t = w.task;
        w.callback_envelope(json!({ "task_id": t.id, "video_id": t.id, "video_url": w.urls.first(), "image_url": null }))
    }
}
