//! A task's story: each step of its life — submitted, sent, KIE's answers, in doubt, callbacks
//! (valid, duplicate, forged), states, results, Library copies, receipts, sync, relay
//! callbacks — with its time and the instance that took it.
//!
//! The story is kept on the task's own record, so each beat is written in the same store
//! write as the change it tells (no second round trip), read with the task and purged with
//! it. Most beats are not written by hand: [`Lifecycle::write`](crate::tasks::lifecycle)
//! compares what a change found ([`Before`]) with what it leaves and tells the difference
//! ([`tell`]). Only what changes nothing else is told on its own: a duplicate or a forged
//! callback (one beat, counted when it repeats).
//!
//! Bounded: at most [`MAX_BEATS`] beats of at most [`MAX_TEXT`] characters. When full, the
//! first beat (how the task began) stays and the oldest after it goes; the story counts what
//! it dropped. A poll or a callback that changes nothing, and the queue's place as it moves,
//! are not beats (the place is answered live by the queue).

use serde::{Deserialize, Serialize};

use crate::library::asset::AssetState;
use crate::tasks::task::{HeldBack, TaskRecord, TaskState};

/// Most beats one task keeps.
pub const MAX_BEATS: usize = 32;
/// Longest beat, in characters (a longer one is cut with "…").
pub const MAX_TEXT: usize = 240;

/// A task's beats, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Story {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub beats: Vec<Beat>,
    /// Beats dropped to keep the story bounded (the oldest after the first).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped: u32,
    /// Where the change being written came from (KIE's callback, a poll), for the beat that
    /// tells it. Set by the change, taken by [`tell`]; never stored.
    #[serde(skip)]
    pub(crate) via: Option<Via>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// One step of a task's life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Beat {
    pub at_ms: u64,
    /// The instance that took the step.
    pub instance: String,
    pub kind: BeatKind,
    pub text: String,
    /// How many times it happened in a row (a callback KIE repeats); the time is the last.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub times: u32,
}

/// What kind of step a beat is (the story's icon and filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BeatKind {
    /// Recorded here: by whom, from where, what it holds.
    Submitted,
    /// `createTask` left for KIE.
    Sent,
    /// KIE refused it, or did not answer: held back, in doubt.
    Refused,
    /// Its state moved (KIE's answer, callback or poll; an end here).
    State,
    /// A callback that changed nothing: a duplicate or a forged one.
    Callback,
    /// A result copied to the Library, or lost.
    Library,
    /// Counted in the receipts; its line synced.
    Receipts,
    /// The relay client's own callback.
    Delivery,
    /// The Error Review: retried, resolved.
    Review,
}

impl BeatKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BeatKind::Submitted => "submitted",
            BeatKind::Sent => "sent",
            BeatKind::Refused => "refused",
            BeatKind::State => "state",
            BeatKind::Callback => "callback",
            BeatKind::Library => "library",
            BeatKind::Receipts => "receipts",
            BeatKind::Delivery => "delivery",
            BeatKind::Review => "review",
        }
    }
}

/// Where an upstream state came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// KIE's callback, confirmed with `recordInfo`.
    Callback,
    /// The fallback poller's `recordInfo`.
    Poll,
}

impl Via {
    fn words(self) -> &'static str {
        match self {
            Via::Callback => "from KIE's callback, confirmed with recordInfo",
            Via::Poll => "from polling recordInfo",
        }
    }
}

impl Story {
    pub fn is_empty(&self) -> bool {
        self.beats.is_empty() && self.dropped == 0
    }

