//! The simulator's world: accounts, tasks, limits, faults, the clock and the request log. All
//! of it sits behind one mutex held only for short, synchronous steps (never across I/O).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::cmp::Reverse;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::media::MediaKind;

/// Most entries kept in the request log (oldest dropped first).
pub const LOG_CAP: usize = 200_000;
/// Most tasks remembered; beyond it the oldest are forgotten (KIE too forgets task logs,
/// after two months), so a long-running simulator stays bounded.
pub const TASK_CAP: usize = 500_000;

pub fn epoch_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Simulated time: real time times a speed factor, so tests can age tasks and media quickly.
#[derive(Debug, Clone)]
pub struct Clock {
    base_real: Instant,
    base_sim_ms: f64,
    speed: f64,
}

impl Clock {
    pub fn new() -> Self {
        Clock { base_real: Instant::now(), base_sim_ms: epoch_ms() as f64, speed: 1.0 }
    }
    pub fn now_ms(&self) -> u64 {
        (self.base_sim_ms + self.base_real.elapsed().as_secs_f64() * 1000.0 * self.speed) as u64
    }
    pub fn speed(&self) -> f64 {
        self.speed
    }
    /// Changes the speed from now on (time already passed stays passed).
    pub fn set_speed(&mut self, speed: f64) {
        self.base_sim_ms = self.now_ms() as f64;
        self.base_real = Instant::now();
        self.speed = speed;
    }
    /// Jumps simulated time forward.
    pub fn advance(&mut self, ms: u64) {
        self.base_sim_ms += ms as f64;
    }
    /// Real time until simulated time reaches `sim_ms`.
    pub fn real_until(&self, sim_ms: u64) -> Duration {
        let ahead = sim_ms.saturating_sub(self.now_ms()) as f64;
        Duration::from_secs_f64(ahead / 1000.0 / self.speed.max(1e-6))
    }
}

/// How long each phase of a task lasts, in simulated milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Schedule {
    pub waiting_ms: u64,
    pub queuing_ms: u64,
    pub generating_ms: u64,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule { waiting_ms: 1_000, queuing_ms: 2_000, generating_ms: 6_000 }
    }
}

/// Tunables, changeable at run time through the control API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// New generation requests admitted per account per window (KIE: 20 per 10 s).
    pub rate_limit: u32,
    pub rate_window_ms: u64,
    /// recordInfo requests per key per second (KIE: 10).
    pub record_info_per_sec: u32,
    pub schedule: Schedule,
    /// How long result media stays downloadable, in simulated ms (KIE: 14 days).
    pub retention_ms: u64,
    /// How long a result's own link works, in simulated ms (a copy of KIE's docs says result
    /// URLs "typically expire after 24 hours"); after it only a `download-url` link (20
    /// minutes) fetches the file, until the retention runs out. `None`: the whole retention.
    pub result_link_ms: Option<u64>,
    /// Callback attempts after the first (KIE: 3) and the per-attempt timeout (KIE: 15 s).
    pub callback_retries: u32,
    pub callback_timeout_ms: u64,
    /// Chat completions: requests and tokens (prompt + completion) per key per minute; over
    /// either, HTTP 429 like any OpenAI-style API.
    pub chat_requests_per_min: u32,
    pub chat_tokens_per_min: u32,
    /// Real ms between the chunks of a streamed answer.
    pub chat_chunk_ms: u64,
    /// Real ms before the first byte of an answer (plain or streamed).
    pub chat_first_byte_ms: u64,
    /// When set, a model writes this many tokens unless the call's `max_tokens` /
    /// `max_completion_tokens` stops it sooner (a long answer); unset, it rewrites the prompt.
    pub chat_answer_tokens: Option<u32>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            rate_limit: 20,
            rate_window_ms: 10_000,
            record_info_per_sec: 10,
            schedule: Schedule::default(),
            retention_ms: 14 * 24 * 3_600 * 1_000,
            result_link_ms: None,
            callback_retries: 3,
            callback_timeout_ms: 15_000,
            chat_requests_per_min: 600,
            chat_tokens_per_min: 1_000_000,
            chat_chunk_ms: 40,
            chat_first_byte_ms: 0,
            chat_answer_tokens: None,
        }
    }
}

