//! The model catalog: which models the Control Room accepts, what each needs and what it costs.
//!
//! The catalog is a JSON file (`catalog/models.json` in the repository, compiled in as the
//! default; `CATALOG_FILE` may name another). It is checked when loaded: an unknown price rule,
//! a duplicate id or an empty field is an error that names the entry.

use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

use crate::kie::Family;
use crate::money::credits::Credits;

/// The catalog that ships with the Control Room.
pub const BUILTIN: &str = include_str!("../../../catalog/models.json");

/// Longest prompt accepted (characters). KIE's models cap prompts in the low thousands.
pub const MAX_PROMPT_CHARS: usize = 5000;
/// Largest `input` object accepted, as JSON bytes.
pub const MAX_INPUT_BYTES: usize = 64 * 1024;
/// Largest price of one catalog entry (per task, or per 5 s of video).
pub const MAX_PRICE_CREDITS: f64 = 100_000.0;

/// How a model is priced, in credits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PriceRule {
    Flat(f64),
    /// By `input.resolution` (`1K`, `2K`, `4K`).
    Resolution(HashMap<String, f64>),
    /// By `input.quality` (`basic`, `high`).
    Quality(HashMap<String, f64>),
    /// Per started 5 seconds of `input.duration` (one of `seconds`), by `input.mode` (`std`
    /// default, `pro`).
    Duration {
        std_per_5s: f64,
        pro_per_5s: f64,
        /// The durations the model takes, in seconds.
        #[serde(default = "default_seconds")]
        seconds: Vec<u32>,
    },
    /// Per 1,000 characters of `input.<field>` (text-to-speech), pro-rated to the character.
    #[serde(rename = "per_1k_chars")]
    PerChars {
        credits: f64,
        /// The text that is priced (default `text`; `prompt` when that is absent).
        #[serde(default = "default_text_field")]
        field: String,
    },
    /// Per second of what is made (music, speech). The estimate is `input.<field>` seconds
    /// when given, else `estimate_seconds`; what the task is counted at is KIE's charge if it
    /// says, else the seconds the results last (Suno reports each song's `duration`).
    PerSecond {
        credits: f64,
        estimate_seconds: u32,
        #[serde(default)]
        field: Option<String>,
    },
    /// A language model: credits per million input and output tokens.
    #[serde(rename = "per_1m_tokens")]
    PerTokens { input: f64, output: f64 },
    /// No source gives this model's price. A task of it needs an explicit per-job cap (a cost
    /// rule that governs its submitter), and that cap is what it reserves.
    Unknown,
}

fn default_text_field() -> String {
    "text".into()
}

fn default_seconds() -> Vec<u32> {
    vec![5, 10]
}

/// The modes a duration price knows.
pub const MODES: [&str; 2] = ["std", "pro"];

impl PriceRule {
    /// The input field the price depends on, if any.
    pub fn priced_by(&self) -> Option<&'static str> {
        match self {
            PriceRule::Flat(_) | PriceRule::Unknown | PriceRule::PerChars { .. } | PriceRule::PerSecond { .. } | PriceRule::PerTokens { .. } => None,
            PriceRule::Resolution(_) => Some("resolution"),
            PriceRule::Quality(_) => Some("quality"),
            PriceRule::Duration { .. } => Some("duration"),
        }
    }

    /// The values the priced field may take, in order (empty for a flat price).
    pub fn choices(&self) -> Vec<String> {
        match self {
            PriceRule::Flat(_) | PriceRule::Unknown | PriceRule::PerChars { .. } | PriceRule::PerSecond { .. } | PriceRule::PerTokens { .. } => Vec::new(),
            PriceRule::Resolution(t) | PriceRule::Quality(t) => {
                let mut keys: Vec<String> = t.keys().cloned().collect();
                keys.sort();
                keys
            }
            PriceRule::Duration { seconds, .. } => seconds.iter().map(u32::to_string).collect(),
        }
    }
}

/// One model as the catalog lists it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// KIE's model id, e.g. `kling-2.6/text-to-video`.
    pub id: String,
    /// video, image, audio or language.
    pub category: String,
    pub provider: String,
    /// One line: what it is for.
    pub purpose: String,
    /// Input fields that must be present and non-empty.
    #[serde(default)]
    pub required: Vec<String>,
    pub price: PriceRule,
    /// The KIE API it lives on (default: the Market jobs API).
    #[serde(default)]
    pub family: Family,
    /// The name the family's API knows it by, when it is not `id` (Suno's `V4_5`).
    #[serde(default)]
    pub upstream_model: Option<String>,
    /// The inputs the composer offers beyond the prompt and the priced choice.
    #[serde(default)]
    pub fields: Vec<Field>,
    /// A language model's answer length when a call sets no `max_tokens` (what its estimate
    /// counts; default [`DEFAULT_OUTPUT_TOKENS`]).
    #[serde(default)]
    pub output_tokens: Option<u32>,
    /// A language model's API: OpenAI's chat completions (the default) or Anthropic's
    /// Messages (Claude).
    #[serde(default)]
    pub api: ChatApi,
    /// Where KIE serves it, when its API has more than one address (one of
    /// [`ChatApi::addresses`]; default the API's first).
    #[serde(default)]
    pub path: Option<String>,
    /// A follow-up: this model acts on a result of an earlier task ([`FollowUp`]).
    #[serde(default)]
    pub follows: Option<FollowUp>,
}

/// The field of a follow-up's input that names the task it acts on, as KIE's follow-up calls
/// name it (the console's id, or KIE's; KIE is sent its own).
pub const PARENT_FIELD: &str = "taskId";

