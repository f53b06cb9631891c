//! Server functions: thin. Each reads the [`ConsoleContext`] the server provides, calls the
//! gateway core, and maps the result to a view type. On the browser side these compile to
//! HTTP calls.

use leptos::prelude::*;

use crate::view::{ConsoleStatus, TaskList};

/// Most rows one call returns.
pub const MAX_ROWS: usize = 100;

#[cfg(feature = "ssr")]
mod server_side {
    use super::*;
    use crate::view::{GatewayView, KeyView, LedgerView, StoreView, TaskRow, Upstream};
    use gateway::kie::{KieClient, KieError};
    use gateway::task::{TaskQuery, TaskRecord, TaskState};
    use gateway::{Credits, Store};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    /// How long one probe answer is reused, so many open consoles do not hammer KIE.
    const PROBE_TTL: Duration = Duration::from_secs(5);

    /// What the server hands to every render and server function.
    #[derive(Clone)]
    pub struct ConsoleContext {
        pub store: Arc<dyn Store>,
        pub upstream: Upstream,
        pub key: KeyView,
        pub callback_base: Option<String>,
        pub callback_signed: bool,
        /// A client for the Gateway panel's probe (short timeout), when there is an upstream.
        pub probe_client: Option<KieClient>,
        pub probe_cache: Arc<Mutex<Option<(Instant, GatewayView)>>>,
    }

    impl ConsoleContext {
        /// The last probe if fresh, else a new one.
        pub async fn gateway(&self) -> Option<GatewayView> {
            let client = self.probe_client.as_ref()?;
            if let Ok(cache) = self.probe_cache.lock()
                && let Some((at, view)) = cache.as_ref()
                && at.elapsed() < PROBE_TTL
            {
                return Some(view.clone());
            }
            let probe = client.probe().await;
            let host = client.base().host_str().unwrap_or("the upstream").to_string();
            let (reachable, balance, error) = match probe.balance {
                Ok(b) => (true, Some(b.to_string()), None),
                Err(e) => {
                    tracing::warn!(error = %e, "gateway probe failed");
                    (matches!(e, KieError::Auth(_) | KieError::Maintenance(_) | KieError::Upstream { .. }), None, Some(probe_message(&e, &host)))
                }
            };
            let view = GatewayView { reachable, latency_us: probe.latency.as_micros() as u64, balance, error, checked_ms: gateway::store::now_ms() };
            if let Ok(mut cache) = self.probe_cache.lock() {
                *cache = Some((Instant::now(), view.clone()));
            }
            Some(view)
        }
    }

    /// An operator-facing sentence for a failed probe.
    fn probe_message(e: &KieError, host: &str) -> String {
        match e {
            KieError::Auth(_) => "The key was rejected (401): check KIE_API_KEY.".into(),
            KieError::Connect(_) => format!("Cannot reach {host}: the connection failed."),
            KieError::Timeout(d) => format!("{host} did not answer within {} s.", d.as_secs()),
            KieError::Maintenance(_) => "KIE is in maintenance (455).".into(),
            other => other.to_string(),
        }
    }

    /// Store counter holding the credits KIE charged for finished tasks (milli-credits).
    pub const CREDITS_CONSUMED: &str = "ledger:credits_consumed";

    pub fn context() -> Result<ConsoleContext, ServerFnError> {
        use_context::<ConsoleContext>().ok_or_else(|| ServerFnError::new("console context missing (server misconfigured)"))
    }

    pub async fn status(ctx: &ConsoleContext) -> ConsoleStatus {
        let (store, ledger) = match ledger(ctx.store.as_ref()).await {
            Ok(l) => (StoreView { backend: ctx.store.backend().into(), reachable: true, error: None }, Some(l)),
            Err(e) => {
                tracing::warn!(error = %e, "console status: store unreadable");
                (StoreView { backend: ctx.store.backend().into(), reachable: false, error: Some(e.to_string()) }, None)
            }
        };
        ConsoleStatus {
            upstream: ctx.upstream.clone(),
            key: ctx.key.clone(),
            gateway: ctx.gateway().await,
            store,
            ledger,
            callback_base: ctx.callback_base.clone(),
            callback_signed: ctx.callback_signed,
        }
    }

    async fn ledger(store: &dyn Store) -> gateway::StoreResult<LedgerView> {
        let counts = store.task_counts().await?;
        let consumed = Credits(store.counter_get(CREDITS_CONSUMED).await?);
        Ok(LedgerView {
            tasks_on_record: counts.total,
            in_flight: counts.in_flight(),
            succeeded: counts.get(TaskState::Success),
            to_review: counts.get(TaskState::Fail) + counts.get(TaskState::Expired),
            credits_consumed: consumed.to_string(),
        })
    }

    pub fn row(t: TaskRecord) -> TaskRow {
        TaskRow {
            terminal: t.state.is_terminal(),
            state: t.state.as_str().into(),
            estimated_credits: t.estimated_cost.to_string(),
            actual_credits: t.actual_cost.map(|c| c.to_string()),
            id: t.id,
            model: t.model,
            project: t.project,
            owner: t.owner,
            created_ms: t.created_ms,
            kie_task_id: t.kie_task_id,
            fail_code: t.fail_code,
            fail_msg: t.fail_msg,
        }
    }

    pub async fn list(ctx: &ConsoleContext, query: TaskQuery) -> Result<TaskList, ServerFnError> {
        let page = ctx.store.task_list(&query).await.map_err(|e| {
            tracing::warn!(error = %e, "task listing failed");
            ServerFnError::new("the task store is unavailable; try again shortly")
        })?;
        Ok(TaskList { rows: page.tasks.into_iter().map(row).collect(), next: page.next })
    }

    pub fn parse_state(s: &str) -> Result<TaskState, ServerFnError> {
        TaskState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| ServerFnError::new(format!("unknown task state {s:?}")))
    }
}

#[cfg(feature = "ssr")]
pub use server_side::{CREDITS_CONSUMED, ConsoleContext};

/// Connection, key vault, store and ledger meters in one call.
#[server(endpoint = "console_status")]
pub async fn load_console_status() -> Result<ConsoleStatus, ServerFnError> {
    let ctx = server_side::context()?;
    Ok(server_side::status(&ctx).await)
}

/// Newest tasks first, optionally in one state; `after` continues a previous page.
#[server(endpoint = "list_tasks")]
pub async fn list_tasks(state: Option<String>, after: Option<String>, limit: usize) -> Result<TaskList, ServerFnError> {
    let ctx = server_side::context()?;
    let state = state.as_deref().map(server_side::parse_state).transpose()?;
    let query = gateway::task::TaskQuery { state, after, limit: limit.clamp(1, MAX_ROWS), ..Default::default() };
    server_side::list(&ctx, query).await
}

/// Failed and expired tasks, newest first (the Error Review).
#[server(endpoint = "review_tasks")]
pub async fn review_tasks() -> Result<TaskList, ServerFnError> {
    let ctx = server_side::context()?;
    let mut rows = Vec::new();
    for state in [gateway::TaskState::Fail, gateway::TaskState::Expired] {
        let q = gateway::task::TaskQuery { state: Some(state), limit: MAX_ROWS, ..Default::default() };
        rows.extend(server_side::list(&ctx, q).await?.rows);
    }
    rows.sort_by(|a, b| b.created_ms.cmp(&a.created_ms));
    rows.truncate(MAX_ROWS);
    Ok(TaskList { rows, next: None })
}
