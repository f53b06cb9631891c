//! KIE's model-specific APIs, each in its own JSON as KIE's docs show it (not as the Control
//! Room's client reads it): Veo 3.1, Suno, Runway, 4o Image, Flux Kontext and Midjourney. Every family
//! shares the Market API's account, its 20-per-10 s create window, balance, faults and clock;
//! only the paths, the request fields and the status and callback shapes differ.
//!
//! | family | create | status |
//! |---|---|---|
//! | veo | `/api/v1/veo/generate` | `/api/v1/veo/record-info` (`successFlag`) |
//! | suno | `/api/v1/generate` | `/api/v1/generate/record-info` (`status`, ≤ 3/s per task) |
//! | runway | `/api/v1/runway/generate` | `/api/v1/runway/record-detail` (`state`) |
//! | gpt4o_image | `/api/v1/gpt4o-image/generate` | `/api/v1/gpt4o-image/record-info` (≤ 3/s per task) |
//! | flux_kontext | `/api/v1/flux/kontext/generate` | `/api/v1/flux/kontext/record-info` |
//! | midjourney | `/api/v1/mj/generate` (`taskType`) | `/api/v1/mj/record-info` (`successFlag`, four images a grid) |
//! | luma | `/api/v1/modify/generate` (`videoUrl`) | `/api/v1/modify/record-info` (`successFlag`, 4: made, its callback failed) |
//! | aleph | `/api/v1/aleph/generate` (`videoUrl`) | `/api/v1/aleph/record-info` (`successFlag` 0 with `errorMessage` when failed; callbacks name `taskId` beside `data`) |
//!
//! A family's other creates ([`OTHER_CREATES`]: Suno's cover of, extension of, vocals over and
//! instrumental under an uploaded track, `uploadUrl`) have paths of their own and their family's status.
//! Follow-ups on a result ([`FOLLOW_UPS`]) have paths of their own and name the parent's
//! `taskId`: Midjourney's upscale (`imageIndex` 0–3), vary (`imageIndex` 1–4) and video
//! extend (`index`), Veo's and Runway's extend (a `prompt`); Suno's extend names one track by
//! KIE's id of it instead (`audioId`, [`track_id`], not the task's id) and the track's
//! `model`; their status is their family's. Suno's WAV conversion and vocal separation name
//! a song's `taskId` and one track's `audioId`, as does its music video (`author`,
//! `domainName` at most 50 characters), and are families of their own (their status
//! calls answer `successFlag` in words and the files by name; a split into stems, `type`
//! split_stem, makes four). Veo's upgrades of a video ([`UPGRADES`]) are asked for again by
//! the parent's id: 1080p a GET answered with the file at once, 4K a POST answered with the
//! parent's id, then 422 "4k is processing" until made, and a callback naming the parent.
//! Suno's MIDI of a separation (free) names the separation's `taskId` and answers the notes as
//! data ([`midi_data`]), `successFlag` a number, its callback `task_id` beside `data`.

use axum::body::Bytes;
use axum::extract::Query;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

use crate::Sim;
use crate::kie_api::{NewTask, admit, authorise, kie};
use crate::media::MediaKind;
use crate::world::World;

/// One family's paths.
pub struct FamilyApi {
    pub name: &'static str,
    pub create: &'static str,
    pub status: &'static str,
    /// Status calls allowed per task per second (`None`: only the account's 10/s).
    pub per_task_per_sec: Option<u32>,
}

pub const FAMILIES: [FamilyApi; 12] = [
    FamilyApi { name: "veo", create: "/api/v1/veo/generate", status: "/api/v1/veo/record-info", per_task_per_sec: None },
    FamilyApi { name: "suno", create: "/api/v1/generate", status: "/api/v1/generate/record-info", per_task_per_sec: Some(3) },
    FamilyApi { name: "runway", create: "/api/v1/runway/generate", status: "/api/v1/runway/record-detail", per_task_per_sec: None },
    FamilyApi { name: "gpt4o_image", create: "/api/v1/gpt4o-image/generate", status: "/api/v1/gpt4o-image/record-info", per_task_per_sec: Some(3) },
    FamilyApi { name: "flux_kontext", create: "/api/v1/flux/kontext/generate", status: "/api/v1/flux/kontext/record-info", per_task_per_sec: None },
    FamilyApi { name: "midjourney", create: "/api/v1/mj/generate", status: "/api/v1/mj/record-info", per_task_per_sec: None },
    FamilyApi { name: "aleph", create: "/api/v1/aleph/generate", status: "/api/v1/aleph/record-info", per_task_per_sec: None },
    FamilyApi { name: "luma", create: "/api/v1/modify/generate", status: "/api/v1/modify/record-info", per_task_per_sec: None },
    FamilyApi { name: "suno_wav", create: "/api/v1/wav/generate", status: "/api/v1/wav/record-info", per_task_per_sec: None },
    FamilyApi { name: "suno_stems", create: "/api/v1/vocal-removal/generate", status: "/api/v1/vocal-removal/record-info", per_task_per_sec: None },
    FamilyApi { name: "suno_video", create: "/api/v1/mp4/generate", status: "/api/v1/mp4/record-info", per_task_per_sec: None },
    FamilyApi { name: "suno_midi", create: "/api/v1/midi/generate", status: "/api/v1/midi/record-info", per_task_per_sec: None },
];

pub fn family(name: &str) -> Option<&'static FamilyApi> {
    FAMILIES.iter().find(|f| f.name == name)
}

fn s<'a>(req: &'a Value, field: &str) -> Option<&'a str> {
    req.get(field).and_then(Value::as_str).filter(|v| !v.trim().is_empty())
}

