//! Server functions of the Market (03), Pinned (04) and Budget (05) panels, and the composer's
//! model list. Thin: parse, call the gateway core, map to view types.

use leptos::prelude::*;
use std::collections::BTreeMap;

use crate::view::{BudgetView, MarketView};
#[cfg(feature = "ssr")]
pub use server_side::option as model_option;
#[cfg(feature = "ssr")]
use crate::api::context::{Role, signed_in};

#[cfg(feature = "ssr")]
mod server_side {
    use super::*;
    use crate::api::context::{ConsoleContext, store_error};
    use crate::view::{CapField, FieldOption, MeterView, ModelOption, PricePoint, RuleView};
    use gateway::Credits;
    use gateway::money::budget::{self, CapKind, CostRule};
    use gateway::money::catalog::{Model, PriceRule};
    use serde_json::json;

    fn point(m: &Model, choice: Option<&str>, mode: Option<&str>) -> PricePoint {
        let mut input = serde_json::Map::new();
        if let (Some(field), Some(c)) = (m.price.priced_by(), choice) {
            input.insert(field.into(), json!(c));
        }
        if let Some(mode) = mode {
            input.insert("mode".into(), json!(mode));
        }
        // Every point is one of the catalog's own choices, so it has a price.
        let c = m.estimate(&input.into()).unwrap_or(Credits::ZERO);
        PricePoint { choice: choice.map(str::to_string), mode: mode.map(str::to_string), credits: c.to_string(), usd: c.dollars() }
    }

    /// A model as the Market lists it: its prices at each choice, its fields, its rate.
    pub fn option(m: &Model, pinned: bool) -> ModelOption {
        let choices = m.price.choices();
        let prices = match &m.price {
            PriceRule::Unknown | PriceRule::PerChars { .. } | PriceRule::PerSecond { .. } | PriceRule::PerTokens { .. } => Vec::new(),
            PriceRule::Flat(_) => vec![point(m, None, None)],
            PriceRule::Duration { .. } => choices.iter().flat_map(|c| gateway::money::catalog::MODES.map(|mode| point(m, Some(c), Some(mode)))).collect(),
            _ => choices.iter().map(|c| point(m, Some(c), None)).collect(),
        };
        ModelOption {
            id: m.id.clone(),
            category: m.category.clone(),
            provider: m.provider.clone(),
            purpose: m.purpose.clone(),
            required: m.required.clone(),
            priced_by: m.price.priced_by().map(str::to_string),
            choices,
            prices,
            pinned,
            family: m.family.name().to_string(),
            fields: m
                .fields
                .iter()
                .map(|f| FieldOption { name: f.name.clone(), kind: f.kind.name().to_string(), choices: f.choices.clone(), default: f.default, media: f.media.clone() })
                .collect(),
            price_known: m.price_known(),
            rate: match &m.price {
                PriceRule::PerChars { credits, field } => Some(format!("{credits} cr per 1,000 characters of {field}")),
                PriceRule::PerTokens { input, output } => Some(format!("{input} cr per 1M input tokens, {output} per 1M output")),
                PriceRule::PerSecond { credits, estimate_seconds, field } => {
                    Some(format!("{credits} cr per second made (estimated at {} until KIE says)", field.as_ref().map_or(format!("{estimate_seconds} s"), |f| format!("input.{f}, else {estimate_seconds} s"))))
                }
                _ => None,
            },
        }
    }

    pub fn market(ctx: &ConsoleContext, pins: &[String], user: &str) -> MarketView {
        let catalog = ctx.lifecycle.catalog();
        MarketView {
            models: catalog.models().iter().map(|m| option(m, pins.contains(&m.id))).collect(),
            prices_taken: catalog.prices_taken.clone(),
            user: user.to_string(),
        }
    }

