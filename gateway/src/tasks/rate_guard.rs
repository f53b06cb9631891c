//! The rate guard's rules: the limit kinds providers publish, as configuration.
//!
//! - **requests per window** — KIE: 20 new tasks in any 10 s, the rest rejected; also
//!   Moonshot's RPM and RPD;
//! - **concurrent tasks** — at most N running upstream at once (Kling's 3 or 5 sessions,
//!   Moonshot's concurrency tiers);
//! - **tokens per window** — Moonshot's TPM and TPD, counted from an estimate of the input.
//!
//! Written as `20/10s`, `requests:500/1m`, `concurrent:5`, `tokens:64000/1m` (units `s`, `m`,
//! `h`, `d`), several separated by commas. The dispatcher claims every rule before a task leaves
//! (see `lifecycle::limits`), through the store, so the rules hold across all instances.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// One limit the guard keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LimitRule {
    /// At most `limit` new tasks in any sliding `window`.
    Requests { limit: i64, window: Duration },
    /// At most `limit` tasks sent and not yet ended.
    Concurrent { limit: i64 },
    /// At most `limit` estimated input tokens in any sliding `window`.
    Tokens { limit: i64, window: Duration },
}

/// KIE's documented limit.
pub const KIE_DEFAULT: LimitRule = LimitRule::Requests { limit: 20, window: Duration::from_secs(10) };

/// Longest window a rule may have.
const MAX_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most rules at once.
pub const MAX_RULES: usize = 8;

impl fmt::Display for LimitRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitRule::Requests { limit, window } => write!(f, "{limit} requests / {}", span(*window)),
            LimitRule::Concurrent { limit } => write!(f, "{limit} running at once"),
            LimitRule::Tokens { limit, window } => write!(f, "{limit} tokens / {}", span(*window)),
        }
    }
}

/// `10 s`, `1 min`, `1 h`, `1 d`.
pub fn span(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if d.subsec_millis() != 0 || s < 60 || !s.is_multiple_of(60) => format!("{} s", d.as_secs_f64()),
        _ if s.is_multiple_of(86_400) => format!("{} d", s / 86_400),
        _ if s.is_multiple_of(3600) => format!("{} h", s / 3600),
        _ => format!("{} min", s / 60),
    }
}

fn parse_window(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{text:?} must be a number and a unit, like 10s or 1m"))?;
    let secs = match unit.trim() {
        "s" | "" => n,
        "m" | "min" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        other => return Err(format!("unknown time unit {other:?} (use s, m, h or d)")),
    };
    let d = Duration::from_secs(secs);
    if d.is_zero() || d > MAX_WINDOW {
        return Err(format!("a window must be 1 s to 7 d, got {text:?}"));
    }
    Ok(d)
}

fn parse_limit(text: &str) -> Result<i64, String> {
    match text.trim().parse::<i64>() {
        Ok(n) if (1..=1_000_000_000).contains(&n) => Ok(n),
        _ => Err(format!("a limit must be a whole number from 1 to 1,000,000,000, got {text:?}")),
    }
}

impl std::str::FromStr for LimitRule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (kind, rest) = text.split_once(':').unwrap_or(("requests", text));
        let per = |rest: &str| -> Result<(i64, Duration), String> {
            let (n, w) = rest.split_once('/').ok_or_else(|| format!("{text:?} needs a window, like 20/10s"))?;
            Ok((parse_limit(n)?, parse_window(w)?))
        };
        match kind.trim() {
            "requests" => per(rest).map(|(limit, window)| LimitRule::Requests { limit, window }),
            "tokens" => per(rest).map(|(limit, window)| LimitRule::Tokens { limit, window }),
            "concurrent" => Ok(LimitRule::Concurrent { limit: parse_limit(rest)? }),
            other => Err(format!("unknown limit kind {other:?} (use requests, concurrent or tokens)")),
        }
    }
}

/// A comma-separated list of rules (at least one request rule is not required: a provider may
/// limit only concurrency).
pub fn parse_rules(text: &str) -> Result<Vec<LimitRule>, String> {
    let rules = text.split(',').filter(|p| !p.trim().is_empty()).map(str::parse).collect::<Result<Vec<LimitRule>, String>>()?;
    if rules.is_empty() || rules.len() > MAX_RULES {
        return Err(format!("give 1 to {MAX_RULES} rate guard rules, like 20/10s or concurrent:5"));
    }
    Ok(rules)
}

/// The language models' default limits, in seed 003's shape (concurrency, RPM, TPM).
pub const CHAT_DEFAULT: &str = "concurrent:50,requests:200/1m,tokens:2000000/1m";

/// The language models' rules (`RATE_GUARD_CHAT`): as [`parse_rules`], and a limit may be
/// `unlimited` (that rule is then not kept), so `tokens:unlimited/1d` reads as seed 003 does.
/// `none` keeps no rule at all.
pub fn parse_chat_rules(text: &str) -> Result<Vec<LimitRule>, String> {
    if text.trim() == "none" {
        return Ok(Vec::new());
    }
    let kept: Vec<&str> = text.split(',').filter(|p| !p.trim().is_empty()).filter(|p| !p.contains("unlimited")).collect();
    if kept.is_empty() {
        return Ok(Vec::new());
    }
    parse_rules(&kept.join(","))
}

