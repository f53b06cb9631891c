//! The Market (03), Pinned (04) and Budget (05) panels, and the composer's model list.

use serde::{Deserialize, Serialize};

/// One price of a model: for a value of its priced-by choice (and a mode, for video).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PricePoint {
    pub choice: Option<String>,
    pub mode: Option<String>,
    /// Credits as a decimal string.
    pub credits: String,
    /// `$0.04`.
    pub usd: String,
}

/// A model of the Market, as the composer and the Market and Pinned panels show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelOption {
    pub id: String,
    pub category: String,
    pub provider: String,
    pub purpose: String,
    /// Input fields it requires.
    pub required: Vec<String>,
    /// The choice its price depends on, if any ("resolution", "quality", "duration").
    pub priced_by: Option<String>,
    /// The values that choice takes.
    pub choices: Vec<String>,
    /// Its price for every choice (and mode), computed by the same rule that prices a task.
    pub prices: Vec<PricePoint>,
    /// Pinned by the person looking.
    pub pinned: bool,
    /// The KIE API it lives on ("market", "veo", "suno"…).
    pub family: String,
    /// Its inputs beyond the prompt and the priced choice.
    pub fields: Vec<FieldOption>,
    /// Whether a source gives its price (if not, a per-job cap is what a task holds).
    pub price_known: bool,
    /// A price by the input's length ("12 cr per 1,000 characters of text"), when it has one.
    pub rate: Option<String>,
}

/// One input of a model as the composer offers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldOption {
    pub name: String,
    /// "text", "choice", "number", "flag", "url" or "urls".
    pub kind: String,
    pub choices: Vec<String>,
    pub default: Option<bool>,
    /// For a URL: the media it takes (`audio`, `video`), which a Library asset of that kind
    /// fills. Read on the server to open the composer on it; never sent to the browser.
    #[serde(skip)]
    pub media: Option<String>,
}

impl FieldOption {
    /// The value shown before anyone changes it: the first choice, the flag's default, or
    /// nothing for free text.
    pub fn initial(&self) -> String {
        match self.kind.as_str() {
            "flag" => self.default.unwrap_or(false).to_string(),
            _ => self.choices.first().cloned().unwrap_or_default(),
        }
    }
}

impl ModelOption {
    /// A follow-up on an earlier task's result (the catalog requires exactly these to name
    /// their parent as `taskId`): started from that task's story, not from the composer.
    pub fn is_follow_up(&self) -> bool {
        self.required.iter().any(|r| r == "taskId")
    }

    /// The price for this choice and mode (the first price when the choice is not given).
    pub fn price_for(&self, choice: &str, mode: &str) -> Option<&PricePoint> {
        let fits = |p: &&PricePoint| {
            p.choice.as_deref().is_none_or(|c| choice.is_empty() || c == choice) && p.mode.as_deref().is_none_or(|m| m == mode)
        };
        self.prices.iter().find(fits).or(self.prices.first())
    }

    /// The cheapest price, for the Market's list.
    pub fn from_price(&self) -> Option<&PricePoint> {
        self.prices.iter().min_by(|a, b| a.credits.parse::<f64>().unwrap_or(0.0).total_cmp(&b.credits.parse::<f64>().unwrap_or(0.0)))
    }
}

/// The Market: every model with its prices, and the date they were taken.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MarketView {
    pub models: Vec<ModelOption>,
    pub prices_taken: String,
    /// Whose pins `pinned` reflects.
    pub user: String,
}

/// One cost rule as the Budget panel shows it (amounts in dollars and credits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleView {
    /// "team", "project trailer", …
    pub label: String,
    pub project: Option<String>,
    pub user: Option<String>,
    /// Every kind of cap, in order: ("per 24 h", its amount or `None`).
    pub caps: Vec<(String, Option<String>)>,
    /// The caps it has as its edit form takes them: (`per_day`, dollars `"12.50"`).
    #[serde(default)]
    pub amounts: Vec<(String, String)>,
    pub updated_by: String,
}

/// One kind of cap as the Budget form asks for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapField {
    /// The form field's name: `per_day`.
    pub name: String,
    /// "Max spend per day".
    pub label: String,
}

/// A spend meter of one cap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeterView {
    /// "project trailer — max per rolling 24 h".
    pub label: String,
    /// `$4.80 (960 credits)`.
    pub used: String,
    pub cap: String,
    pub percent: u32,
}

/// The Budget panel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BudgetView {
    /// The kinds of cap a rule can have (the form's amount fields).
    pub cap_fields: Vec<CapField>,
    pub rules: Vec<RuleView>,
    pub meters: Vec<MeterView>,
    /// Recent alerts, newest first: (Unix ms, message).
    pub alerts: Vec<(u64, String)>,
}