    /// Sets (or, with no caps, removes) a rule; returns what was there before.
    pub async fn save_rule(ctx: &ConsoleContext, actor: &gateway::team::accounts::Actor, rule: CostRule) -> Result<Option<CostRule>, ServerFnError> {
        budget::set_rule(ctx.store.as_ref(), actor, rule).await.map_err(|e| match e {
            budget::BudgetError::Store(e) => store_error(e),
            other => crate::api::context::refuse(422, other.to_string()),
        })
    }

    /// The cost rules, meters and alerts `actor` is shown ([`budget::Target::seen_by`]).
    pub async fn budget_view(ctx: &ConsoleContext, actor: &gateway::team::accounts::Actor) -> Result<BudgetView, ServerFnError> {
        let store = ctx.store.as_ref();
        let mut rules = budget::rules(store).await.map_err(store_error)?;
        rules.retain(|r| r.target.seen_by(actor));
        let meters = budget::meters(store, &rules).await.map_err(store_error)?;
        let mut alerts = budget::alerts(store).await.map_err(store_error)?;
        alerts.retain(|a| a.target.seen_by(actor));
        Ok(BudgetView {
            cap_fields: CapKind::ALL.iter().map(|k| CapField { name: k.name().into(), label: k.spec().field.into() }).collect(),
            rules: rules
                .iter()
                .map(|r| RuleView {
                    label: r.target.label(),
                    project: r.target.project.clone(),
                    user: r.target.user.clone(),
                    caps: CapKind::ALL.iter().map(|k| (k.spec().short.to_string(), r.cap(*k).map(budget::money))).collect(),
                    amounts: CapKind::ALL.iter().filter_map(|k| Some((k.name().to_string(), format!("{:.2}", r.cap(*k)?.usd())))).collect(),
                    updated_by: r.updated_by.clone(),
                })
                .collect(),
            meters: meters
                .iter()
                .map(|m| MeterView {
                    label: format!("{} — {}", m.target.label(), m.kind.label()),
                    used: budget::money(m.used),
                    cap: budget::money(m.cap),
                    percent: m.percent(),
                })
                .collect(),
            alerts: alerts.iter().map(|a| (a.at_ms, a.message())).collect(),
        })
    }

    /// A rule from the Budget panel's form: each amount field is named by its kind
    /// (`per_day`), an empty one is "no cap".
    pub fn rule_from_form(project: Option<String>, user: Option<String>, amounts: &BTreeMap<String, String>) -> Result<CostRule, ServerFnError> {
        let mut caps = Vec::new();
        for (name, v) in amounts {
            let Some(kind) = CapKind::named(name) else {
                let known: Vec<&str> = CapKind::ALL.iter().map(|k| k.name()).collect();
                return Err(crate::api::context::refuse(400, format!("there is no cap named {:?}; caps: {}", name.chars().take(40).collect::<String>(), known.join(", "))));
            };
            let what = kind.spec().field;
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            let usd = v.trim_start_matches('$').parse().map_err(|_| crate::api::context::refuse(400, format!("{what} must be a dollar amount like 5 or 12.50, got {v:?}")))?;
            caps.push((kind, what, usd));
        }
        CostRule::in_usd(project, user, caps).map_err(|e| crate::api::context::refuse(400, e.to_string()))
    }
}

/// Every model with its prices; the person's pinned models are marked.
#[server(endpoint = "list_models")]
pub async fn list_models() -> Result<MarketView, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Viewer)?;
    let pins = gateway::team::pins::list(ctx.store.as_ref(), &actor.who).await.map_err(crate::api::context::store_error)?;
    Ok(server_side::market(&ctx, &pins, &actor.who))
}