/// What KIE would refuse (422) before creating, and otherwise the task's model, kind,
/// price (credits) and number of results.
fn check(fam: &str, req: &Value) -> Result<(String, MediaKind, f64, usize), String> {
    match fam {
        "veo" => {
            s(req, "prompt").ok_or("prompt is required")?;
            let model = s(req, "model").unwrap_or("veo3_fast");
            let price = match model {
                "veo3" => 120.0,
                "veo3_fast" => 60.0,
                _ => return Err("model must be veo3 or veo3_fast".into()),
            };
            Ok((model.into(), MediaKind::Video, price, 1))
        }
        "suno" => {
            let custom = req.get("customMode").and_then(Value::as_bool).ok_or("customMode is required")?;
            let instrumental = req.get("instrumental").and_then(Value::as_bool).ok_or("instrumental is required")?;
            if custom && (s(req, "style").is_none() || s(req, "title").is_none()) {
                return Err("style and title are required in custom mode".into());
            }
            if (!custom || !instrumental) && s(req, "prompt").is_none() {
                return Err("prompt is required".into());
            }
            let model = s(req, "model").ok_or("model is required")?;
            if !SUNO_SONGS.contains(&model) {
                return Err(format!("model must be one of {}", SUNO_SONGS.join(", ")));
            }
            Ok((model.into(), MediaKind::Audio, 20.0, 2))
        }
        "runway" => {
            s(req, "prompt").ok_or("prompt is required")?;
            let secs = match req.get("duration") {
                None => 5,
                Some(v) => v.as_i64().or_else(|| v.as_str().and_then(|t| t.parse().ok())).filter(|d| [5, 10].contains(d)).ok_or("duration must be 5 or 10")?,
            };
            let quality = s(req, "quality").unwrap_or("720p");
            if !["720p", "1080p"].contains(&quality) {
                return Err("quality must be 720p or 1080p".into());
            }
            if quality == "1080p" && secs == 10 {
                return Err("1080p is not available for 10-second videos".into());
            }
            Ok(("runway".into(), MediaKind::Video, if secs == 10 { 220.0 } else { 110.0 }, 1))
        }
        "gpt4o_image" => {
            let size = s(req, "size").ok_or("size is required")?;
            if !["1:1", "3:2", "2:3"].contains(&size) {
                return Err("size must be 1:1, 3:2 or 2:3".into());
            }
            if s(req, "prompt").is_none() && req.get("filesUrl").is_none() {
                return Err("prompt or filesUrl is required".into());
            }
            let n = req.get("nVariants").map_or(Some(1), Value::as_u64).filter(|n| [1, 2, 4].contains(n)).ok_or("nVariants must be 1, 2 or 4")?;
            Ok(("gpt4o-image".into(), MediaKind::Image, 6.0 * n as f64, n as usize))
        }
        "flux_kontext" => {
            s(req, "prompt").ok_or("prompt is required")?;
            let model = s(req, "model").unwrap_or("flux-kontext-pro");
            let price = match model {
                "flux-kontext-pro" => 5.0,
                "flux-kontext-max" => 10.0,
                _ => return Err("model must be flux-kontext-pro or flux-kontext-max".into()),
            };
            Ok((model.into(), MediaKind::Image, price, 1))
        }
        "midjourney" => {
            let task_type = s(req, "taskType").ok_or("taskType is required")?;
            let (kind, price, results) = match task_type {
                "mj_txt2img" | "mj_img2img" | "mj_style_reference" | "mj_omni_reference" => (MediaKind::Image, 8.0, 4),
                "mj_video" => (MediaKind::Video, 60.0, 1),
                "mj_video_hd" => (MediaKind::Video, 180.0, 1),
                _ => return Err("taskType must be mj_txt2img, mj_img2img, mj_style_reference, mj_omni_reference, mj_video or mj_video_hd".into()),
            };
            s(req, "prompt").ok_or("prompt is required")?;
            let images = req.get("fileUrls").and_then(Value::as_array).is_some_and(|a| !a.is_empty()) || s(req, "fileUrl").is_some();
            if task_type != "mj_txt2img" && !images {
                return Err(format!("fileUrls is required for {task_type}"));
            }
            let choice = |field: &str, allowed: &[&str]| match req.get(field) {
                None | Some(Value::Null) => Ok(()),
                Some(Value::String(v)) if allowed.contains(&v.as_str()) => Ok(()),
                Some(_) => Err(format!("{field} must be one of {}", allowed.join(", "))),
            };
            choice("aspectRatio", &["1:2", "9:16", "2:3", "3:4", "5:6", "6:5", "4:3", "3:2", "1:1", "16:9", "2:1"])?;
            choice("version", &["7", "6.1", "6", "5.2", "5.1", "niji6"])?;
            choice("speed", &["relaxed", "fast", "turbo"])?;
            Ok((task_type.into(), kind, price, results))
        }
        "aleph" => {
            s(req, "prompt").ok_or("prompt is required")?;
            s(req, "videoUrl").ok_or("videoUrl is required")?;
            if let Some(r) = req.get("aspectRatio").filter(|r| !r.is_null())
                && !r.as_str().is_some_and(|r| ["16:9", "9:16", "4:3", "3:4", "1:1", "21:9"].contains(&r))
            {
                return Err("aspectRatio must be one of 16:9, 9:16, 4:3, 3:4, 1:1, 21:9".into());
            }
            Ok(("aleph".into(), MediaKind::Video, 110.0, 1))
        }
        "luma" => {
            s(req, "prompt").ok_or("prompt is required")?;
            s(req, "videoUrl").ok_or("videoUrl is required")?;
            Ok(("luma-modify".into(), MediaKind::Video, 90.0, 1))
        }
        // Suno's music from an uploaded track: a cover is made like a song.
        "suno_cover" => {
            s(req, "uploadUrl").ok_or("uploadUrl is required")?;
            check("suno", req)
        }
        // An uploaded track made longer: its settings, or new ones from a second of it on.
        "suno_upload_extend" => {
            s(req, "uploadUrl").ok_or("uploadUrl is required")?;
            let own = req.get("defaultParamFlag").and_then(Value::as_bool).ok_or("defaultParamFlag is required")?;
            if own && (["prompt", "style", "title"].iter().any(|f| s(req, f).is_none()) || !req.get("continueAt").and_then(Value::as_f64).is_some_and(|c| c > 0.0)) {
                return Err("with defaultParamFlag true, prompt, style, title and continueAt are required".into());
            }
            let model = s(req, "model").ok_or("model is required")?;
            if !SUNO_SONGS.contains(&model) {
                return Err(format!("model must be one of {}", SUNO_SONGS.join(", ")));
            }
            Ok((model.into(), MediaKind::Audio, 20.0, 2))
        }
        "suno_add_vocals" | "suno_add_instrumental" => {
            let needs: &[&str] = if fam == "suno_add_vocals" { &["uploadUrl", "prompt", "title", "style", "negativeTags"] } else { &["uploadUrl", "title", "tags", "negativeTags"] };
            if let Some(missing) = needs.iter().find(|f| s(req, f).is_none()) {
                return Err(format!("{missing} is required"));
            }
            let model = s(req, "model").unwrap_or("V4_5PLUS");
            if !["V4_5PLUS", "V5"].contains(&model) {
                return Err("model must be V4_5PLUS or V5".into());
            }
            Ok((model.into(), MediaKind::Audio, 20.0, 2))
        }
        _ => Err("unknown API".into()),
    }
}

