//! Suno's MIDI of a separation: `POST /api/v1/midi/generate` names a finished vocal
//! separation's `taskId` (KIE's id; the relay takes its own, [`crate::tasks::lifecycle::follow_up`])
//! and makes the notes of every stem; `GET /api/v1/midi/record-info` answers `successFlag` 0
//! (making), 1 (made), 2 or 3 (failed) with the notes as data (`midiData`: instruments and
//! their notes), not as a file, and the callback sends them in `data` with `task_id` beside
//! it. KIE keeps them 14 days.
//!
//! The result is written, not downloaded ([`ApiFamily::writes_result`]): a status names it by
//! [`written_source`], and the archiver asks KIE for the notes and keeps them in the Library
//! as a Standard MIDI File ([`crate::library::midi`]). The relay answers KIE's `midiData` read
//! back from that file, so a task reads as made once its file is kept.

use serde_json::{Map, Value, json};

use super::{ApiFamily, Family, UpstreamState, UpstreamStatus, Written, from_callback_code, status_with, success_flag, task_id_of, text, written_source};
use crate::library::asset::AssetState;
use crate::tasks::task::TaskState;

#[derive(Debug, Clone, Copy, Default)]
pub struct SunoMidi;

impl ApiFamily for SunoMidi {
    fn family(&self) -> Family {
        Family::SunoMidi
    }
    fn create_path(&self) -> &'static str {
        "/api/v1/midi/generate"
    }
    fn status_path(&self) -> &'static str {
        "/api/v1/midi/record-info"
    }
    fn acts_on(&self) -> Option<Family> {
        Some(Family::SunoStems)
    }
    fn writes_result(&self) -> bool {
        true
    }
    fn result_file(&self, status: &Value) -> Result<Vec<u8>, String> {
        match success_flag(status) {
            Some(UpstreamState::Success) => crate::library::midi::file(status.get("midiData").ok_or("KIE's answer has no midiData")?),
            _ => Err("KIE does not answer the MIDI as made".into()),
        }
    }
    fn result_content(&self, file: &[u8]) -> Result<Value, String> {
        crate::library::midi::notes(file)
    }
    fn parse_status(&self, data: Value) -> Result<UpstreamStatus, String> {
        let mut st = status_with(&data, success_flag(&data))?;
        if st.state == UpstreamState::Success {
            st.result_urls = vec![written_source(&st.task_id)];
            st.result_names = vec!["midi".into()];
        }
        st.callback_url = text(data.get("callbackUrl"));
        Ok(st)
    }
    fn parse_callback(&self, body: &[u8]) -> Result<UpstreamStatus, String> {
        // `task_id` beside `data` (which a failure may leave null).
        let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let code = v.get("code").and_then(Value::as_i64).ok_or("callback has no code")?;
        let id = task_id_of(&v).or_else(|| v.get("data").and_then(task_id_of)).ok_or("callback has no task_id")?;
        Ok(from_callback_code(id, code, text(v.get("msg"))))
    }
    fn check_input(&self, _model: &str, input: &Map<String, Value>) -> Result<(), String> {
        match input.get("audioId") {
            None | Some(Value::Null) => Ok(()),
            Some(_) => Err("audioId is not relayed: the MIDI is made from every stem of the separation taskId names".into()),
        }
    }
    fn relay_status(&self, w: &Written<'_>) -> Value {
        let t = w.task;
        let ((error_code, error_message), flag) = match kept(w) {
            Kept::Notes => (w.error(), 1),
            Kept::Lost(why) => ((json!(500), json!(why)), 3),
            Kept::Pending => (w.error(), 0),
            Kept::NotMade => (w.error(), w.success_flag()),
        };
        json!({
            "taskId": t.id, "recordTaskId": -1, "audioId": t.input.get("audioId"), "callbackUrl": null,
            "completeTime": t.finished_ms, "createTime": t.created_ms, "midiData": w.content, "successFlag": flag,
            "errorCode": error_code, "errorMessage": error_message,
            // Beside KIE's shape: the file the Library keeps.
            "midiFileUrl": w.urls.first().filter(|u| u.starts_with("http")),
        })
    }
    fn relay_callback(&self, w: &Written<'_>) -> Value {
        let mut body = match (kept(w), &w.content) {
            (Kept::Notes, Some(notes)) => w.callback_envelope(notes.clone()),
            (Kept::Lost(why), _) => crate::tasks::relay::envelope(500, &why, Value::Null),
            _ => w.callback_envelope(Value::Null),
        };
        body["task_id"] = w.task.id.clone().into();
        body
    }
}

/// Where a task's notes stand for the relay: made once its file is kept and read back.
enum Kept {
    Notes,
    /// Made at KIE, but the file could not be kept (or this console keeps none): why.
    Lost(String),
    /// Made at KIE, its file still being written.
    Pending,
    /// Not made (yet): the task's own state says.
    NotMade,
}

