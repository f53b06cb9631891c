//! Live task events: every change to a task is published through the store, so a browser on
//! any instance sees a change made on any other.
//!
//! Each event is written in the same store step as the change it tells of (the record's
//! create or update: [`announcement`], [`announcement_of_next`]), gets a sequence number from a
//! shared counter and is kept for [`REPLAY_TTL`] in the store, so a client that reconnects with the last id it saw (`Last-Event-ID`) is sent
//! what it missed. One subscription per instance feeds every local listener ([`EventHub`]);
//! a listener too slow to keep up, or a gap too long to replay, gets [`Feed::Reset`] and
//! reloads its list.

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::broadcast;

use crate::store::{Store, StoreResult};
use crate::tasks::task::TaskRecord;

/// The pub/sub channel of task events.
pub const CHANNEL: &str = "tasks";
/// The counter that numbers events.
const SEQ_KEY: &str = "events:seq";
/// How long an event is kept for replay.
pub const REPLAY_TTL: Duration = Duration::from_secs(15 * 60);
/// Most events replayed to one reconnecting client; a longer gap resets it.
pub const MAX_REPLAY: u64 = 1000;
/// Most bytes of events replayed to one reconnecting client (records with long prompts or
/// many results); a larger gap resets it, and it reloads what it shows.
pub const MAX_REPLAY_BYTES: usize = 256 << 10;
/// Events buffered per local listener before it is reset.
const LOCAL_BUFFER: usize = 4096;

/// One change to a task: its whole new record but its story (read with the task: a live event
/// tells the change, not the whole story again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEvent {
    pub seq: u64,
    pub task: TaskRecord,
    /// The event as the HTTP layer renders it, made once and shared by every listener of
    /// this instance (1,000 browsers cost one rendering, not 1,000). Never stored.
    #[serde(skip)]
    pub rendered: std::sync::OnceLock<String>,
}

fn log_key(seq: u64) -> String {
    format!("{LOG_PREFIX}{seq}")
}

/// Where each event is kept for replay: `events:log:<seq>`.
const LOG_PREFIX: &str = "events:log:";

/// A task's new state as a numbered announcement, for [`Store::task_create`], which writes
/// the record and announces it in one step. The message is exactly a [`TaskEvent`].
pub fn announcement(task: &TaskRecord) -> StoreResult<crate::store::Announcement> {
    let json = if task.story.is_empty() { serde_json::to_string(task) } else { serde_json::to_string(&TaskRecord { story: Default::default(), ..task.clone() }) };
    let json = json.map_err(|e| crate::StoreError::Invalid(e.to_string()))?;
    Ok(crate::store::Announcement {
        seq_key: SEQ_KEY.into(),
        log_prefix: LOG_PREFIX.into(),
        keep: REPLAY_TTL,
        channel: CHANNEL.into(),
        before: "{\"seq\":".into(),
        after: format!(",\"task\":{json}}}"),
    })
}

/// The announcement of the version a write of `task` gives it (the stored version plus one),
/// for [`crate::store::UpdateWith::announce`]; refused if the event is too large to keep.
pub fn announcement_of_next(task: &TaskRecord) -> StoreResult<crate::store::Announcement> {
    let next = TaskRecord { version: task.version + 1, story: Default::default(), ..task.clone() };
    let a = announcement(&next)?;
    crate::store::check::announcement(&a)?;
    Ok(a)
}

