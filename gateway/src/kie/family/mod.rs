//! API families: KIE has the Market jobs API for most models and model-specific APIs (Veo,
//! Suno, Runway, 4o Image, Flux Kontext, Midjourney, Runway Aleph, Luma's modify, Suno's WAV
//! conversion, vocal separation and music video of a track) with their own paths, bodies and status shapes. Each
//! family is one [`ApiFamily`] adapter that maps its shapes to one [`UpstreamStatus`], so the
//! task lifecycle never forks: a task records its [`Family`], and the dispatcher, the poller
//! and the callback handler ask that family's adapter. The adapter also writes the family's
//! shapes back for the relay (a status answer, a callback to the client: [`Written`]), so a
//! family's JSON lives in its one file.
//!
//! One family per file: [`market`], [`veo`], [`suno`], [`runway`], [`gpt4o_image`],
//! [`flux_kontext`], [`midjourney`], [`aleph`], [`luma`], [`suno_job`] (Suno's jobs on a
//! track, one adapter with each job as data), [`veo_upgrade`] (Veo's 1080p and 4K of a video,
//! asked for again until ready: [`ApiFamily::upgrade`]), [`suno_midi`] (Suno's MIDI of a
//! separation, notes KIE answers as data that the console writes into a file:
//! [`ApiFamily::writes_result`]). Shared readers for the `{code, msg, data}` envelope, the `successFlag`
//! families and `errorCode`/`errorMessage` are here.

pub(crate) mod aleph;
pub(crate) mod flux_kontext;
pub(crate) mod gpt4o_image;
pub(crate) mod luma;
pub(crate) mod market;
pub(crate) mod midjourney;
pub(crate) mod runway;
pub(crate) mod suno;
pub(crate) mod suno_job;
pub(crate) mod suno_midi;
pub(crate) mod veo;
pub(crate) mod veo_upgrade;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::kie::KieError;
use crate::money::credits::Credits;
pub use crate::tasks::relay::Written;
pub use market::MarketJobs;

/// Where a task stands upstream, whatever the family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamState {
    Waiting,
    Queuing,
    Generating,
    Success,
    Fail,
}

impl UpstreamState {
    pub fn is_terminal(self) -> bool {
        matches!(self, UpstreamState::Success | UpstreamState::Fail)
    }
}

/// One status answer (recordInfo or callback), normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamStatus {
    pub task_id: String,
    pub state: UpstreamState,
    pub result_urls: Vec<String>,
    pub fail_code: Option<String>,
    pub fail_msg: Option<String>,
    /// What KIE charged, when it says (the Market API does; the other families do not).
    pub credits: Option<Credits>,
    /// The `callBackUrl` the task was created with (from `param`/`paramJson`), when KIE says:
    /// it proves which of our records an upstream task belongs to.
    pub callback_url: Option<String>,
    /// How long the results last, in seconds, when KIE says (Suno's `duration`): what a
    /// per-second price counts when KIE does not say what it charged.
    pub media_seconds: Option<f64>,
    /// KIE's own id of each result, where a family gives one (Suno's track `id`), in the
    /// order of `result_urls`: what a follow-up on one result names it by at KIE.
    pub result_ids: Vec<String>,
    /// What each result is, where a family names it (a separation's stems: `vocal`, `drums`…),
    /// in the order of `result_urls`.
    pub result_names: Vec<String>,
}

impl UpstreamStatus {
    fn new(task_id: String, state: UpstreamState) -> UpstreamStatus {
        UpstreamStatus { task_id, state, result_urls: Vec::new(), fail_code: None, fail_msg: None, credits: None, callback_url: None, media_seconds: None, result_ids: Vec::new(), result_names: Vec::new() }
    }
}

/// How a call reaches KIE: a GET with the fields as its query, or a POST with them as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
}

/// One call to KIE: its verb, path and fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub verb: Verb,
    pub path: &'static str,
    pub fields: Value,
}

