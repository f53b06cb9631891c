//! The audit log: an append-only record of what people changed — sign-ins (and failed ones),
//! users and roles, relay keys, cost rules, the rate guard, retries. Each entry says who, when,
//! from where, what, and the value before and after.
//!
//! Entries go to the store's append-only log ([`Store::log_append`]): numbered, never edited,
//! the newest [`KEEP`] kept. [`search`] filters them; [`csv`] exports them.

use serde::{Deserialize, Serialize};

use crate::team::accounts::Actor;
use crate::store::{MAX_LOG_PAGE, Store, StoreError, StoreResult, now_ms};

const LOG: &str = "audit";
/// Entries kept (the oldest beyond this are dropped).
pub const KEEP: usize = 100_000;
/// Most entries one search examines before it returns a short page with a cursor.
const SCAN_CAP: usize = 5_000;
/// Longest value kept for a field; longer ones are cut, marked with `…`.
const MAX_FIELD: usize = 2_000;

/// One entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Its number in the log (filled in when read).
    #[serde(default, skip_serializing)]
    pub seq: u64,
    pub at_ms: u64,
    /// An email, `cli`, or `system`.
    pub who: String,
    /// A client address, `local shell` or `instance`.
    pub from: String,
    /// What happened, in the product's words: `sign-in`, `sign-in refused`, `role changed`…
    pub action: String,
    /// What it happened to: a user, a relay key, a cost rule's target, a task.
    pub target: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

fn cut(s: &str) -> String {
    if s.len() <= MAX_FIELD {
        return s.to_string();
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Appends one entry.
pub async fn record(store: &dyn Store, by: &Actor, action: &str, target: &str, before: Option<String>, after: Option<String>) -> StoreResult<()> {
    append(store, &by.who, &by.from, action, target, before, after).await
}

/// Appends one entry for someone who is not (yet) an [`Actor`]: a refused sign-in, the system.
pub async fn append(store: &dyn Store, who: &str, from: &str, action: &str, target: &str, before: Option<String>, after: Option<String>) -> StoreResult<()> {
    let entry = AuditEntry {
        seq: 0,
        at_ms: now_ms(),
        who: cut(who),
        from: cut(from),
        action: action.to_string(),
        target: cut(target),
        before: before.as_deref().map(cut),
        after: after.as_deref().map(cut),
    };
    let bytes = serde_json::to_vec(&entry).map_err(|e| StoreError::Invalid(e.to_string()))?;
    store.log_append(LOG, &bytes, KEEP).await?;
    Ok(())
}

/// What to look for; empty fields match everything. Text matches are case-insensitive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFilter {
    pub who: Option<String>,
    pub action: Option<String>,
    /// Anywhere in the target, before or after.
    pub text: Option<String>,
    pub since_ms: Option<u64>,
}

impl AuditFilter {
    fn matches(&self, e: &AuditEntry) -> bool {
        let has = |hay: &str, needle: &Option<String>| needle.as_deref().map(str::trim).filter(|n| !n.is_empty()).is_none_or(|n| hay.to_lowercase().contains(&n.to_lowercase()));
        let text = format!("{}\n{}\n{}", e.target, e.before.as_deref().unwrap_or(""), e.after.as_deref().unwrap_or(""));
        has(&e.who, &self.who) && has(&e.action, &self.action) && has(&text, &self.text) && self.since_ms.is_none_or(|s| e.at_ms >= s)
    }
}

/// A page of matching entries, newest first, and where the next page starts (`None`: no more).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next_before: Option<u64>,
}

/// Up to `limit` entries matching `filter` with a number below `before`, newest first.
pub async fn search(store: &dyn Store, filter: &AuditFilter, before: Option<u64>, limit: usize) -> StoreResult<AuditPage> {
    let limit = limit.clamp(1, MAX_LOG_PAGE);
    let mut page = AuditPage::default();
    let mut cursor = before;
    let mut scanned = 0;
    loop {
        let batch = store.log_read(LOG, cursor, 500).await?;
        let Some(last) = batch.last().map(|e| e.seq) else { return Ok(page) };
        for raw in batch {
            scanned += 1;
            let mut e: AuditEntry = serde_json::from_slice(&raw.data).map_err(|err| StoreError::Corrupt(format!("audit entry {}: {err}", raw.seq)))?;
            e.seq = raw.seq;
            // Entries are in time order, so nothing older can match a `since`.
            if filter.since_ms.is_some_and(|s| e.at_ms < s) {
                return Ok(page);
            }
            if filter.matches(&e) {
                page.entries.push(e);
                if page.entries.len() == limit {
                    page.next_before = Some(raw.seq);
                    return Ok(page);
                }
            }
        }
        cursor = Some(last);
        if scanned >= SCAN_CAP {
            page.next_before = cursor;
            return Ok(page);
        }
    }
}