/// Faults to inject, for a whole run or one task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Never send the callback.
    pub drop_callback: bool,
    /// Send it twice.
    pub duplicate_callback: bool,
    /// Extra real delay before sending, in ms.
    pub callback_delay_ms: u64,
    /// A random extra delay up to this many ms per callback, so they arrive out of order.
    pub reorder_window_ms: u64,
    /// Sign with the wrong key.
    pub wrong_signature: bool,
    /// The generation fails (not charged).
    pub fail_generation: bool,
    /// Answer the next `create_error_count` createTask calls with this body code (500, 455…).
    pub create_error_code: Option<i64>,
    pub create_error_count: u32,
    /// Delay every KIE response by this many ms.
    pub slow_ms: u64,
    /// Send error bodies with HTTP 200 (KIE sometimes does: clients must read the body code).
    pub errors_as_http_200: bool,
    /// Charge this percentage of the model's price (KIE's `creditsConsumed` is the truth; a
    /// catalog's estimate can be off). `None`: 100.
    pub charge_percent: Option<u32>,
    /// Answer the next `gateway_error_count` createTask calls with a bare HTTP 502 and no
    /// KIE envelope, as a failing gateway in front of KIE would — after creating the task
    /// (the request got through; only the answer was lost).
    pub gateway_error_count: u32,
    /// Drop this share (0–100) of callbacks, chosen at random per task.
    pub drop_callback_percent: u8,
    /// Send this share (0–100) of callbacks twice, chosen at random per task.
    pub duplicate_callback_percent: u8,
    /// A MIDI's notes are this many (a dense score: ~60 B of JSON a note), not the usual few.
    pub midi_notes: Option<u32>,
}

impl Faults {
    /// Task faults win where set; run faults otherwise.
    pub fn merged(run: &Faults, task: Option<&Faults>) -> Faults {
        let Some(t) = task else { return run.clone() };
        Faults {
            drop_callback: run.drop_callback || t.drop_callback,
            duplicate_callback: run.duplicate_callback || t.duplicate_callback,
            callback_delay_ms: run.callback_delay_ms.max(t.callback_delay_ms),
            reorder_window_ms: run.reorder_window_ms.max(t.reorder_window_ms),
            wrong_signature: run.wrong_signature || t.wrong_signature,
            fail_generation: run.fail_generation || t.fail_generation,
            ..run.clone()
        }
    }
}

pub struct Account {
    /// Balance in milli-credits.
    pub balance_milli: i64,
    pub hmac_key: Option<String>,
    /// Real instants of admitted createTask calls inside the current window.
    pub creates: VecDeque<Instant>,
    pub record_infos: VecDeque<Instant>,
    /// Chat calls and their tokens in the last minute (real time).
    pub chats: VecDeque<(Instant, u32)>,
}

pub struct Task {
    pub id: String,
    pub key: String,
    pub model: String,
    pub kind: MediaKind,
    pub param: String,
    pub callback_url: Option<String>,
    pub created_ms: u64,
    pub price_milli: i64,
    pub fail: Option<(String, String)>,
    pub seed: u64,
    /// Settled: charged (success) or refunded (fail).
    pub settled: bool,
    /// Its API family: "market", "veo", "suno", "runway", "gpt4o_image", "flux_kontext", "midjourney".
    pub family: &'static str,
    /// How many result files it makes.
    pub results: usize,
    /// Real instants of its status calls in the last second (Suno and 4o allow 3 per task).
    pub status_calls: VecDeque<Instant>,
}

/// One line of the request log.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    pub seq: u64,
    /// Real Unix ms.
    pub at_ms: u64,
    pub method: String,
    pub path: String,
    /// The body code answered (or the callback receiver's HTTP status; 0 for no answer).
    pub code: i64,
    pub task_id: Option<String>,
    pub detail: Option<String>,
}

pub struct World {
    pub settings: Settings,
    pub clock: Clock,
    pub accounts: HashMap<String, Account>,
    pub tasks: HashMap<String, Task>,
    /// Task ids in creation order, to forget the oldest past [`TASK_CAP`].
    pub task_order: VecDeque<String>,
    pub faults: Faults,
    pub task_faults: HashMap<String, Faults>,
    /// Tasks with a callback, by simulated completion time.
    pub due: BinaryHeap<Reverse<(u64, String)>>,
    /// Every task not yet settled, by simulated completion time: settled (charged or
    /// refunded) as soon as its time passes, whether or not anyone looks at it.
    pub unsettled: BinaryHeap<Reverse<(u64, String)>>,
    pub log: VecDeque<LogEntry>,
    pub seq: u64,
    pub next_task: u64,
    /// This simulator's own base URL (result files are served from it).
    pub base_url: String,
    /// Files uploaded through KIE's upload API, by id, and their ids oldest first.
    pub uploads: HashMap<String, crate::uploads::Upload>,
    pub upload_order: VecDeque<String>,
    pub next_upload: u64,
}