/// An announced event's number, read from its head as [`announcement`] writes it.
fn seq_of(bytes: &[u8]) -> Option<u64> {
    let rest = bytes.strip_prefix(b"{\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// What a listener receives.
#[derive(Debug, Clone)]
pub enum Feed {
    Event(Arc<TaskEvent>),
    /// Events were missed and cannot be replayed: reload the list.
    Reset,
}

/// This instance's one subscription, fanned out to every local listener.
#[derive(Clone)]
pub struct EventHub {
    store: Arc<dyn Store>,
    tx: broadcast::Sender<Arc<TaskEvent>>,
    /// Highest sequence number this hub has passed on.
    last_seq: Arc<AtomicU64>,
    /// The forwarding task, stopped by [`EventHub::stop`].
    forwarder: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl EventHub {
    /// Subscribes and starts forwarding (resubscribing with backoff if the store drops it).
    pub async fn start(store: Arc<dyn Store>) -> StoreResult<EventHub> {
        let (tx, _) = broadcast::channel(LOCAL_BUFFER);
        let hub = EventHub { store, tx, last_seq: Arc::default(), forwarder: Arc::default() };
        let first = hub.store.subscribe(CHANNEL).await?;
        hub.last_seq.store(hub.current_seq().await?, Ordering::Relaxed);
        let task = tokio::spawn(hub.clone().forward(first));
        if let Ok(mut slot) = hub.forwarder.lock() {
            *slot = Some(task);
        }
        Ok(hub)
    }

    /// Stops forwarding and lets go of the subscription (and the store it holds).
    pub async fn stop(&self) {
        let task = self.forwarder.lock().ok().and_then(|mut slot| slot.take());
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    async fn current_seq(&self) -> StoreResult<u64> {
        Ok(self.store.counter_get(SEQ_KEY).await?.max(0) as u64)
    }

    async fn forward(self, mut stream: crate::store::EventStream) {
        loop {
            while let Some(bytes) = stream.next().await {
                self.pass_on(&bytes);
            }
            tracing::warn!("live event subscription ended; resubscribing");
            stream = loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                match self.store.subscribe(CHANNEL).await {
                    Ok(s) => break s,
                    Err(e) => tracing::warn!(error = %e, "cannot resubscribe to live events"),
                }
            };
            // Pass on what was published while the subscription was down.
            let from = self.last_seq.load(Ordering::Relaxed);
            if let Ok(events) = self.replay(from).await {
                for e in events.unwrap_or_default() {
                    self.send(Arc::new(e));
                }
            }
        }
    }

    fn pass_on(&self, bytes: &[u8]) {
        // With no listener on this instance, only the number is kept (where a resubscription
        // replays from): the record is not read for nobody.
        if self.tx.receiver_count() == 0
            && let Some(seq) = seq_of(bytes)
        {
            self.last_seq.fetch_max(seq, Ordering::Relaxed);
            return;
        }
        match serde_json::from_slice::<TaskEvent>(bytes) {
            Ok(e) => self.send(Arc::new(e)),
            Err(e) => tracing::warn!(error = %e, "unreadable live event ignored"),
        }
    }

    fn send(&self, e: Arc<TaskEvent>) {
        self.last_seq.fetch_max(e.seq, Ordering::Relaxed);
        // No listener is not an error.
        let _ = self.tx.send(e);
    }

    /// Events after `after` from the replay log; `None` if the gap is too long to replay
    /// (more than [`MAX_REPLAY`] events or [`MAX_REPLAY_BYTES`]).
    pub async fn replay(&self, after: u64) -> StoreResult<Option<Vec<TaskEvent>>> {
        let current = self.current_seq().await?;
        if current <= after {
            return Ok(Some(Vec::new()));
        }
        if current - after > MAX_REPLAY {
            return Ok(None);
        }
        let mut out = Vec::new();
        let mut bytes_read = 0;
        for seq in after + 1..=current {
            match self.store.kv_get(&log_key(seq)).await? {
                Some(bytes) if bytes_read + bytes.len() > MAX_REPLAY_BYTES => return Ok(None),
                Some(bytes) => match serde_json::from_slice(&bytes) {
                    Ok(e) => {
                        bytes_read += bytes.len();
                        out.push(e);
                    }
                    Err(_) => return Ok(None),
                },
                // Numbered but not yet written (a publisher between its two steps) is still
                // coming live; one that has aged out cannot be replayed.
                None if seq + 16 > current => {}
                None => return Ok(None),
            }
        }
        Ok(Some(out))
    }

    /// A listener: first what it missed since `last_seen` (if given), then live events.
    pub async fn listen(&self, last_seen: Option<u64>) -> StoreResult<Listener> {
        let rx = self.tx.subscribe();
        let (backlog, reset) = match last_seen {
            None => (Vec::new(), false),
            Some(after) => match self.replay(after).await? {
                Some(events) => (events, false),
                None => (Vec::new(), true),
            },
        };
        let replayed_to = backlog.iter().map(|e| e.seq).max().unwrap_or(0);
        Ok(Listener { backlog: backlog.into_iter().map(Arc::new).collect(), reset, replayed_to, rx })
    }

    /// How many local listeners are connected (for the console and benchmarks).
    pub fn listeners(&self) -> usize {
        self.tx.receiver_count()
    }
}

/// One client's feed.
pub struct Listener {
    backlog: std::collections::VecDeque<Arc<TaskEvent>>,
    reset: bool,
    /// Live events up to this number were already sent from the backlog.
    replayed_to: u64,
    rx: broadcast::Receiver<Arc<TaskEvent>>,
}

impl Listener {
    /// The next item; `None` when the hub is gone.
    pub async fn next(&mut self) -> Option<Feed> {
        if std::mem::take(&mut self.reset) {
            return Some(Feed::Reset);
        }
        if let Some(e) = self.backlog.pop_front() {
            return Some(Feed::Event(e));
        }
        loop {
            match self.rx.recv().await {
                Ok(e) if self.replayed_to > 0 && e.seq <= self.replayed_to && self.backlog.is_empty() => continue,
                Ok(e) => return Some(Feed::Event(e)),
                Err(broadcast::error::RecvError::Lagged(_)) => return Some(Feed::Reset),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_events_number_is_read_from_its_head() {
        let a = announcement(&TaskRecord::new("cr_1".to_string(), "ana", "p", "m", 1)).expect("an announcement");
        let message = format!("{}{}{}", a.before, 4021, a.after);
        assert_eq!(seq_of(message.as_bytes()), Some(4021));
        assert_eq!(serde_json::from_str::<TaskEvent>(&message).map(|e| e.seq).ok(), Some(4021), "the same number as the whole event's");
        assert_eq!(seq_of(b"{\"task\":{},\"seq\":3}"), None, "another shape is read whole");
        assert_eq!(seq_of(b"{\"seq\":}"), None);
    }
}