/// What makes a model a follow-up: it acts on a result of an earlier task — Midjourney's
/// upscale or variation of one image of a grid, the extension of a video — at a create path
/// of its own (the family's [`crate::kie::family::ApiFamily::own_paths`]), its input naming
/// that task as [`PARENT_FIELD`] and, when it acts on one result, which one.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowUp {
    /// The models whose tasks it acts on.
    pub of: Vec<String>,
    /// The input field that names one result of that task, when it acts on one.
    #[serde(default)]
    pub index: Option<String>,
    /// The number KIE gives that task's first result in `index` (Midjourney's upscale counts
    /// from 0, its variation from 1).
    #[serde(default)]
    pub first: u64,
    /// What the console's button on a result says ("Upscale", "Vary", "Extend").
    pub action: String,
    /// The input field that names one result by its track instead (Suno's `audioId`), as
    /// this console's record-info writes it (`<task>-<n>`, counted from 0): it names the task
    /// too, so the follow-up need not carry [`PARENT_FIELD`]. KIE is sent its own id of the
    /// track.
    #[serde(default)]
    pub track: Option<String>,
    /// The input field that must name the model the parent was made with, as KIE requires
    /// (Suno's `model`: the parent's own field of that name, else its model's name at KIE):
    /// filled with it when absent, refused when it names another.
    #[serde(default)]
    pub parent_model: Option<String>,
}

impl FollowUp {
    /// The input field that names the task it acts on: its track field, or [`PARENT_FIELD`].
    pub fn parent_field(&self) -> &str {
        self.track.as_deref().unwrap_or(PARENT_FIELD)
    }

    /// Whether it acts on one result of the task (by an index or a track), not the whole.
    pub fn acts_on_one(&self) -> bool {
        self.index.is_some() || self.track.is_some()
    }
}

/// The API a language model is called through, at KIE and at the relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatApi {
    /// `POST /<model>/v1/chat/completions`, OpenAI's shape.
    #[default]
    Completions,
    /// `POST /claude/v1/messages`, Anthropic's shape (the model in the body).
    Messages,
    /// `POST /api/v1/responses`, OpenAI's Responses shape (the model in the body; the
    /// conversation is `input`, the answer's length `max_output_tokens`; KIE says what it
    /// charged, `credits_consumed`).
    Responses,
}

impl ChatApi {
    pub const ALL: [ChatApi; 3] = [ChatApi::Completions, ChatApi::Messages, ChatApi::Responses];

    /// KIE's path for a call of `model` through this API: its first address, or (chat
    /// completions, whose path names the model) the model's own.
    pub fn upstream_path(self, model: &str) -> String {
        match self.addresses().first() {
            Some(at) => at.to_string(),
            None => format!("/{model}/v1/chat/completions"),
        }
    }

    /// The paths KIE serves this API at, whichever model is named in the body (none for
    /// chat completions, whose path names the model): the Responses API's general one,
    /// Codex's, where KIE's GPT-5.4 and later are called, and Grok's.
    pub fn addresses(self) -> &'static [&'static str] {
        match self {
            ChatApi::Completions => &[],
            ChatApi::Messages => &["/claude/v1/messages"],
            ChatApi::Responses => &["/api/v1/responses", "/codex/v1/responses", "/grok/v1/responses"],
        }
    }

    /// Whether a call may ask for several answers (`n`): chat completions only; the APIs
    /// that name the model in the body answer once a call.
    pub fn takes_choices(self) -> bool {
        self == ChatApi::Completions
    }

    /// The body field the conversation is in.
    pub fn turns_field(self) -> &'static str {
        match self {
            ChatApi::Responses => "input",
            _ => "messages",
        }
    }

    /// The body fields that set the answer's length, in the order they are read; the first
    /// is the one sent when the caller sets none.
    pub fn limit_fields(self) -> &'static [&'static str] {
        match self {
            ChatApi::Responses => &["max_output_tokens"],
            _ => &["max_tokens", "max_completion_tokens"],
        }
    }

    /// The body fields KIE reads as the prompt (their bytes bound its tokens).
    pub fn prompt_fields(self) -> &'static [&'static str] {
        match self {
            ChatApi::Responses => &["input", "instructions", "tools", "tool_choice", "text"],
            _ => &["messages", "system", "tools", "tool_choice", "response_format"],
        }
    }

    /// Whether this API takes `field` as `value` within the answer's limit, though the
    /// console refuses it elsewhere as unpriced ([`crate::chat::UNPRICED`]): its own length
    /// field, and the Responses API's `reasoning` effort (its thoughts are output tokens,
    /// inside `max_output_tokens`).
    pub fn prices(self, field: &str, value: &serde_json::Value) -> bool {
        self.limit_fields().contains(&field)
            || (self == ChatApi::Responses && field == "reasoning" && value.as_object().is_some_and(|o| o.keys().all(|k| k == "effort" || k == "summary")))
    }

    /// How KIE's metrics and logs name a call of this API.
    pub fn name(self) -> &'static str {
        match self {
            ChatApi::Completions => "chat/completions",
            ChatApi::Messages => "claude/messages",
            ChatApi::Responses => "responses",
        }
    }

    /// The body field a system prompt goes in, apart from the conversation (`None`: it is a
    /// turn of the conversation, as in chat completions).
    pub fn system_field(self) -> Option<&'static str> {
        match self {
            ChatApi::Completions => None,
            ChatApi::Messages => Some("system"),
            ChatApi::Responses => Some("instructions"),
        }
    }

    /// A request of `model` in this API's shape, from (role, text) turns: `system` turns go in
    /// [`ChatApi::system_field`] where the API has one; the model is named in the body where
    /// the path does not name it.
    pub fn request(self, model: &str, turns: &[(&str, &str)], max_tokens: Option<u64>, stream: bool) -> serde_json::Value {
        let message = |(role, content): &&(&str, &str)| serde_json::json!({"role": role, "content": content});
        let mut body = serde_json::json!({});
        match self.system_field() {
            None => body[self.turns_field()] = turns.iter().map(|t| message(&t)).collect::<Vec<_>>().into(),
            Some(field) => {
                let (system, rest): (Vec<_>, Vec<_>) = turns.iter().partition(|(role, _)| *role == "system");
                body["model"] = model.into();
                body[self.turns_field()] = rest.iter().map(message).collect::<Vec<_>>().into();
                if !system.is_empty() {
                    body[field] = system.iter().map(|(_, c)| *c).collect::<Vec<_>>().join("\n\n").into();
                }
            }
        }
        if let Some(n) = max_tokens {
            body[self.limit_fields()[0]] = n.into();
        }
        if stream {
            body["stream"] = true.into();
        }
        body
    }

    /// The text of a whole (unstreamed) answer in this API's shape.
    pub fn answer_text(self, answer: &serde_json::Value) -> String {
        match self {
            ChatApi::Completions => answer.pointer("/choices/0/message/content").and_then(serde_json::Value::as_str).unwrap_or_default().to_string(),
            ChatApi::Messages => answer.get("content").and_then(serde_json::Value::as_array).into_iter().flatten().filter_map(|b| b.get("text").and_then(serde_json::Value::as_str)).collect(),
            ChatApi::Responses => answer.get("output").and_then(serde_json::Value::as_array).into_iter().flatten().filter_map(|o| o.get("content").and_then(serde_json::Value::as_array)).flatten().filter_map(|b| b.get("text").and_then(serde_json::Value::as_str)).collect(),
        }
    }
}

