//! Budget alerts after a spend: the meters of the cost rules that govern the spender, read at
//! most once per [`CHECK_EVERY`] per person and project however fast they spend (a check asked
//! for while one runs, or soon after, runs once more when that window is over, so the last
//! spend is always checked); a task that cost more than a per-job cap or its hold is checked
//! at once. Alerts are recorded for the Budget panel, logged, and POSTed to the alert webhook.

use std::collections::HashMap;
use std::time::Duration;

use super::Lifecycle;
use crate::Credits;
use crate::money::budget::{self, Alert};
use crate::store::StoreResult;

/// Least time between two checks of one person's meters in one project.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The (person, project) pairs whose meters are being checked, each with whether another
/// check was asked for meanwhile.
#[derive(Default)]
pub(crate) struct AlertChecks(std::sync::Mutex<HashMap<(String, String), bool>>);

impl AlertChecks {
    /// Whether a check of `key` is to start now; `false` when one is running (it runs once
    /// more).
    fn begin(&self, key: &(String, String)) -> bool {
        let mut running = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match running.get_mut(key) {
            Some(again) => {
                *again = true;
                false
            }
            None => {
                running.insert(key.clone(), false);
                true
            }
        }
    }

    /// Whether the check of `key` is to run again (asked for while it ran); if not, it is over.
    fn again(&self, key: &(String, String)) -> bool {
        let mut running = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match running.get_mut(key) {
            Some(again) if *again => {
                *again = false;
                true
            }
            _ => {
                running.remove(key);
                false
            }
        }
    }
}

impl Lifecycle {
    /// Raises any budget alerts the new spend crossed, in the background (see the module doc).
    /// `settled`: a task that just settled at its actual cost, with what it held.
    pub(crate) fn raise_alerts(&self, owner: String, project: String, settled: Option<(String, Credits, Credits)>) {
        // Only a charge above its hold or above a per-job cap (as last read; none read yet:
        // checked) can raise one; the rules are read fresh to say which.
        let over_cap = |actual: Credits| self.known_cost_rules().is_none_or(|r| budget::per_job_cap(&r.rules, &owner, &project).is_some_and(|cap| actual > cap));
        if let Some((task, actual, held)) = settled.filter(|(_, actual, held)| actual > held || over_cap(*actual)) {
            let lc = self.clone();
            let (owner, project) = (owner.clone(), project.clone());
            tokio::spawn(async move {
                lc.send_alerts(async {
                    let rules = budget::rules(lc.store().as_ref()).await?;
                    budget::check_overrun(lc.store().as_ref(), &rules, &task, &owner, &project, actual, held).await
                })
                .await;
            });
        }
        let key = (owner, project);
        if !self.alert_checks().begin(&key) {
            return;
        }
        let lc = self.clone();
        tokio::spawn(async move {
            loop {
                lc.send_alerts(async {
                    // Read fresh: an alert names the rules as they are now.
                    let rules = budget::rules(lc.store().as_ref()).await?;
                    budget::check_alerts(lc.store().as_ref(), &rules, &key.0, &key.1).await
                })
                .await;
                tokio::time::sleep(CHECK_EVERY).await;
                if !lc.alert_checks().again(&key) {
                    return;
                }
            }
        });
    }

    /// Logs and delivers the alerts `check` raised.
    async fn send_alerts(&self, check: impl Future<Output = StoreResult<Vec<Alert>>>) {
        let raised = match check.await {
            Ok(r) => r,
            Err(e) => return tracing::warn!(error = %e, "cannot check budget alerts"),
        };
        for alert in raised {
            tracing::warn!(alert = %alert.message(), "budget alert");
            let Some(url) = &self.options().alert_webhook else { continue };
            let body = serde_json::json!({ "alert": alert.message(), "detail": alert }).to_string();
            match self.outbound().post_json(url, body.as_bytes(), &[]).await {
                Ok(r) if r.is_success() => {}
                Ok(r) => tracing::warn!(status = r.status, "the alert webhook refused a budget alert"),
                Err(e) => tracing::warn!(error = %e, "cannot deliver a budget alert to the alert webhook"),
            }
        }
    }
}