/// `POST /api/v1/generate/get-timestamped-lyrics` (`{taskId, audioId}`): a song's track's
/// words (its prompt's, two a second from half a second in) with when each is sung, as KIE
/// answers them; 422 for a track that is not the song's or a song not done.
pub async fn timestamped_lyrics(sim: Sim, headers: HeaderMap, body: Bytes) -> Response {
    const PATH: &str = "/api/v1/generate/get-timestamped-lyrics";
    let (key, as_200) = match authorise(&sim, &headers, PATH).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let mut w = sim.world();
    let req: Value = serde_json::from_slice(&body).ok().filter(Value::is_object).unwrap_or(Value::Null);
    let now = w.clock.now_ms();
    let found = (|| {
        let task = s(&req, "taskId").ok_or("taskId is required")?;
        let (of, n) = s(&req, "audioId").and_then(track_of).ok_or("audioId is not a track")?;
        let param = w.tasks.get(task).filter(|t| t.key == key && t.family == "suno" && of == task && n < t.results).map(|t| t.param.clone()).ok_or("no such track of this task")?;
        if w.state_of(task, now) != Some("success") {
            return Err("the task has not succeeded");
        }
        let param: Value = serde_json::from_str(&param).unwrap_or(Value::Null);
        Ok(param["prompt"].as_str().unwrap_or("").to_string())
    })();
    match found {
        Ok(prompt) => {
            let words: Vec<Value> = prompt
                .split_whitespace()
                .enumerate()
                .map(|(i, word)| {
                    let start = 0.5 + i as f64 * 0.5;
                    json!({ "word": format!("{word} "), "success": true, "startS": start, "endS": start + 0.4, "palign": 0 })
                })
                .collect();
            w.record("POST", PATH, 200, s(&req, "taskId").map(str::to_string), None);
            kie(200, "success", Some(json!({ "alignedWords": words, "waveformData": [0.1, 0.4, 0.2], "hootCer": 0.1, "isStreamed": false })), false)
        }
        Err(msg) => {
            w.record("POST", PATH, 422, None, Some(msg.to_string()));
            kie(422, msg, None, as_200)
        }
    }
}

/// A family's other creates, each at its own path and with its own checks (Suno's music from
/// an uploaded track), answered at the family's status path: the family, the path, and the
/// name its checks go by.
pub const OTHER_CREATES: [(&str, &str, &str); 4] = [
    ("suno", "/api/v1/generate/upload-cover", "suno_cover"),
    ("suno", "/api/v1/generate/upload-extend", "suno_upload_extend"),
    ("suno", "/api/v1/generate/add-vocals", "suno_add_vocals"),
    ("suno", "/api/v1/generate/add-instrumental", "suno_add_instrumental"),
];

/// `POST <family create path>`.
pub async fn create(fam: &'static FamilyApi, sim: Sim, headers: HeaderMap, body: Bytes) -> Response {
    create_at(fam, fam.create, fam.name, sim, headers, body).await
}

/// `POST <path>`: a task of `fam`, checked as `checked_as` says.
pub async fn create_at(fam: &'static FamilyApi, path: &'static str, checked_as: &'static str, sim: Sim, headers: HeaderMap, body: Bytes) -> Response {
    let (key, as_200) = match authorise(&sim, &headers, path).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let mut w = sim.world();
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            w.record("POST", path, 422, None, None);
            return kie(422, "Request body must be a JSON object", None, as_200);
        }
    };
    let (model, kind, price, results) = match check(checked_as, &req) {
        Ok(c) => c,
        Err(msg) => {
            w.record("POST", path, 422, None, Some(msg.clone()));
            return kie(422, &msg, None, as_200);
        }
    };
    if s(&req, "prompt").is_some_and(|p| p.chars().count() > 5000) {
        w.record("POST", path, 422, None, None);
        return kie(422, "prompt is too long (max 5000 characters)", None, as_200);
    }
    let Ok(callback_url) = callback_of(&req) else {
        w.record("POST", path, 422, None, None);
        return kie(422, "callBackUrl must be an http(s) URL", None, as_200);
    };
    let percent = f64::from(w.faults.charge_percent.unwrap_or(100));
    let new = NewTask {
        path,
        model,
        kind,
        price_milli: (price * 10.0 * percent).round() as i64,
        prompt: s(&req, "prompt").unwrap_or("").to_string(),
        param: req.to_string(),
        callback_url,
        family: fam.name,
        results,
        id: None,
        answer: None,
    };
    admit(&sim, w, key, as_200, new)
}

/// A create's `callBackUrl`, if it has one; `Err` when it is not an http(s) URL.
fn callback_of(req: &Value) -> Result<Option<String>, ()> {
    match req.get("callBackUrl") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(u)) if u.starts_with("http://") || u.starts_with("https://") => Ok(Some(u.clone())),
        Some(_) => Err(()),
    }
}

