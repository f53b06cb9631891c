//! The HTTP client for KIE: reqwest with timeouts, connection reuse and a User-Agent. Every
//! answer is classified from the body `code` into [`KieError`]. Reads retry transient failures
//! with exponential backoff and jitter (credit, download-url); `createTask` and `recordInfo` are
//! single attempts, because each spends a slot of a KIE limit that the caller claims first.

use serde_json::Value;
use std::time::{Duration, Instant};
use url::Url;

use super::error::KieError;
use super::family::{ApiFamily, Call, UpstreamStatus, Verb};
use super::wire::{Envelope, credit_balance};
use crate::money::credits::Credits;
use crate::secret::Secret;

const CREDIT_PATH: &str = "/api/v1/chat/credit";

/// KIE's upload host (`KIE_UPLOAD_BASE_URL`'s default when `KIE_BASE_URL` is KIE's own).
pub const UPLOAD_BASE: &str = "https://kieai.redpandaai.co";
/// KIE's three upload calls, on the upload host: a multipart file, a base64 body, a URL KIE
/// fetches. Each answers `data.downloadUrl`, usable as any model's input for a while.
pub const UPLOAD_PATHS: [&str; 3] = ["/api/file-stream-upload", "/api/file-base64-upload", "/api/file-url-upload"];
/// Where the console's own uploads go on KIE's upload host.
const UPLOAD_FOLDER: &str = "control-room";
/// Longest one upload may take (a video from the Library): past it, it is tried again later.
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(80);

/// Tunables; the defaults suit KIE.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Attempts for the reads that spend no rate slot (credit, download-url).
    pub attempts: u32,
    /// First backoff; doubled per attempt, with up to 50 % jitter.
    pub backoff: Duration,
    /// Largest response body read.
    pub max_body: usize,
    /// Largest status answer read for a written result ([`KieClient::status_answer`]): the
    /// notes of a MIDI run to ~60–100 B each, up to [`crate::library::midi::MAX_NOTES`] of them.
    pub max_written: usize,
    /// Where each call's latency is counted, by endpoint.
    pub metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            attempts: 3,
            backoff: Duration::from_millis(250),
            max_body: 4 << 20,
            max_written: 32 << 20,
            metrics: None,
        }
    }
}

/// A KIE endpoint and the key that opens it.
#[derive(Clone)]
pub struct KieClient {
    http: reqwest::Client,
    base: Url,
    /// Where uploads go ([`UPLOAD_BASE`], or `base` itself for a simulator or a proxy).
    upload_base: Url,
    key: Secret,
    opts: ClientOptions,
}

impl std::fmt::Debug for KieClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KieClient").field("base", &self.base.as_str()).field("upload_base", &self.upload_base.as_str()).field("key", &self.key).finish()
    }
}

/// Outcome of one probe of the account (the Gateway panel's telemetry).
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub latency: Duration,
    pub balance: Result<Credits, KieError>,
}

impl KieClient {
    pub fn new(base: Url, key: Secret, opts: ClientOptions) -> Result<Self, KieError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("kie-control-room/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| KieError::Transport(format!("cannot build the HTTP client: {e}")))?;
        // KIE's API uploads to its own upload host; anything else (the simulator, a proxy)
        // is taken to serve both.
        let upload_base = match base.host_str() {
            Some("api.kie.ai") => Url::parse(UPLOAD_BASE).map_err(|e| KieError::Transport(format!("bad upload base: {e}")))?,
            _ => base.clone(),
        };
        Ok(KieClient { http, base, upload_base, key, opts })
    }