/// One KIE API family.
pub trait ApiFamily: Send + Sync + 'static {
    fn family(&self) -> Family;
    fn create_path(&self) -> &'static str;
    /// Queried with `?taskId=`.
    fn status_path(&self) -> &'static str;
    /// The create request's body. `model` is the family's own model name (ignored by the
    /// families that take none); `input` the task's fields. Most families send the fields flat
    /// with `model` (where they take one) and `callBackUrl`.
    fn create_body(&self, model: &str, input: &Value, callback_url: Option<&str>) -> Value {
        flat_body(self.family().takes_model().then_some(model), input, callback_url)
    }
    /// The task id from a successful create's `data`.
    fn parse_created(&self, data: Value) -> Result<String, String> {
        task_id_of(&data).ok_or_else(|| "the answer has no taskId".to_string())
    }
    /// The id KIE knows a task by, from its create's `data` and the input it was sent
    /// ([`ApiFamily::parse_created`]; an upgrade is known by its parent's).
    fn created_id(&self, data: Value, _input: &Value) -> Result<String, String> {
        self.parse_created(data)
    }
    /// The call that creates a task of `model`: a POST of [`ApiFamily::body_of`] to
    /// [`ApiFamily::create_path_of`].
    fn create_call(&self, model: &str, input: &Value, callback_url: Option<&str>) -> Call {
        Call { verb: Verb::Post, path: self.create_path_of(model), fields: self.body_of(model, input, callback_url) }
    }
    /// The call that asks where the task KIE knows as `kie_task` stands (`input`: the task's
    /// fields): `GET` [`ApiFamily::status_path`]`?taskId=`.
    fn status_call(&self, kie_task: &str, _input: &Value) -> Call {
        let mut fields = Map::new();
        fields.insert("taskId".into(), kie_task.into());
        Call { verb: Verb::Get, path: self.status_path(), fields: Value::Object(fields) }
    }
    /// A status call KIE refused, read as where the task stands, when the refusal says so (an
    /// upgrade KIE cannot make has failed); `None`: an error to ask again after.
    fn status_of_refusal(&self, _kie_task: &str, _e: &KieError) -> Option<UpstreamStatus> {
        None
    }
    /// An upgrade of a parent's result that KIE makes under the parent's own task id and
    /// answers when asked again (Veo's 1080p and 4K): the verb it is asked with. Its task is
    /// never indexed by that id (the parent owns it), and the relay serves its path as KIE
    /// does, asking once and answering from the record after.
    fn upgrade(&self) -> Option<Verb> {
        None
    }
    /// Whether KIE answers the family's result as data, not as a file (Suno's MIDI: notes): a
    /// status names it by [`written_source`], the archiver writes its file from KIE's status
    /// `data` ([`ApiFamily::result_file`]) into the Library, and the relay answers what it
    /// reads back from that file ([`ApiFamily::result_content`], `Written::content`). Such a
    /// task is refused on a console without a Library, and its relay callback waits for the file.
    fn writes_result(&self) -> bool {
        false
    }
    /// The file of a written result, from a status call's `data`.
    fn result_file(&self, _status: &Value) -> Result<Vec<u8>, String> {
        Err("this family's results are files at KIE".into())
    }
    /// What the relay answers of a written result, read back from its file.
    fn result_content(&self, _file: &[u8]) -> Result<Value, String> {
        Err("this family's results are files at KIE".into())
    }
    /// A status from a successful status call's `data`.
    fn parse_status(&self, data: Value) -> Result<UpstreamStatus, String>;
    /// A status from a callback body (the whole envelope). Only a hint: KIE does not sign the
    /// body, so the lifecycle confirms it with [`ApiFamily::parse_status`] first.
    fn parse_callback(&self, body: &[u8]) -> Result<UpstreamStatus, String>;
    /// The family's models created at a path of their own — its follow-ups on a result (an
    /// upscale, a variation, an extension) and its other creates (Suno's vocals added to an
    /// uploaded instrumental): each one's name, as the catalog's `upstream_model` names it,
    /// and its path. Its body is its fields sent flat — a follow-up's parent `taskId` and
    /// result index or track by KIE's ids, any `model` field its input carries — with no
    /// model name added; its status is read at [`ApiFamily::status_path`].
    fn own_paths(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
    /// The family whose results every task of this one acts on, when it exists only for that
    /// (Suno's WAV conversion of a song's track): its models are all follow-ups, created at
    /// its own [`ApiFamily::create_path`] and followed at its own status path.
    fn acts_on(&self) -> Option<Family> {
        None
    }
    /// Where a task of `model` (the family's own name for it) is created.
    fn create_path_of(&self, model: &str) -> &'static str {
        self.own_paths().iter().find(|(m, _)| *m == model).map_or(self.create_path(), |(_, path)| path)
    }
    /// The body a task of `model` is created with: the fields of a model at its own path sent
    /// flat, else [`ApiFamily::create_body`].
    fn body_of(&self, model: &str, input: &Value, callback_url: Option<&str>) -> Value {
        if self.own_paths().iter().any(|(m, _)| *m == model) { flat_body(None, input, callback_url) } else { self.create_body(model, input, callback_url) }
    }
    /// The field a create body names its model in (`model`; Midjourney's `taskType`).
    fn model_field(&self) -> &'static str {
        "model"
    }
    /// The family's own rules on the fields of a task of `model` (its name in the family's
    /// API: a model created at its own path has fields of its own), beyond the catalog's
    /// `required`, checked before anything is recorded, so a request KIE would refuse with 422
    /// is never sent.
    fn check_input(&self, _model: &str, _input: &Map<String, Value>) -> Result<(), String> {
        Ok(())
    }
    /// The relay's answer to a status call for a task of this family, in its shape (the
    /// envelope's `data`).
    fn relay_status(&self, task: &Written<'_>) -> Value;
    /// The callback the relay sends its client when a task of this family ends (the whole
    /// body; most families' is [`Written::callback_envelope`] around their `data`).
    fn relay_callback(&self, task: &Written<'_>) -> Value;
}

/// Which API a model lives on (the catalog's `family`, recorded on every task).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    #[default]
    Market,
    Veo,
    Suno,
    Runway,
    Gpt4oImage,
    FluxKontext,
    Midjourney,
    Aleph,
    Luma,
    /// Suno's WAV conversion of a track ([`suno_job::WAV`]).
    SunoWav,
    /// Suno's vocal separation of a track ([`suno_job::STEMS`]).
    SunoStems,
    /// Suno's music video of a track ([`suno_job::VIDEO`]).
    SunoVideo,
    /// Veo's 1080p of a video ([`veo_upgrade::HD`]).
    #[serde(rename = "veo_1080p")]
    Veo1080p,
    /// Veo's 4K of a video ([`veo_upgrade::UHD`]).
    #[serde(rename = "veo_4k")]
    Veo4k,
    /// Suno's MIDI of a separation ([`suno_midi::SunoMidi`]).
    SunoMidi,
}