/// A follow-up on a result of an earlier task, at a path of its own: the body names the
/// parent's `taskId` (a task of this account and family that succeeded) and, for most, which
/// of its results.
pub struct FollowUpApi {
    pub family: &'static str,
    pub path: &'static str,
    /// Its `taskType` in record-info.
    pub model: &'static str,
    /// The models (`taskType`s) of the tasks it acts on.
    pub of: &'static [&'static str],
    /// The field naming one result of the parent, and the number of its first result.
    pub index: Option<(&'static str, u64)>,
    pub kind: MediaKind,
    pub price: f64,
    pub results: usize,
    /// It says how the result goes on (an extension).
    pub needs_prompt: bool,
    /// The field naming one track of the parent by KIE's id of it ([`track_id`]), which names
    /// the task too (Suno's `audioId`); a `taskId` beside it must name the same task.
    pub track: Option<&'static str>,
    /// The family of the tasks it acts on, when not its own (Suno's WAV acts on a song).
    pub acts_on: Option<&'static str>,
    /// Its task is of the parent's model, which the body's `model` must name (Suno's extend).
    pub keeps_model: bool,
}

/// The files of a Suno job on a track, by name: a WAV's or a video's one file; a separation's vocals and
/// instrumental (the stems a twelve-way split would add are null here, as KIE writes them).
fn track_job_files(family: &str, urls: &[String]) -> Value {
    let url = |n: usize| urls.get(n).map_or(Value::Null, |u| u.as_str().into());
    match family {
        "suno_wav" => json!({ "audioWavUrl": url(0) }),
        "suno_video" => json!({ "videoUrl": url(0) }),
        // A split into stems has no instrumental; every field KIE has is written, null when empty.
        _ if urls.len() == SPLIT_STEMS => json!({
            "originUrl": null, "vocalUrl": url(0), "instrumentalUrl": null, "backingVocalsUrl": null, "drumsUrl": url(1), "bassUrl": url(2), "guitarUrl": url(3),
            "pianoUrl": null, "keyboardUrl": null, "percussionUrl": null, "stringsUrl": null, "synthUrl": null, "fxUrl": null, "brassUrl": null, "woodwindsUrl": null,
        }),
        _ => json!({ "originUrl": null, "vocalUrl": url(0), "instrumentalUrl": url(1), "drumsUrl": null, "bassUrl": null }),
    }
}

/// The stems a split (`type` split_stem) makes here: vocals, drums, bass and guitar.
const SPLIT_STEMS: usize = 4;

/// The notes of a MIDI task (`seed`: its own), as KIE writes them: drums and a bass, their
/// times in 192nds of a second, some as strings (KIE's docs show both), velocities 0–1.
pub fn midi_data(seed: u64) -> Value {
    let note = |pitch: u64, at: u64, len: u64, velocity: f64, text: bool| {
        let (start, end) = (at as f64 / 192.0, (at + len) as f64 / 192.0);
        let time = |t: f64| if text { Value::from(t.to_string()) } else { Value::from(t) };
        json!({ "pitch": pitch, "start": time(start), "end": time(end), "velocity": velocity })
    };
    let drums: Vec<Value> = (0..8).map(|i| note(36 + (seed + i) % 10, 7 + i * 48, 28, 1.0, i % 2 == 0)).collect();
    let bass: Vec<Value> = (0..6).map(|i| note(40 + (seed / 7 + i) % 12, 96 + i * 96, 43, 0.5 + (i as f64) / 20.0, i == 3)).collect();
    json!({ "state": "complete", "instruments": [{ "name": "Drums", "notes": drums }, { "name": "Electric Bass (finger)", "notes": bass }] })
}

/// KIE's id of a Suno task's track `n`: not the task's id, so a client that sends the task's
/// id where the track's is wanted is caught.
pub fn track_id(task: &str, n: usize) -> String {
    format!("trk{n}_{task}")
}

/// The task and track a [`track_id`] names.
fn track_of(id: &str) -> Option<(&str, usize)> {
    let (n, task) = id.strip_prefix("trk")?.split_once('_')?;
    Some((task, n.parse().ok()?))
}

const MJ_GRIDS: &[&str] = &["mj_txt2img", "mj_img2img", "mj_style_reference", "mj_omni_reference"];
/// Suno's models: a song or an extension of one is of its track's model.
const SUNO_SONGS: &[&str] = &["V3_5", "V4", "V4_5", "V4_5PLUS", "V5"];