fn kept(w: &Written<'_>) -> Kept {
    let t = w.task;
    if t.state != TaskState::Success {
        return Kept::NotMade;
    }
    if w.content.is_some() {
        return Kept::Notes;
    }
    match t.archive.as_ref().and_then(|a| a.assets.first()) {
        Some(a) if a.state == AssetState::Pending => Kept::Pending,
        Some(a) => Kept::Lost(format!("the notes could not be kept: {}", a.last_error.as_deref().unwrap_or("their copy cannot be read"))),
        None => Kept::Lost("the notes are not kept: this console has no Library".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_notes_are_a_written_result_and_a_failure_is_kies_words() {
        let made = json!({"taskId": "m1", "recordTaskId": -1, "callbackUrl": "https://cr.example/cb", "successFlag": 1, "midiData": {"state": "complete", "instruments": [{"name": "Drums", "notes": [{"pitch": 36, "start": 0, "end": 0.5, "velocity": 1}]}]}, "errorCode": null, "errorMessage": null});
        let st = SunoMidi.parse_status(made.clone()).unwrap();
        assert_eq!((st.state, st.result_urls.clone(), st.result_names), (UpstreamState::Success, vec![written_source("m1")], vec!["midi".to_string()]));
        assert_eq!(st.callback_url.as_deref(), Some("https://cr.example/cb"));
        let f = SunoMidi.result_file(&made).unwrap();
        assert_eq!(SunoMidi.result_content(&f).unwrap()["instruments"][0]["notes"][0]["pitch"], 36);
        let making = json!({"taskId": "m1", "successFlag": 0});
        assert_eq!(SunoMidi.parse_status(making.clone()).unwrap().state, UpstreamState::Generating);
        assert!(SunoMidi.result_file(&making).is_err(), "notes not made are no file");
        let failed = SunoMidi.parse_status(json!({"taskId": "m1", "successFlag": 3, "errorCode": 500, "errorMessage": "no notes found"})).unwrap();
        assert_eq!((failed.state, failed.fail_msg.as_deref()), (UpstreamState::Fail, Some("no notes found")));
        let cb = SunoMidi.parse_callback(br#"{"task_id":"m1","code":200,"msg":"success","data":{"state":"complete","instruments":[]}}"#).unwrap();
        assert_eq!((cb.task_id.as_str(), cb.state), ("m1", UpstreamState::Success));
        assert_eq!(SunoMidi.parse_callback(br#"{"task_id":"m1","code":500,"msg":"failed","data":null}"#).unwrap().state, UpstreamState::Fail);
        assert!(SunoMidi.check_input("", json!({"taskId": "s1", "audioId": "x"}).as_object().unwrap()).unwrap_err().contains("audioId is not relayed"));
    }

    #[test]
    fn the_relay_says_made_only_once_the_notes_are_kept_and_says_why_when_they_could_not_be() {
        use crate::library::asset::{Archive, Terms};
        let mut t = crate::tasks::task::TaskRecord::new("cr_m", "a@b.c", "p", "suno/midi", 1);
        t.state = TaskState::Success;
        t.result_urls = vec![written_source("m1")];
        t.archive = Some(Archive::plan(&t.result_urls, 1, &Terms::default()));
        let notes = json!({"state": "complete", "instruments": [{"name": "Drums", "notes": [{"pitch": 36, "start": 0.0, "end": 0.5, "velocity": 1.0}]}]});
        let status = |t: &crate::tasks::task::TaskRecord, content: Option<Value>| SunoMidi.relay_status(&Written::new(t, "suno_midi", None, content));
        let callback = |t: &crate::tasks::task::TaskRecord, content: Option<Value>| SunoMidi.relay_callback(&Written::new(t, "suno_midi", None, content));
        assert_eq!(status(&t, None)["successFlag"], 0, "made at KIE, its file still being written");
        let made = status(&t, Some(notes.clone()));
        assert_eq!((made["successFlag"].clone(), made["midiData"].clone()), (json!(1), notes.clone()));
        let cb = callback(&t, Some(notes.clone()));
        assert_eq!((cb["code"].clone(), cb["task_id"].clone(), cb["data"].clone()), (json!(200), json!("cr_m"), notes));
        if let Some(a) = t.archive.as_mut() {
            a.assets[0].state = AssetState::Failed;
            a.assets[0].last_error = Some("KIE's answer has no notes to write".into());
        }
        let lost = status(&t, None);
        assert_eq!(lost["successFlag"], 3);
        assert!(lost["errorMessage"].as_str().unwrap().contains("no notes to write"), "{lost}");
        let cb = callback(&t, None);
        assert_eq!((cb["code"].clone(), cb["data"].clone()), (json!(500), Value::Null), "a callback never says made without the notes: {cb}");
        assert!(cb["msg"].as_str().unwrap().contains("no notes to write"));
    }
}