impl Family {
    pub const ALL: [Family; 15] = [
        Family::Market,
        Family::Veo,
        Family::Suno,
        Family::Runway,
        Family::Gpt4oImage,
        Family::FluxKontext,
        Family::Midjourney,
        Family::Aleph,
        Family::Luma,
        Family::SunoWav,
        Family::SunoStems,
        Family::SunoVideo,
        Family::Veo1080p,
        Family::Veo4k,
        Family::SunoMidi,
    ];

    /// The adapter that speaks this family's API.
    pub fn adapter(self) -> &'static dyn ApiFamily {
        match self {
            Family::Market => &MarketJobs,
            Family::Veo => &veo::Veo,
            Family::Suno => &suno::Suno,
            Family::Runway => &runway::Runway,
            Family::Gpt4oImage => &gpt4o_image::Gpt4oImage,
            Family::FluxKontext => &flux_kontext::FluxKontext,
            Family::Midjourney => &midjourney::Midjourney,
            Family::Aleph => &aleph::Aleph,
            Family::Luma => &luma::Luma,
            Family::SunoWav => &suno_job::WAV,
            Family::SunoStems => &suno_job::STEMS,
            Family::SunoVideo => &suno_job::VIDEO,
            Family::Veo1080p => &veo_upgrade::HD,
            Family::Veo4k => &veo_upgrade::UHD,
            Family::SunoMidi => &suno_midi::SunoMidi,
        }
    }

    /// Its name in the catalog, logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Family::Market => "market",
            Family::Veo => "veo",
            Family::Suno => "suno",
            Family::Runway => "runway",
            Family::Gpt4oImage => "gpt4o_image",
            Family::FluxKontext => "flux_kontext",
            Family::Midjourney => "midjourney",
            Family::Aleph => "aleph",
            Family::Luma => "luma",
            Family::SunoWav => "suno_wav",
            Family::SunoStems => "suno_stems",
            Family::SunoVideo => "suno_video",
            Family::Veo1080p => "veo_1080p",
            Family::Veo4k => "veo_4k",
            Family::SunoMidi => "suno_midi",
        }
    }

    pub fn is_market(&self) -> bool {
        *self == Family::Market
    }

    /// Whether the family's create body names a model (`model`); Runway, 4o Image, Aleph,
    /// Luma, Suno's jobs on a track and Veo's upgrades do not.
    pub fn takes_model(self) -> bool {
        !matches!(self, Family::Runway | Family::Gpt4oImage | Family::Aleph | Family::Luma | Family::SunoWav | Family::SunoStems | Family::SunoVideo | Family::Veo1080p | Family::Veo4k | Family::SunoMidi)
    }

    /// The model a create body means when it names none, as KIE's docs give it.
    pub fn default_model(self) -> Option<&'static str> {
        match self {
            Family::Veo => Some("veo3_fast"),
            Family::FluxKontext => Some("flux-kontext-pro"),
            _ => None,
        }
    }
}

/// A written result's source, as a status names it: the task KIE keeps its data under
/// ([`ApiFamily::writes_result`]).
pub fn written_source(kie_task: &str) -> String {
    format!("{WRITTEN_SOURCE}{kie_task}")
}

/// The prefix of a [`written_source`].
pub const WRITTEN_SOURCE: &str = "kie-data:";

