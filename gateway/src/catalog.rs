//! The model catalog: which models the Control Room accepts, what each needs and what it costs.
//!
//! The catalog is a JSON file (`catalog/models.json` in the repository, compiled in as the
//! default; `CATALOG_FILE` may name another). It is checked when loaded: an unknown price rule,
//! a duplicate id or an empty field is an error that names the entry.

use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

use crate::credits::Credits;

/// The catalog that ships with the Control Room.
pub const BUILTIN: &str = include_str!("../../catalog/models.json");

/// Longest prompt accepted (characters). KIE's models cap prompts in the low thousands.
pub const MAX_PROMPT_CHARS: usize = 5000;
/// Largest `input` object accepted, as JSON bytes.
pub const MAX_INPUT_BYTES: usize = 64 * 1024;

/// How a model is priced, in credits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PriceRule {
    Flat(f64),
    /// By `input.resolution` (`1K`, `2K`, `4K`).
    Resolution(HashMap<String, f64>),
    /// By `input.quality` (`basic`, `high`).
    Quality(HashMap<String, f64>),
    /// Per started 5 seconds of `input.duration`, by `input.mode` (`std` default, `pro`).
    Duration { std_per_5s: f64, pro_per_5s: f64 },
}

impl PriceRule {
    /// The input field the price depends on, if any.
    pub fn priced_by(&self) -> Option<&'static str> {
        match self {
            PriceRule::Flat(_) => None,
            PriceRule::Resolution(_) => Some("resolution"),
            PriceRule::Quality(_) => Some("quality"),
            PriceRule::Duration { .. } => Some("duration"),
        }
    }
}

/// One model as the catalog lists it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// KIE's model id, e.g. `kling-2.6/text-to-video`.
    pub id: String,
    /// video, image, audio or language.
    pub category: String,
    pub provider: String,
    /// One line: what it is for.
    pub purpose: String,
    /// Input fields that must be present and non-empty.
    #[serde(default)]
    pub required: Vec<String>,
    pub price: PriceRule,
}

impl Model {
    /// The credits this input costs under the model's rule (the estimate reserved at submit).
    pub fn estimate(&self, input: &Value) -> Credits {
        let text = |f: &str| input.get(f).and_then(Value::as_str);
        let pick = |table: &HashMap<String, f64>, given: Option<&str>, default: &str| {
            let by_key = |k: &str| table.iter().find(|(name, _)| name.eq_ignore_ascii_case(k)).map(|(_, v)| *v);
            given.and_then(by_key).or_else(|| by_key(default)).unwrap_or_else(|| table.values().copied().fold(0.0, f64::max))
        };
        let credits = match &self.price {
            PriceRule::Flat(c) => *c,
            PriceRule::Resolution(t) => pick(t, text("resolution"), "1K"),
            PriceRule::Quality(t) => pick(t, text("quality"), "basic"),
            PriceRule::Duration { std_per_5s, pro_per_5s } => {
                let secs = match input.get("duration") {
                    Some(Value::String(s)) => s.trim().parse().unwrap_or(5.0),
                    Some(Value::Number(n)) => n.as_f64().unwrap_or(5.0),
                    _ => 5.0,
                };
                let units = (secs / 5.0_f64).ceil().max(1.0);
                units * if text("mode") == Some("pro") { *pro_per_5s } else { *std_per_5s }
            }
        };
        Credits::from_decimal(credits).unwrap_or(Credits::ZERO)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    prices_taken: String,
    #[serde(default)]
    #[allow(dead_code)]
    note: String,
    models: Vec<Model>,
}

/// The loaded, checked catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// When the prices were taken (shown next to every price).
    pub prices_taken: String,
    models: Vec<Model>,
}

impl Catalog {
    /// Parses and checks a catalog file's text.
    pub fn parse(text: &str) -> Result<Catalog, String> {
        let file: CatalogFile = serde_json::from_str(text).map_err(|e| format!("catalog: {e}"))?;
        let mut seen = std::collections::HashSet::new();
        for m in &file.models {
            if m.id.trim().is_empty() || m.category.trim().is_empty() {
                return Err("catalog: every model needs an id and a category".into());
            }
            if !seen.insert(m.id.as_str()) {
                return Err(format!("catalog: model {} is listed twice", m.id));
            }
            let ok = match &m.price {
                PriceRule::Flat(c) => *c >= 0.0,
                PriceRule::Resolution(t) | PriceRule::Quality(t) => !t.is_empty() && t.values().all(|v| *v >= 0.0),
                PriceRule::Duration { std_per_5s, pro_per_5s } => *std_per_5s >= 0.0 && *pro_per_5s >= 0.0,
            };
            if !ok {
                return Err(format!("catalog: model {} has an empty or negative price", m.id));
            }
        }
        Ok(Catalog { prices_taken: file.prices_taken, models: file.models })
    }

    /// The catalog compiled into the binary.
    pub fn builtin() -> Catalog {
        match Catalog::parse(BUILTIN) {
            Ok(c) => c,
            Err(e) => unreachable!("the built-in catalog is checked by a unit test: {e}"),
        }
    }

    pub fn get(&self, id: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.id == id)
    }

    pub fn models(&self) -> &[Model] {
        &self.models
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builtin_catalog_parses_and_prices_follow_the_seeds() {
        let c = Catalog::parse(BUILTIN).unwrap();
        let kling = c.get("kling-2.6/text-to-video").unwrap();
        assert_eq!(kling.estimate(&json!({"duration": "10"})), Credits::from_credits(40));
        assert_eq!(kling.estimate(&json!({"duration": "5", "mode": "pro"})), Credits::from_credits(35));
        assert_eq!(c.get("flux-2/pro-text-to-image").unwrap().estimate(&json!({"resolution": "2K"})), Credits::from_credits(7));
        assert_eq!(c.get("seedream/4.5-text-to-image").unwrap().estimate(&json!({})), Credits::from_credits(5));
        assert!(c.get("no/such-model").is_none());
    }

    #[test]
    fn bad_catalogs_are_refused_with_the_entry_named() {
        let dup = r#"{"prices_taken":"x","models":[
            {"id":"a","category":"image","provider":"p","purpose":"q","price":{"flat":1}},
            {"id":"a","category":"image","provider":"p","purpose":"q","price":{"flat":1}}]}"#;
        assert!(Catalog::parse(dup).unwrap_err().contains("listed twice"));
        let neg = r#"{"prices_taken":"x","models":[{"id":"b","category":"image","provider":"p","purpose":"q","price":{"flat":-1}}]}"#;
        assert!(Catalog::parse(neg).unwrap_err().contains("model b"));
        let rule = r#"{"prices_taken":"x","models":[{"id":"c","category":"image","provider":"p","purpose":"q","price":{"per_moon":1}}]}"#;
        assert!(Catalog::parse(rule).is_err());
    }
}