    /// The same client, uploading to `base` (`KIE_UPLOAD_BASE_URL`).
    pub fn with_upload_base(mut self, base: Url) -> Self {
        self.upload_base = base;
        self
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    fn url(&self, path: &str) -> Result<Url, KieError> {
        self.base.join(path).map_err(|e| KieError::Transport(format!("bad path {path}: {e}")))
    }

    /// Sends one request to `path` and classifies the answer, timed. Never includes the key
    /// in an error.
    async fn send(&self, path: &str, req: reqwest::RequestBuilder) -> Result<Value, KieError> {
        self.send_capped(path, req, self.opts.max_body).await
    }

    /// [`KieClient::send`], reading at most `max` bytes of the answer.
    async fn send_capped(&self, path: &str, req: reqwest::RequestBuilder, max: usize) -> Result<Value, KieError> {
        let started = Instant::now();
        let answer = self.send_untimed(req, max).await;
        if let Some(m) = &self.opts.metrics {
            m.kie_call(path.rsplit('/').next().unwrap_or(path), started.elapsed());
        }
        answer
    }

    async fn send_untimed(&self, req: reqwest::RequestBuilder, max: usize) -> Result<Value, KieError> {
        let resp = req.bearer_auth(self.key.expose()).send().await.map_err(|e| self.transport(e))?;
        let status = resp.status().as_u16();
        let Some(bytes) = read_capped(resp, max).await.map_err(|e| self.transport(e))? else {
            // A 5xx this long is a page from something in front of KIE, not KIE's answer.
            return Err(if status >= 500 { KieError::Gateway { status, detail: format!("an answer over {max} bytes") } } else { KieError::TooLarge(max) });
        };
        let env: Envelope<Value> = match serde_json::from_slice(&bytes) {
            Ok(env) => env,
            Err(e) => {
                // No envelope: a 5xx came from something in front of KIE (a gateway, a proxy),
                // which may have passed the request on; a 4xx falls back on the HTTP status;
                // else the body is unreadable.
                if status >= 500 {
                    return Err(KieError::Gateway { status, detail: snippet(&bytes) });
                }
                if status >= 400 {
                    return Err(KieError::from_code(i64::from(status), Some(snippet(&bytes))));
                }
                return Err(KieError::Decode { status, detail: e.to_string() });
            }
        };
        if env.code != 200 {
            return Err(KieError::from_code(env.code, env.msg));
        }
        Ok(env.data.unwrap_or(Value::Null))
    }

    fn transport(&self, e: reqwest::Error) -> KieError {
        // reqwest's messages name the URL (never the key, which travels in a header).
        if e.is_timeout() {
            KieError::Timeout(self.opts.timeout)
        } else if e.is_connect() {
            KieError::Connect(e.without_url().to_string())
        } else {
            KieError::Transport(e.without_url().to_string())
        }
    }

    async fn backoff(&self, attempt: u32) {
        let base = self.opts.backoff.saturating_mul(1 << attempt.min(8));
        let jitter = base.mul_f64(fastrand::f64() * 0.5);
        tokio::time::sleep(base + jitter).await;
    }

    /// Retries `op` while it fails with `retry(err)`, up to `attempts` times.
    async fn retrying<F, Fut, T>(&self, retry: fn(&KieError) -> bool, op: F) -> Result<T, KieError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, KieError>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Err(e) if retry(&e) && attempt + 1 < self.opts.attempts => {
                    tracing::debug!(error = %e, attempt, "KIE call failed; retrying");
                    self.backoff(attempt).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Creates a task; returns KIE's task id. One attempt: every `createTask` spends a slot
    /// of KIE's 20-per-10 s limit, so a resend (after a refused connection) is the caller's,
    /// with a new slot from the rate guard.
    pub async fn create_task(&self, family: &dyn ApiFamily, model: &str, input: &Value, callback_url: Option<&str>) -> Result<String, KieError> {
        let data = self.call(family.create_call(model, input, callback_url)).await?;
        family.created_id(data, input).map_err(|detail| KieError::Decode { status: 200, detail })
    }

    /// A task's status (recordInfo for the Market family). One attempt: every call counts
    /// against KIE's 10-per-second limit, so the caller claims a slot for each and retries on
    /// its own schedule.
    pub async fn status(&self, family: &dyn ApiFamily, task_id: &str) -> Result<UpstreamStatus, KieError> {
        self.status_of(family, task_id, &Value::Null).await
    }

    /// [`KieClient::status`] of a task whose fields are `input` (a family may ask with them:
    /// an upgrade names its video's index).
    pub async fn status_of(&self, family: &dyn ApiFamily, task_id: &str, input: &Value) -> Result<UpstreamStatus, KieError> {
        match self.status_answer(family, task_id, input).await {
            Ok(data) => {
                let mut st = family.parse_status(data).map_err(|detail| KieError::Decode { status: 200, detail })?;
                // An answer that names no task (an upgrade's file) is of the task asked about.
                if st.task_id.is_empty() {
                    st.task_id = task_id.to_string();
                }
                Ok(st)
            }
            Err(e) => family.status_of_refusal(task_id, &e).ok_or(e),
        }
    }

    /// A status call's `data` as KIE answers it, unread (a written result's data:
    /// [`ApiFamily::result_file`]).
    pub async fn status_answer(&self, family: &dyn ApiFamily, task_id: &str, input: &Value) -> Result<Value, KieError> {
        self.call_capped(family.status_call(task_id, input), self.read_limit(family)).await
    }

    /// How much of a status answer of `family` is read: a written result's answer carries
    /// the result itself ([`ClientOptions::max_written`]).
    fn read_limit(&self, family: &dyn ApiFamily) -> usize {
        if family.writes_result() { self.opts.max_written } else { self.opts.max_body }
    }

    /// Sends one [`Call`]: a GET with its fields as the query, or a POST with them as JSON.
    async fn call(&self, call: Call) -> Result<Value, KieError> {
        self.call_capped(call, self.opts.max_body).await
    }

    /// [`KieClient::call`], reading at most `max` bytes of the answer.
    async fn call_capped(&self, call: Call, max: usize) -> Result<Value, KieError> {
        let url = self.url(call.path)?;
        let req = match call.verb {
            Verb::Post => self.http.post(url).json(&call.fields),
            Verb::Get => {
                let query: Vec<(String, String)> = call.fields.as_object().into_iter().flatten().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect();
                self.http.get(url).query(&query)
            }
        };
        self.send_capped(call.path, req, max).await
    }

    /// Starts one call of a language model through `api` at KIE's `path` (a catalog model's
    /// [`crate::money::catalog::Model::chat_path`]) with `body` as the client sent it, and
    /// returns KIE's response as it begins, to be relayed as it arrives (dropping it cancels
    /// the call). One attempt: a retry is the client's. `timeout` bounds the whole answer, a
    /// stream included.
    pub async fn chat(&self, path: &str, api: crate::money::catalog::ChatApi, body: bytes::Bytes, timeout: Duration) -> Result<reqwest::Response, KieError> {
        let url = self.url(path)?;
        let started = Instant::now();
        let resp = self
            .http
            .post(url)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .bearer_auth(self.key.expose())
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport(e));
        if let Some(m) = &self.opts.metrics {
            m.kie_call(api.name(), started.elapsed());
        }
        resp
    }

    /// Uploads one file to KIE (`file-stream-upload`, multipart) and returns the URL KIE
    /// serves it at. `len` bytes of `body` are sent; a timeout or a refused connection may be
    /// tried again (an upload is free and costs no rate slot).
    pub async fn upload_file(&self, body: reqwest::Body, len: u64, file_name: &str, content_type: &str) -> Result<String, KieError> {
        let part = reqwest::multipart::Part::stream_with_length(body, len)
            .file_name(file_name.to_string())
            .mime_str(content_type)
            .map_err(|e| KieError::Transport(format!("bad content type {content_type:?}: {e}")))?;
        let form = reqwest::multipart::Form::new().text("uploadPath", UPLOAD_FOLDER).text("fileName", file_name.to_string()).part("file", part);
        let path = UPLOAD_PATHS[0];
        let url = self.upload_base.join(path).map_err(|e| KieError::Transport(format!("bad path {path}: {e}")))?;
        let data = self.send(path, self.http.post(url).timeout(UPLOAD_TIMEOUT).multipart(form)).await?;
        uploaded_url(&data).ok_or_else(|| KieError::Decode { status: 200, detail: "the upload's answer has no downloadUrl".into() })
    }

    /// One of KIE's [`UPLOAD_PATHS`] called with `body` as a client sent it (its content
    /// type kept: a multipart boundary, or JSON), within `timeout` (a streamed body arrives
    /// as fast as its client sends it); answers KIE's `data`. For the relay.
    pub async fn upload_as_sent(&self, path: &str, content_type: &str, body: reqwest::Body, timeout: Duration) -> Result<Value, KieError> {
        if !UPLOAD_PATHS.contains(&path) {
            return Err(KieError::Transport(format!("{path} is not one of KIE's upload calls")));
        }
        let url = self.upload_base.join(path).map_err(|e| KieError::Transport(format!("bad path {path}: {e}")))?;
        let req = self.http.post(url).timeout(timeout).header(reqwest::header::CONTENT_TYPE, content_type).body(body);
        self.send(path, req).await
    }

    /// The account's credit balance.
    pub async fn credit(&self) -> Result<Credits, KieError> {
        let url = self.url(CREDIT_PATH)?;
        let data = self.retrying(KieError::is_transient_read, || self.send(CREDIT_PATH, self.http.get(url.clone()))).await?;
        let balance = credit_balance(&data).ok_or_else(|| KieError::Decode { status: 200, detail: format!("credit balance is not a number: {data}") })?;
        self.note_balance(balance);
        Ok(balance)
    }

    /// KIE's answered balance, for the metrics.
    fn note_balance(&self, balance: Credits) {
        if let Some(m) = &self.opts.metrics {
            m.balance(balance);
        }
    }

    /// A Suno track's lyrics with when each word is sung (`POST
    /// /api/v1/generate/get-timestamped-lyrics`, by KIE's ids of the song and the track):
    /// KIE's `data` (`alignedWords`, `waveformData`…). A read, retried like one.
    pub async fn timestamped_lyrics(&self, task_id: &str, audio_id: &str) -> Result<Value, KieError> {
        let path = "/api/v1/generate/get-timestamped-lyrics";
        let url = self.url(path)?;
        let body = serde_json::json!({ "taskId": task_id, "audioId": audio_id });
        self.retrying(KieError::is_transient_read, || self.send(path, self.http.post(url.clone()).json(&body))).await
    }

    /// A temporary (20 minute) download link for a KIE result URL.
    pub async fn download_url(&self, result_url: &str) -> Result<String, KieError> {
        let path = "/api/v1/common/download-url";
        let url = self.url(path)?;
        let body = serde_json::json!({ "url": result_url });
        let data = self.retrying(KieError::is_transient_read, || self.send(path, self.http.post(url.clone()).json(&body))).await?;
        data.as_str().map(str::to_string).ok_or_else(|| KieError::Decode { status: 200, detail: "download-url data is not a string".into() })
    }

    /// One credit call, timed: reachable or not, latency, balance.
    pub async fn probe(&self) -> Probe {
        let start = Instant::now();
        let url = match self.url(CREDIT_PATH) {
            Ok(u) => u,
            Err(e) => return Probe { latency: start.elapsed(), balance: Err(e) },
        };
        let balance = self.send(CREDIT_PATH, self.http.get(url)).await.and_then(|data| {
            credit_balance(&data).ok_or_else(|| KieError::Decode { status: 200, detail: "credit balance is not a number".into() })
        });
        if let Ok(b) = &balance {
            self.note_balance(*b);
        }
        Probe { latency: start.elapsed(), balance }
    }
}

impl KieError {
    /// Reads may be retried on any transient failure except 429 (retrying at once would only
    /// be refused again; the caller's schedule handles it).
    fn is_transient_read(&self) -> bool {
        self.is_transient() && !matches!(self, KieError::RateLimited(_))
    }
}

/// An upload answer's URL: `downloadUrl` (also written `fileUrl`).
pub fn uploaded_url(data: &Value) -> Option<String> {
    data.get("downloadUrl").or_else(|| data.get("fileUrl")).and_then(Value::as_str).filter(|u| !u.is_empty()).map(str::to_string)
}

/// The answer's body, or `None` when it is longer than `max` bytes (read no further).
async fn read_capped(mut resp: reqwest::Response, max: usize) -> Result<Option<Vec<u8>>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if chunk.len() > max - out.len() {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out))
}

fn snippet(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
    s.trim().to_string()
}
