//! Suno: `POST /api/v1/generate` (`prompt`, `customMode`, `instrumental`, `model`, `style`,
//! `title`…), `GET /api/v1/generate/record-info` (≤ 3/s per task) with `status` PENDING →
//! TEXT_SUCCESS → FIRST_SUCCESS → SUCCESS or a failure, and `response.sunoData[].audioUrl`.
//! KIE calls back several times per task (`callbackType` text, first, complete, error), in
//! snake_case with `task_id`: the first two are progress, only `complete` or `error` ends it.
//! KIE's id of each track is kept: its follow-up `POST /api/v1/generate/extend` names a track
//! by it (`audioId`, which the relay's record-info gives as `<task>-<n>`) and must be of the
//! track's model. Suno also makes music from an uploaded track (`uploadUrl`, which may name a
//! Library result): a cover (`/api/v1/generate/upload-cover`, a song's fields), vocals over an
//! instrumental (`/add-vocals`) and an instrumental under vocals (`/add-instrumental`, V4_5PLUS
//! or V5). Record-info answers all of them.

use serde_json::{Map, Value, json};

use crate::tasks::task::{FailClass, TaskRecord, TaskState};
use super::{ApiFamily, Family, UpstreamState, UpstreamStatus, Written, boolean, callback_envelope, echoed_callback, filled, status_with, task_id_of, text};

#[derive(Debug, Clone, Copy, Default)]
pub struct Suno;

/// Suno's failure states.
pub const FAILURES: [&str; 4] = ["CREATE_TASK_FAILED", "GENERATE_AUDIO_FAILED", "CALLBACK_EXCEPTION", "SENSITIVE_WORD_ERROR"];

/// The tracks' audio URLs (in `field`) and KIE's track ids, in the same order: a track with no
/// audio is no result; its id is empty if KIE gave none.
fn audio_of(tracks: Option<&Value>, field: &str) -> (Vec<String>, Vec<String>) {
    let tracks = tracks.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    tracks.iter().filter_map(|t| Some((text(t.get(field))?, text(t.get("id")).unwrap_or_default()))).unzip()
}

impl ApiFamily for Suno {
    fn family(&self) -> Family {
        Family::Suno
    }
    fn create_path(&self) -> &'static str {
        "/api/v1/generate"
    }
    fn status_path(&self) -> &'static str {
        "/api/v1/generate/record-info"
    }
    fn parse_status(&self, data: Value) -> Result<UpstreamStatus, String> {
        let status = data.get("status").and_then(Value::as_str).unwrap_or_default();
        let state = match status {
            "" => None,
            "SUCCESS" => Some(UpstreamState::Success),
            s if FAILURES.contains(&s) => Some(UpstreamState::Fail),
            "TEXT_SUCCESS" | "FIRST_SUCCESS" => Some(UpstreamState::Generating),
            _ => Some(UpstreamState::Waiting),
        };
        let mut st = status_with(&data, state)?;
        if st.state == UpstreamState::Fail && st.fail_code.is_none() {
            st.fail_code = Some(if status == "SENSITIVE_WORD_ERROR" { "400".into() } else { "500".into() });
            st.fail_msg = st.fail_msg.or_else(|| Some(status.to_string()));
        }
        if st.state == UpstreamState::Success {
            let tracks = data.pointer("/response/sunoData");
            (st.result_urls, st.result_ids) = audio_of(tracks, "audioUrl");
            st.media_seconds = tracks.and_then(Value::as_array).map(|a| a.iter().filter_map(|t| t.get("duration").and_then(Value::as_f64)).sum::<f64>()).filter(|s| *s > 0.0);
        }
        st.callback_url = echoed_callback(data.get("param"));
        Ok(st)
    }
    fn parse_callback(&self, body: &[u8]) -> Result<UpstreamStatus, String> {
        let (code, msg, data) = callback_envelope(body)?;
        let id = task_id_of(&data).ok_or("callback has no task_id")?;
        let kind = data.get("callbackType").and_then(Value::as_str).unwrap_or("");
        let state = match (code, kind) {
            (200, "complete") => UpstreamState::Success,
            (200, "text" | "first") => UpstreamState::Generating,
            _ => UpstreamState::Fail,
        };
        let mut st = UpstreamStatus::new(id, state);
        if state == UpstreamState::Fail {
            st.fail_code = Some(code.to_string());
            st.fail_msg = msg;
        } else {
            (st.result_urls, st.result_ids) = audio_of(data.get("data"), "audio_url");
        }
        Ok(st)
    }
    fn own_paths(&self) -> &'static [(&'static str, &'static str)] {
        &[(EXTEND, "/api/v1/generate/extend"), (COVER, "/api/v1/generate/upload-cover"), (UPLOAD_EXTEND, "/api/v1/generate/upload-extend"), (ADD_VOCALS, "/api/v1/generate/add-vocals"), (ADD_INSTRUMENTAL, "/api/v1/generate/add-instrumental")]
    }
    fn check_input(&self, model: &str, input: &Map<String, Value>) -> Result<(), String> {
        match model {
            EXTEND | UPLOAD_EXTEND => extension(input),
            // Vocals over an instrumental, or an instrumental under vocals: Suno's newer models.
            ADD_VOCALS | ADD_INSTRUMENTAL => match input.get("model") {
                None | Some(Value::Null) => Ok(()),
                Some(Value::String(m)) if LAYERING_MODELS.contains(&m.as_str()) => Ok(()),
                Some(other) => Err(format!("model is {other}; layering takes {}", LAYERING_MODELS.join(" or "))),
            },
            // A cover of an uploaded track is made like a song.
            _ => song(input),
        }
    }
    fn relay_status(&self, w: &Written<'_>) -> Value {
        let t = w.task;
        let (error_code, error_message) = w.error();
        json!({
            "taskId": t.id, "param": w.param(), "status": status_word(t), "type": if t.follows.is_some() { "EXTEND" } else { "GENERATE" },
            "errorCode": error_code, "errorMessage": error_message,
            "response": { "taskId": t.id, "sunoData": tracks(w, false), "kieResultUrls": w.kie_urls },
        })
    }
    fn relay_callback(&self, w: &Written<'_>) -> Value {
        w.callback_envelope(json!({ "callbackType": if w.failed() { "error" } else { "complete" }, "task_id": w.task.id, "data": tracks(w, true) }))
    }
}