/// Input fields that ask KIE for more — more results, longer media — and so multiply what a
/// task costs (see [`Model::check_multipliers`]).
pub const MULTIPLIERS: [&str; 15] = [
    "n", "num_images", "numImages", "number_of_images", "numberOfImages", "max_images", "num_outputs", "numOutputs", "batch_size", "batchSize", "nVariants", "n_variants", "variants", "duration", "n_frames",
];

/// What a chat call's estimate counts for its answer when neither the call nor the catalog
/// says.
pub const DEFAULT_OUTPUT_TOKENS: u32 = 1024;

/// One input the composer offers for a model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// The input's name on the wire (`aspectRatio`, `customMode`).
    pub name: String,
    #[serde(default)]
    pub kind: FieldKind,
    /// For a choice: the values allowed, the first being the default.
    #[serde(default)]
    pub choices: Vec<String>,
    /// For a flag: its default.
    #[serde(default)]
    pub default: Option<bool>,
    /// For a URL: the media it takes (`audio`, `video`), so a Library asset of that kind is
    /// offered as its input.
    #[serde(default)]
    pub media: Option<String>,
}

/// How a field is entered and sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// Free text, sent as a string.
    #[default]
    Text,
    /// One of `choices`, sent as a string.
    Choice,
    /// One of `choices`, sent as a number.
    Number,
    /// true or false.
    Flag,
    /// One URL, sent as a one-element list.
    Urls,
    /// One URL, sent as a string.
    Url,
}

impl FieldKind {
    /// Its name in the catalog.
    pub fn name(self) -> &'static str {
        match self {
            FieldKind::Text => "text",
            FieldKind::Choice => "choice",
            FieldKind::Number => "number",
            FieldKind::Flag => "flag",
            FieldKind::Urls => "urls",
            FieldKind::Url => "url",
        }
    }
}

impl Field {
    /// The JSON value of `raw` as entered in the composer, or why it does not fit.
    pub fn value(&self, raw: &str) -> Result<Option<Value>, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Ok(None);
        }
        let chosen = || {
            if self.choices.is_empty() || self.choices.iter().any(|c| c == raw) { Ok(()) } else { Err(format!("{} must be one of {}", self.name, self.choices.join(", "))) }
        };
        Ok(Some(match self.kind {
            FieldKind::Text => Value::String(raw.chars().take(MAX_PROMPT_CHARS).collect()),
            FieldKind::Choice => {
                chosen()?;
                Value::String(raw.into())
            }
            FieldKind::Number => {
                chosen()?;
                Value::from(raw.parse::<i64>().map_err(|_| format!("{} must be a whole number", self.name))?)
            }
            FieldKind::Flag => Value::Bool(match raw {
                "true" | "on" | "yes" => true,
                "false" | "off" | "no" => false,
                _ => return Err(format!("{} must be true or false", self.name)),
            }),
            FieldKind::Urls => Value::Array(vec![Value::String(raw.into())]),
            FieldKind::Url => Value::String(raw.into()),
        }))
    }
}

impl Model {
    /// The name the model's API knows it by.
    pub fn upstream_name(&self) -> &str {
        self.upstream_model.as_deref().unwrap_or(&self.id)
    }

    /// The input of this follow-up on `parent`'s result `n` (from 0; `None` for the whole
    /// task), as the console's buttons start it: the parent named as the rule names it, its
    /// flags and choices at their defaults, and the prompt when one is given. `None` if this is not a
    /// follow-up, or it acts on one result and none was named.
    pub fn follow_up_input(&self, parent: &str, n: Option<usize>, prompt: Option<&str>) -> Option<serde_json::Map<String, serde_json::Value>> {
        let rule = self.follows.as_ref()?;
        let mut input = serde_json::Map::new();
        match (&rule.track, &rule.index) {
            (Some(track), _) => {
                input.insert(track.clone(), format!("{parent}-{}", n?).into());
            }
            (None, Some(index)) => {
                input.insert(PARENT_FIELD.into(), parent.into());
                input.insert(index.clone(), (rule.first + n? as u64).into());
            }
            (None, None) => {
                input.insert(PARENT_FIELD.into(), parent.into());
            }
        }
        // KIE wants the task's id beside the track for some.
        if rule.track.is_some() && self.required.iter().any(|r| r == PARENT_FIELD) {
            input.insert(PARENT_FIELD.into(), parent.into());
        }
        for f in &self.fields {
            let default = match f.kind {
                FieldKind::Flag => f.default.map(serde_json::Value::from),
                FieldKind::Choice => f.choices.first().map(|c| c.as_str().into()),
                _ => None,
            };
            if let Some(v) = default {
                input.insert(f.name.clone(), v);
            }
        }
        if let Some(p) = prompt.map(str::trim).filter(|p| !p.is_empty()) {
            input.insert("prompt".into(), p.into());
        }
        Some(input)
    }

    /// What a task that made `seconds` of media cost, for a per-second price (`None`
    /// otherwise, or when it cannot be had).
    pub fn cost_of_seconds(&self, seconds: f64) -> Option<Credits> {
        match &self.price {
            PriceRule::PerSecond { credits, .. } if seconds.is_finite() && seconds > 0.0 && seconds <= 24.0 * 3600.0 => Credits::from_decimal(seconds * credits),
            _ => None,
        }
    }