/// Longest model name a per-model rule may name.
const MAX_MODEL_NAME: usize = 100;

/// Per-model chat rules (`RATE_GUARD_CHAT_MODELS`): `model=rules;model=rules`, each `rules`
/// as [`parse_chat_rules`], e.g. `gemini-3-pro=concurrent:5,requests:60/1m`.
pub fn parse_chat_model_rules(text: &str) -> Result<Vec<(String, Vec<LimitRule>)>, String> {
    let mut out: Vec<(String, Vec<LimitRule>)> = Vec::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (model, rules) = part.split_once('=').ok_or_else(|| format!("{part:?} must be model=rules, like gemini-3-pro=concurrent:5"))?;
        let model = model.trim();
        if model.is_empty() || model.len() > MAX_MODEL_NAME || !model.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._/".contains(&b)) {
            return Err(format!("{model:?} is not a model name"));
        }
        if out.iter().any(|(m, _)| m == model) {
            return Err(format!("{model} is named twice"));
        }
        out.push((model.to_string(), parse_chat_rules(rules).map_err(|e| format!("{model}: {e}"))?));
    }
    if out.len() > MAX_RULES * 4 {
        return Err(format!("at most {} models", MAX_RULES * 4));
    }
    Ok(out)
}

/// Records the rate guard's rules in the audit log when an instance starts with rules other
/// than the last ones recorded (the rules are configuration: `RATE_GUARD`). Returns the rules
/// before the change, if they changed.
pub async fn note_config(store: &dyn crate::Store, rules: &[LimitRule]) -> crate::StoreResult<Option<String>> {
    let now = rules.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    let changed = crate::store::edit_doc(store, "rateguard:config", |last: &mut Option<String>| {
        Ok::<_, crate::StoreError>(if last.as_deref() == Some(now.as_str()) { None } else { Some(last.replace(now.clone())) })
    })
    .await?;
    let Some(before) = changed else { return Ok(None) };
    crate::team::audit::append(store, "system", "instance start (RATE_GUARD)", "rate guard changed", "rate guard", before.clone(), Some(now)).await?;
    Ok(Some(before.unwrap_or_default()))
}

/// The input tokens a task is counted as by a token rule: about four characters a token.
pub fn estimate_tokens(input: &serde_json::Value) -> i64 {
    let chars = serde_json::to_string(input).map(|s| s.chars().count()).unwrap_or(0);
    (chars as i64 + 3) / 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_in_every_kind() {
        assert_eq!(parse_rules("20/10s").unwrap(), vec![KIE_DEFAULT]);
        assert_eq!(
            parse_rules("requests:500/1m, concurrent:5, tokens:64000/1m").unwrap(),
            vec![
                LimitRule::Requests { limit: 500, window: Duration::from_secs(60) },
                LimitRule::Concurrent { limit: 5 },
                LimitRule::Tokens { limit: 64_000, window: Duration::from_secs(60) },
            ]
        );
        assert_eq!("requests:100/1d".parse::<LimitRule>().unwrap(), LimitRule::Requests { limit: 100, window: Duration::from_secs(86_400) });
    }

    #[test]
    fn chat_rules_read_seed_003s_shape() {
        let rules = parse_chat_rules("concurrent:50,requests:200/1m,tokens:2000000/1m,tokens:unlimited/1d").unwrap();
        assert_eq!(rules.len(), 3, "the unlimited rule is not kept");
        assert_eq!(parse_chat_rules(CHAT_DEFAULT).unwrap(), rules);
        assert!(parse_chat_rules("none").unwrap().is_empty());
        assert!(parse_chat_rules("tokens:lots/1m").is_err());
        let per_model = parse_chat_model_rules("gemini-3-pro=concurrent:5,requests:60/1m; gemini-3-flash=tokens:100000/1m").unwrap();
        assert_eq!(per_model.len(), 2);
        assert_eq!(per_model[0], ("gemini-3-pro".to_string(), vec![LimitRule::Concurrent { limit: 5 }, LimitRule::Requests { limit: 60, window: Duration::from_secs(60) }]));
        for bad in ["gemini", "=concurrent:5", "a b=concurrent:5", "x=concurrent:5;x=concurrent:6", "x=bursts:3"] {
            assert!(parse_chat_model_rules(bad).is_err(), "{bad}");
        }
        assert!(parse_chat_model_rules("").unwrap().is_empty());
    }

    #[test]
    fn bad_rules_say_what_to_fix() {
        for bad in ["", "20", "0/10s", "20/0s", "20/10x", "bursts:3", "concurrent:-1", "20/30d"] {
            let e = parse_rules(bad).unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
        assert!(parse_rules("20/10x").unwrap_err().contains("unit"));
    }

    #[test]
    fn rules_print_for_people() {
        assert_eq!(KIE_DEFAULT.to_string(), "20 requests / 10 s");
        assert_eq!(LimitRule::Tokens { limit: 5, window: Duration::from_secs(60) }.to_string(), "5 tokens / 1 min");
        assert_eq!(span(Duration::from_millis(10_250)), "10.25 s");
    }
}
