//! Suno's jobs on one track of a song, each an API of its own at KIE: WAV conversion (`POST
//! /api/v1/wav/generate`, `GET /api/v1/wav/record-info`, the file at `response.audioWavUrl`),
//! vocal separation (`POST /api/v1/vocal-removal/generate` with `type` separate_vocal —
//! `response.vocalUrl` and `instrumentalUrl` — or split_stem, up to twelve instruments apart —
//! `drumsUrl`, `bassUrl`…; `GET /api/v1/vocal-removal/record-info`) and a
//! music video (`POST /api/v1/mp4/generate` with an optional `author` and `domainName` of at
//! most 50 characters, `GET /api/v1/mp4/record-info`, `response.videoUrl`). Each
//! names the song's `taskId` and one track's `audioId` by KIE's ids (the relay takes its own,
//! [`crate::tasks::lifecycle::follow_up`]), answers `successFlag` in words (PENDING, SUCCESS,
//! CREATE_TASK_FAILED, GENERATE_…_FAILED, CALLBACK_EXCEPTION) and calls back once, naming
//! `task_id` in `data` beside the result fields. One adapter; what differs is [`SunoJob`]'s data.

use serde_json::{Map, Value, json};

use super::{ApiFamily, Family, UpstreamState, UpstreamStatus, Written, callback_hint, status_with, text};
use crate::tasks::task::{FailClass, TaskState};

/// One of Suno's jobs on a track.
#[derive(Debug)]
pub struct SunoJob {
    family: Family,
    create: &'static str,
    status: &'static str,
    /// The fields of `response` (and of the callback's `data`) that may hold its results, in
    /// the order they are kept; each result is named by its field, less `Url`.
    results: &'static [&'static str],
    /// Its `successFlag` when generation failed.
    failed: &'static str,
    /// Its `type` values this console relays (none: it takes no `type`).
    types: &'static [&'static str],
    /// Its texts and their longest, in characters.
    texts: &'static [(&'static str, usize)],
}

/// A track as a WAV file.
pub const WAV: SunoJob = SunoJob { family: Family::SunoWav, create: "/api/v1/wav/generate", status: "/api/v1/wav/record-info", results: &["audioWavUrl"], failed: "GENERATE_WAV_FAILED", types: &[], texts: &[] };

/// A track's vocals and its instrumental, apart.
pub const STEMS: SunoJob = SunoJob {
    family: Family::SunoStems,
    create: "/api/v1/vocal-removal/generate",
    status: "/api/v1/vocal-removal/record-info",
    results: &[
        "vocalUrl",
        "instrumentalUrl",
        "backingVocalsUrl",
        "drumsUrl",
        "bassUrl",
        "guitarUrl",
        "pianoUrl",
        "keyboardUrl",
        "percussionUrl",
        "stringsUrl",
        "synthUrl",
        "fxUrl",
        "brassUrl",
        "woodwindsUrl",
    ],
    failed: "GENERATE_AUDIO_FAILED",
    types: &["separate_vocal", "split_stem"],
    texts: &[],
};

/// A track's music video: its visualisation as an MP4, with the artist and a site on it.
pub const VIDEO: SunoJob = SunoJob {
    family: Family::SunoVideo,
    create: "/api/v1/mp4/generate",
    status: "/api/v1/mp4/record-info",
    results: &["videoUrl"],
    failed: "GENERATE_MP4_FAILED",
    types: &[],
    texts: &[("author", 50), ("domainName", 50)],
};

impl SunoJob {
    /// The results a status or callback names, in [`SunoJob::results`]' order, and their names.
    fn results_in(&self, response: Option<&Value>) -> (Vec<String>, Vec<String>) {
        self.results.iter().filter_map(|f| Some((text(response.and_then(|r| r.get(*f)))?, f.trim_end_matches("Url").to_string()))).unzip()
    }

    /// A task's results by their fields: by the names its record keeps, else (a record from
    /// before names were kept) in [`SunoJob::results`]' order.
    fn by_field(&self, w: &Written<'_>) -> Map<String, Value> {
        let names = &w.task.result_names;
        let fields: Vec<String> = if names.len() == w.urls.len() { names.iter().map(|n| format!("{n}Url")).collect() } else { self.results.iter().map(|f| f.to_string()).collect() };
        fields.into_iter().zip(&w.urls).map(|(f, u)| (f, Value::from(u.as_str()))).collect()
    }
}