    /// A language model (its calls are chat completions, not tasks).
    pub fn is_chat(&self) -> bool {
        self.category == "language"
    }

    /// Where KIE serves a language model: its own [`Model::path`], else its API's.
    pub fn chat_path(&self) -> String {
        self.path.clone().unwrap_or_else(|| self.api.upstream_path(&self.id))
    }

    /// What a chat call of these tokens costs under a per-token price (`None`: unknown).
    pub fn chat_cost(&self, prompt_tokens: u64, completion_tokens: u64) -> Option<Credits> {
        match &self.price {
            PriceRule::PerTokens { input, output } => Credits::from_decimal((prompt_tokens as f64 * input + completion_tokens as f64 * output) / 1_000_000.0),
            _ => None,
        }
    }

    /// Refuses an input that would make KIE charge more than this model's price counts: a
    /// field of [`MULTIPLIERS`] that the price does not read and the model's `fields` do not
    /// offer (a count of 1 passes). Names the field.
    pub fn check_multipliers(&self, input: &serde_json::Map<String, serde_json::Value>) -> Result<(), String> {
        let read = |name: &str| match &self.price {
            PriceRule::PerChars { field, .. } => field == name,
            PriceRule::PerSecond { field, .. } => field.as_deref() == Some(name),
            other => other.priced_by() == Some(name),
        };
        for name in MULTIPLIERS {
            let Some(v) = input.get(name).filter(|v| !v.is_null()) else { continue };
            let one = v.as_u64() == Some(1) || v.as_str() == Some("1");
            if read(name) || self.fields.iter().any(|f| f.name == name) || (one && name != "duration") {
                continue;
            }
            return Err(format!("input.{name} changes what KIE charges, and this catalog's price for {} does not count it: leave it out (or price the model by it in the catalog)", self.id));
        }
        Ok(())
    }

    /// This model's `input` as JSON Schema, for the relay's OpenAPI document: what the
    /// submission's checks accept — each required field present and not blank, the prompt's
    /// length, the priced field's choices (and a duration's modes), the composer's fields by
    /// kind, and none of the [`MULTIPLIERS`] the price does not count. Other fields pass
    /// through to KIE as they are.
    pub fn input_schema(&self) -> Value {
        use serde_json::json;
        let needed = |f: &str| self.required.iter().any(|r| r == f);
        let text = |required: bool| if required { json!({"type": "string", "pattern": "\\S", "maxLength": MAX_PROMPT_CHARS}) } else { json!({"type": "string", "maxLength": MAX_PROMPT_CHARS}) };
        let url = json!({"type": "string", "pattern": "^https://[a-z0-9-]+(\\.[a-z0-9-]+)+/[A-Za-z0-9._/-]*$", "maxLength": 2048});
        let mut props = serde_json::Map::new();
        props.insert("prompt".into(), text(needed("prompt")));
        for f in &self.fields {
            let schema = match f.kind {
                FieldKind::Text => text(needed(&f.name)),
                FieldKind::Choice => json!({"enum": f.choices}),
                FieldKind::Number => json!({"enum": f.choices.iter().filter_map(|c| c.parse::<f64>().ok()).collect::<Vec<_>>()}),
                FieldKind::Flag => json!({"type": "boolean"}),
                FieldKind::Url => url.clone(),
                FieldKind::Urls => json!({"type": "array", "minItems": u8::from(needed(&f.name)), "maxItems": 5, "items": url}),
            };
            props.insert(f.name.clone(), schema);
        }
        for r in &self.required {
            if props.contains_key(r.as_str()) {
                continue;
            }
            let schema = if r.ends_with("urls") { json!({"type": "array", "minItems": 1, "maxItems": 5, "items": url}) } else { text(true) };
            props.insert(r.clone(), schema);
        }
        match &self.price {
            PriceRule::Resolution(_) | PriceRule::Quality(_) => {
                props.insert(self.price.priced_by().unwrap_or_default().into(), json!({"enum": self.price.choices()}));
            }
            PriceRule::Duration { seconds, .. } => {
                let both: Vec<Value> = seconds.iter().flat_map(|s| [json!(s), json!(s.to_string())]).collect();
                props.insert("duration".into(), json!({"enum": both}));
                props.insert("mode".into(), json!({"enum": MODES}));
            }
            PriceRule::PerSecond { field: Some(f), .. } => {
                props.insert(f.clone(), json!({"type": "integer", "minimum": 1, "maximum": 3600}));
            }
            PriceRule::PerChars { field, .. } if !props.contains_key(field.as_str()) => {
                props.insert(field.clone(), text(false));
            }
            _ => {}
        }
        let counted = |name: &str| props.contains_key(name);
        let banned: Vec<&str> = MULTIPLIERS.into_iter().filter(|m| !counted(m)).collect();
        json!({"type": "object", "required": self.required, "properties": props, "propertyNames": {"not": {"enum": banned}}})
    }

    /// Whether a source gives its price.
    pub fn price_known(&self) -> bool {
        self.price != PriceRule::Unknown
    }