impl World {
    pub fn new(settings: Settings) -> Self {
        World {
            settings,
            clock: Clock::new(),
            accounts: HashMap::new(),
            tasks: HashMap::new(),
            task_order: VecDeque::new(),
            faults: Faults::default(),
            task_faults: HashMap::new(),
            due: BinaryHeap::new(),
            unsettled: BinaryHeap::new(),
            log: VecDeque::new(),
            seq: 0,
            next_task: 0,
            base_url: String::new(),
            uploads: HashMap::new(),
            upload_order: VecDeque::new(),
            next_upload: 0,
        }
    }

    /// Settles every task whose completion time has passed (refunds failures).
    pub fn settle_due(&mut self) {
        let now = self.clock.now_ms();
        while let Some(Reverse((at, _))) = self.unsettled.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse((_, id))) = self.unsettled.pop() {
                self.state_of(&id, now);
            }
        }
    }

    /// Adds a task, forgetting the oldest beyond [`TASK_CAP`].
    pub fn insert_task(&mut self, task: Task) {
        let done = self.completion_ms(&task);
        self.unsettled.push(Reverse((done, task.id.clone())));
        self.task_order.push_back(task.id.clone());
        self.tasks.insert(task.id.clone(), task);
        while self.task_order.len() > TASK_CAP {
            if let Some(old) = self.task_order.pop_front() {
                self.tasks.remove(&old);
                self.task_faults.remove(&old);
            }
        }
    }

    pub fn record(&mut self, method: &str, path: &str, code: i64, task_id: Option<String>, detail: Option<String>) {
        self.seq += 1;
        if self.log.len() >= LOG_CAP {
            self.log.pop_front();
        }
        self.log.push_back(LogEntry { seq: self.seq, at_ms: epoch_ms(), method: method.into(), path: path.into(), code, task_id, detail });
    }

    /// Sliding-window admission on real time: true if admitted (and counted).
    pub fn admit(window: &mut VecDeque<Instant>, limit: u32, span: Duration) -> bool {
        let now = Instant::now();
        while window.front().is_some_and(|t| now.duration_since(*t) >= span) {
            window.pop_front();
        }
        if window.len() as u32 >= limit {
            return false;
        }
        window.push_back(now);
        true
    }

    /// A task's KIE state at simulated time `now`, settling its charge once it ends.
    pub fn state_of(&mut self, id: &str, now: u64) -> Option<&'static str> {
        let s = self.settings.schedule;
        let task = self.tasks.get_mut(id)?;
        let age = now.saturating_sub(task.created_ms);
        let state = if age < s.waiting_ms {
            "waiting"
        } else if age < s.waiting_ms + s.queuing_ms {
            "queuing"
        } else if age < s.waiting_ms + s.queuing_ms + s.generating_ms {
            "generating"
        } else if task.fail.is_some() {
            "fail"
        } else {
            "success"
        };
        if (state == "fail" || state == "success") && !task.settled {
            task.settled = true;
            if state == "fail" {
                // Failed generations are not charged: refund what was held at creation.
                if let Some(acct) = self.accounts.get_mut(&task.key) {
                    acct.balance_milli += task.price_milli;
                }
            }
        }
        Some(state)
    }

    pub fn completion_ms(&self, task: &Task) -> u64 {
        let s = self.settings.schedule;
        task.created_ms + s.waiting_ms + s.queuing_ms + s.generating_ms
    }

    /// KIE's recordInfo `data` object for a task, written the way KIE's docs show it.
    pub fn record_json(&mut self, id: &str) -> Option<Value> {
        let now = self.clock.now_ms();
        let state = self.state_of(id, now)?;
        let task = self.tasks.get(id)?;
        let done = matches!(state, "success" | "fail");
        let complete = self.completion_ms(task);
        let result_json = if state == "success" {
            let url = format!("{}/files/{}/0.{}", self.base_url, task.id, task.kind.extension());
            serde_json::json!({ "resultUrls": [url] }).to_string()
        } else {
            String::new()
        };
        let (fail_code, fail_msg) = match (&task.fail, state) {
            (Some((c, m)), "fail") => (Value::String(c.clone()), Value::String(m.clone())),
            _ => (Value::Null, Value::Null),
        };
        let credits = if state == "success" { task.price_milli as f64 / 1000.0 } else { 0.0 };
        Some(serde_json::json!({
            "taskId": task.id,
            "model": task.model,
            "state": state,
            "param": task.param,
            "resultJson": result_json,
            "failCode": fail_code,
            "failMsg": fail_msg,
            "costTime": if done { Value::from(complete - task.created_ms) } else { Value::Null },
            "completeTime": if done { Value::from(complete) } else { Value::Null },
            "createTime": task.created_ms,
            "updateTime": now.min(complete),
            "creditsConsumed": credits,
        }))
    }
}