/// The follow-up that makes a track longer (`POST /api/v1/generate/extend`): it names the track
/// by `audioId` and must be of the track's model.
pub const EXTEND: &str = "suno_extend";
/// A cover of an uploaded track (`uploadUrl`), with a song's fields.
pub const COVER: &str = "suno_cover";
/// An uploaded track made longer (`uploadUrl`), by an extension's rules.
pub const UPLOAD_EXTEND: &str = "suno_upload_extend";
/// Vocals over an uploaded instrumental (`uploadUrl`, `prompt`, `title`, `style`, `negativeTags`).
pub const ADD_VOCALS: &str = "suno_add_vocals";
/// An instrumental under uploaded vocals (`uploadUrl`, `title`, `tags`, `negativeTags`).
pub const ADD_INSTRUMENTAL: &str = "suno_add_instrumental";
/// The models that add vocals or an instrumental.
const LAYERING_MODELS: [&str; 2] = ["V4_5PLUS", "V5"];

/// A song's rules: custom mode needs a style and a title, and lyrics unless instrumental;
/// otherwise a description.
fn song(input: &Map<String, Value>) -> Result<(), String> {
    let custom = boolean(input, "customMode")?.ok_or("customMode is required (true or false)")?;
    let instrumental = boolean(input, "instrumental")?.ok_or("instrumental is required (true or false)")?;
    if custom {
        if !filled(input, "style") || !filled(input, "title") {
            return Err("custom mode needs a style and a title".into());
        }
        if !instrumental && !filled(input, "prompt") {
            return Err("custom mode with vocals needs the lyrics as prompt".into());
        }
    } else if !filled(input, "prompt") {
        return Err("prompt is required (a description of the song) unless customMode is true".into());
    }
    Ok(())
}

/// An extension's rules: its own settings, or the track's.
fn extension(input: &Map<String, Value>) -> Result<(), String> {
    let own = boolean(input, "defaultParamFlag")?.ok_or("defaultParamFlag is required: true to give the extension's prompt, style, title and continueAt, false to keep the track's")?;
    if own {
        if !filled(input, "prompt") || !filled(input, "style") || !filled(input, "title") {
            return Err("with defaultParamFlag true, the extension needs its prompt, style and title".into());
        }
        match input.get("continueAt").and_then(Value::as_f64) {
            Some(s) if s > 0.0 && s.is_finite() => {}
            _ => return Err("with defaultParamFlag true, continueAt is required: the second of the track the extension starts from (above 0)".into()),
        }
    }
    Ok(())
}

