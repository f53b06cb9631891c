//! What the simulator charges, per model, from the seeds (taken 2026-01-30 for image models,
//! the Control Room's sample catalog, and Kling's duration × mode rules). Unknown models get
//! KIE's 404. Prices are in credits (1 credit = $0.005).

use serde_json::Value;

use crate::media::MediaKind;

/// How a model is priced.
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    Flat(f64),
    /// 1K / 2K (`input.resolution`).
    Resolution { k1: f64, k2: f64 },
    /// basic / high (`input.quality`).
    Quality { basic: f64, high: f64 },
    /// Per 5-second unit of `input.duration`; `pro` for `input.mode == "pro"`.
    Duration { std_per_5s: f64, pro_per_5s: f64 },
}

pub struct Model {
    pub id: &'static str,
    pub kind: MediaKind,
    pub rule: Rule,
    /// Whether `input.image_urls` / `image_url` is required.
    pub needs_image: bool,
}

const fn m(id: &'static str, kind: MediaKind, rule: Rule, needs_image: bool) -> Model {
    Model { id, kind, rule, needs_image }
}

use MediaKind::{Audio, Image, Video};
use Rule::{Duration, Flat, Quality, Resolution};

/// The catalog. Sources: seed 001 (image models), seed 002 (sample catalog: Veo 3 ~120,
/// Seedance 2.0 ~90, Kling 2.0 ~100, Nano Banana ~8, ElevenLabs ~6), seed 004 (Kling: 10 s
/// costs double 5 s; V2.1 standard 2 units, professional 3.5, Master 10 per 5 s — scaled so
/// that Master 5 s = 100 credits).
pub const MODELS: &[Model] = &[
    m("google/imagen4-fast", Image, Flat(4.0), false),
    m("google/imagen4", Image, Flat(6.0), false),
    m("google/imagen4-ultra", Image, Flat(12.0), false),
    m("google/nano-banana-edit", Image, Flat(8.0), true),
    m("google/pro-image-to-image", Image, Flat(15.0), true),
    m("nano-banana-2", Image, Flat(8.0), false),
    m("flux-2/flex-text-to-image", Image, Resolution { k1: 14.0, k2: 24.0 }, false),
    m("flux-2/flex-image-to-image", Image, Resolution { k1: 14.0, k2: 24.0 }, true),
    m("flux-2/pro-text-to-image", Image, Resolution { k1: 5.0, k2: 7.0 }, false),
    m("flux-2/pro-image-to-image", Image, Resolution { k1: 5.0, k2: 7.0 }, true),
    m("gpt-image/1.5-text-to-image", Image, Flat(6.0), false),
    m("gpt-image/1.5-image-to-image", Image, Flat(6.0), true),
    m("seedream/4.5-text-to-image", Image, Quality { basic: 5.0, high: 8.0 }, false),
    m("seedream/4.5-edit", Image, Quality { basic: 5.0, high: 8.0 }, true),
    m("qwen/text-to-image", Image, Flat(5.0), false),
    m("qwen/image-to-image", Image, Flat(5.0), true),
    m("grok-imagine/text-to-image", Image, Flat(8.0), false),
    m("ideogram/character", Image, Flat(10.0), false),
    m("recraft/crisp-upscale", Image, Flat(3.0), true),
    m("recraft/remove-background", Image, Flat(2.0), true),
    m("kling-2.6/text-to-video", Video, Duration { std_per_5s: 20.0, pro_per_5s: 35.0 }, false),
    m("kling-2.6/image-to-video", Video, Duration { std_per_5s: 20.0, pro_per_5s: 35.0 }, true),
    m("kling/v2-1-master-text-to-video", Video, Duration { std_per_5s: 100.0, pro_per_5s: 100.0 }, false),
    m("bytedance/seedance-2", Video, Flat(90.0), false),
    m("elevenlabs/text-to-speech-multilingual-v2", Audio, Flat(6.0), false),
];

pub fn find(id: &str) -> Option<&'static Model> {
    MODELS.iter().find(|m| m.id == id)
}

fn text<'a>(input: &'a Value, field: &str) -> Option<&'a str> {
    input.get(field).and_then(Value::as_str)
}

/// Credits for this input.
pub fn price(model: &Model, input: &Value) -> f64 {
    match model.rule {
        Flat(c) => c,
        Resolution { k1, k2 } => match text(input, "resolution") {
            Some(r) if r.eq_ignore_ascii_case("2K") => k2,
            _ => k1,
        },
        Quality { basic, high } => match text(input, "quality") {
            Some("high") => high,
            _ => basic,
        },
        Duration { std_per_5s, pro_per_5s } => {
            let secs: f64 = match input.get("duration") {
                Some(Value::String(s)) => s.trim().parse().unwrap_or(5.0),
                Some(Value::Number(n)) => n.as_f64().unwrap_or(5.0),
                _ => 5.0,
            };
            let units = (secs / 5.0).ceil().max(1.0);
            let per = if text(input, "mode") == Some("pro") { pro_per_5s } else { std_per_5s };
            per * units
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rules_follow_the_seeds() {
        let kling = find("kling-2.6/text-to-video").unwrap();
        assert_eq!(price(kling, &json!({"duration": "5"})), 20.0);
        assert_eq!(price(kling, &json!({"duration": "10"})), 40.0, "10 s costs double 5 s");
        assert_eq!(price(kling, &json!({"duration": "5", "mode": "pro"})), 35.0);
        assert_eq!(price(find("flux-2/pro-text-to-image").unwrap(), &json!({"resolution": "2K"})), 7.0);
        assert_eq!(price(find("seedream/4.5-text-to-image").unwrap(), &json!({"quality": "high"})), 8.0);
        assert!(find("no/such-model").is_none());
    }
}