    /// Adds a beat, keeping the story bounded. The same kind and text as the last beat counts
    /// there instead (a repeated callback is one beat, ×n).
    pub fn push(&mut self, at_ms: u64, instance: &str, kind: BeatKind, text: impl Into<String>) {
        let text = bounded(text.into());
        if let Some(last) = self.beats.last_mut()
            && last.kind == kind
            && last.text == text
        {
            last.times = last.times.saturating_add(1);
            last.at_ms = at_ms;
            last.instance = bounded_instance(instance);
            return;
        }
        if self.beats.len() >= MAX_BEATS {
            self.beats.remove(1.min(self.beats.len() - 1));
            self.dropped = self.dropped.saturating_add(1);
        }
        self.beats.push(Beat { at_ms, instance: bounded_instance(instance), kind, text, times: 1 });
    }
}

fn bounded(text: String) -> String {
    if text.chars().count() <= MAX_TEXT {
        return text;
    }
    let mut cut: String = text.chars().take(MAX_TEXT - 1).collect();
    cut.push('…');
    cut
}

fn bounded_instance(instance: &str) -> String {
    instance.chars().take(64).collect()
}

/// What a change found, in the parts of a record the story tells: read before the change,
/// compared after it by [`tell`].
#[derive(Debug, Clone, PartialEq)]
pub struct Before {
    pub state: TaskState,
    /// It was settled ([`TaskRecord::settled`]): instances answer it from memory.
    pub settled: bool,
    attempts: u32,
    sending: bool,
    held_back: Option<HeldBack>,
    kie_task_id: bool,
    assets: Vec<AssetState>,
    folded: bool,
    synced: Option<(bool, u32)>,
    relay: Option<(bool, bool, u32)>,
    retried_as: Option<String>,
    resolved: bool,
}

impl Before {
    pub fn of(t: &TaskRecord) -> Before {
        Before {
            state: t.state,
            settled: t.settled(),
            attempts: t.dispatch.attempts,
            sending: t.dispatch.sending_since_ms.is_some(),
            held_back: t.dispatch.held_back,
            kie_task_id: t.kie_task_id.is_some(),
            assets: t.archive.iter().flat_map(|a| a.assets.iter().map(|x| x.state)).collect(),
            folded: t.folded,
            synced: t.receipt_sync.as_ref().map(|s| (s.delivered, s.attempts)),
            relay: t.relay_callback.as_ref().map(|r| (r.delivered, r.gave_up, r.attempts)),
            retried_as: t.retried_as.clone(),
            resolved: t.resolved.is_some(),
        }
    }
}

