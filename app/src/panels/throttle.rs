//! 06 · Throttle — the rate guard: its rules and how full each is, the queue of tasks waiting
//! for it (depth, per person, the next to leave and their expected wait), and KIE's 429s.
//! Read from the store every two seconds and whenever a task changes.

use leptos::prelude::*;

use super::{Panel, badge, fill_bar};
use crate::api::throttle_status;
use crate::live::live;
use crate::view::ThrottleView;

fn secs(ms: u64) -> String {
    format!("{} s", ms.div_ceil(1000))
}

#[component]
pub fn ThrottlePanel() -> impl IntoView {
    let live = live();
    let tick = RwSignal::new(0u64);
    Effect::new(move |_| {
        let _ = set_interval_with_handle(move || tick.update(|n| *n += 1), std::time::Duration::from_secs(2));
    });
    let data = Resource::new(move || (tick.get(), live.rows.with(|r| r.len()), live.ended.get()), |_| throttle_status());
    let head = move || match data.get() {
        Some(Ok(t)) if t.cooldown_ms.is_some() => badge("bad", "Cooling down after a 429").into_any(),
        Some(Ok(t)) if t.depth > 0 => badge("wait", format!("{} queued", t.depth)).into_any(),
        Some(Ok(_)) => badge("ok", "Enforced").into_any(),
        Some(Err(_)) => badge("bad", "Store unreadable").into_any(),
        None => badge("wait", "Loading").into_any(),
    };
    view! {
        <Panel number="06" kicker="Throttle" title="Rate Guard" badge=view! { <Suspense fallback=|| ()>{head}</Suspense> }>
            <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || data.get().map(|r| match r {
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                    Ok(t) => guard_view(t).into_any(),
                })}
            </Suspense>
            <p class="fine">
                "One limit for every instance: at most N new tasks in any sliding window (plus the safety margin), shared through the store; the rest queue in fair order — round-robin between people — and drain as the window allows."
            </p>
        </Panel>
    }
}

fn guard_view(t: ThrottleView) -> impl IntoView {
    view! {
        {t.rules.into_iter().map(|r| {
            let pct = if r.limit > 0 { (r.used.max(0) * 100 / r.limit).min(100) as u32 } else { 0 };
            fill_bar("guard-rule", r.rule, pct, format!("{} of {} in use now", r.used, r.limit))
        }).collect_view()}
        <div class="meters">
            <div class="meter"><div class="meter-value" data-testid="queue-depth">{t.depth}</div><div class="meter-label">"Queued"</div></div>
            <div class="meter"><div class="meter-value">{secs(t.drain_ms)}</div><div class="meter-label">"To drain"</div></div>
            <div class="meter"><div class="meter-value">{t.backed_off}</div><div class="meter-label">"Backed off"</div></div>
            <div class="meter"><div class="meter-value" data-testid="rate-limited">{t.rate_limited_total}</div><div class="meter-label">"429s from KIE"</div></div>
        </div>
        {(!t.next.is_empty()).then(|| view! {
            <ol class="queue" data-testid="queue-next">
                {t.next.into_iter().map(|(id, owner, eta)| view! { <li><code>{id}</code>" · "{owner}" · ≈ "{secs(eta)}</li> }).collect_view()}
            </ol>
        })}
        {(!t.by_owner.is_empty()).then(|| view! {
            <p class="muted">"Waiting per person: "{t.by_owner.iter().map(|(o, n)| format!("{o} {n}")).collect::<Vec<_>>().join(" · ")}</p>
        })}
        {t.cooldown_ms.map(|ms| view! { <p class="warn">"KIE answered 429: every instance holds off for "{secs(ms)}"."</p> })}
        <p class="muted">"Safety margin "{t.margin_ms}" ms · in doubt "{t.in_doubt}</p>
    }
}
