//! What a chat call may cost, decided here before anything is sent.
//!
//! The rule: **what is sent to KIE can never cost more than what was reserved.** A chat call's
//! cost is its prompt plus what the model writes, so the console decides the answer's length
//! itself instead of trusting an estimate the caller controls:
//!
//! - every field KIE takes that sets or raises the answer's length is read: `max_tokens`,
//!   `max_completion_tokens` (each 1..=[`MAX_OUTPUT_TOKENS`]) and `n` (1..=[`MAX_CHOICES`],
//!   priced as `n` answers); fields that set a thinking budget in a shape this console cannot
//!   price ([`UNPRICED`]) are refused with 422 naming the field. `reasoning_effort` and
//!   `include_thoughts` pass: a thinking model's thoughts are output tokens, inside the limit;
//! - the body's `model`, if any, must be the path's model, so the path's limits and prices
//!   are the ones that apply to what runs;
//! - the limit **sent** is the one asked for (or the model's `output_tokens`, or
//!   [`DEFAULT_OUTPUT_TOKENS`]), lowered to what the lowest per-job cap that governs the caller
//!   affords; the day and total caps then reserve the whole worst case or refuse (402).
//!   A lowered limit is reported to the caller (`X-Control-Room-Clamped: max_tokens=N`);
//! - the worst case is priced from an upper bound of the prompt's tokens (a token is at least
//!   one byte of text, so the bytes of the messages bound them; each media part counts
//!   [`MEDIA_PART_TOKENS`]), never from the four-characters-a-token estimate;
//! - a model with no known token price holds the per-job cap and is sent at most its own
//!   `output_tokens`: without a price no number of tokens can be turned into credits, so the
//!   catalog's limit is the bound (a catalog with `per_1m_tokens` makes the guarantee exact).

use serde_json::Value;

use crate::money::catalog::{ChatApi, DEFAULT_OUTPUT_TOKENS, Model};
use crate::money::credits::Credits;

/// Largest answer limit accepted.
pub const MAX_OUTPUT_TOKENS: u64 = 1_000_000;
/// Most answers (`n`) one call may ask for.
pub const MAX_CHOICES: u64 = 8;
/// What one media part (`image_url`: an image, or a clip, a sound or a PDF by link) counts as
/// in the prompt's bound.
pub const MEDIA_PART_TOKENS: u64 = 2_000;
/// Fields that would set the answer's (or its thinking's) length in a way this console cannot
/// price or bound: refused, named.
pub const UNPRICED: [&str; 9] = ["thinking", "thinking_budget", "thinking_config", "thinking_tokens", "reasoning", "max_output_tokens", "generationConfig", "generation_config", "extra_body"];

/// The answer-length fields of the APIs other than `api` ([`ChatApi::limit_fields`]): sent to
/// `api`, KIE would pass them on unread by this console.
fn other_length_fields(api: ChatApi) -> impl Iterator<Item = &'static str> {
    ChatApi::ALL.into_iter().flat_map(ChatApi::limit_fields).copied().filter(move |f| !api.limit_fields().contains(f))
}

/// The fields [`read`] refuses in `api` whatever their value (the relay's description bans
/// their names): [`UNPRICED`], less those `api` takes in some form ([`ChatApi::prices`]).
pub fn refused_in(api: ChatApi) -> Vec<&'static str> {
    let simplest = serde_json::json!({ "effort": "low" });
    let choices = (!api.takes_choices()).then_some("n");
    let mut refused: Vec<&str> = UNPRICED.into_iter().filter(|f| !api.prices(f, &simplest)).chain(other_length_fields(api)).chain(choices).collect();
    refused.sort_unstable();
    refused.dedup();
    refused
}

/// What the caller asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// The answer-length field the caller used (`max_tokens` when none): the one sent.
    pub field: &'static str,
    /// The smallest limit the caller gave, if any.
    pub asked: Option<u64>,
    /// How many answers (`n`).
    pub n: u64,
}

