//! Server function of the Throttle panel (06): the rate guard's rules, queue and 429s.

use leptos::prelude::*;

use crate::view::ThrottleView;

/// How many of the next tasks to leave the panel lists.
#[cfg(feature = "ssr")]
const NEXT_SHOWN: usize = 8;

#[cfg(feature = "ssr")]
pub(crate) fn view_of(q: gateway::tasks::lifecycle::queue::QueueSnapshot) -> ThrottleView {
    use crate::view::{GuardRuleView, OwnerQueueView};
    ThrottleView {
        rules: q.rules.into_iter().map(|r| GuardRuleView { rule: r.rule, used: r.used, limit: r.limit }).collect(),
        margin_ms: q.margin_ms,
        depth: q.waiting.len(),
        drain_ms: q.waiting.last().map_or(0, |w| w.eta_ms),
        next: q.waiting.iter().take(NEXT_SHOWN).map(|w| (w.id.clone(), w.owner.clone(), w.eta_ms)).collect(),
        by_owner: q.by_owner.into_iter().map(|l| OwnerQueueView { owner: l.owner, waiting: l.waiting, oldest_age_ms: l.oldest_age_ms, next_window: l.next_window }).collect(),
        backed_off: q.backed_off,
        in_doubt: q.in_doubt,
        cooldown_ms: q.cooldown_ms,
        rate_limited_total: q.rate_limited_total,
    }
}

/// The rate guard now.
#[server(endpoint = "throttle_status")]
pub async fn throttle_status() -> Result<ThrottleView, ServerFnError> {
    let (ctx, _) = crate::api::server_side::signed_in(crate::api::server_side::Role::Viewer)?;
    let q = ctx.lifecycle.queue().await.map_err(crate::api::server_side::store_error)?;
    Ok(view_of(q))
}
