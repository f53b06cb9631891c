//! Credits: KIE's unit of money, held exactly.
//!
//! KIE reports balances and charges as decimals (`72.62`), and 1 credit = $0.005. Floats would
//! let budgets drift, so amounts are integers of 1/1000 credit everywhere in the core and the
//! store; conversion to and from decimals happens only at the edges.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Milli-credits per credit.
pub const MILLI: i64 = 1000;
/// US dollars per credit (KIE: 200 credits = $1).
pub const USD_PER_CREDIT: f64 = 0.005;

/// An amount of KIE credits, stored as thousandths of a credit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Credits(pub i64);

impl Credits {
    pub const ZERO: Credits = Credits(0);

    /// Whole credits.
    pub fn from_credits(n: i64) -> Self {
        Credits(n.saturating_mul(MILLI))
    }

    /// A decimal credit amount as KIE writes it, rounded to the nearest milli-credit.
    /// `None` for values that are not finite or not representable.
    pub fn from_decimal(v: f64) -> Option<Self> {
        let milli = (v * MILLI as f64).round();
        (milli.is_finite() && milli.abs() < i64::MAX as f64).then_some(Credits(milli as i64))
    }

    /// A dollar amount converted to credits (rounded to the nearest milli-credit).
    pub fn from_usd(usd: f64) -> Option<Self> {
        Self::from_decimal(usd / USD_PER_CREDIT)
    }

    pub fn milli(self) -> i64 {
        self.0
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / MILLI as f64
    }

    pub fn usd(self) -> f64 {
        self.as_f64() * USD_PER_CREDIT
    }

    /// Its dollars as the screen shows them: `$49.98`, and a tenth of a cent under $0.10
    /// (`$0.020`, so one cheap image is not shown as `$0.02` or `$0.00`).
    pub fn dollars(self) -> String {
        let v = self.usd();
        if v != 0.0 && v.abs() < 0.1 { format!("${v:.3}") } else { format!("${v:.2}") }
    }
}

impl fmt::Display for Credits {
    /// `12`, `72.62`, `-0.5`: no trailing zeros.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let (whole, frac) = (abs / MILLI as u64, abs % MILLI as u64);
        if frac == 0 {
            write!(f, "{sign}{whole}")
        } else {
            let digits = format!("{frac:03}");
            write!(f, "{sign}{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_keep_a_tenth_of_a_cent_under_ten_cents() {
        assert_eq!(Credits::from_credits(4).dollars(), "$0.020");
        assert_eq!(Credits::from_credits(9_996).dollars(), "$49.98");
        assert_eq!(Credits::ZERO.dollars(), "$0.00");
    }

    #[test]
    fn decimal_round_trip_and_display() {
        assert_eq!(Credits::from_decimal(72.62).unwrap().to_string(), "72.62");
        assert_eq!(Credits::from_credits(12).to_string(), "12");
        assert_eq!(Credits(-500).to_string(), "-0.5");
        assert_eq!(Credits::from_decimal(f64::NAN), None);
    }

    #[test]
    fn usd_conversion_uses_kie_rate() {
        // 200 credits = $1.
        assert_eq!(Credits::from_usd(1.0), Some(Credits::from_credits(200)));
        assert!((Credits::from_credits(120).usd() - 0.6).abs() < 1e-12);
    }
}