pub const FOLLOW_UPS: [FollowUpApi; 10] = [
    FollowUpApi { family: "midjourney", path: "/api/v1/mj/generateUpscale", model: "mj_upscale", of: MJ_GRIDS, index: Some(("imageIndex", 0)), kind: MediaKind::Image, price: 4.0, results: 1, needs_prompt: false, track: None, acts_on: None, keeps_model: false },
    FollowUpApi { family: "midjourney", path: "/api/v1/mj/generateVary", model: "mj_vary", of: MJ_GRIDS, index: Some(("imageIndex", 1)), kind: MediaKind::Image, price: 8.0, results: 4, needs_prompt: false, track: None, acts_on: None, keeps_model: false },
    FollowUpApi {
        family: "midjourney",
        path: "/api/v1/mj/generateVideoExtend",
        model: "mj_video_extend",
        of: &["mj_video", "mj_video_hd"],
        index: Some(("index", 0)),
        kind: MediaKind::Video,
        price: 60.0,
        results: 1,
        needs_prompt: false,
        track: None,
        acts_on: None,
        keeps_model: false,
    },
    FollowUpApi {
        family: "suno",
        path: "/api/v1/generate/extend",
        model: "suno_extend",
        of: SUNO_SONGS,
        index: None,
        kind: MediaKind::Audio,
        price: 20.0,
        results: 2,
        needs_prompt: false,
        track: Some("audioId"),
        acts_on: None,
        keeps_model: true,
    },
    FollowUpApi {
        family: "suno_wav",
        path: "/api/v1/wav/generate",
        model: "suno_wav",
        of: SUNO_SONGS,
        index: None,
        kind: MediaKind::Audio,
        price: 0.4,
        results: 1,
        needs_prompt: false,
        track: Some("audioId"),
        acts_on: Some("suno"),
        keeps_model: false,
    },
    FollowUpApi {
        family: "suno_stems",
        path: "/api/v1/vocal-removal/generate",
        model: "suno_stems",
        of: SUNO_SONGS,
        index: None,
        kind: MediaKind::Audio,
        price: 10.0,
        results: 2,
        needs_prompt: false,
        track: Some("audioId"),
        acts_on: Some("suno"),
        keeps_model: false,
    },
    FollowUpApi {
        family: "suno_video",
        path: "/api/v1/mp4/generate",
        model: "suno_video",
        of: SUNO_SONGS,
        index: None,
        kind: MediaKind::Video,
        price: 2.0,
        results: 1,
        needs_prompt: false,
        track: Some("audioId"),
        acts_on: Some("suno"),
        keeps_model: false,
    },
    // The notes of a separation's stems: free, as KIE's docs say.
    FollowUpApi {
        family: "suno_midi",
        path: "/api/v1/midi/generate",
        model: "suno_midi",
        of: &["suno_stems"],
        index: None,
        kind: MediaKind::Audio,
        price: 0.0,
        results: 1,
        needs_prompt: false,
        track: None,
        acts_on: Some("suno_stems"),
        keeps_model: false,
    },
    FollowUpApi { family: "veo", path: "/api/v1/veo/extend", model: "veo_extend", of: &["veo3", "veo3_fast"], index: None, kind: MediaKind::Video, price: 60.0, results: 1, needs_prompt: true, track: None, acts_on: None, keeps_model: false },
    FollowUpApi { family: "runway", path: "/api/v1/runway/extend", model: "runway_extend", of: &["runway"], index: None, kind: MediaKind::Video, price: 110.0, results: 1, needs_prompt: true, track: None, acts_on: None, keeps_model: false },
];

/// `POST <follow-up path>`.
pub async fn follow_up(api: &'static FollowUpApi, sim: Sim, headers: HeaderMap, body: Bytes) -> Response {
    let (key, as_200) = match authorise(&sim, &headers, api.path).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let mut w = sim.world();
    let req: Value = serde_json::from_slice(&body).ok().filter(Value::is_object).unwrap_or(Value::Null);
    let now = w.clock.now_ms();
    let checked = (|| {
        let (parent, track) = match api.track {
            Some(field) => {
                let id = s(&req, field).ok_or_else(|| format!("{field} is required"))?;
                let (task, n) = track_of(id).ok_or_else(|| format!("{field} {id} not found"))?;
                (task.to_string(), Some(n))
            }
            None => (s(&req, "taskId").ok_or("taskId is required")?.to_string(), None),
        };
        if let (Some(_), Some(named)) = (track, s(&req, "taskId"))
            && named != parent
        {
            return Err(format!("taskId {named} is not the task of that track"));
        }
        let parent_family = api.acts_on.unwrap_or(api.family);
        let found = w.tasks.get(&parent).filter(|t| t.key == key && t.family == parent_family).map(|t| (t.model.clone(), t.results));
        let (model, made) = found.ok_or_else(|| format!("task {parent} not found"))?;
        if !api.of.contains(&model.as_str()) {
            return Err(format!("{} cannot act on a task of {model}", api.model));
        }
        if w.state_of(&parent, now) != Some("success") {
            return Err(format!("task {parent} has not succeeded"));
        }
        if api.needs_prompt && s(&req, "prompt").is_none() {
            return Err("prompt is required".to_string());
        }
        if let Some(n) = track
            && n >= made
        {
            return Err(format!("track {n} of task {parent} not found"));
        }
        if api.acts_on.is_some() && s(&req, "taskId").is_none() {
            return Err("taskId is required".into());
        }
        if api.keeps_model {
            if s(&req, "model") != Some(model.as_str()) {
                return Err(format!("model must be {model}, the source track's"));
            }
            if req.get("defaultParamFlag").and_then(Value::as_bool).ok_or("defaultParamFlag is required")?
                && (["prompt", "style", "title"].iter().any(|f| s(&req, f).is_none()) || !req.get("continueAt").and_then(Value::as_f64).is_some_and(|c| c > 0.0))
            {
                return Err("with defaultParamFlag true, prompt, style, title and continueAt are required".into());
            }
        }
        if let Some((field, first)) = api.index {
            let n = req.get(field).and_then(Value::as_u64).ok_or_else(|| format!("{field} is required"))?;
            if n < first || n >= first + made as u64 {
                return Err(format!("{field} must be from {first} to {}", first + made as u64 - 1));
            }
        }
        if api.family == "suno_stems" && !matches!(s(&req, "type"), None | Some("separate_vocal" | "split_stem")) {
            return Err("type must be separate_vocal or split_stem".into());
        }
        if api.family == "suno_video" && ["author", "domainName"].iter().any(|f| s(&req, f).is_some_and(|v| v.chars().count() > 50)) {
            return Err("author and domainName are at most 50 characters".into());
        }
        // A track's extension is of the track's model.
        let made_as = if api.keeps_model { model } else { api.model.to_string() };
        callback_of(&req).map(|c| (c, made_as)).map_err(|()| "callBackUrl must be an http(s) URL".to_string())
    })();
    let (callback_url, model) = match checked {
        Ok(c) => c,
        Err(msg) => {
            w.record("POST", api.path, 422, None, Some(msg.clone()));
            return kie(422, &msg, None, as_200);
        }
    };
    let percent = f64::from(w.faults.charge_percent.unwrap_or(100));
    // A split into stems makes more files and costs more than vocals and instrumental apart.
    let split = api.family == "suno_stems" && s(&req, "type") == Some("split_stem");
    let (results, price) = if split { (SPLIT_STEMS, api.price * 5.0) } else { (api.results, api.price) };
    let new = NewTask {
        path: api.path,
        model,
        kind: api.kind,
        price_milli: (price * 10.0 * percent).round() as i64,
        prompt: s(&req, "prompt").unwrap_or("").to_string(),
        param: req.to_string(),
        callback_url,
        family: api.family,
        results,
        id: None,
        answer: None,
    };
    admit(&sim, w, key, as_200, new)
}