    /// The credits this input costs under the model's rule (the estimate reserved at
    /// submit). Every input the price depends on must be one of the catalog's choices;
    /// otherwise the error names the field and the values allowed. Never zero: the catalog
    /// refuses zero prices.
    pub fn estimate(&self, input: &Value) -> Result<Credits, String> {
        let credits = match &self.price {
            PriceRule::Flat(c) => *c,
            PriceRule::PerTokens { .. } => return Err(format!("{} is a language model: call it through /kie/{}/v1/chat/completions (or Draft in the composer)", self.id, self.id)),
            PriceRule::Unknown => return Err(format!("{} has no known price: a task of it needs a per-job cap (a cost rule in the Budget panel) to submit", self.id)),
            PriceRule::PerChars { credits, field } => {
                let text = input.get(field.as_str()).or_else(|| input.get("prompt")).and_then(Value::as_str).unwrap_or_default();
                let chars = text.chars().count();
                if chars == 0 {
                    return Err(format!("{} is priced per character of input.{field}, which is empty", self.id));
                }
                chars as f64 * credits / 1000.0
            }
            PriceRule::PerSecond { credits, estimate_seconds, field } => {
                let secs = match field.as_deref().and_then(|f| input.get(f)) {
                    None | Some(Value::Null) => f64::from(*estimate_seconds),
                    Some(v) => v
                        .as_f64()
                        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                        .filter(|s: &f64| s.is_finite() && (1.0..=3600.0).contains(s))
                        .ok_or_else(|| format!("input.{} must be 1–3600 seconds", field.as_deref().unwrap_or_default()))?,
                };
                secs * credits
            }
            PriceRule::Resolution(t) => pick(t, input, "resolution", "1K", &self.price)?,
            PriceRule::Quality(t) => pick(t, input, "quality", "basic", &self.price)?,
            PriceRule::Duration { std_per_5s, pro_per_5s, seconds } => {
                let allowed = || format!("input.duration must be one of {} (seconds)", join(&self.price.choices()));
                let secs = match input.get("duration") {
                    None | Some(Value::Null) => seconds.iter().copied().min().ok_or_else(allowed)?,
                    Some(Value::String(s)) => s.trim().parse::<u32>().map_err(|_| allowed())?,
                    Some(Value::Number(n)) => n.as_u64().and_then(|v| u32::try_from(v).ok()).ok_or_else(allowed)?,
                    Some(_) => return Err(allowed()),
                };
                if !seconds.contains(&secs) {
                    return Err(allowed());
                }
                let pro = match input.get("mode") {
                    None | Some(Value::Null) => false,
                    Some(Value::String(m)) if m.eq_ignore_ascii_case("std") => false,
                    Some(Value::String(m)) if m.eq_ignore_ascii_case("pro") => true,
                    Some(_) => return Err(format!("input.mode must be one of {}", MODES.join(", "))),
                };
                f64::from(secs.div_ceil(5).max(1)) * if pro { *pro_per_5s } else { *std_per_5s }
            }
        };
        match Credits::from_decimal(credits) {
            Some(c) if c > Credits::ZERO => Ok(c),
            _ => Err(format!("{} has no usable price for this input", self.id)),
        }
    }
}

fn join(v: &[String]) -> String {
    v.join(", ")
}

