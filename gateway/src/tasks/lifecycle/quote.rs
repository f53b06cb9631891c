//! A submission priced without submitting it: what it would hold (its estimate, or the per-job
//! cap a model with no known price holds instead), every cap that governs its caller as it
//! stands, and the first that would refuse it now. Nothing is written; the answer is a
//! forecast, and the submission itself is judged again atomically.

use super::Lifecycle;
use super::submit::{Submission, SubmitError, invalid};
use crate::money::budget::{self, BudgetError, CostHold, Standing};
use crate::Credits;

/// What a submission would cost and whether the cost rules would let it through now.
#[derive(Debug, Clone)]
pub struct Quote {
    /// What it would hold under the cost rules.
    pub credits: Credits,
    /// Whether that is the catalog's price (else the per-job cap held for an unknown price).
    pub price_known: bool,
    /// The refusal it would get now, in the words a submission's refusal uses.
    pub refused_by: Option<String>,
    /// Every cap that governs its owner in its project.
    pub standing: Vec<Standing>,
}

impl Lifecycle {
    /// Prices `s` as [`Lifecycle::submit`] would, against the stored cost rules and spend.
    pub async fn quote(&self, s: &Submission) -> Result<Quote, SubmitError> {
        let (_, estimate) = self.validate(s)?;
        let (owner, project) = (s.owner.trim(), s.project.trim());
        let rules = self.cost_rules(true).await?;
        let credits = match estimate.or_else(|| budget::per_job_cap(&rules.rules, owner, project)) {
            Some(c) => c,
            None => return Err(invalid(format!("{} has no known price: a per-job cap for this project or key is what such a task may cost, and none is set", s.model))),
        };
        let standing = budget::standing(self.store().as_ref(), &rules.rules, owner, project).await?;
        let refused_by = match CostHold::plan(&rules.rules, "quote", owner, project, credits) {
            Err(BudgetError::Refused(msg, _)) => Some(msg),
            Err(e) => return Err(e.into()),
            Ok(_) => standing.iter().find(|c| c.used.is_some() && c.left() < credits).map(|c| format!("Would be refused by the cost rule \"{}\"; this task needs {}.", c.describe(), budget::money(credits))),
        };
        Ok(Quote { credits, price_known: estimate.is_some(), refused_by, standing })
    }
}
