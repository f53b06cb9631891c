//! Chaos: two instances on one Redis (append-only file on) against kie-sim, with 30 % of
//! callbacks dropped and 20 % duplicated; in the middle of the burst Redis is killed with
//! SIGKILL and restarted from its AOF, and one instance is restarted while it dispatches.
//! Afterwards every task has ended, none was sent to KIE twice, the cost rule's meter equals
//! what KIE charged for the tasks that ran, and KIE never answered 429.

mod support;

use gateway::team::accounts::Actor;
use gateway::money::budget::{CapKind, CostRule};
use gateway::{Credits, Store, TaskState};
use server::config::StoreConfig;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

/// Tasks submitted, and how many the team's total cap admits (imagen4-fast: 4 credits each).
const SUBMITTED: usize = 48;
const CAP_TASKS: i64 = 36;

async fn instance(store: &StoreConfig, sim_base: &str, listener: tokio::net::TcpListener, base: &str) -> Running {
    let mut cfg = config(store.clone(), Some(KEY));
    cfg.kie_base_url = sim_base.parse().expect("url");
    cfg.public_url = Some(base.parse().expect("url"));
    // Past this, a task in doubt whose callback was lost ends `expired`: short, so the run ends.
    cfg.give_up_after = Duration::from_secs(45);
    start_on(listener, cfg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_and_an_instance_restarted_mid_burst_lose_and_double_nothing() {
    let mut redis = testkit::RedisServer::start();
    let store_cfg = StoreConfig::Redis { url: redis.url(), prefix: "chaos:".into(), options: Default::default() };
    let settings = kie_sim::Settings { schedule: kie_sim::Schedule { waiting_ms: 300, queuing_ms: 300, generating_ms: 600 }, ..Default::default() };
    let (sim_base, sim) = start_sim_with(settings, KEY, 100_000.0, None).await;
    {
        let mut w = sim.world();
        w.faults.drop_callback_percent = 30;
        w.faults.duplicate_callback_percent = 20;
    }
    let (la, base_a) = bind().await;
    let (lb, base_b) = bind().await;
    let a = instance(&store_cfg, &sim_base, la, &base_a).await;
    let b = instance(&store_cfg, &sim_base, lb, &base_b).await;
    let store: Arc<dyn Store> = server::open_store(&store_cfg).await.expect("store");
    let cap = Credits::from_credits(4 * CAP_TASKS);
    let rule = CostRule::new(Default::default(), [(CapKind::Total, cap)]);
    gateway::money::budget::set_rule(store.as_ref(), &Actor::cli(), rule).await.expect("rule");
    let key = gateway::team::relay_keys::create(store.as_ref(), &Actor::cli(), "chaos", "burst").await.expect("key");
    let key = key.text.expose().to_string();

    // The burst, alternating between the instances.
    let mut outcomes = Vec::new();
    let mut handles = Vec::new();
    for n in 0..SUBMITTED {
        let base = if n % 2 == 0 { base_a.clone() } else { base_b.clone() };
        let key = key.clone();
        handles.push(tokio::spawn(async move { submit_until_answered(&base, &key, &format!("chaos shot {n}")).await }));
        tokio::time::sleep(Duration::from_millis(40)).await;
        if n == SUBMITTED / 3 {
            redis.kill();
            tokio::time::sleep(Duration::from_millis(800)).await;
            redis.restart();
        }
    }
    for h in handles {
        outcomes.push(h.await.expect("join"));
    }
    // Instance B restarts while the queue drains (the rate guard holds 20 per 10 s).
    tokio::time::sleep(Duration::from_secs(2)).await;
    b.shutdown().await.expect("shutdown b");
    let (lb, base_b2) = bind().await;
    let b = instance(&store_cfg, &sim_base, lb, &base_b2).await;

    // The test's own connection saw Redis die: a fresh one.
    let store: Arc<dyn Store> = server::open_store(&store_cfg).await.expect("store");
    let refused = outcomes.iter().filter(|(c, _)| *c == 402).count();
    let in_doubt = outcomes.iter().filter(|(c, _)| *c == 503).count();
    assert_eq!(outcomes.iter().filter(|(c, _)| *c == 200).count() + refused + in_doubt, SUBMITTED, "admitted, refused by the cap or in doubt: {outcomes:?}");
    // Every task on record: the ones admitted, and any the store cut off half-way that the
    // dispatcher resolved (admitted under the cap or failed "Over budget").
    let mut admitted = Vec::new();
    let mut q = gateway::tasks::task::TaskQuery { limit: 200, ..Default::default() };
    loop {
        let page = store.task_list(&q).await.expect("list");
        admitted.extend(page.tasks.iter().map(|t| t.id.clone()));
        match page.next {
            Some(n) => q.after = Some(n),
            None => break,
        }
    }
    for (_, id) in outcomes.iter().filter(|(c, _)| *c == 200) {
        assert!(admitted.contains(id.as_ref().expect("id")), "an admitted task is on record");
    }
    assert!(admitted.len() <= outcomes.iter().filter(|(c, _)| *c == 200).count() + in_doubt);

    // Every task ends.
    let start = Instant::now();
    let mut ended: HashMap<String, gateway::TaskRecord> = HashMap::new();
    while ended.len() < admitted.len() {
        for id in &admitted {
            if let Some(t) = store.task_get(id).await.ok().flatten().filter(|t| t.state.is_terminal()) {
                ended.insert(id.clone(), t);
            }
        }
        let stuck: Vec<_> = admitted.iter().filter(|id| !ended.contains_key(*id)).collect();
        assert!(start.elapsed() < Duration::from_secs(120), "not ended after 120 s: {stuck:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let over_budget = ended.values().filter(|t| t.fail_class == Some(gateway::tasks::task::FailClass::Budget)).count();
    assert_eq!((admitted.len() - over_budget) as i64, CAP_TASKS, "the cap admitted exactly {CAP_TASKS} (refused {refused}, in doubt {in_doubt})");

    // None sent twice: one KIE task per Control Room task (its callback token is unique).
    let creates: Vec<(String, Option<String>)> = {
        let w = sim.world();
        w.tasks.values().map(|t| (t.id.clone(), t.callback_url.clone())).collect()
    };
    let mut per_token: HashMap<String, usize> = HashMap::new();
    for (_, url) in &creates {
        let token = url.as_deref().and_then(|u| u.rsplit('/').next()).unwrap_or_default().to_string();
        *per_token.entry(token).or_default() += 1;
    }
    assert!(per_token.values().all(|n| *n == 1), "a task was sent twice: {per_token:?}");
    for t in ended.values() {
        assert!(per_token.get(&t.callback_token).copied().unwrap_or(0) <= 1);
    }
    let succeeded: Vec<&gateway::TaskRecord> = ended.values().filter(|t| t.state == TaskState::Success).collect();
    let sent = creates.len();
    assert!(succeeded.len() <= sent && sent <= admitted.len(), "{} succeeded, {sent} sent, {} admitted", succeeded.len(), admitted.len());

    // Caps exact: the meter holds what KIE charged for the tasks that succeeded, and nothing
    // is held for the tasks that did not.
    let charged: i64 = succeeded.iter().map(|t| t.actual_cost.expect("actual cost").milli()).sum();
    let rules = gateway::money::budget::rules(store.as_ref()).await.expect("rules");
    let meters = gateway::money::budget::meters(store.as_ref(), &rules).await.expect("meters");
    assert_eq!(meters[0].used.milli(), charged, "the meter equals KIE's charges");
    assert!(meters[0].used <= cap);
    let sim_charged: i64 = {
        let w = sim.world();
        w.tasks.values().filter(|t| t.settled && t.fail.is_none()).map(|t| t.price_milli).sum()
    };
    assert_eq!(sim_charged, charged, "the console's ledger agrees with what the simulator charged");

    let (dropped, duplicated) = {
        let w = sim.world();
        (w.log.iter().filter(|e| e.path == "(dropped)").count(), w.log.iter().filter(|e| e.method == "CALLBACK").count())
    };
    eprintln!(
        "chaos: {} on record, {} succeeded, {over_budget} over budget, {refused} refused, {in_doubt} in doubt; {sent} sent to KIE; callbacks: {dropped} dropped, {duplicated} log lines",
        admitted.len(),
        succeeded.len()
    );
    // KIE never said 429.
    let limited = sim.world().log.iter().filter(|e| e.code == 429).count();
    assert_eq!(limited, 0, "no upstream 429");
    assert!(succeeded.len() as i64 >= CAP_TASKS - 2, "nearly all ran: {} of {CAP_TASKS}", succeeded.len());
    a.shutdown().await.expect("shutdown a");
    b.shutdown().await.expect("shutdown b");
}
