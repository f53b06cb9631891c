//! Deadlines: a task may carry "send by" (the relay's `X-Control-Room-Send-By`, the
//! composer's "Send within"). If the queue cannot send it in time, it ends `expired` with
//! "deadline passed in the queue" and its holds are released: nothing is paid for work nobody
//! wants any more.
//!
//! Checked where a late send could happen and where a late task could hide:
//! - the dispatcher, for every task of its round, and again for the one it is about to send
//!   (after the rate guard admitted it, before it is marked sending), so none leaves late;
//! - the poller's sweep, which walks the whole queue in turn, so a task deep in a lane the
//!   dispatcher does not reach yet ends within a sweep or two of its deadline.
//!
//! Ending races the dispatcher through the record's compare-and-set, like a cancel: only a
//! task still queued and not being sent is ended.

use std::time::Duration;

use super::Lifecycle;
use crate::money::credits::Credits;
use crate::store::{StoreResult, now_ms};
use crate::tasks::task::{FailClass, TaskRecord, TaskState};

/// Furthest ahead a deadline may be set.
pub const MAX_AHEAD: Duration = Duration::from_secs(7 * 24 * 3600);

/// What a deadline may be written as, for error messages.
pub const SEND_BY_RULE: &str = "a UTC time (2026-12-03T21:00:00Z) or a wait from now (90s, 15m, 2h), in the future and at most 7 days ahead";

/// `send by` as written by a person or a program: a UTC time `YYYY-MM-DDTHH:MM:SSZ` or a wait
/// from `now_ms` (`90s`, `15m`, `2h`). Returns the deadline in Unix ms, or why it is refused.
pub fn parse_send_by(s: &str, now_ms: u64) -> Result<u64, String> {
    let s = s.trim();
    let refuse = || format!("send-by {s:?} is not {SEND_BY_RULE}");
    let at = match s.char_indices().last() {
        Some((i, unit @ ('s' | 'm' | 'h'))) if s[..i].bytes().all(|b| b.is_ascii_digit()) && i > 0 => {
            let n: u64 = s[..i].parse().map_err(|_| refuse())?;
            let secs = n.checked_mul(match unit {
                's' => 1,
                'm' => 60,
                _ => 3600,
            });
            now_ms.checked_add(secs.and_then(|s| s.checked_mul(1000)).ok_or_else(refuse)?).ok_or_else(refuse)?
        }
        _ => utc_time(s).ok_or_else(refuse)?,
    };
    if at <= now_ms || at - now_ms > MAX_AHEAD.as_millis() as u64 {
        return Err(refuse());
    }
    Ok(at)
}

/// `YYYY-MM-DDTHH:MM:SSZ` → Unix ms.
fn utc_time(s: &str) -> Option<u64> {
    let (day, time) = s.strip_suffix('Z')?.split_once('T')?;
    let day = crate::money::receipts::parse_day(day)?;
    let mut hms = time.splitn(3, ':').map(|p| if p.len() == 2 { p.parse::<u64>().ok() } else { None });
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    (h < 24 && m < 60 && sec < 60).then(|| day + ((h * 60 + m) * 60 + sec) * 1000)
}

/// Whether `t` is queued here past its deadline.
pub fn past_deadline(t: &TaskRecord, now_ms: u64) -> bool {
    t.state == TaskState::Queued && t.send_by_ms.is_some_and(|d| d <= now_ms)
}

impl Lifecycle {
    /// Ends `t` `expired` if it is past its deadline and still queued here, not being sent;
    /// its holds are released. Returns whether it ended it.
    pub(super) async fn end_past_deadline(&self, t: &TaskRecord) -> StoreResult<bool> {
        let now = now_ms();
        if !past_deadline(t, now) {
            return Ok(false);
        }
        let ended = self
            .modify(&t.id, |t| {
                if !past_deadline(t, now) || t.dispatch.sending_since_ms.is_some() {
                    return false;
                }
                let late = now.saturating_sub(t.send_by_ms.unwrap_or(now)) / 1000;
                t.state = TaskState::Expired;
                t.fail_class = Some(FailClass::DeadlinePassed);
                t.fail_msg = Some(format!("Deadline passed in the queue: not sent by its send-by time ({late} s ago); nothing was sent or charged"));
                t.actual_cost = Some(Credits::ZERO);
                t.finished_ms = Some(now);
                t.note = None;
                true
            })
            .await?;
        if ended.is_none() {
            return Ok(false);
        }
        self.release_holds(&t.id, Credits::ZERO).await?;
        tracing::info!(task = %t.id, "deadline passed in the queue; ended, holds released");
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_by_is_a_utc_time_or_a_wait_in_the_future_within_a_week() {
        let now = 1_764_795_600_000; // 2025-12-03T21:00:00Z
        assert_eq!(parse_send_by("90s", now), Ok(now + 90_000));
        assert_eq!(parse_send_by(" 15m ", now), Ok(now + 900_000));
        assert_eq!(parse_send_by("2h", now), Ok(now + 7_200_000));
        assert_eq!(parse_send_by("2025-12-03T21:30:05Z", now), Ok(now + 1_805_000));
        for bad in ["", "m", "0s", "-5m", "1.5h", "169h", "2025-12-03T20:59:59Z", "2025-12-03T21:30:05", "2025-12-03 21:30:05Z", "2025-12-03T24:00:00Z", "2025-02-30T10:00:00Z", "99999999999999999999h"] {
            let e = parse_send_by(bad, now).unwrap_err();
            assert!(e.contains("at most 7 days ahead"), "{bad}: {e}");
        }
    }
}