/// Every entry matching `filter`, newest first, at most `max` (for an export).
pub async fn export(store: &dyn Store, filter: &AuditFilter, max: usize) -> StoreResult<Vec<AuditEntry>> {
    let mut entries = Vec::new();
    let mut before = None;
    loop {
        let page = search(store, filter, before, MAX_LOG_PAGE).await?;
        entries.extend(page.entries);
        match page.next_before {
            Some(b) if entries.len() < max => before = Some(b),
            _ => break,
        }
    }
    entries.truncate(max);
    Ok(entries)
}

/// One CSV field: quoted, and defused so that a spreadsheet does not run it as a formula.
pub fn field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_string() };
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `ms` since the epoch as an RFC 3339 UTC time, to the second.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// [`utc`]'s text back to ms since the epoch (`None` if it is not in that form).
pub fn utc_ms(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 20 || [b[4], b[7], b[10], b[13], b[16], b[19]] != *b"--T::Z" {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, m, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 59 {
        return None;
    }
    // A civil date to days (Howard Hinnant's algorithm, the inverse of `utc`'s).
    let y = year - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from((days * 86_400 + h * 3600 + m * 60 + s) * 1000).ok()
}

/// RFC 4180 CSV with a header row; times in UTC (RFC 3339).
pub fn csv(entries: &[AuditEntry]) -> String {
    let mut out = String::from("seq,time_utc,who,from,action,target,before,after\r\n");
    for e in entries {
        let row = [
            e.seq.to_string(),
            utc(e.at_ms),
            e.who.clone(),
            e.from.clone(),
            e.action.clone(),
            e.target.clone(),
            e.before.clone().unwrap_or_default(),
            e.after.clone().unwrap_or_default(),
        ];
        out.push_str(&row.iter().map(|f| field(f)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(who: &str, action: &str, target: &str) -> AuditEntry {
        AuditEntry { seq: 1, at_ms: 0, who: who.into(), from: "127.0.0.1".into(), action: action.into(), target: target.into(), before: Some("viewer".into()), after: Some("admin".into()) }
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let text = csv(&[entry("ana@studio.test", "role changed", "=HYPERLINK(\"x\")")]);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("seq,time_utc,who,from,action,target,before,after"));
        let row = lines.next().unwrap_or_default();
        assert!(row.contains("\"'=HYPERLINK(\"\"x\"\")\""), "{row}");
        assert!(row.starts_with("\"1\",\"1970-01-01T00:00:00Z\",\"ana@studio.test\""), "{row}");
    }

    #[test]
    fn utc_times_are_civil_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_795_305_600_000 + 3_723_000), "2026-11-22T01:02:03Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00Z");
        for ms in [0, 951_782_400_000, 1_795_305_600_000 + 3_723_000, 4_102_444_799_000] {
            assert_eq!(utc_ms(&utc(ms)), Some(ms), "{}", utc(ms));
        }
        for bad in ["", "2026-11-22 01:02:03Z", "2026-13-01T00:00:00Z", "2026-11-22T24:00:00Z", "1969-12-31T23:59:59Z", "2026-11-22T01:02:03"] {
            assert_eq!(utc_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn filter_matches_each_field_case_insensitively() {
        let e = entry("ana@studio.test", "role changed", "bo@studio.test");
        assert!(AuditFilter { who: Some("ANA".into()), ..Default::default() }.matches(&e));
        assert!(AuditFilter { text: Some("admin".into()), ..Default::default() }.matches(&e), "after is searched");
        assert!(!AuditFilter { action: Some("sign-in".into()), ..Default::default() }.matches(&e));
        assert!(!AuditFilter { since_ms: Some(1), ..Default::default() }.matches(&e));
    }
}