/// One of Veo's upgrades of a finished video, made under the parent's task id.
pub struct Upgrade {
    pub family: &'static str,
    pub path: &'static str,
    /// Its name in ids and messages.
    pub label: &'static str,
    /// Made at once and answered with the file (1080p), else made on the usual schedule and
    /// answered when asked again or by callback (4K).
    pub at_once: bool,
    pub price: f64,
}

pub const UPGRADES: [Upgrade; 2] = [
    Upgrade { family: "veo_1080p", path: "/api/v1/veo/get-1080p-video", label: "1080p", at_once: true, price: 0.0 },
    Upgrade { family: "veo_4k", path: "/api/v1/veo/get-4k-video", label: "4k", at_once: false, price: 120.0 },
];

/// `GET /api/v1/veo/get-1080p-video?taskId=&index=` and `POST /api/v1/veo/get-4k-video
/// {taskId, index, callBackUrl}`: the first ask makes the upgrade (1080p at once, free; 4K on
/// the schedule, charged, answered `resultUrls` null), each ask after answers it — the file,
/// KIE's 422 "processing" while it is made, or 500 when it failed.
pub async fn upgrade(up: &'static Upgrade, sim: Sim, headers: HeaderMap, req: Value) -> Response {
    let (key, as_200) = match authorise(&sim, &headers, up.path).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let mut w = sim.world();
    let now = w.clock.now_ms();
    let refuse = |w: &mut World, code: i64, msg: String| {
        w.record(if up.at_once { "GET" } else { "POST" }, up.path, code, None, Some(msg.clone()));
        kie(code, &msg, None, as_200)
    };
    let Some(parent) = s(&req, "taskId").map(str::to_string) else { return refuse(&mut w, 400, "taskId parameter is required".into()) };
    let index = match req.get("index") {
        None | Some(Value::Null) => Some(0),
        Some(Value::String(n)) => n.parse::<usize>().ok(),
        Some(v) => v.as_u64().map(|n| n as usize),
    };
    let Some(index) = index else { return refuse(&mut w, 422, "index must be a whole number".into()) };
    let made = w.tasks.get(&parent).filter(|t| t.key == key && t.family == "veo").map(|t| t.results);
    let Some(made) = made else { return refuse(&mut w, 404, format!("task {parent} not found")) };
    if w.state_of(&parent, now) != Some("success") {
        return refuse(&mut w, 422, format!("task {parent} has not succeeded"));
    }
    if index >= made {
        return refuse(&mut w, 422, format!("index must be from 0 to {}", made - 1));
    }
    let id = format!("{parent}_{}_{index}", up.label);
    let answer = |urls: Vec<String>| if up.at_once { json!({ "resultUrl": urls.first() }) } else { json!({ "taskId": parent, "resultUrls": urls, "imageUrls": [] }) };
    if w.tasks.contains_key(&id) {
        return match w.state_of(&id, now) {
            Some("success") => {
                let urls = w.result_urls(&id);
                w.record("ASK", up.path, 200, Some(id), None);
                kie(200, "success", Some(answer(urls)), false)
            }
            Some("fail") => refuse(&mut w, 500, format!("The {} version of this video is unavailable. Please try a different video.", up.label)),
            _ => refuse(&mut w, 422, format!("{} is processing", up.label)),
        };
    }
    let callback_url = match callback_of(&req) {
        Ok(c) if !up.at_once => c,
        Ok(_) => None,
        Err(()) => return refuse(&mut w, 422, "callBackUrl must be an http(s) URL".into()),
    };
    if up.at_once {
        let schedule = w.settings.schedule;
        let task = crate::world::Task {
            id: id.clone(),
            key,
            model: up.family.into(),
            kind: MediaKind::Video,
            param: req.to_string(),
            callback_url: None,
            // Made already: done as it is asked for.
            created_ms: now.saturating_sub(schedule.waiting_ms + schedule.queuing_ms + schedule.generating_ms),
            price_milli: 0,
            fail: None,
            seed: w.next_task.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ index as u64,
            settled: false,
            family: up.family,
            results: 1,
            status_calls: Default::default(),
        };
        w.insert_task(task);
        let urls = w.result_urls(&id);
        w.record("GET", up.path, 200, Some(id), None);
        return kie(200, "success", Some(answer(urls)), false);
    }
    let percent = f64::from(w.faults.charge_percent.unwrap_or(100));
    let new = NewTask {
        path: up.path,
        model: up.family.into(),
        kind: MediaKind::Video,
        price_milli: (up.price * 10.0 * percent).round() as i64,
        prompt: String::new(),
        param: req.to_string(),
        callback_url,
        family: up.family,
        results: 1,
        id: Some(id),
        answer: Some(json!({ "taskId": parent, "resultUrls": null, "imageUrls": null })),
    };
    admit(&sim, w, key, as_200, new)
}

/// `GET <family status path>?taskId=`.
pub async fn status(fam: &'static FamilyApi, sim: Sim, headers: HeaderMap, q: Query<HashMap<String, String>>) -> Response {
    let (key, as_200) = match authorise(&sim, &headers, fam.status).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let mut w = sim.world();
    let per_sec = w.settings.record_info_per_sec;
    if !w.accounts.get_mut(&key).is_some_and(|a| World::admit(&mut a.record_infos, per_sec, Duration::from_secs(1))) {
        w.record("GET", fam.status, 429, None, None);
        return kie(429, "Too many requests: at most 10 status requests per second", None, as_200);
    }
    let Some(id) = q.get("taskId").filter(|t| !t.is_empty()).cloned() else {
        w.record("GET", fam.status, 400, None, None);
        return kie(400, "taskId parameter is required", None, as_200);
    };
    let owned = w.tasks.get(&id).is_some_and(|t| t.key == key && t.family == fam.name);
    if let (true, Some(limit)) = (owned, fam.per_task_per_sec)
        && let Some(t) = w.tasks.get_mut(&id)
        && !World::admit(&mut t.status_calls, limit, Duration::from_secs(1))
    {
        w.record("GET", fam.status, 429, Some(id), None);
        return kie(429, "Too many requests: at most 3 status requests per second for one task", None, as_200);
    }
    match owned.then(|| w.family_json(&id)).flatten() {
        Some(d) => {
            w.record("GET", fam.status, 200, Some(id), None);
            kie(200, "success", Some(d), false)
        }
        None => {
            w.record("GET", fam.status, 404, Some(id), None);
            kie(404, "Task not found", None, as_200)
        }
    }
}