/// `data.taskId` (or `task_id`) as a string.
pub(crate) fn task_id_of(data: &Value) -> Option<String> {
    data.get("taskId").or_else(|| data.get("task_id")).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
}

/// A callback's envelope: its code, message and `data` object.
pub(crate) fn callback_envelope(body: &[u8]) -> Result<(i64, Option<String>, Value), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let code = v.get("code").and_then(Value::as_i64).ok_or("callback has no code")?;
    let msg = text(v.get("msg").or_else(|| v.get("message")));
    let data = v.get("data").cloned().filter(Value::is_object).ok_or("callback has no data")?;
    Ok((code, msg, data))
}

/// A text field KIE writes loosely (null, "", a string, a number).
pub(crate) fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// A list of URL strings at `v` (anything else ignored).
pub(crate) fn urls(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string).collect()).unwrap_or_default()
}

/// `callBackUrl` from a request echoed as a JSON string (`param`, `paramJson`) or object.
pub(crate) fn echoed_callback(v: Option<&Value>) -> Option<String> {
    let req = match v? {
        Value::String(s) => serde_json::from_str::<Value>(s).ok()?,
        other => other.clone(),
    };
    req.get("callBackUrl").and_then(Value::as_str).map(str::to_string)
}

/// The body of the families that send their fields flat: the task's fields, the model (for
/// families that take one) and `callBackUrl`.
pub(crate) fn flat_body(model: Option<&str>, input: &Value, callback_url: Option<&str>) -> Value {
    let mut body = input.as_object().cloned().unwrap_or_default();
    if let Some(m) = model {
        body.insert("model".into(), m.into());
    }
    match callback_url {
        Some(u) => body.insert("callBackUrl".into(), u.into()),
        None => body.remove("callBackUrl"),
    };
    Value::Object(body)
}

/// The `successFlag` families (Veo, Flux Kontext, 4o Image): 0 generating, 1 success, 2 failed,
/// 3 generation failed.
pub(crate) fn success_flag(data: &Value) -> Option<UpstreamState> {
    let flag = match data.get("successFlag")? {
        Value::Number(n) => n.as_i64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    Some(match flag {
        0 => UpstreamState::Generating,
        1 => UpstreamState::Success,
        2 | 3 => UpstreamState::Fail,
        _ => UpstreamState::Waiting,
    })
}

/// `errorCode` / `errorMessage` inside `data`, set on a failed status.
pub(crate) fn with_error(mut st: UpstreamStatus, data: &Value) -> UpstreamStatus {
    if st.state == UpstreamState::Fail {
        st.fail_code = text(data.get("errorCode")).or_else(|| text(data.get("failCode")));
        st.fail_msg = text(data.get("errorMessage")).or_else(|| text(data.get("failMsg")));
    }
    st
}

/// A callback's hint (its envelope code: 200 success, else a failure with the code and
/// message) and its `data`, for the families whose callbacks end a task in one call.
pub(crate) fn callback_hint(body: &[u8]) -> Result<(UpstreamStatus, Value), String> {
    let (code, msg, data) = callback_envelope(body)?;
    let id = task_id_of(&data).ok_or("callback has no task id")?;
    Ok((from_callback_code(id, code, msg), data))
}

/// A status of a family that answers `state` words or flags: its id, `state` and errors.
pub(crate) fn status_with(data: &Value, state: Option<UpstreamState>) -> Result<UpstreamStatus, String> {
    let id = task_id_of(data).ok_or("the status has no taskId")?;
    let state = state.ok_or("the status has no state this client knows (successFlag, status or state)")?;
    Ok(with_error(UpstreamStatus::new(id, state), data))
}

/// A callback's state from its envelope code: 200 success, anything else a failure with the
/// code and message.
pub(crate) fn from_callback_code(task_id: String, code: i64, msg: Option<String>) -> UpstreamStatus {
    if code == 200 {
        UpstreamStatus::new(task_id, UpstreamState::Success)
    } else {
        UpstreamStatus { fail_code: Some(code.to_string()), fail_msg: msg, ..UpstreamStatus::new(task_id, UpstreamState::Fail) }
    }
}

/// A string field that must be one of `allowed` when present.
pub(crate) fn one_of(input: &Map<String, Value>, field: &str, allowed: &[&str]) -> Result<(), String> {
    match input.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(()),
        Some(_) => Err(format!("{field} must be one of {}", allowed.join(", "))),
    }
}

/// A boolean field, when present.
pub(crate) fn boolean(input: &Map<String, Value>, field: &str) -> Result<Option<bool>, String> {
    match input.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("{field} must be true or false")),
    }
}

/// A non-empty string field, when present.
pub(crate) fn filled(input: &Map<String, Value>, field: &str) -> bool {
    input.get(field).and_then(Value::as_str).is_some_and(|s| !s.trim().is_empty())
}