/// Tells in `t`'s story what changed since `before`, as of `now` on `instance`.
pub fn tell(before: &Before, t: &mut TaskRecord, instance: &str, now: u64) {
    let via = t.story.via.take();
    let mut beats: Vec<(BeatKind, String)> = Vec::new();
    if t.dispatch.attempts > before.attempts {
        beats.push((BeatKind::Sent, format!("Sent to KIE (createTask, attempt {})", t.dispatch.attempts)));
    }
    if t.state == TaskState::Queued {
        let note = t.note.clone().unwrap_or_default();
        if t.dispatch.held_back == Some(HeldBack::InDoubt) && before.held_back != Some(HeldBack::InDoubt) {
            beats.push((BeatKind::Refused, note));
        } else if before.sending && t.dispatch.sending_since_ms.is_none() {
            beats.push((BeatKind::Refused, format!("KIE refused it: {note}")));
        }
    }
    if t.state != before.state {
        beats.push((BeatKind::State, state_text(before, t, via)));
    } else if t.kie_task_id.is_some() && !before.kie_task_id {
        beats.push((BeatKind::State, format!("KIE's task id is {}", t.kie_task_id.as_deref().unwrap_or_default())));
    }
    if let Some(a) = &t.archive {
        for (n, x) in a.assets.iter().enumerate() {
            if before.assets.get(n) == Some(&x.state) {
                continue;
            }
            let why = x.last_error.as_deref().unwrap_or("no reason given");
            let text = match x.state {
                AssetState::Pending => continue,
                AssetState::Archived => format!(
                    "Result {} copied to the Library: {} bytes, SHA-256 {}",
                    n + 1,
                    x.bytes.unwrap_or(0),
                    x.sha256.as_deref().unwrap_or("unknown")
                ),
                AssetState::Expired => format!("Result {} expired before the Library had it: {why}", n + 1),
                AssetState::Failed => format!("Result {} could not be copied: {why}", n + 1),
                AssetState::Deleted => format!("Result {}'s Library copy deleted", n + 1),
            };
            beats.push((BeatKind::Library, text));
        }
    }
    if t.folded && !before.folded {
        let cost = t.actual_cost.unwrap_or(t.estimated_cost);
        beats.push((BeatKind::Receipts, format!("Counted in the receipts: {cost} credits")));
    }
    if let Some(s) = &t.receipt_sync
        && Some((s.delivered, s.attempts)) != before.synced
        && s.attempts > 0
    {
        let text = if s.delivered {
            format!("Receipt line synced (attempt {})", s.attempts)
        } else {
            let answer = s.last_status.map(|c| format!("HTTP {c}")).or_else(|| s.last_error.clone()).unwrap_or_default();
            format!("Receipt sync not taken ({answer}); trying again")
        };
        beats.push((BeatKind::Receipts, text));
    }
    if let Some(r) = &t.relay_callback
        && Some((r.delivered, r.gave_up, r.attempts)) != before.relay
        && r.attempts > 0
    {
        let why = r.last_error.as_deref().unwrap_or("no answer");
        let text = if r.delivered {
            format!("Relay callback delivered to the client's callBackUrl (attempt {})", r.attempts)
        } else if r.gave_up {
            format!("Relay callback given up after {} attempts: {why}", r.attempts)
        } else {
            format!("Relay callback not taken: {why}; trying again")
        };
        beats.push((BeatKind::Delivery, text));
    }
    if let Some(new) = t.retried_as.as_ref().filter(|n| before.retried_as.as_ref() != Some(*n)) {
        beats.push((BeatKind::Review, format!("Retried as {new}")));
    }
    if let Some(r) = t.resolved.as_ref().filter(|_| !before.resolved) {
        beats.push((BeatKind::Review, format!("Resolved: {} (by {})", r.how, r.by)));
    }
    for (kind, text) in beats {
        t.story.push(now, instance, kind, text);
    }
}

/// The first beat: who submitted it and from where, what it holds, how it is to be sent.
pub fn submitted(t: &TaskRecord, governed: bool) -> String {
    let by = match t.owner.strip_prefix("key:") {
        Some(key) => format!("Submitted through the relay with key {key}"),
        None => format!("Submitted by {} in the console", t.owner),
    };
    let mut text = by;
    if let Some(old) = &t.retry_of {
        text += &format!(", retrying {old}");
    }
    if let Some(old) = &t.rerun_of {
        text += &format!(", re-running {old} with edits");
    }
    if !t.inputs.is_empty() {
        let from: Vec<String> = t.inputs.iter().map(|i| format!("{} result {}", i.task, i.n)).collect();
        text += &format!(", made from {} in the Library", from.join(", "));
    }
    if let Some(f) = &t.follows {
        text += &match f.n {
            Some(n) => format!(", a follow-up on {} result {n}", f.task),
            None => format!(", a follow-up on {}", f.task),
        };
    }
    let rules = if governed { "under the cost rules that govern it" } else { "(no cost rule governs it)" };
    text += &format!("; holds {} credits {rules}", t.estimated_cost);
    if t.priority != crate::tasks::task::Priority::Normal {
        text += &format!("; priority {}", t.priority.as_str());
    }
    if let Some(by) = t.send_by_ms {
        text += &format!("; to be sent within {} s or it ends", by.saturating_sub(t.created_ms).div_ceil(1000));
    }
    text
}