/// Reads what a body of `api` asks for, or says which field cannot be taken (a sentence
/// naming it).
pub fn read(body: &Value, path_model: &str, api: ChatApi) -> Result<Ask, String> {
    match body.get("model") {
        None | Some(Value::Null) => {}
        Some(Value::String(m)) if m == path_model => {}
        Some(other) => return Err(format!("model in the body ({}) must be the path's model ({path_model}) or absent", short(other))),
    }
    let length = api.limit_fields()[0];
    // Another API's length field would pass to KIE unread by this console: refused.
    if let Some(field) = other_length_fields(api).find(|f| body.get(*f).is_some_and(|v| !v.is_null())) {
        return Err(format!("{field} is not this API's length field: set the answer's length with {length}"));
    }
    if let Some(field) = UNPRICED.iter().find(|f| body.get(**f).is_some_and(|v| !v.is_null() && !api.prices(f, v))) {
        return Err(format!("{field} cannot be priced by the Control Room: leave it out (the answer's length is set with {length}, thinking included)"));
    }
    let mut ask = Ask { field: length, asked: None, n: 1 };
    let mut used = None;
    for field in api.limit_fields().iter().copied() {
        match body.get(field) {
            None | Some(Value::Null) => {}
            Some(v) => {
                let n = whole(v).filter(|n| (1..=MAX_OUTPUT_TOKENS).contains(n)).ok_or_else(|| format!("{field} must be a whole number from 1 to {MAX_OUTPUT_TOKENS}"))?;
                ask.asked = Some(ask.asked.map_or(n, |a| a.min(n)));
                used.get_or_insert(field);
            }
        }
    }
    ask.field = used.unwrap_or(length);
    match body.get("n") {
        None | Some(Value::Null) => {}
        Some(_) if !api.takes_choices() => return Err("n is not a field of this API: it answers once a call".into()),
        Some(v) => ask.n = whole(v).filter(|n| (1..=MAX_CHOICES).contains(n)).ok_or_else(|| format!("n must be a whole number from 1 to {MAX_CHOICES}"))?,
    }
    Ok(ask)
}

fn short(v: &Value) -> String {
    v.to_string().chars().take(60).collect()
}

/// An upper bound of the prompt's tokens: the bytes of what KIE reads as the prompt in `api`
/// (the messages, and `system`, `tools`… — [`ChatApi::prompt_fields`]), each media part
/// counted at [`MEDIA_PART_TOKENS`].
pub fn prompt_bound(body: &Value, api: ChatApi) -> u64 {
    let bytes = |k: &str| body.get(k).map_or(0, |v| serde_json::to_vec(v).map_or(0, |b| b.len() as u64));
    let text = |t: &str| t == "text" || t == "input_text";
    let media = body.get(api.turns_field()).and_then(Value::as_array).map_or(0, |ms| {
        ms.iter().filter_map(|m| m.get("content").and_then(Value::as_array)).flatten().filter(|p| p.get("type").and_then(Value::as_str).is_some_and(|t| !text(t))).count() as u64
    });
    (api.prompt_fields().iter().map(|f| bytes(f)).sum::<u64>() + media * MEDIA_PART_TOKENS).max(1)
}

/// The decision for one call: the limit sent, what it may cost at most, and whether the
/// caller was given less than asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub ask: Ask,
    /// The answer limit sent to KIE (per answer).
    pub limit: u64,
    /// The prompt's bound.
    pub prompt_bound: u64,
    /// The worst case at the model's price (`None`: no known price).
    pub worst_case: Option<Credits>,
    /// `field=limit` when the limit sent is below the one asked (or the default).
    pub clamped: Option<String>,
}

/// Why no limit fits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooDear {
    /// What the smallest answer (one token) would cost.
    pub least: Credits,
    pub cap: Credits,
}

/// A JSON number with no fraction (`5` or `5.0`, both integers to JSON Schema), as a count.
fn whole(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u32::MAX as f64).map(|f| f as u64))
}

