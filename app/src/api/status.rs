//! The console status (the masthead, the status strip, the Gateway, Key Vault and Delivery
//! panels): one read per page render.

use leptos::prelude::*;

use crate::view::ConsoleStatus;

#[cfg(feature = "ssr")]
mod server_side {
    use super::*;
    use crate::api::context::ConsoleContext;
    use crate::view::{LedgerView, StoreView};
    use gateway::tasks::task::TaskState;
    use gateway::team::membership::Membership;
    use gateway::{Credits, Store};

    /// The status as `membership` is shown it: someone limited to some projects gets their
    /// projects' meters and not the team's balance.
    pub async fn status(ctx: &ConsoleContext, membership: &Membership) -> ConsoleStatus {
        let read = match membership.projects() {
            None => ledger(ctx.store.as_ref()).await,
            Some(ps) => ledger_of(ctx.store.as_ref(), membership, ps).await,
        };
        let (mut store, ledger) = match read {
            Ok(l) => (StoreView { backend: ctx.store.backend().into(), reachable: true, error: None, failing_over: false }, Some(l)),
            Err(e) => {
                tracing::warn!(error = %e, "console status: store unreadable");
                (StoreView { backend: ctx.store.backend().into(), reachable: false, error: Some(e.to_string()), failing_over: false }, None)
            }
        };
        store.failing_over = ctx.store.failing_over();
        let mut gateway = ctx.gateway().await;
        if membership.is_limited()
            && let Some(g) = gateway.as_mut()
        {
            g.balance = None;
        }
        // The runway needs a balance KIE answered and a week's burn from the receipts.
        let balance = gateway.as_ref().and_then(|g| g.balance.as_deref()).and_then(|b| b.parse::<f64>().ok()).and_then(Credits::from_decimal);
        let runway_days = match balance {
            Some(b) => gateway::money::receipts::runway_days(ctx.store.as_ref(), b).await.unwrap_or_default(),
            None => None,
        };
        ConsoleStatus {
            upstream: ctx.upstream.clone(),
            key: ctx.key.clone(),
            gateway,
            runway_days,
            runway_alert_days: ctx.runway_alert_days,
            store,
            ledger,
            callback_base: ctx.callback_base.clone(),
            callback_signed: ctx.callback_signed,
        }
    }

    /// The meters of some projects only, from their counts by state and their receipts.
    async fn ledger_of(store: &dyn Store, membership: &Membership, projects: &[String]) -> gateway::StoreResult<LedgerView> {
        use gateway::tasks::task::{Mark, TaskQuery};
        let counts = gateway::tasks::visible::count(store, membership, &TaskQuery::default()).await?.unwrap_or_default();
        let review = TaskQuery { mark: Some(Mark::ToReview), limit: gateway::tasks::task::MAX_PAGE, ..Default::default() };
        let to_review = gateway::tasks::visible::list(store, membership, &review).await?.tasks.len() as u64;
        let consumed = Credits(gateway::money::receipts::each_project_totals(store, projects).await?.iter().map(|b| b.charged.0).sum());
        Ok(LedgerView {
            tasks_on_record: counts.total(),
            in_flight: TaskState::ALL.into_iter().filter(|s| !s.is_terminal()).map(|s| counts.get(s)).sum(),
            succeeded: counts.get(TaskState::Success),
            to_review,
            credits_consumed: consumed.to_string(),
        })
    }

    async fn ledger(store: &dyn Store) -> gateway::StoreResult<LedgerView> {
        let counts = store.task_counts().await?;
        let consumed = Credits(store.usage(&gateway::tasks::lifecycle::credits_consumed_scope()).await?);
        Ok(LedgerView {
            tasks_on_record: counts.total,
            in_flight: counts.in_flight(),
            succeeded: counts.get(TaskState::Success),
            to_review: counts.to_review,
            credits_consumed: consumed.to_string(),
        })
    }
}

/// Connection, key vault, store and ledger meters in one call.
#[server(endpoint = "console_status")]
pub async fn load_console_status() -> Result<ConsoleStatus, ServerFnError> {
    let (ctx, actor) = crate::api::context::signed_in(crate::api::context::Role::Viewer)?;
    // One page render asks for it from several panels (masthead, strip, Gateway, Vault,
    // Delivery): read once per request.
    match use_context::<crate::api::context::StatusMemo>() {
        Some(memo) => Ok(memo.0.get_or_init(|| server_side::status(&ctx, &actor.membership)).await.clone()),
        None => Ok(server_side::status(&ctx, &actor.membership).await),
    }
}