impl World {
    /// A MIDI task's notes: [`midi_data`], or as many as the run's `midi_notes` fault says.
    fn midi_of(&self, t: &crate::world::Task) -> Value {
        let Some(n) = self.faults.midi_notes else { return midi_data(t.seed) };
        let notes: Vec<Value> = (0..u64::from(n)).map(|i| json!({ "pitch": 36 + i % 48, "start": i as f64 / 64.0, "end": (i + 1) as f64 / 64.0, "velocity": 0.75 })).collect();
        json!({ "state": "complete", "instruments": [{ "name": "Acoustic Grand Piano", "notes": notes }] })
    }

    /// The task's result file URLs.
    pub fn result_urls(&self, id: &str) -> Vec<String> {
        let Some(t) = self.tasks.get(id) else { return Vec::new() };
        (0..t.results).map(|n| format!("{}/files/{}/{n}.{}", self.base_url, t.id, t.kind.extension())).collect()
    }

    /// A family task's status `data` at the current simulated time, in its family's shape.
    pub fn family_json(&mut self, id: &str) -> Option<Value> {
        let now = self.clock.now_ms();
        let state = self.state_of(id, now)?;
        let urls = if state == "success" { self.result_urls(id) } else { Vec::new() };
        let t = self.tasks.get(id)?;
        let done = matches!(state, "success" | "fail");
        let complete = done.then(|| self.completion_ms(t));
        let fail = t.fail.clone().filter(|_| state == "fail");
        let (code, msg) = fail.clone().map_or((Value::Null, Value::Null), |(c, m)| (c.into(), m.into()));
        let policy = fail.as_ref().is_some_and(|(c, _)| c == "400");
        let flag = match state {
            "success" => 1,
            "fail" if policy => 2,
            "fail" => 3,
            _ => 0,
        };
        Some(match t.family {
            "veo" => json!({
                "taskId": t.id, "paramJson": t.param, "completeTime": complete, "createTime": t.created_ms,
                "response": if urls.is_empty() { Value::Null } else { json!({ "taskId": t.id, "resultUrls": urls, "originUrls": [], "resolution": "720p" }) },
                "successFlag": flag, "errorCode": code, "errorMessage": msg, "fallbackFlag": false,
            }),
            "flux_kontext" => json!({
                "taskId": t.id, "paramJson": t.param, "completeTime": complete, "createTime": t.created_ms,
                "response": urls.first().map(|u| json!({ "originImageUrl": u, "resultImageUrl": u })),
                "successFlag": flag, "errorCode": code, "errorMessage": msg,
            }),
            "gpt4o_image" => json!({
                "taskId": t.id, "paramJson": t.param, "completeTime": complete, "createTime": t.created_ms,
                "response": if urls.is_empty() { Value::Null } else { json!({ "resultUrls": urls }) },
                "successFlag": flag,
                "status": match state { "success" => "SUCCESS", "fail" => "GENERATE_FAILED", _ => "GENERATING" },
                "progress": match state { "success" => "1.00", "generating" => "0.50", _ => "0.00" },
                "errorCode": code, "errorMessage": msg,
            }),
            "suno" => {
                let status = match state {
                    "success" => "SUCCESS",
                    "fail" if policy => "SENSITIVE_WORD_ERROR",
                    "fail" => "GENERATE_AUDIO_FAILED",
                    "generating" => "FIRST_SUCCESS",
                    "queuing" => "TEXT_SUCCESS",
                    _ => "PENDING",
                };
                let tracks: Vec<Value> = urls
                    .iter()
                    .enumerate()
                    .map(|(n, u)| json!({ "id": track_id(&t.id, n), "audioUrl": u, "streamAudioUrl": u, "imageUrl": null, "title": "sim", "tags": "sim", "modelName": t.model, "duration": 2.0 }))
                    .collect();
                json!({
                    "taskId": t.id, "parentMusicId": "", "param": t.param, "status": status, "type": "GENERATE",
                    "response": { "taskId": t.id, "sunoData": tracks },
                    "errorCode": code, "errorMessage": msg,
                })
            }
            // Suno's jobs on a track: their flag in words, their files by name.
            "suno_wav" | "suno_stems" | "suno_video" => {
                let param: Value = serde_json::from_str(&t.param).unwrap_or(Value::Null);
                let flag = match state {
                    "success" => "SUCCESS",
                    "fail" if t.family == "suno_wav" => "GENERATE_WAV_FAILED",
                    "fail" if t.family == "suno_video" => "GENERATE_MP4_FAILED",
                    "fail" => "GENERATE_AUDIO_FAILED",
                    _ => "PENDING",
                };
                let music_index = param["audioId"].as_str().and_then(track_of).map(|(_, n)| n);
                json!({
                    "taskId": t.id, "musicId": param["audioId"], "callbackUrl": param["callBackUrl"], "musicIndex": music_index,
                    "completeTime": complete, "createTime": t.created_ms, "response": track_job_files(t.family, &urls),
                    "successFlag": flag, "errorCode": code, "errorMessage": msg,
                })
            }
            "runway" => json!({
                "taskId": t.id, "parentTaskId": "",
                // As the docs show it: the prompt and image, not the callback.
                "generateParam": serde_json::from_str::<Value>(&t.param).map(|p| json!({ "prompt": p["prompt"], "imageUrl": p.get("imageUrl"), "expandPrompt": false })).unwrap_or(Value::Null),
                "state": match state { "waiting" => "wait", "queuing" => "queueing", s => s },
                "generateTime": complete,
                "videoInfo": urls.first().map(|u| json!({ "videoId": t.id, "taskId": t.id, "videoUrl": u, "imageUrl": null })),
                "failCode": code, "failMsg": msg, "expireFlag": 0,
            }),
            "midjourney" => json!({
                "taskId": t.id, "taskType": t.model, "paramJson": t.param, "completeTime": complete, "createTime": t.created_ms,
                "resultInfoJson": if urls.is_empty() { Value::Null } else { json!({ "resultUrls": urls.iter().map(|u| json!({ "resultUrl": u })).collect::<Vec<_>>() }) },
                "successFlag": flag, "errorCode": code, "errorMessage": msg,
            }),
            "luma" => json!({
                "taskId": t.id, "paramJson": t.param, "completeTime": complete, "createTime": t.created_ms,
                "response": if urls.is_empty() { Value::Null } else { json!({ "taskId": t.id, "resultUrls": urls, "originUrls": [] }) },
                "successFlag": flag, "errorCode": code, "errorMessage": msg,
            }),
            // The notes, as data: `successFlag` a number, `midiData` once made.
            "suno_midi" => {
                let param: Value = serde_json::from_str(&t.param).unwrap_or(Value::Null);
                json!({
                    "taskId": t.id, "recordTaskId": -1, "audioId": param["audioId"], "callbackUrl": param["callBackUrl"],
                    "completeTime": complete, "createTime": t.created_ms, "midiData": (state == "success").then(|| self.midi_of(t)),
                    "successFlag": flag, "errorCode": code, "errorMessage": msg,
                })
            }
            // Answered where it was asked for (`upgrade`); here for its settling and callback.
            "veo_1080p" | "veo_4k" => json!({ "taskId": t.id, "resultUrls": urls }),
            "aleph" => json!({
                "taskId": t.id, "paramJson": t.param, "completeTime": complete, "createTime": t.created_ms,
                "response": urls.first().map(|u| json!({ "taskId": t.id, "resultVideoUrl": u, "resultImageUrl": null })),
                // Aleph says a failure with 0 and its message.
                "successFlag": if state == "success" { 1 } else { 0 }, "errorCode": if fail.is_some() { code } else { json!(0) }, "errorMessage": if fail.is_some() { msg } else { json!("") },
            }),
            _ => return None,
        })
    }

