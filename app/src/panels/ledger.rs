//! 09 · Ledger — receipt sync: finished tasks folded into Broad|Cast receipts.

use leptos::prelude::*;

use super::{Panel, with_status};
use crate::view::ConsoleStatus;

#[component]
pub fn LedgerPanel() -> impl IntoView {
    view! {
        <Panel number="09" kicker="Ledger" title="Receipt Sync" badge=with_status(to_sync)>
            <p>"Fold finished gateway tasks into Broad|Cast receipts so every production has one accountable record — task IDs, cost, and exported assets."</p>
            <table class="mapping">
                <caption>"Field mapping"</caption>
                <tbody>
                    <tr><td><code>"KieTask.taskId"</code></td><td>"→"</td><td><code>"receipt.kieTaskIds[]"</code></td></tr>
                    <tr><td><code>"KieTask.creditsUsed"</code></td><td>"→"</td><td><code>"receipt.costUsd"</code></td></tr>
                    <tr><td><code>"KieTask.resultUrl"</code></td><td>"→"</td><td><code>"receipt.exports[]"</code></td></tr>
                    <tr><td><code>"KieTask.model"</code></td><td>"→"</td><td><code>"receipt.route"</code></td></tr>
                </tbody>
            </table>
            {with_status(|s| {
                let done = s.ledger.as_ref().map_or(0, |l| l.succeeded);
                (done == 0).then(|| view! { <p class="empty">"No completed tasks to mirror yet."</p> })
            })}
        </Panel>
    }
}

fn to_sync(s: &ConsoleStatus) -> impl IntoView + use<> {
    match &s.ledger {
        Some(l) => super::badge("info", format!("{} to sync", l.succeeded)).into_any(),
        None => super::badge("bad", "Store unreadable").into_any(),
    }
}