/// Pins or unpins a model for the person; returns their pins.
#[server(endpoint = "set_pin")]
pub async fn set_pin(model: String, pinned: bool) -> Result<Vec<String>, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Producer)?;
    let model = model.trim();
    if ctx.lifecycle.catalog().get(model).is_none() {
        return Err(crate::api::context::refuse(400, format!("{:?} is not in the catalog", model.chars().take(100).collect::<String>())));
    }
    gateway::team::pins::set(ctx.store.as_ref(), &actor.who, model, pinned).await.map_err(|e| match e {
        gateway::StoreError::Invalid(msg) => crate::api::context::refuse(400, msg),
        other => crate::api::context::store_error(other),
    })
}

/// Cost rules, their spend meters and recent alerts.
#[server(endpoint = "budget_status")]
pub async fn budget_status() -> Result<BudgetView, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Viewer)?;
    server_side::budget_view(&ctx, &actor).await
}

/// Sets the rule for a target (empty project and user: the whole team; a user `key:<id>`: one
/// relay key); every other field is an amount in USD named by its kind of cap (`per_job`,
/// `per_day`, `total`), an empty amount is no cap, and no cap at all removes the rule.
#[server(endpoint = "set_cost_rule")]
pub async fn set_cost_rule(
    project: Option<String>,
    user: Option<String>,
    #[server(flatten)]
    amounts: BTreeMap<String, String>,
) -> Result<BudgetView, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Admin)?;
    let rule = server_side::rule_from_form(project, user, &amounts)?;
    if !rule.has_caps() {
        return Err(crate::api::context::refuse(422, format!("Give at least one amount for {} (a blank one is no cap of that kind); to remove a rule, use its Delete.", rule.target.label())));
    }
    server_side::save_rule(&ctx, &actor, rule).await?;
    server_side::budget_view(&ctx, &actor).await
}

/// Removes the rule for a target (admins; audited): what the Budget panel's Delete does once
/// confirmed.
#[server(endpoint = "delete_cost_rule")]
pub async fn delete_cost_rule(project: Option<String>, user: Option<String>) -> Result<BudgetView, ServerFnError> {
    let (ctx, actor) = signed_in(Role::Admin)?;
    let rule = server_side::rule_from_form(project, user, &BTreeMap::new())?;
    let label = rule.target.label();
    if server_side::save_rule(&ctx, &actor, rule).await?.is_none() {
        return Err(crate::api::context::refuse(404, format!("There is no cost rule for {label}.")));
    }
    server_side::budget_view(&ctx, &actor).await
}

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::server_side::rule_from_form;
    use gateway::money::budget::CapKind;
    use std::collections::BTreeMap;

    fn some(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    fn amounts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_budget_form_reads_dollars_and_blank_is_no_cap() {
        let r = rule_from_form(some(" trailer "), None, &amounts(&[("per_job", "$12.50"), ("per_day", "  "), ("total", "1000")])).expect("a valid form");
        assert_eq!(r.target.project.as_deref(), Some("trailer"), "trimmed");
        assert_eq!(r.target.user, None, "absent: anyone");
        assert_eq!(r.cap(CapKind::PerJob).map(|c| c.usd()), Some(12.5), "a dollar sign is allowed");
        assert_eq!(r.cap(CapKind::PerDay), None, "blank: no cap");
        assert_eq!(r.cap(CapKind::Total).map(|c| c.usd()), Some(1000.0));
    }

    #[test]
    fn the_budget_form_says_which_field_to_fix() {
        let e = rule_from_form(None, None, &amounts(&[("per_job", "twelve")])).expect_err("not a number");
        assert!(e.to_string().contains("Max spend per job must be a dollar amount"), "{e}");
        for bad in ["-5", "0", "NaN", "1e30"] {
            let e = rule_from_form(None, None, &amounts(&[("per_day", bad)])).expect_err(bad);
            assert!(e.to_string().contains("Max spend per day"), "{bad}: {e}");
        }
        let e = rule_from_form(None, None, &amounts(&[("per_week", "5")])).expect_err("no such cap");
        assert!(e.to_string().contains("no cap named \"per_week\"; caps: per_job, per_day, total"), "{e}");
    }
}