/// Decides the limit for `ask` under the lowest per-job cap (`cap`), for this prompt.
pub fn decide(model: &Model, ask: Ask, prompt_bound: u64, cap: Option<Credits>) -> Result<Decision, TooDear> {
    let default = u64::from(model.output_tokens.unwrap_or(DEFAULT_OUTPUT_TOKENS));
    let wanted = ask.asked.unwrap_or(default);
    let cost = |out: u64| model.chat_cost(prompt_bound, out.saturating_mul(ask.n));
    let limit = match (cost(1), cap) {
        // No price: the catalog's own limit is the bound.
        (None, _) => wanted.min(default),
        (Some(_), None) => wanted,
        (Some(least), Some(cap)) if least > cap => return Err(TooDear { least, cap }),
        (Some(_), Some(cap)) => {
            // The largest limit whose worst case fits the cap (cost grows with the limit).
            let (mut lo, mut hi) = (1, wanted);
            while lo < hi {
                let mid = lo + (hi - lo).div_ceil(2);
                if cost(mid).is_some_and(|c| c <= cap) { lo = mid } else { hi = mid - 1 }
            }
            lo
        }
    };
    let clamped = (limit < wanted).then(|| format!("{}={limit}", ask.field));
    Ok(Decision { worst_case: cost(limit).map(|c| c.max(Credits(1))), ask, limit, prompt_bound, clamped })
}

