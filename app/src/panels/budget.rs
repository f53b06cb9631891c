//! 05 · Budget — cost rules: per job, per rolling day, per project.

use leptos::prelude::*;

use super::{Panel, badge};

#[component]
pub fn BudgetPanel() -> impl IntoView {
    let rule = |name: &'static str, what: &'static str| {
        view! {
            <div class="rule">
                <div><div class="rule-name">{name}</div><div class="muted">{what}</div></div>
                <div class="rule-value" data-testid="rule-value">"No rule"</div>
            </div>
        }
    };
    view! {
        <Panel number="05" kicker="Budget" title="Cost Rules" badge=badge("off", "No rules set")>
            {rule("Max spend / job", "Caps a single generation task")}
            {rule("Max spend / day", "Rolling 24-hour ceiling")}
            {rule("Max spend / project", "Total across a production")}
            <p class="fine">
                "Rules are held in dollars and credits; each submission's estimate is reserved against every rule in one atomic step, and a submission that would break one is refused before it reaches KIE."
            </p>
        </Panel>
    }
}