    /// The callbacks KIE sends when a family task ends, in order (Suno sends `text`, `first`,
    /// then `complete`; a failure sends one `error`).
    pub fn family_callbacks(&mut self, id: &str) -> Vec<Value> {
        // Also settles the task's charge, as any look at it does.
        if self.family_json(id).is_none() {
            return Vec::new();
        }
        let urls = self.result_urls(id);
        let Some(t) = self.tasks.get(id) else { return Vec::new() };
        let failed = t.fail.is_some();
        let (code, msg) = match &t.fail {
            Some((c, m)) => (c.parse::<i64>().unwrap_or(500), m.clone()),
            None => (200, "success".to_string()),
        };
        let envelope = |data: Value| json!({ "code": code, "msg": msg, "data": data });
        match t.family {
            "veo" => vec![envelope(json!({ "taskId": t.id, "info": { "resultUrls": urls, "originUrls": [], "resolution": "720p" }, "fallbackFlag": false, "promptJson": t.param }))],
            "flux_kontext" => vec![envelope(json!({ "taskId": t.id, "info": { "originImageUrl": urls.first(), "resultImageUrl": urls.first() } }))],
            "gpt4o_image" => vec![envelope(json!({ "taskId": t.id, "info": { "result_urls": urls } }))],
            "runway" => vec![envelope(json!({ "task_id": t.id, "video_id": t.id, "video_url": urls.first(), "image_url": null }))],
            "midjourney" => vec![envelope(json!({ "taskId": t.id, "taskType": t.model, "resultUrls": urls }))],
            "luma" => vec![envelope(json!({ "taskId": t.id, "promptJson": t.param, "resultUrls": urls }))],
            // The task named beside `data`, which is null on a failure.
            "aleph" => {
                let data = if failed { Value::Null } else { json!({ "result_video_url": urls.first(), "result_image_url": null }) };
                vec![json!({ "code": code, "msg": msg, "data": data, "taskId": t.id })]
            }
            "suno_wav" | "suno_stems" | "suno_video" => {
                let mut data = track_job_files(t.family, &urls);
                data["task_id"] = t.id.clone().into();
                vec![envelope(data)]
            }
            // Named by the parent's id, with what it charged.
            "veo_4k" => {
                let param: Value = serde_json::from_str(&t.param).unwrap_or(Value::Null);
                if failed {
                    vec![json!({ "code": 500, "msg": "The 4K version of this video is unavailable. Please try a different video.", "data": { "taskId": param["taskId"] } })]
                } else {
                    vec![json!({ "code": 200, "msg": "4K Video generated successfully.", "data": { "taskId": param["taskId"], "creditsConsumed": t.price_milli as f64 / 1000.0, "info": { "resultUrls": urls, "imageUrls": [] } } })]
                }
            }
            // `task_id` beside `data`, which holds the notes.
            "suno_midi" => vec![json!({ "task_id": t.id, "code": code, "msg": msg, "data": if failed { Value::Null } else { self.midi_of(t) } })],
            "suno" if failed => vec![envelope(json!({ "callbackType": "error", "task_id": t.id, "data": null }))],
            "suno" => {
                let tracks: Vec<Value> = urls.iter().enumerate().map(|(n, u)| json!({ "id": track_id(&t.id, n), "audio_url": u, "stream_audio_url": u, "image_url": null, "title": "sim", "duration": 2.0 })).collect();
                let stage = |kind: &str, tracks: Vec<Value>| json!({ "code": 200, "msg": "success", "data": { "callbackType": kind, "task_id": t.id, "data": tracks } });
                vec![stage("text", Vec::new()), stage("first", tracks[..1.min(tracks.len())].to_vec()), stage("complete", tracks)]
            }
            _ => Vec::new(),
        }
    }
}