fn state_text(before: &Before, t: &TaskRecord, via: Option<Via>) -> String {
    let from = via.map(|v| format!(" — {}", v.words())).unwrap_or_default();
    let resolved = if before.held_back == Some(HeldBack::InDoubt) && before.state == TaskState::Queued { "; the send in doubt is resolved" } else { "" };
    let late = if t.completed_late { " (completed after give-up: KIE finished it and charged it)" } else { "" };
    match t.state {
        TaskState::Submitted => format!("KIE accepted it as {}", t.kie_task_id.as_deref().unwrap_or("?")),
        TaskState::Success => {
            let cost = t.actual_cost.map(|c| c.to_string()).unwrap_or_else(|| "?".into());
            let basis = t.charge_basis.map_or("", |b| b.as_str());
            format!("Succeeded with {} result(s); charged {cost} credits ({basis}){late}{from}{resolved}", t.result_urls.len())
        }
        TaskState::Fail | TaskState::Expired => {
            let class = t.fail_class.map_or(t.state.as_str(), |c| c.label());
            let code = t.fail_code.as_deref().map(|c| format!(" (failCode {c})")).unwrap_or_default();
            let word = if t.state == TaskState::Fail { "Failed" } else { "Expired" };
            format!("{word}: {class}{code}: {}{late}{from}{resolved}", t.fail_msg.as_deref().unwrap_or(""))
        }
        s => format!("KIE: {s}{from}{resolved}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_story_keeps_its_first_beat_and_counts_what_it_dropped() {
        let mut s = Story::default();
        for n in 0..MAX_BEATS + 5 {
            s.push(n as u64, "i", BeatKind::Sent, format!("beat {n}"));
        }
        assert_eq!(s.beats.len(), MAX_BEATS);
        assert_eq!(s.dropped, 5);
        assert_eq!(s.beats[0].text, "beat 0", "how it began stays");
        assert_eq!(s.beats[1].text, "beat 6", "the oldest after it went");
        assert_eq!(s.beats.last().map(|b| b.text.as_str()), Some("beat 36"));
    }

    #[test]
    fn a_repeat_counts_on_the_last_beat_and_long_text_is_cut() {
        let mut s = Story::default();
        s.push(1, "a", BeatKind::Callback, "Duplicate callback");
        s.push(2, "b", BeatKind::Callback, "Duplicate callback");
        assert_eq!(s.beats.len(), 1);
        assert_eq!((s.beats[0].times, s.beats[0].at_ms, s.beats[0].instance.as_str()), (2, 2, "b"));
        s.push(3, "a", BeatKind::Callback, "x".repeat(1000));
        assert_eq!(s.beats[1].text.chars().count(), MAX_TEXT);
        assert!(s.beats[1].text.ends_with('…'));
    }

    #[test]
    fn the_difference_a_change_makes_is_told() {
        let mut t = TaskRecord::new("cr_1", "ana", "p", "m", 0);
        let before = Before::of(&t);
        t.dispatch.attempts = 1;
        t.dispatch.sending_since_ms = Some(5);
        tell(&before, &mut t, "i1", 10);
        assert_eq!(t.story.beats.iter().map(|b| (b.kind, b.text.as_str())).collect::<Vec<_>>(), vec![(BeatKind::Sent, "Sent to KIE (createTask, attempt 1)")]);
        let before = Before::of(&t);
        t.dispatch.sending_since_ms = None;
        t.kie_task_id = Some("k9".into());
        t.state = TaskState::Submitted;
        tell(&before, &mut t, "i1", 20);
        assert_eq!(t.story.beats[1].text, "KIE accepted it as k9");
        let before = Before::of(&t);
        t.state = TaskState::Generating;
        t.story.via = Some(Via::Poll);
        tell(&before, &mut t, "i2", 30);
        assert_eq!((t.story.beats[2].text.as_str(), t.story.beats[2].instance.as_str()), ("KIE: generating — from polling recordInfo", "i2"));
        assert_eq!(t.story.via, None, "taken by the beat");
        let before = Before::of(&t);
        tell(&before, &mut t, "i2", 40);
        assert_eq!(t.story.beats.len(), 3, "no change, no beat");
    }
}