/// The price of `input.<field>` in `table` (case-insensitive); absent means `default` (or the
/// dearest entry when the table has no such key, so an estimate never falls short).
fn pick(table: &HashMap<String, f64>, input: &Value, field: &str, default: &str, rule: &PriceRule) -> Result<f64, String> {
    let by_key = |k: &str| table.iter().find(|(name, _)| name.eq_ignore_ascii_case(k.trim())).map(|(_, v)| *v);
    match input.get(field) {
        None | Some(Value::Null) => Ok(by_key(default).unwrap_or_else(|| table.values().copied().fold(0.0, f64::max))),
        Some(Value::String(s)) => by_key(s).ok_or_else(|| format!("input.{field} must be one of {}", join(&rule.choices()))),
        Some(_) => Err(format!("input.{field} must be one of {}", join(&rule.choices()))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    prices_taken: String,
    #[serde(default)]
    #[allow(dead_code)]
    note: String,
    models: Vec<Model>,
}

/// The loaded, checked catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// When the prices were taken (shown next to every price).
    pub prices_taken: String,
    models: Vec<Model>,
}

impl Catalog {
    /// Parses and checks a catalog file's text.
    pub fn parse(text: &str) -> Result<Catalog, String> {
        let file: CatalogFile = serde_json::from_str(text).map_err(|e| format!("catalog: {e}"))?;
        let mut seen = std::collections::HashSet::new();
        for m in &file.models {
            if m.id.trim().is_empty() || m.category.trim().is_empty() {
                return Err("catalog: every model needs an id and a category".into());
            }
            if !seen.insert(m.id.as_str()) {
                return Err(format!("catalog: model {} is listed twice", m.id));
            }
            // Prices are positive and bounded, so every estimate is above zero and far from
            // any overflow.
            let price = |v: f64| v.is_finite() && v > 0.0 && v <= MAX_PRICE_CREDITS;
            let ok = match &m.price {
                PriceRule::Unknown => true,
                PriceRule::Flat(c) => price(*c),
                PriceRule::PerChars { credits, field } => price(*credits) && !field.trim().is_empty(),
                PriceRule::PerTokens { input, output } => price(*input) && price(*output),
                PriceRule::PerSecond { credits, estimate_seconds, .. } => price(*credits) && (1..=3600).contains(estimate_seconds),
                PriceRule::Resolution(t) | PriceRule::Quality(t) => !t.is_empty() && t.values().all(|v| price(*v)),
                PriceRule::Duration { std_per_5s, pro_per_5s, seconds } => {
                    price(*std_per_5s) && price(*pro_per_5s) && !seconds.is_empty() && seconds.iter().all(|s| (1..=3600).contains(s))
                }
            };
            if !ok {
                return Err(format!("catalog: model {} needs prices above 0 and at most {MAX_PRICE_CREDITS} credits (and durations of 1–3600 s)", m.id));
            }
        }
        for m in &file.models {
            let names_parent = |field: &str| m.required.iter().any(|r| r == field);
            if m.follows.as_ref().map_or(names_parent(PARENT_FIELD), |f| !names_parent(f.parent_field())) {
                return Err(format!("catalog: model {} must require the field naming its parent task ({PARENT_FIELD}, or its track field) if, and only if, it is a follow-up", m.id));
            }
            if let Some(rule) = &m.follows {
                if rule.track.is_some() && rule.index.is_some() {
                    return Err(format!("catalog: follow-up {} names its result by a track or by an index, not both", m.id));
                }
                let api = m.family.adapter();
                let parent_family = api.acts_on().unwrap_or(m.family);
                // Itself too: an extension of an extension.
                let parents: Vec<&str> = file.models.iter().filter(|p| p.family == parent_family).map(|p| p.id.as_str()).collect();
                if rule.of.is_empty() || rule.action.trim().is_empty() || rule.first > 1 || !rule.of.iter().all(|o| parents.contains(&o.as_str())) {
                    return Err(format!("catalog: follow-up {} must act on models of its own family (or of the one its family acts on), with an action and a first index of 0 or 1", m.id));
                }
                if api.acts_on().is_none() && api.create_path_of(m.upstream_name()) == api.create_path() {
                    return Err(format!("catalog: follow-up {} is not one KIE's {} API has a path for", m.id, m.family.name()));
                }
            }
            if m.path.as_deref().is_some_and(|p| !m.is_chat() || !m.api.addresses().contains(&p)) {
                return Err(format!("catalog: model {} names a path its API is not served at (a language model's API's paths: {})", m.id, ChatApi::ALL.iter().flat_map(|a| a.addresses()).copied().collect::<Vec<_>>().join(", ")));
            }
            for f in &m.fields {
                let choice = matches!(f.kind, FieldKind::Choice | FieldKind::Number);
                if f.name.trim().is_empty() || choice == f.choices.is_empty() {
                    return Err(format!("catalog: model {} has a field without a name, or choices where they do not belong", m.id));
                }
                if f.media.as_deref().is_some_and(|media| f.kind != FieldKind::Url || !["audio", "video"].contains(&media)) {
                    return Err(format!("catalog: model {} field {}: media is audio or video, on a URL field", m.id, f.name));
                }
            }
        }
        Ok(Catalog { prices_taken: file.prices_taken, models: file.models })
    }

    /// The catalog compiled into the binary.
    pub fn builtin() -> Catalog {
        match Catalog::parse(BUILTIN) {
            Ok(c) => c,
            Err(e) => unreachable!("the built-in catalog is checked by a unit test: {e}"),
        }
    }

    pub fn get(&self, id: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.id == id)
    }

    pub fn models(&self) -> &[Model] {
        &self.models
    }

    /// The follow-ups that act on a task of `model` (see [`FollowUp`]).
    pub fn follow_ups_of<'a>(&'a self, model: &'a str) -> impl Iterator<Item = &'a Model> + 'a {
        self.models.iter().filter(move |m| m.follows.as_ref().is_some_and(|f| f.of.iter().any(|o| o == model)))
    }

    /// The model of `family` its API names `name` at a path of its own (a follow-up, or
    /// another create: [`crate::kie::family::ApiFamily::own_paths`]).
    pub fn at_own_path(&self, family: Family, name: &str) -> Option<&Model> {
        let api = family.adapter();
        self.models.iter().find(|m| m.family == family && m.upstream_name() == name && api.create_path_of(name) != api.create_path())
    }

    /// The model a family's create body names (`model`, or the family's default; for a family
    /// that takes no model name, its one model).
    pub fn by_upstream(&self, family: Family, name: Option<&str>) -> Option<&Model> {
        let name = name.or(family.default_model());
        let mut of_family = self.models.iter().filter(|m| m.family == family);
        if family.takes_model() {
            let name = name?;
            of_family.find(|m| m.upstream_name() == name)
        } else {
            // The one created at the family's own path.
            let api = family.adapter();
            of_family.find(|m| api.create_path_of(m.upstream_name()) == api.create_path())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_chat_api_asks_and_answers_in_its_own_shape() {
        let turns = [("system", "Be brief."), ("user", "a lighthouse")];
        let completions = ChatApi::Completions.request("gemini-3-flash", &turns, Some(50), true);
        assert_eq!(completions, json!({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "a lighthouse"}], "max_tokens": 50, "stream": true}));
        let messages = ChatApi::Messages.request("claude-haiku-4-5", &turns, Some(50), false);
        assert_eq!(messages, json!({"model": "claude-haiku-4-5", "system": "Be brief.", "messages": [{"role": "user", "content": "a lighthouse"}], "max_tokens": 50}));
        assert_eq!(ChatApi::Messages.upstream_path("claude-haiku-4-5"), "/claude/v1/messages");
        let responses = ChatApi::Responses.request("gpt-5.1-codex", &turns, Some(50), true);
        assert_eq!(responses, json!({"model": "gpt-5.1-codex", "instructions": "Be brief.", "input": [{"role": "user", "content": "a lighthouse"}], "max_output_tokens": 50, "stream": true}));
        assert_eq!(ChatApi::Responses.upstream_path("gpt-5.1-codex"), "/api/v1/responses");
        let answer = json!({"output": [{"type": "reasoning", "summary": []}, {"type": "message", "content": [{"type": "output_text", "text": "hi"}]}]});
        assert_eq!(ChatApi::Responses.answer_text(&answer), "hi");
        assert_eq!(ChatApi::Completions.upstream_path("gemini-3-flash"), "/gemini-3-flash/v1/chat/completions");
        assert_eq!(ChatApi::Completions.answer_text(&json!({"choices": [{"message": {"content": "hi"}}]})), "hi");
        assert_eq!(ChatApi::Messages.answer_text(&json!({"content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]})), "hi there");
        let builtin = Catalog::builtin();
        assert!(builtin.models().iter().any(|m| m.id.contains("claude") && m.api == ChatApi::Messages && m.is_chat()), "the catalog lists Claude");
    }

    #[test]
    fn a_responses_model_is_called_at_the_path_kie_serves_it_at() {
        let builtin = Catalog::builtin();
        let path = |id: &str| builtin.get(id).map(Model::chat_path);
        assert_eq!(path("gpt-5.1-codex").as_deref(), Some("/api/v1/responses"));
        assert_eq!(path("gpt-5-4").as_deref(), Some("/codex/v1/responses"));
        assert_eq!(path("grok-4-5").as_deref(), Some("/grok/v1/responses"));
        assert_eq!(path("claude-haiku-4-5").as_deref(), Some("/claude/v1/messages"));
        assert_eq!(path("gemini-3-flash").as_deref(), Some("/gemini-3-flash/v1/chat/completions"));
        // A path is one of its API's addresses, and only a language model's.
        let with = |extra: &str| Catalog::parse(&format!(r#"{{"prices_taken": "test", "models": [{{"id": "m", "category": "language", "provider": "p", "purpose": "x", "price": "unknown"{extra}}}]}}"#));
        assert!(with(r#", "api": "responses", "path": "/codex/v1/responses""#).is_ok());
        for extra in [r#", "api": "responses", "path": "/gemini/v1/responses""#, r#", "path": "/codex/v1/responses""#, r#", "api": "messages", "path": "/codex/v1/responses""#] {
            let e = with(extra).unwrap_err();
            assert!(e.contains("names a path its API is not served at") && e.contains("/codex/v1/responses"), "{extra}: {e}");
        }
    }
    use serde_json::json;

    #[test]
    fn a_follow_up_acts_on_its_own_familys_models_at_a_path_kie_has() {
        let c = Catalog::builtin();
        let offered: Vec<&str> = c.follow_ups_of("midjourney/text-to-image").map(|m| m.id.as_str()).collect();
        assert_eq!(offered, ["midjourney/upscale", "midjourney/vary"]);
        assert_eq!(c.follow_ups_of("midjourney/image-to-video").map(|m| m.id.as_str()).collect::<Vec<_>>(), ["midjourney/video-extend"]);
        assert_eq!(c.follow_ups_of("kling-2.6/text-to-video").count(), 0);
        let grid = r#"{"id": "g", "family": "midjourney", "upstream_model": "mj_txt2img", "category": "image", "provider": "p", "purpose": "p", "price": "unknown"}"#;
        let parse = |follow_up: &str| Catalog::parse(&format!(r#"{{"prices_taken": "x", "models": [{grid}, {follow_up}]}}"#));
        let upscale = |of: &str, upstream: &str, required: &str| format!(r#"{{"id": "u", "family": "midjourney", "upstream_model": "{upstream}", "category": "image", "provider": "p", "purpose": "p", "required": {required}, "price": "unknown", "follows": {{"of": {of}, "action": "Upscale"}}}}"#);
        assert!(parse(&upscale(r#"["g"]"#, "mj_upscale", r#"["taskId"]"#)).is_ok());
        for (bad, why) in [
            (upscale(r#"["nowhere"]"#, "mj_upscale", r#"["taskId"]"#), "of its own family"),
            (upscale(r#"["g"]"#, "mj_zoom", r#"["taskId"]"#), "has a path for"),
            (upscale(r#"["g"]"#, "mj_upscale", "[]"), "must require the field naming its parent task"),
        ] {
            let e = parse(&bad).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        let e = Catalog::parse(&format!(r#"{{"prices_taken": "x", "models": [{}]}}"#, grid.replace(r#""price""#, r#""required": ["taskId"], "price""#))).unwrap_err();
        assert!(e.contains("if, and only if, it is a follow-up"), "{e}");
    }

    #[test]
    fn a_follow_up_names_its_parent_by_id_index_or_track_and_its_buttons_input_says_so() {
        let c = Catalog::builtin();
        let input = |id: &str, n: Option<usize>, prompt: Option<&str>| c.get(id).unwrap().follow_up_input("cr_p", n, prompt).map(serde_json::Value::Object);
        assert_eq!(input("midjourney/vary", Some(1), None), Some(json!({"taskId": "cr_p", "imageIndex": 2})), "counted from 1 at KIE");
        assert_eq!(input("midjourney/upscale", Some(1), None), Some(json!({"taskId": "cr_p", "imageIndex": 1})));
        assert_eq!(input("midjourney/upscale", None, None), None, "one result must be named");
        assert_eq!(input("veo3/extend", None, Some(" on ")), Some(json!({"taskId": "cr_p", "prompt": "on"})));
        // A track names its task: no taskId; the track's own settings by default.
        assert_eq!(input("suno/extend", Some(1), None), Some(json!({"audioId": "cr_p-1", "defaultParamFlag": false})));
        assert_eq!(c.get("suno/V4").unwrap().follow_up_input("cr_p", Some(0), None), None, "not a follow-up");
        // Suno's jobs on a track name the song too, as KIE wants, with their choices' defaults.
        assert_eq!(input("suno/wav", Some(0), None), Some(json!({"audioId": "cr_p-0", "taskId": "cr_p"})));
        assert_eq!(input("suno/stems", Some(1), None), Some(json!({"audioId": "cr_p-1", "taskId": "cr_p", "type": "separate_vocal"})));
        let offered: Vec<&str> = c.follow_ups_of("suno/V4_5").map(|m| m.id.as_str()).collect();
        assert_eq!(offered, ["suno/extend", "suno/wav", "suno/stems", "suno/video"]);
        assert_eq!(c.follow_ups_of("suno/extend").count(), 4, "an extension's tracks are extended, converted, separated and shown too");
        let of_layered: Vec<&str> = c.follow_ups_of("suno/add-vocals").map(|m| m.id.as_str()).collect();
        assert_eq!(of_layered, ["suno/wav", "suno/stems", "suno/video"], "a layered track is not extended: its model may be KIE's default");
        assert_eq!(c.by_upstream(Family::SunoWav, None).map(|m| m.id.as_str()), Some("suno/wav"), "created at its family's own path");
        let extend = c.get("suno/extend").unwrap().follows.as_ref().unwrap();
        assert_eq!((extend.parent_field(), extend.acts_on_one()), ("audioId", true));
        // A track field and an index at once are refused.
        let both = BUILTIN.replace(r#""track": "audioId""#, r#""track": "audioId", "index": "n""#);
        assert!(Catalog::parse(&both).unwrap_err().contains("by a track or by an index, not both"));
    }

    #[test]
    fn an_input_that_multiplies_the_cost_is_priced_or_refused() {
        let c = Catalog::parse(BUILTIN).unwrap();
        let check = |id: &str, input: serde_json::Value| c.get(id).unwrap().check_multipliers(input.as_object().unwrap());
        // A flat price counts one image: more are refused, naming the field; one passes.
        let e = check("google/imagen4", json!({"prompt": "x", "num_images": 4})).unwrap_err();
        assert!(e.starts_with("input.num_images "), "{e}");
        assert!(check("google/imagen4", json!({"prompt": "x", "n": 1, "num_images": "1"})).is_ok());
        assert!(check("nano-banana-2", json!({"prompt": "x", "n": 3})).is_err());
        // A duration a flat price does not count is refused; one the price reads passes.
        assert!(check("bytedance/seedance-2", json!({"prompt": "x", "duration": 10})).is_err());
        assert!(check("kling-2.6/text-to-video", json!({"prompt": "x", "duration": 10})).is_ok());
        // What a model's own fields offer is the catalog's decision (Runway's one figure, 4o's
        // variants held at the per-job cap).
        assert!(check("runway/gen4", json!({"prompt": "x", "duration": 10})).is_ok());
        assert!(check("gpt4o-image", json!({"prompt": "x", "nVariants": 4})).is_ok());
        assert!(check("google/imagen4", json!({"prompt": "x", "num_images": null})).is_ok());
    }

    #[test]
    fn builtin_catalog_parses_and_prices_follow_the_seeds() {
        let c = Catalog::parse(BUILTIN).unwrap();
        let kling = c.get("kling-2.6/text-to-video").unwrap();
        assert_eq!(kling.estimate(&json!({"duration": "10"})), Ok(Credits::from_credits(40)));
        assert_eq!(kling.estimate(&json!({"duration": 10})), Ok(Credits::from_credits(40)));
        assert_eq!(kling.estimate(&json!({"duration": "5", "mode": "pro"})), Ok(Credits::from_credits(35)));
        assert_eq!(c.get("flux-2/pro-text-to-image").unwrap().estimate(&json!({"resolution": "2K"})), Ok(Credits::from_credits(7)));
        assert_eq!(c.get("seedream/4.5-text-to-image").unwrap().estimate(&json!({})), Ok(Credits::from_credits(5)));
        assert!(c.get("no/such-model").is_none());
    }

    #[test]
    fn a_priced_input_outside_the_choices_is_refused_with_the_choices() {
        let c = Catalog::builtin();
        let kling = c.get("kling-2.6/text-to-video").unwrap();
        for bad in [json!("inf"), json!("1e300"), json!(-5), json!(7.5), json!("5; x"), json!({"a": 1}), json!("NaN"), json!(2305843009213690u64), json!(15), json!([5])] {
            let err = kling.estimate(&json!({"duration": bad})).expect_err(&bad.to_string());
            assert!(err.contains("5, 10"), "{bad}: {err}");
        }
        assert!(kling.estimate(&json!({"duration": "5", "mode": "turbo"})).unwrap_err().contains("std, pro"));
        let flux = c.get("flux-2/pro-text-to-image").unwrap();
        assert!(flux.estimate(&json!({"resolution": "8K"})).unwrap_err().contains("1K, 2K"));
        assert!(flux.estimate(&json!({"resolution": 2})).is_err());
    }

    #[test]
    fn per_character_and_per_second_prices_follow_the_input_and_the_result() {
        let text = r#"{"prices_taken":"x","models":[
            {"id":"tts","category":"audio","provider":"p","purpose":"q","price":{"per_1k_chars":{"credits":12}}},
            {"id":"song","category":"audio","provider":"p","purpose":"q","price":{"per_second":{"credits":0.25,"estimate_seconds":120,"field":"duration"}}}]}"#;
        let c = Catalog::parse(text).unwrap();
        let tts = c.get("tts").unwrap();
        assert_eq!(tts.estimate(&json!({"text": "a".repeat(250)})), Ok(Credits::from_credits(3)), "250 chars at 12 per 1,000");
        assert_eq!(tts.estimate(&json!({"prompt": "é".repeat(1000)})), Ok(Credits::from_credits(12)), "characters, not bytes; prompt when text is absent");
        assert!(tts.estimate(&json!({"text": ""})).unwrap_err().contains("empty"));
        let song = c.get("song").unwrap();
        assert_eq!(song.estimate(&json!({})), Ok(Credits::from_credits(30)), "120 s by default");
        assert_eq!(song.estimate(&json!({"duration": "40"})), Ok(Credits::from_credits(10)));
        for bad in [json!(0), json!(-3), json!("forever"), json!(1e9)] {
            assert!(song.estimate(&json!({"duration": bad})).is_err(), "{bad}");
        }
        assert_eq!(song.cost_of_seconds(95.5), Credits::from_decimal(23.875));
        assert_eq!(song.cost_of_seconds(f64::NAN), None);
        assert_eq!(tts.cost_of_seconds(10.0), None);
        let zero = r#"{"prices_taken":"x","models":[{"id":"s","category":"audio","provider":"p","purpose":"q","price":{"per_second":{"credits":1,"estimate_seconds":0}}}]}"#;
        assert!(Catalog::parse(zero).unwrap_err().contains("model s"));
    }

    #[test]
    fn bad_catalogs_are_refused_with_the_entry_named() {
        let dup = r#"{"prices_taken":"x","models":[
            {"id":"a","category":"image","provider":"p","purpose":"q","price":{"flat":1}},
            {"id":"a","category":"image","provider":"p","purpose":"q","price":{"flat":1}}]}"#;
        assert!(Catalog::parse(dup).unwrap_err().contains("listed twice"));
        let neg = r#"{"prices_taken":"x","models":[{"id":"b","category":"image","provider":"p","purpose":"q","price":{"flat":-1}}]}"#;
        assert!(Catalog::parse(neg).unwrap_err().contains("model b"));
        let zero = r#"{"prices_taken":"x","models":[{"id":"z","category":"image","provider":"p","purpose":"q","price":{"flat":0}}]}"#;
        assert!(Catalog::parse(zero).unwrap_err().contains("model z"));
        let rule = r#"{"prices_taken":"x","models":[{"id":"c","category":"image","provider":"p","purpose":"q","price":{"per_moon":1}}]}"#;
        assert!(Catalog::parse(rule).is_err());
    }
}
