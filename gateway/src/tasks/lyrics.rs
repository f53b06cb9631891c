//! A Suno track's timestamped lyrics: each word and when it is sung, read from KIE once (by
//! KIE's ids of the song and the track) and kept while KIE keeps the track, for the relay's
//! `get-timestamped-lyrics` and the task's story. Reading them costs no credits and makes no
//! task.

use serde_json::Value;
use std::time::Duration;

use crate::kie::{Family, KieError};
use crate::store::{Store, StoreError, StoreResult, now_ms};
use crate::tasks::lifecycle::Lifecycle;
use crate::tasks::lifecycle::follow_up::{PARENT_KEPT, still_at_kie};
use crate::tasks::task::{TaskRecord, TaskState};

/// The most of KIE's answer kept and passed on.
pub const MAX_LYRICS_BYTES: usize = 512 * 1024;

/// Why a track's lyrics cannot be had; nothing was kept.
#[derive(Debug, thiserror::Error)]
pub enum LyricsError {
    /// The track is not one whose lyrics KIE has (what to fix is said).
    #[error("{0}")]
    Invalid(String),
    #[error("Not configured: the Control Room has no KIE key")]
    NotConfigured,
    #[error("KIE did not give the lyrics: {0}")]
    Kie(#[from] KieError),
    #[error("KIE's lyrics are over {MAX_LYRICS_BYTES} bytes")]
    TooLarge,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl LyricsError {
    /// The HTTP status that says it (KIE's own code for KIE's refusals).
    pub fn code(&self) -> u16 {
        match self {
            LyricsError::Invalid(_) => 422,
            LyricsError::Kie(e) => e.http_status(),
            LyricsError::TooLarge => 502,
            LyricsError::NotConfigured | LyricsError::Store(_) => 503,
        }
    }
}

fn key(task: &str, n: usize) -> String {
    format!("suno:lyrics:{task}/{n}")
}

/// The lyrics kept for track `n` of `task`, if they were read.
pub async fn kept(store: &dyn Store, task: &str, n: usize) -> StoreResult<Option<Value>> {
    Ok(store.kv_get(&key(task, n)).await?.and_then(|b| serde_json::from_slice(&b).ok()))
}

/// Track `n`'s lyrics of `t` (a task the caller reaches): kept, else read from KIE and kept
/// until KIE deletes the track.
pub async fn timestamped(lc: &Lifecycle, t: &TaskRecord, n: usize) -> Result<Value, LyricsError> {
    let invalid = |why: String| Err(LyricsError::Invalid(why));
    if t.family != Family::Suno || t.state != TaskState::Success {
        return invalid(format!("{} is not a Suno song that succeeded; only its tracks have timestamped lyrics", t.id));
    }
    let (Some(kie_task), Some(track)) = (t.kie_task_id.as_deref(), t.kie_result_ids.get(n).filter(|id| !id.is_empty())) else {
        return invalid(format!("{} has no track {n} whose KIE id is on record here (its tracks count from 0)", t.id));
    };
    let store = lc.store().as_ref();
    if let Some(v) = kept(store, &t.id, n).await? {
        return Ok(v);
    }
    let now = now_ms();
    if !still_at_kie(t, now) {
        return invalid(format!("{} ended more than {} days ago and KIE no longer keeps its tracks", t.id, PARENT_KEPT.as_secs() / 86_400));
    }
    let kie = lc.kie().ok_or(LyricsError::NotConfigured)?;
    let data = kie.timestamped_lyrics(kie_task, track).await?;
    let bytes = serde_json::to_vec(&data).map_err(|e| LyricsError::Invalid(e.to_string()))?;
    if bytes.len() > MAX_LYRICS_BYTES {
        return Err(LyricsError::TooLarge);
    }
    let age = Duration::from_millis(now.saturating_sub(t.finished_ms.unwrap_or(t.created_ms)));
    let kept_for = PARENT_KEPT.saturating_sub(age).max(Duration::from_secs(60));
    store.kv_set(&key(&t.id, n), &bytes, Some(kept_for)).await?;
    Ok(data)
}

/// The words of KIE's answer as lines of `(start second, text)`: a new line at each line break
/// KIE writes in a word, words without a time joined to the line they are in.
pub fn lines(data: &Value) -> Vec<(f64, String)> {
    let mut out: Vec<(f64, String)> = Vec::new();
    let mut open = true;
    for w in data.get("alignedWords").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
        let Some(word) = w.get("word").and_then(Value::as_str) else { continue };
        let start = w.get("startS").and_then(Value::as_f64).unwrap_or(0.0);
        for (i, part) in word.split('\n').enumerate() {
            if i > 0 {
                open = false;
            }
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            match out.last_mut() {
                Some((_, line)) if open => {
                    line.push(' ');
                    line.push_str(part);
                }
                _ => {
                    out.push((start, part.to_string()));
                    open = true;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn words_become_timed_lines_at_kies_line_breaks() {
        let data = json!({"alignedWords": [
            {"word": "[Verse]\nThe ", "startS": 0.5, "endS": 0.9},
            {"word": "boats ", "startS": 1.0, "endS": 1.3},
            {"word": "come\n", "startS": 1.4, "endS": 1.8},
            {"word": "home", "startS": 2.0, "endS": 2.4},
            {"nothing": true},
        ]});
        assert_eq!(lines(&data), [(0.5, "[Verse]".to_string()), (0.5, "The boats come".to_string()), (2.0, "home".to_string())]);
        assert!(lines(&json!({})).is_empty(), "an instrumental has none");
    }
}