impl ApiFamily for SunoJob {
    fn family(&self) -> Family {
        self.family
    }
    fn create_path(&self) -> &'static str {
        self.create
    }
    fn status_path(&self) -> &'static str {
        self.status
    }
    fn acts_on(&self) -> Option<Family> {
        Some(Family::Suno)
    }
    fn parse_status(&self, data: Value) -> Result<UpstreamStatus, String> {
        let (results, names) = self.results_in(data.get("response"));
        let state = match data.get("successFlag").and_then(Value::as_str).unwrap_or_default() {
            "" => None,
            "SUCCESS" => Some(UpstreamState::Success),
            // Made, but KIE's own callback to its client failed: a success if the files are there.
            "CALLBACK_EXCEPTION" if !results.is_empty() => Some(UpstreamState::Success),
            "CREATE_TASK_FAILED" | "CALLBACK_EXCEPTION" => Some(UpstreamState::Fail),
            s if s.ends_with("_FAILED") => Some(UpstreamState::Fail),
            _ => Some(UpstreamState::Generating),
        };
        let mut st = status_with(&data, state)?;
        if st.state == UpstreamState::Fail && st.fail_code.is_none() {
            st.fail_code = Some("500".into());
            st.fail_msg = st.fail_msg.or_else(|| text(data.get("successFlag")));
        }
        if st.state == UpstreamState::Success {
            (st.result_urls, st.result_names) = (results, names);
        }
        Ok(st)
    }
    fn parse_callback(&self, body: &[u8]) -> Result<UpstreamStatus, String> {
        let (mut st, data) = callback_hint(body)?;
        if st.state == UpstreamState::Success {
            (st.result_urls, st.result_names) = self.results_in(Some(&data));
        }
        Ok(st)
    }
    fn check_input(&self, _model: &str, input: &Map<String, Value>) -> Result<(), String> {
        for (field, most) in self.texts {
            match input.get(*field) {
                None | Some(Value::Null) => {}
                Some(Value::String(t)) if t.chars().count() <= *most => {}
                Some(_) => return Err(format!("{field} must be a text of at most {most} characters")),
            }
        }
        match (self.types, input.get("type")) {
            (_, None | Some(Value::Null)) | ([], _) => Ok(()),
            (types, Some(Value::String(t))) if types.contains(&t.as_str()) => Ok(()),
            (types, Some(other)) => Err(format!("type {other} is not relayed: it must be {}", types.join(" or "))),
        }
    }
    fn relay_status(&self, w: &Written<'_>) -> Value {
        let t = w.task;
        let (error_code, error_message) = w.error();
        let flag = match t.state {
            TaskState::Success => "SUCCESS",
            TaskState::Fail if matches!(t.fail_class, Some(FailClass::Cancelled | FailClass::Budget)) => "CREATE_TASK_FAILED",
            TaskState::Fail | TaskState::Expired => self.failed,
            _ => "PENDING",
        };
        // The results by their fields, once there are any.
        let response = (!w.urls.is_empty()).then(|| self.by_field(w));
        json!({
            "taskId": t.id, "musicId": t.input.get("audioId"), "callbackUrl": null, "createTime": t.created_ms, "completeTime": t.finished_ms,
            "response": response, "successFlag": flag, "errorCode": error_code, "errorMessage": error_message, "kieResultUrls": w.kie_urls,
        })
    }
    fn relay_callback(&self, w: &Written<'_>) -> Value {
        let mut data = self.by_field(w);
        data.insert("task_id".into(), w.task.id.clone().into());
        w.callback_envelope(Value::Object(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jobs_words_and_result_fields_are_read_as_kie_writes_them() {
        let st = |job: &SunoJob, flag: &str, response: Value| job.parse_status(json!({"taskId": "k1", "successFlag": flag, "response": response, "errorCode": null, "errorMessage": null})).unwrap();
        let wav = st(&WAV, "SUCCESS", json!({"audioWavUrl": "https://f/x.wav"}));
        assert_eq!((wav.state, wav.result_urls), (UpstreamState::Success, vec!["https://f/x.wav".to_string()]));
        let stems = st(&STEMS, "SUCCESS", json!({"originUrl": null, "vocalUrl": "https://f/v.mp3", "instrumentalUrl": "https://f/i.mp3", "drumsUrl": null}));
        assert_eq!(stems.result_urls, ["https://f/v.mp3", "https://f/i.mp3"], "vocals then instrumental; the source is no result");
        assert_eq!(stems.result_names, ["vocal", "instrumental"]);
        let split = st(&STEMS, "SUCCESS", json!({"vocalUrl": "https://f/v.mp3", "instrumentalUrl": null, "drumsUrl": "https://f/d.mp3", "bassUrl": "https://f/b.mp3", "fxUrl": null}));
        assert_eq!((split.result_urls.len(), split.result_names), (3, vec!["vocal".to_string(), "drums".into(), "bass".into()]), "each stem there, by its name");
        assert_eq!(st(&WAV, "PENDING", Value::Null).state, UpstreamState::Generating);
        let failed = st(&WAV, "GENERATE_WAV_FAILED", Value::Null);
        assert_eq!((failed.state, failed.fail_code.as_deref()), (UpstreamState::Fail, Some("500")));
        assert_eq!(st(&STEMS, "CREATE_TASK_FAILED", Value::Null).state, UpstreamState::Fail);
        // KIE's callback to its client failed: made if the files are there.
        assert_eq!(st(&WAV, "CALLBACK_EXCEPTION", json!({"audioWavUrl": "https://f/x.wav"})).state, UpstreamState::Success);
        assert_eq!(st(&WAV, "CALLBACK_EXCEPTION", Value::Null).state, UpstreamState::Fail);
        let cb = WAV.parse_callback(br#"{"code":200,"msg":"success","data":{"audioWavUrl":"https://f/x.wav","task_id":"k1"}}"#).unwrap();
        assert_eq!((cb.task_id.as_str(), cb.state, cb.result_urls.len()), ("k1", UpstreamState::Success, 1));
        assert_eq!(WAV.parse_callback(br#"{"code":500,"msg":"no","data":{"task_id":"k1"}}"#).unwrap().state, UpstreamState::Fail);
    }

    #[test]
    fn only_the_separations_kie_makes_are_taken() {
        let check = |v: Value| STEMS.check_input("", v.as_object().unwrap());
        assert!(check(json!({"type": "separate_vocal"})).is_ok());
        assert!(check(json!({})).is_ok());
        assert!(check(json!({"type": "split_stem"})).is_ok());
        assert!(check(json!({"type": "karaoke"})).unwrap_err().contains("must be separate_vocal or split_stem"));
        let video = |v: Value| VIDEO.check_input("", v.as_object().unwrap());
        assert!(video(json!({"author": "The Harbour Band", "domainName": "harbour.example"})).is_ok());
        assert!(video(json!({"author": "x".repeat(51)})).unwrap_err().contains("author must be a text of at most 50"));
        assert!(video(json!({"domainName": 7})).is_err());
    }
}