/// The body as sent: the caller's, with the decided limit in the field the caller used (the
/// other length field removed, so KIE reads one) and `model` as the path names it.
pub fn rewrite(body: &Value, d: &Decision, api: ChatApi) -> Value {
    let mut out = body.clone();
    if let Value::Object(map) = &mut out {
        for f in api.limit_fields() {
            map.remove(*f);
        }
        map.insert(d.ask.field.to_string(), Value::from(d.limit));
        // `n` as the whole number it was read as (`2.0` is sent as `2`).
        if map.get("n").is_some_and(|v| !v.is_null()) {
            map.insert("n".into(), Value::from(d.ask.n));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn priced(output_per_1m: f64) -> Model {
        serde_json::from_value(json!({ "id": "m", "category": "language", "provider": "p", "purpose": "x", "price": { "per_1m_tokens": { "input": 100.0, "output": output_per_1m } }, "output_tokens": 1000 })).expect("a model")
    }

    #[test]
    fn the_responses_api_sets_its_length_with_max_output_tokens_and_may_ask_for_reasoning_effort() {
        let r = ChatApi::Responses;
        let ask = read(&json!({ "max_output_tokens": 700, "reasoning": { "effort": "high" } }), "m", r).expect("its own length field, and an effort");
        assert_eq!((ask.field, ask.asked), ("max_output_tokens", Some(700)));
        assert_eq!(read(&json!({}), "m", r).expect("read").field, "max_output_tokens", "the field sent when none is set");
        let e = read(&json!({ "reasoning": { "effort": "high", "max_tokens": 90000 } }), "m", r).expect_err("a reasoning budget it cannot price");
        assert!(e.starts_with("reasoning cannot be priced") && e.contains("max_output_tokens"), "{e}");
        assert!(read(&json!({ "max_output_tokens": 700 }), "m", ChatApi::Completions).is_err(), "not a chat completions field");
        let m = priced(2000.0);
        let e = read(&json!({ "max_output_tokens": 100, "max_tokens": 5 }), "m", r).expect_err("another API's length field");
        assert!(e.starts_with("max_tokens is not this API's length field"), "{e}");
        let d = decide(&m, read(&json!({ "max_output_tokens": 100000 }), "m", r).expect("read"), 10, None).expect("fits");
        let sent = rewrite(&json!({ "max_output_tokens": 100000, "input": "hi" }), &d, r);
        assert_eq!((sent["max_output_tokens"].as_u64(), sent.get("max_tokens")), (Some(100000), None));
        // Its prompt is `input` and `instructions`, a picture counted as media.
        let body = json!({ "instructions": "Be brief.", "input": [{ "role": "user", "content": [{ "type": "input_text", "text": "what is this" }, { "type": "input_image", "image_url": "https://x/y.png" }] }] });
        assert!(prompt_bound(&body, r) >= MEDIA_PART_TOKENS + 20);
        assert!(prompt_bound(&body, ChatApi::Completions) < MEDIA_PART_TOKENS, "chat completions reads messages, not input");
    }

    #[test]
    fn every_length_field_is_read_and_the_smallest_wins() {
        let ask = read(&json!({ "max_completion_tokens": 500, "max_tokens": 900 }), "m", ChatApi::Completions).expect("read");
        assert_eq!((ask.field, ask.asked, ask.n), ("max_tokens", Some(500), 1));
        let ask = read(&json!({ "max_completion_tokens": 100000, "n": 3 }), "m", ChatApi::Completions).expect("read");
        assert_eq!((ask.field, ask.asked, ask.n), ("max_completion_tokens", Some(100000), 3));
        let ask = read(&json!({ "max_tokens": 900.0, "n": 2.0 }), "m", ChatApi::Completions).expect("JSON Schema's integers include 900.0");
        assert_eq!((ask.asked, ask.n), (Some(900), 2));
        for bad in [json!({ "max_tokens": 900.5 }), json!({ "max_tokens": 0 }), json!({ "max_tokens": -5 }), json!({ "max_tokens": "9" }), json!({ "max_completion_tokens": 1e12 }), json!({ "n": 9 }), json!({ "n": 0 })] {
            assert!(read(&bad, "m", ChatApi::Completions).is_err(), "{bad}");
        }
        let e = read(&json!({ "thinking": { "budget_tokens": 100000 } }), "m", ChatApi::Completions).expect_err("refused");
        assert!(e.starts_with("thinking "), "{e}");
        let e = read(&json!({ "model": "gemini-3-pro" }), "gemini-3-flash", ChatApi::Completions).expect_err("refused");
        assert!(e.contains("gemini-3-flash"), "{e}");
        assert!(read(&json!({ "model": "m", "max_tokens": null, "n": null }), "m", ChatApi::Completions).is_ok());
        // The APIs that answer once a call take no `n`, whatever its value (the relay's
        // description bans the name there).
        for api in [ChatApi::Messages, ChatApi::Responses] {
            let e = read(&json!({ "n": 1 }), "m", api).expect_err("refused");
            assert!(e.starts_with("n is not a field of this API"), "{e}");
            assert!(read(&json!({ "n": null }), "m", api).is_ok());
            assert!(refused_in(api).contains(&"n"));
        }
        assert!(!refused_in(ChatApi::Completions).contains(&"n"));
    }

    #[test]
    fn a_per_job_cap_lowers_the_limit_to_what_it_affords() {
        let m = priced(10_000.0); // 0.01 credits an output token, 0.0001 an input token
        let cap = Credits::from_decimal(2.0).expect("2 credits");
        let d = decide(&m, read(&json!({ "max_completion_tokens": 100000 }), "m", ChatApi::Completions).expect("read"), 100, Some(cap)).expect("fits");
        assert!(d.worst_case.expect("priced") <= cap);
        assert!(m.chat_cost(100, d.limit + 1).expect("priced") > cap, "the largest that fits: {}", d.limit);
        assert_eq!(d.clamped.as_deref(), Some(format!("max_completion_tokens={}", d.limit).as_str()));
        let sent = rewrite(&json!({ "max_completion_tokens": 100000, "max_tokens": 200000, "messages": [] }), &d, ChatApi::Completions);
        assert_eq!((sent["max_completion_tokens"].as_u64(), sent.get("max_tokens")), (Some(d.limit), None));
        // No cap: what was asked; nothing asked: the model's own limit.
        let d = decide(&m, read(&json!({}), "m", ChatApi::Completions).expect("read"), 100, None).expect("fits");
        assert_eq!((d.limit, d.clamped), (1000, None));
        // A prompt dearer than the cap: no limit fits.
        assert!(decide(&m, read(&json!({}), "m", ChatApi::Completions).expect("read"), 10_000_000, Some(cap)).is_err());
    }

    #[test]
    fn an_unpriced_model_is_sent_at_most_its_own_limit() {
        let m: Model = serde_json::from_value(json!({ "id": "m", "category": "language", "provider": "p", "purpose": "x", "price": "unknown", "output_tokens": 2048 })).expect("a model");
        let d = decide(&m, read(&json!({ "max_tokens": 100000 }), "m", ChatApi::Completions).expect("read"), 10, Some(Credits(2000))).expect("fits");
        assert_eq!((d.limit, d.clamped.as_deref(), d.worst_case), (2048, Some("max_tokens=2048"), None));
    }

    /// Any JSON value a caller might put in a length field.
    fn any_field() -> impl proptest::strategy::Strategy<Value = Option<Value>> {
        use proptest::prelude::*;
        prop_oneof![
            Just(None),
            Just(Some(Value::Null)),
            (0u64..=2_000_000).prop_map(|n| Some(json!(n))),
            any::<u64>().prop_map(|n| Some(json!(n))),
            any::<i64>().prop_map(|n| Some(json!(n))),
            any::<f64>().prop_map(|f| Some(json!(f))),
            ".{0,8}".prop_map(|s| Some(json!(s))),
        ]
    }

    proptest::proptest! {
        /// Whatever a body asks, what is sent can never cost more than what is held: the
        /// prompt's true tokens (at most its bytes) plus every answer at the limit sent, at the
        /// model's price, is within the hold, and within the lowest per-job cap.
        #[test]
        fn nothing_sent_can_cost_more_than_its_hold(
            text in "\\PC{0,400}",
            max_tokens in any_field(),
            max_completion in any_field(),
            n in any_field(),
            cap_milli in proptest::option::of(0i64..5_000_000),
            output_price in 1.0f64..100_000.0,
        ) {
            let m = priced(output_price);
            let mut body = json!({ "messages": [{ "role": "user", "content": text }] });
            for (k, v) in [("max_tokens", max_tokens), ("max_completion_tokens", max_completion), ("n", n)] {
                if let Some(v) = v {
                    body[k] = v;
                }
            }
            let Ok(ask) = read(&body, "m", ChatApi::Completions) else { return Ok(()) };
            let cap = cap_milli.map(Credits);
            let Ok(d) = decide(&m, ask.clone(), prompt_bound(&body, ChatApi::Completions), cap) else { return Ok(()) };
            let sent = rewrite(&body, &d, ChatApi::Completions);
            // One length field, the decided one, no larger than asked.
            let fields: Vec<u64> = ChatApi::Completions.limit_fields().iter().filter_map(|f| sent.get(*f).and_then(Value::as_u64)).collect();
            proptest::prop_assert_eq!(fields, vec![d.limit]);
            proptest::prop_assert!(d.limit >= 1 && ask.asked.is_none_or(|a| d.limit <= a));
            let true_prompt = text.len() as u64 + 8;
            let worst = m.chat_cost(true_prompt.min(d.prompt_bound), d.limit * ask.n).expect("priced");
            let held = d.worst_case.expect("priced");
            proptest::prop_assert!(worst <= held, "worst {worst:?} above the hold {held:?}");
            if let Some(cap) = cap {
                proptest::prop_assert!(held <= cap.max(Credits(1)), "hold {held:?} above the cap {cap:?}");
            }
        }
    }

    #[test]
    fn the_prompt_bound_is_never_below_the_text_and_counts_media() {
        let text = "héllo wörld ".repeat(50);
        let body = json!({ "messages": [{ "role": "user", "content": [{ "type": "text", "text": text }, { "type": "image_url", "image_url": { "url": "https://x/y.png" } }] }] });
        assert!(prompt_bound(&body, ChatApi::Completions) >= text.len() as u64 + MEDIA_PART_TOKENS);
    }
}