/// Suno's status word for a task, as the relay writes it.
fn status_word(t: &TaskRecord) -> &'static str {
    match t.state {
        TaskState::Success => "SUCCESS",
        TaskState::Generating => "TEXT_SUCCESS",
        TaskState::Fail if t.fail_class == Some(FailClass::Policy) => "SENSITIVE_WORD_ERROR",
        TaskState::Fail if matches!(t.fail_class, Some(FailClass::Cancelled | FailClass::Budget)) => "CREATE_TASK_FAILED",
        TaskState::Fail | TaskState::Expired => "GENERATE_AUDIO_FAILED",
        _ => "PENDING",
    }
}

/// Suno's tracks, one per result, in record-info's camelCase or the callback's snake_case.
fn tracks(w: &Written<'_>, snake: bool) -> Vec<Value> {
    let title = w.task.input.get("title").cloned().unwrap_or(Value::Null);
    w.urls
        .iter()
        .enumerate()
        .map(|(n, u)| {
            let id = format!("{}-{n}", w.task.id);
            if snake {
                json!({ "id": id, "audio_url": u, "stream_audio_url": u, "image_url": null, "title": title })
            } else {
                json!({ "id": id, "audioUrl": u, "streamAudioUrl": u, "imageUrl": null, "title": title })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kies_track_ids_are_kept_beside_their_audio_in_record_info_and_callbacks() {
        let data = json!({"taskId": "k1", "status": "SUCCESS", "response": {"sunoData": [
            {"id": "a0", "audioUrl": "https://kie.example/0.mp3", "duration": 2.0},
            {"id": "a1", "audioUrl": "", "duration": 2.0},
            {"audioUrl": "https://kie.example/2.mp3", "duration": 2.0},
        ]}});
        let st = Suno.parse_status(data).unwrap();
        assert_eq!(st.result_urls, ["https://kie.example/0.mp3", "https://kie.example/2.mp3"], "a track without audio is no result");
        assert_eq!(st.result_ids, ["a0", ""], "the ids stay beside their audio; one KIE did not give is empty");
        let body = json!({"code": 200, "msg": "ok", "data": {"callbackType": "complete", "task_id": "k1", "data": [{"id": "a0", "audio_url": "https://kie.example/0.mp3"}]}});
        let st = Suno.parse_callback(body.to_string().as_bytes()).unwrap();
        assert_eq!((st.result_urls.len(), st.result_ids), (1, vec!["a0".to_string()]));
    }

    #[test]
    fn an_extension_with_its_own_settings_names_all_of_them() {
        let check = |v: Value| Suno.check_input(EXTEND, v.as_object().unwrap());
        assert!(check(json!({"audioId": "t-0", "defaultParamFlag": false})).is_ok());
        assert!(check(json!({"audioId": "t-0"})).unwrap_err().contains("defaultParamFlag is required"));
        assert!(check(json!({"defaultParamFlag": true, "prompt": "p", "style": "s", "title": "t", "continueAt": 12.5})).is_ok());
        for bad in [json!({"defaultParamFlag": true, "prompt": "p", "style": "s", "title": "t"}), json!({"defaultParamFlag": true, "prompt": "p", "style": "s", "title": "t", "continueAt": 0})] {
            assert!(check(bad.clone()).unwrap_err().contains("continueAt is required"), "{bad}");
        }
        assert!(check(json!({"defaultParamFlag": true, "continueAt": 3})).unwrap_err().contains("prompt, style and title"));
        // An uploaded track is extended by the same rules, at its own path.
        let upload = |v: Value| Suno.check_input(UPLOAD_EXTEND, v.as_object().unwrap());
        assert!(upload(json!({"uploadUrl": "https://f/a.mp3", "defaultParamFlag": false})).is_ok());
        assert!(upload(json!({"uploadUrl": "https://f/a.mp3", "defaultParamFlag": true, "prompt": "p", "style": "s", "title": "t"})).unwrap_err().contains("continueAt is required"));
        assert_eq!(Suno.create_path_of(UPLOAD_EXTEND), "/api/v1/generate/upload-extend");
        assert!(check(json!({"defaultParamFlag": "yes"})).is_err());
    }
}
