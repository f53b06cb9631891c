//! Money and limits over real HTTP against kie-sim on loopback: cost rules that refuse and
//! hold exactly (1,000 concurrent submissions on three instances on one Redis, and on the
//! embedded store), alerts, pinned models that follow the user across instances, and the rate
//! guard's fairness, concurrency rule and 429 back-off.

mod support;

use gateway::Store;
use gateway::money::budget;
use serde_json::{Value, json};
use server::config::StoreConfig;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

fn fast() -> kie_sim::Settings {
    kie_sim::Settings { schedule: kie_sim::Schedule { waiting_ms: 100, queuing_ms: 100, generating_ms: 300 }, ..Default::default() }
}

/// A kie-sim with `settings` and a Control Room (with `guard`) whose callbacks reach it back.
async fn console(store: StoreConfig, settings: kie_sim::Settings, guard: &str) -> (Running, kie_sim::Sim) {
    let (sim_base, sim) = start_sim_with(settings, KEY, 1_000_000.0, None).await;
    let r = console_on(store, &sim_base, guard).await;
    (r, sim)
}

async fn console_on(store: StoreConfig, sim_base: &str, guard: &str) -> Running {
    console_with(store, sim_base, guard, |_| {}).await
}

/// [`console_on`], with the configuration changed by `change` first.
async fn console_with(store: StoreConfig, sim_base: &str, guard: &str, change: impl FnOnce(&mut server::config::Config)) -> Running {
    let (listener, base) = bind().await;
    let mut cfg = config(store, Some(KEY));
    cfg.kie_base_url = sim_base.parse().expect("url");
    cfg.public_url = Some(base.parse().expect("url"));
    cfg.rate_guard = gateway::tasks::rate_guard::parse_rules(guard).expect("rules");
    change(&mut cfg);
    start_on(listener, cfg).await
}

async fn submit(base: &str, model: &str, project: &str, prompt: &str) -> (u16, Value) {
    server_fn(base, "submit_task", &form(&[("model", model), ("project", project), ("prompt", prompt)])).await
}

async fn rows(base: &str) -> Vec<Value> {
    let (code, list) = server_fn(base, "list_tasks", "limit=100").await;
    assert_eq!(code, 200, "{list}");
    list["rows"].as_array().cloned().unwrap_or_default()
}

/// Waits until every task listed on `base` has ended; returns the rows.
async fn all_ended(base: &str, expect: usize) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let r = rows(base).await;
        if r.len() == expect && r.iter().all(|r| r["terminal"] == true) {
            return r;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "tasks did not end: {} rows, {:?}", r.len(), r.iter().map(|r| &r["state"]).collect::<Vec<_>>());
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

fn milli(decimal: &Value) -> i64 {
    (decimal.as_str().and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0) * 1000.0).round() as i64
}

#[tokio::test]
async fn cost_rules_refuse_with_the_numbers_and_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, _sim) = console(embedded(&dir), fast(), "20/10s").await;

    // Bad rules are refused with what to fix, and set nothing.
    for (field, value, says) in [("per_day", "abc", "dollar amount"), ("per_day", "-1", "above 0"), ("total", "1e12", "at most")] {
        let (code, body) = server_fn(&s.base, "set_cost_rule", &form(&[("project", "trailer"), (field, value)])).await;
        assert!(code >= 400 && body.to_string().contains(says), "{field}={value}: {code} {body}");
    }
    let (_, status) = server_fn(&s.base, "budget_status", "").await;
    assert_eq!(status["rules"], json!([]), "nothing was set");

    // $0.12 a day for project trailer = 24 credits = three 8-credit images.
    let (code, body) = server_fn(&s.base, "set_cost_rule", &form(&[("project", "trailer"), ("per_day", "0.12")])).await;
    assert_eq!(code, 200, "{body}");
    for i in 0..3 {
        let (code, body) = submit(&s.base, "nano-banana-2", "trailer", &format!("shot {i}")).await;
        assert_eq!(code, 200, "{body}");
    }
    let (code, refused) = submit(&s.base, "nano-banana-2", "trailer", "one too many").await;
    let msg = refused.to_string();
    assert!(code >= 400, "{code} {msg}");
    for part in ["project trailer — max per rolling 24 h", "$0.12 (24 credits) used of $0.12 (24 credits)", "$0.00 (0 credits) left", "needs $0.04 (8 credits)"] {
        assert!(msg.contains(part), "the refusal says {part:?}: {msg}");
    }
    assert_eq!(rows(&s.base).await.len(), 3, "a refused submission leaves no record");
    // Another project is not held by this rule.
    let (code, body) = submit(&s.base, "nano-banana-2", "promo", "elsewhere").await;
    assert_eq!(code, 200, "{body}");

    // A per-job cap for the team refuses a task bigger than it.
    let (code, _) = server_fn(&s.base, "set_cost_rule", &form(&[("per_job", "0.02")])).await;
    assert_eq!(code, 200);
    let (code, refused) = submit(&s.base, "nano-banana-2", "promo", "too dear").await;
    let msg = refused.to_string();
    assert!(code >= 400 && msg.contains("team — max per job") && msg.contains("one job may cost at most $0.02 (4 credits)"), "{code} {msg}");
    let (code, body) = server_fn(&s.base, "set_cost_rule", "").await;
    assert_eq!(code, 422, "a rule with no amounts is refused, not removed: {body}");
    let (code, _) = server_fn(&s.base, "delete_cost_rule", "").await;
    assert_eq!(code, 200, "deleting the team rule removes it");
    let (code, _) = server_fn(&s.base, "delete_cost_rule", "").await;
    assert_eq!(code, 404, "and then there is none");

    // The meter is at the cap and the 100 % alert was raised once.
    let ended = all_ended(&s.base, 4).await;
    let trailer_spent: i64 = ended.iter().filter(|r| r["project"] == "trailer").map(|r| milli(&r["actual_credits"])).sum();
    let start = Instant::now();
    let status = loop {
        let (_, status) = server_fn(&s.base, "budget_status", "").await;
        if status["alerts"].as_array().is_some_and(|a| !a.is_empty()) || start.elapsed() > Duration::from_secs(10) {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status["rules"].as_array().map(Vec::len), Some(1), "{status}");
    let meter = &status["meters"][0];
    assert_eq!(meter["percent"], (trailer_spent * 100 / 24_000) as u64, "the meter reads the settled spend: {status}");
    let alerts = status["alerts"].as_array().expect("alerts");
    assert_eq!(alerts.len(), 1, "one alert, at the highest level crossed: {status}");
    assert!(alerts[0][1].as_str().unwrap_or("").contains("100 % reached"), "{status}");
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_relay_answers_402_and_failures_release_their_hold() {
    let prefix = format!("{}:", testkit::unique("budget402"));
    let (s, _sim) = console(redis_store(&prefix), fast(), "20/10s").await;
    let store = server::open_store(&redis_store(&prefix)).await.expect("store");
    let key = gateway::team::relay_keys::create(store.as_ref(), &gateway::team::accounts::Actor::cli(), "trailer", "batch").await.expect("key");
    let rule = budget::CostRule::new(budget::Target { project: Some("trailer".into()), user: None }, [(budget::CapKind::Total, gateway::Credits::from_credits(10))]);
    budget::set_rule(store.as_ref(), &gateway::team::accounts::Actor::cli(), rule.clone()).await.expect("rule");
    let create = |prompt: &str| {
        http()
            .post(format!("{}/kie/api/v1/jobs/createTask", s.base))
            .bearer_auth(key.text.expose())
            .json(&json!({"model": "nano-banana-2", "input": {"prompt": prompt}}))
            .send()
    };
    // A failing task holds its 8 credits while it runs, then releases them all.
    let r = create("sim:fail please").await.expect("post");
    assert_eq!(r.status(), 200);
    let refused = create("while the first holds").await.expect("post");
    assert_eq!(refused.status(), 402, "10 credits cannot hold two 8-credit tasks");
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["code"], 402);
    assert!(body["msg"].as_str().unwrap_or("").contains("max in total"), "{body}");
    all_ended(&s.base, 1).await;
    let meters = budget::meters(store.as_ref(), &budget::rules(store.as_ref()).await.expect("rules")).await.expect("meters");
    assert_eq!(meters[0].used, gateway::Credits::ZERO, "KIE charges no failure; the hold is released");
    let r = create("now it fits").await.expect("post");
    assert_eq!(r.status(), 200, "after the release the budget admits again");
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_rule_can_name_one_relay_key_and_holds_only_its_tasks() {
    let prefix = format!("{}:", testkit::unique("keyrule"));
    let (s, _sim) = console(redis_store(&prefix), fast(), "20/10s").await;
    let store = server::open_store(&redis_store(&prefix)).await.expect("store");
    let cli = gateway::team::accounts::Actor::cli();
    let farm = gateway::team::relay_keys::create(store.as_ref(), &cli, "trailer", "farm").await.expect("key");
    let batch = gateway::team::relay_keys::create(store.as_ref(), &cli, "trailer", "batch").await.expect("key");
    // Set as a person would in panel 05: the Person field names the key.
    let who = format!("key:{}", farm.key.id);
    let (code, body) = server_fn(&s.base, "set_cost_rule", &form(&[("user", who.as_str()), ("per_job", "0.02")])).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["rules"][0]["label"], format!("relay key {}", farm.key.id), "{body}");
    let url = format!("{}/kie/api/v1/jobs/createTask", s.base);
    let body = json!({"model": "nano-banana-2", "input": {"prompt": "x"}});
    let refused = post_kie(&url, farm.text.expose(), &body).await;
    assert_eq!(refused["code"], 402, "8 credits is above the farm key's $0.02 (4 credits) per job: {refused}");
    assert!(refused["msg"].as_str().unwrap_or("").contains(&format!("relay key {} — max per job", farm.key.id)), "{refused}");
    let admitted = post_kie(&url, batch.text.expose(), &body).await;
    assert_eq!(admitted["code"], 200, "another key of the same project is not held by it: {admitted}");
    s.shutdown().await.expect("shutdown");
}

/// 1,000 submissions at once, spread over `bases`, against a total cap that admits exactly
/// `k` 8-credit images: exactly `k` are admitted, and once they end the committed spend equals
/// the sum of their actual costs.
async fn race(bases: &[String], store: Arc<dyn Store>, project: &str, k: i64) {
    let rule = budget::CostRule::new(budget::Target { project: Some(project.into()), user: None }, [(budget::CapKind::Total, gateway::Credits::from_credits(8 * k))]);
    budget::set_rule(store.as_ref(), &gateway::team::accounts::Actor::cli(), rule).await.expect("rule");
    let mut set = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let base = bases[i % bases.len()].clone();
        let project = project.to_string();
        set.spawn(async move { submit(&base, "nano-banana-2", &project, &format!("race {i}")).await });
    }
    let (mut admitted, mut refused) = (0, 0);
    while let Some(r) = set.join_next().await {
        let (code, body) = r.expect("join");
        if code == 200 {
            admitted += 1;
        } else {
            assert!(body.to_string().contains("Refused by the cost rule"), "{code} {body}");
            refused += 1;
        }
    }
    assert_eq!((admitted, refused), (k, 1000 - k), "exactly k admitted");
    let q = gateway::tasks::task::TaskQuery { project: Some(project.into()), limit: 500, ..Default::default() };
    let start = Instant::now();
    let tasks = loop {
        let tasks = store.task_list(&q).await.expect("list").tasks;
        if tasks.iter().all(|t| t.state.is_terminal()) {
            break tasks;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "tasks did not end");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(tasks.len() as i64, k, "no refused submission left a record");
    let actual: i64 = tasks.iter().map(|t| t.actual_cost.unwrap_or_default().milli()).sum();
    let rules = budget::rules(store.as_ref()).await.expect("rules");
    let meter = budget::meters(store.as_ref(), &rules).await.expect("meters").pop().expect("meter");
    assert_eq!(meter.used.milli(), actual, "committed spend = the sum of actual costs");
    assert!(meter.used <= meter.cap, "spend {} within the cap {}", meter.used, meter.cap);
}

fn unlimited() -> kie_sim::Settings {
    kie_sim::Settings { rate_limit: 1_000_000, ..fast() }
}

#[tokio::test]
async fn budgets_hold_exactly_under_1000_concurrent_submissions_on_three_instances() {
    testkit::raise_fd_limit();
    let prefix = format!("{}:", testkit::unique("budgetrace"));
    let (sim_base, _sim) = start_sim_with(unlimited(), KEY, 1_000_000.0, None).await;
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(console_on(redis_store(&prefix), &sim_base, "10000/10s").await);
    }
    let store = server::open_store(&redis_store(&prefix)).await.expect("store");
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    race(&bases, store, "race", 37).await;
    for s in servers {
        s.shutdown().await.expect("shutdown");
    }
}

#[tokio::test]
async fn budgets_hold_exactly_under_1000_concurrent_submissions_on_the_embedded_store() {
    testkit::raise_fd_limit();
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, _sim) = console(embedded(&dir), unlimited(), "10000/10s").await;
    // The embedded store is one process's: read it through the running server's own handle.
    let (code, _) = server_fn(&s.base, "set_cost_rule", &form(&[("project", "race"), ("total", "0.185")])).await;
    assert_eq!(code, 200);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let base = s.base.clone();
        set.spawn(async move { submit(&base, "nano-banana-2", "race", &format!("race {i}")).await.0 });
    }
    let mut admitted = 0;
    while let Some(code) = set.join_next().await {
        admitted += usize::from(code.expect("join") == 200);
    }
    assert_eq!(admitted, 4, "$0.185 = 37 credits admits exactly four 8-credit images");
    let ended = all_ended(&s.base, 4).await;
    let actual: i64 = ended.iter().map(|r| milli(&r["actual_credits"])).sum();
    let (_, status) = server_fn(&s.base, "budget_status", "").await;
    let used = status["meters"][0]["used"].as_str().expect("used").to_string();
    let expected = format!("${:.2} ({} credits)", actual as f64 / 1000.0 * 0.005, gateway::Credits(actual));
    assert_eq!(used, expected, "committed spend = the sum of actual costs");
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn pins_follow_the_user_across_instances() {
    let prefix = format!("{}:", testkit::unique("pins"));
    let (a, _sim) = console(redis_store(&prefix), fast(), "20/10s").await;
    let b = console_on(redis_store(&prefix), "http://127.0.0.1:9", "20/10s").await;
    let (code, pins) = server_fn(&a.base, "set_pin", &form(&[("model", "veo3"), ("pinned", "true")])).await;
    assert_eq!((code, pins.clone()), (200, json!(["veo3"])), "{pins}");
    let (_, market) = server_fn(&b.base, "list_models", "").await;
    let pinned: Vec<&str> = market["models"].as_array().expect("models").iter().filter(|m| m["pinned"] == true).filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(pinned, ["veo3"], "the other instance sees the pin");
    let (code, body) = server_fn(&b.base, "set_pin", &form(&[("model", "no-such-model"), ("pinned", "true")])).await;
    assert!(code >= 400 && body.to_string().contains("not in the catalog"), "{body}");
    let (code, pins) = server_fn(&b.base, "set_pin", &form(&[("model", "veo3"), ("pinned", "false")])).await;
    assert_eq!((code, pins), (200, json!([])));
    a.shutdown().await.expect("shutdown");
    b.shutdown().await.expect("shutdown");
}

/// Relay keys give tasks distinct owners (`key:<name>`).
async fn relay_create(base: &str, key: &str, prompt: &str) -> u16 {
    http()
        .post(format!("{base}/kie/api/v1/jobs/createTask"))
        .bearer_auth(key)
        .json(&json!({"model": "nano-banana-2", "input": {"prompt": prompt}}))
        .send()
        .await
        .expect("post")
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_burst_from_one_owner_does_not_starve_another() {
    let prefix = format!("{}:", testkit::unique("fair"));
    let (s, sim) = console(redis_store(&prefix), unlimited(), "4/1s").await;
    let store = server::open_store(&redis_store(&prefix)).await.expect("store");
    let burst = gateway::team::relay_keys::create(store.as_ref(), &gateway::team::accounts::Actor::cli(), "p", "burst").await.expect("key");
    let single = gateway::team::relay_keys::create(store.as_ref(), &gateway::team::accounts::Actor::cli(), "p", "single").await.expect("key");
    for i in 0..24 {
        assert_eq!(relay_create(&s.base, burst.text.expose(), &format!("burst {i}")).await, 200);
    }
    let single_id: Value = http()
        .post(format!("{}/kie/api/v1/jobs/createTask", s.base))
        .bearer_auth(single.text.expose())
        .json(&json!({"model": "nano-banana-2", "input": {"prompt": "the single task"}}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let single_id = single_id["data"]["taskId"].as_str().expect("task id").to_string();
    // When it joined the queue (not when its request left: under load that can be much earlier).
    let arrived_ms = store.task_get(&single_id).await.expect("get").expect("recorded").created_ms;
    // While the burst drains, the Throttle panel shows the queue in fair order.
    let (_, throttle) = server_fn(&s.base, "throttle_status", "").await;
    assert!(throttle["depth"].as_u64().unwrap_or(0) > 4, "{throttle}");
    let start = Instant::now();
    let order: Vec<(u64, String)> = loop {
        let sent: Vec<(u64, String)> = {
            let w = sim.world();
            w.log
                .iter()
                .filter(|e| e.path.ends_with("createTask") && e.code == 200)
                .filter_map(|e| e.task_id.as_ref().and_then(|id| w.tasks.get(id)).map(|t| (e.at_ms, t.param.clone())))
                .collect()
        };
        if sent.len() == 25 {
            break sent;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "only {} sent", sent.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let at = order.iter().position(|(_, p)| p.contains("the single task")).expect("sent");
    let overtaken = order[..at].iter().filter(|(t, _)| *t >= arrived_ms).count();
    // Of the burst's tasks still queued when it arrived, at most those of the round already
    // under way leave before it — the one waiting for the next slot and what the guard admits
    // before the round re-reads the queue (at most a second: one window's worth, 4, and the
    // send in flight) — not the whole burst.
    let queued_then = order.iter().filter(|(t, _)| *t >= arrived_ms).count() - 1;
    assert!(overtaken <= 1 + 4 + 1, "the single task was overtaken by {overtaken} of the {queued_then} burst tasks queued when it arrived");
    assert!(queued_then >= 8, "the burst was still queued when the single task arrived ({queued_then} left)");
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_concurrency_rule_caps_tasks_running_upstream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let slow = kie_sim::Settings { schedule: kie_sim::Schedule { waiting_ms: 200, queuing_ms: 200, generating_ms: 800 }, ..Default::default() };
    let (s, _sim) = console(embedded(&dir), slow, "20/10s, concurrent:2").await;
    for i in 0..6 {
        assert_eq!(submit(&s.base, "nano-banana-2", "p", &format!("c {i}")).await.0, 200);
    }
    let start = Instant::now();
    let mut most = 0;
    loop {
        let r = rows(&s.base).await;
        let running = r.iter().filter(|r| !(r["state"] == "queued" || r["terminal"] == true)).count();
        most = most.max(running);
        if r.iter().all(|r| r["terminal"] == true) {
            assert!(r.iter().all(|r| r["state"] == "success"), "{r:?}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "tasks did not end");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(most, 2, "at most two ran at once, and two did");
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_429_from_kie_backs_off_every_instance_and_is_shown() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Someone else uses the same account: KIE admits only 2 per 10 s, the guard thinks 20.
    let tight = kie_sim::Settings { rate_limit: 2, ..fast() };
    let (s, _sim) = console(embedded(&dir), tight, "20/10s").await;
    for i in 0..4 {
        assert_eq!(submit(&s.base, "nano-banana-2", "p", &format!("r {i}")).await.0, 200);
    }
    let start = Instant::now();
    let throttle = loop {
        let (_, t) = server_fn(&s.base, "throttle_status", "").await;
        // The 429 is counted as it arrives; the task shows as backed off once its record is
        // written back (a moment later, while it is still in doubt).
        if t["rate_limited_total"].as_i64().unwrap_or(0) >= 1 && t["backed_off"].as_u64().unwrap_or(0) >= 1 {
            break t;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "no 429 seen, or no task backed off after it: {t}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(throttle["rate_limited_total"].as_i64().unwrap_or(0) >= 1, "{throttle}");
    let (_, review) = server_fn(&s.base, "review_tasks", "").await;
    let labels: Vec<&str> = review["rows"].as_array().expect("rows").iter().filter_map(|r| r["fail_class"].as_str()).collect();
    assert!(labels.contains(&"Rate limited — backed off"), "{review}");
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_token_rule_holds_back_what_does_not_fit_its_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 60 estimated tokens a minute; each of these inputs is about 42 (168 characters of JSON,
    // 4 characters a token), so two do not fit.
    let (s, sim) = console(embedded(&dir), fast(), "20/10s, tokens:60/1m").await;
    let prompt = "a long prompt that fills most of the token window: ".repeat(3);
    for _ in 0..2 {
        assert_eq!(submit(&s.base, "nano-banana-2", "p", &prompt).await.0, 200);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = sim.world().log.iter().filter(|e| e.path.ends_with("createTask") && e.code == 200).count();
    assert_eq!(sent, 1, "the second task does not fit the token window this minute");
    let r = rows(&s.base).await;
    let waiting: Vec<&Value> = r.iter().filter(|r| r["state"] == "queued").collect();
    assert_eq!(waiting.len(), 1, "{r:?}");
    assert!(waiting[0]["queue"].as_str().unwrap_or("").contains("#1 in the rate guard's queue"), "{:?}", waiting[0]);
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_submission_cut_off_before_its_reservation_is_resolved_on_the_next_start() {
    // Two records written budget-pending by an instance that then died (aged past the grace
    // period), under a 10-credit total: the first is reserved and runs, the second is refused
    // and ends "Over budget"; neither is lost, neither is counted twice.
    let prefix = format!("{}:", testkit::unique("pending"));
    let store = server::open_store(&redis_store(&prefix)).await.expect("store");
    let rule = budget::CostRule::new(budget::Target { project: Some("p".into()), user: None }, [(budget::CapKind::Total, gateway::Credits::from_credits(10))]);
    budget::set_rule(store.as_ref(), &gateway::team::accounts::Actor::cli(), rule).await.expect("rule");
    let aged = gateway::store::now_ms() - 60_000;
    for (i, id) in ["cr_cut_off_a", "cr_cut_off_b"].into_iter().enumerate() {
        let mut t = gateway::TaskRecord::new(id, "console", "p", "nano-banana-2", aged + i as u64);
        t.input = json!({"prompt": format!("cut off {i}")});
        t.estimated_cost = gateway::Credits::from_credits(8);
        t.callback_token = format!("token{i}");
        t.budget_pending = true;
        assert!(store.task_insert(&t).await.expect("insert"));
    }
    let (s, _sim) = console(redis_store(&prefix), fast(), "20/10s").await;
    let start = Instant::now();
    let (a, b) = loop {
        let a = store.task_get("cr_cut_off_a").await.expect("get").expect("a");
        let b = store.task_get("cr_cut_off_b").await.expect("get").expect("b");
        if a.state.is_terminal() && b.state.is_terminal() {
            break (a, b);
        }
        assert!(start.elapsed() < Duration::from_secs(30), "not resolved: {:?} {:?}", a.state, b.state);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(a.state, gateway::TaskState::Success, "the first fits and runs");
    assert_eq!(b.state, gateway::TaskState::Fail);
    assert_eq!(b.fail_class, Some(gateway::tasks::task::FailClass::Budget));
    assert!(b.fail_msg.as_deref().unwrap_or("").contains("max in total"), "{:?}", b.fail_msg);
    let meters = budget::meters(store.as_ref(), &budget::rules(store.as_ref()).await.expect("rules")).await.expect("meters");
    assert_eq!(meters[0].used, a.actual_cost.expect("cost"), "only the task that ran is counted, once");
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_budget_cli_sets_shows_and_removes_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cli = |args: &[&str]| cli(dir.path(), args);
    let (code, out, err) = cli(&["budget", "set", "--project", "trailer", "--per-day", "25", "--total", "400"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("per 24 h $25.00 (5000 credits) · total $400.00 (80000 credits)"), "{out}");
    let (code, _, err) = cli(&["budget", "set", "--project", "trailer", "--per-day=-3"]);
    assert_ne!(code, Some(0), "a negative cap is refused");
    assert!(err.contains("--per-day must be a dollar amount above 0"), "{err}");
    let (_, shown, _) = cli(&["budget", "show"]);
    assert!(shown.contains("project trailer (set by cli)") && shown.contains("$0.00 (0 credits) used of $25.00 (5000 credits) (0 %)"), "{shown}");
    let (code, out, err) = cli(&["budget", "set", "--key", "3f2a", "--per-job", "1"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Cost rule for relay key 3f2a: per job $1.00 (200 credits) · per 24 h — · total —"), "{out}");
    let (code, _, _) = cli(&["budget", "set", "--key", "3f2a", "--user", "ana", "--per-job", "1"]);
    assert_ne!(code, Some(0), "a rule names a person or a key, not both");
    let (code, _, _) = cli(&["budget", "set", "--key", "3f2a"]);
    assert_eq!(code, Some(0));
    let (code, out, _) = cli(&["budget", "set", "--project", "trailer"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("Removed the cost rule for project trailer"), "{out}");
    let (_, shown, _) = cli(&["budget", "show"]);
    assert!(shown.contains("No cost rules"), "{shown}");
}

#[tokio::test]
async fn an_owner_over_the_queue_quota_gets_kies_429_with_nothing_recorded_on_either_instance() {
    let prefix = format!("{}:", testkit::unique("quota"));
    let (sim_base, sim) = start_sim_with(unlimited(), KEY, 1_000_000.0, None).await;
    // Two instances on one Redis, a quota of 3 per owner, and one task a minute: once the
    // first task has left, the others wait.
    let mut servers = Vec::new();
    for _ in 0..2 {
        servers.push(console_with(redis_store(&prefix), &sim_base, "1/60s", |c| c.queue_max_per_owner = 3).await);
    }
    let (a, b) = (&servers[0], &servers[1]);
    let store = server::open_store(&redis_store(&prefix)).await.expect("store");
    let cli = gateway::team::accounts::Actor::cli();
    let farm = gateway::team::relay_keys::create(store.as_ref(), &cli, "p", "farm").await.expect("key");
    // Another key with the same label: another owner, with a quota of its own.
    let twin = gateway::team::relay_keys::create(store.as_ref(), &cli, "p", "farm").await.expect("key");
    let create = |base: &str, key: &str, prompt: &str| {
        let (url, key, body) = (format!("{base}/kie/api/v1/jobs/createTask"), key.to_string(), json!({"model": "nano-banana-2", "input": {"prompt": prompt}}));
        async move { http().post(url).bearer_auth(key).json(&body).send().await.expect("post") }
    };
    assert_eq!(create(&a.base, farm.text.expose(), "first").await.status(), 200);
    wait_until("the first task left for KIE", 10, || async { sim.world().log.iter().any(|e| e.path.ends_with("createTask") && e.code == 200) }).await;
    let mut waiting = Vec::new();
    for i in 0..3 {
        let r = create(if i % 2 == 0 { &b.base } else { &a.base }, farm.text.expose(), &format!("waiting {i}")).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.expect("json");
        waiting.push(v["data"]["taskId"].as_str().expect("id").to_string());
    }
    let before = store.task_counts().await.expect("counts").total;
    for s in [a, b] {
        let r = create(&s.base, farm.text.expose(), "one too many").await;
        assert_eq!(r.status(), 429, "over the quota on {}", s.base);
        let after: u64 = r.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
        assert!((1..=61).contains(&after), "Retry-After {after}");
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["code"], 429, "KIE's envelope: {v}");
        assert!(v["msg"].as_str().unwrap_or("").contains("3 of your tasks are already waiting"), "{v}");
    }
    assert_eq!(store.task_counts().await.expect("counts").total, before, "nothing was recorded");
    assert_eq!(create(&b.base, twin.text.expose(), "the twin's").await.status(), 200, "a key with the same label is another owner");
    // The Throttle panel's queue by owner: the farm's three and the twin's one; the twin, never
    // served yet, has the next window's one send (the farm was served last).
    let (_, throttle) = server_fn(&a.base, "throttle_status", "").await;
    let lanes: Vec<(String, u64, u64)> = throttle["by_owner"].as_array().expect("by owner").iter().map(|o| (o["owner"].as_str().unwrap_or("").to_string(), o["waiting"].as_u64().unwrap_or(0), o["next_window"].as_u64().unwrap_or(9))).collect();
    assert_eq!(lanes, vec![(farm.key.owner(), 3, 0), (twin.key.owner(), 1, 1)], "{throttle}");
    assert!(throttle["by_owner"][0]["oldest_age_ms"].as_u64().unwrap_or(0) > 0, "{throttle}");
    // A waiting task cancelled gives its place back.
    let (code, said) = server_fn(&a.base, "cancel_task", &form(&[("id", &waiting[0])])).await;
    assert_eq!(code, 200, "{said}");
    assert_eq!(create(&b.base, farm.text.expose(), "in its place").await.status(), 200);
    assert_eq!(create(&a.base, farm.text.expose(), "over again").await.status(), 429);
    let (_, metrics) = get_anon(&format!("{}/metrics", a.base)).await;
    assert!(metrics.lines().any(|l| l.starts_with("control_room_submissions_refused_total{reason=\"queue_full\"} ") && !l.ends_with(" 0")), "{metrics}");
    for s in servers {
        s.shutdown().await.expect("shutdown");
    }
}

#[tokio::test]
async fn a_task_kie_completes_after_the_give_up_is_taken_and_charged_never_at_zero() {
    let prefix = format!("{}:", testkit::unique("late"));
    // KIE takes 4 s; the console gives up after 1.5 s (callback lost), then KIE finishes and
    // calls back.
    let settings = kie_sim::Settings { schedule: kie_sim::Schedule { waiting_ms: 100, queuing_ms: 100, generating_ms: 4_000 }, ..unlimited() };
    let (sim_base, sim) = start_sim_with(settings, KEY, 1_000_000.0, None).await;
    let s = console_with(redis_store(&prefix), &sim_base, "20/10s", |c| c.give_up_after = Duration::from_millis(1_500)).await;
    let store = server::open_store(&redis_store(&prefix)).await.expect("store");
    let (code, body) = server_fn(&s.base, "set_cost_rule", &form(&[("project", "late"), ("total", "10")])).await;
    assert_eq!(code, 200, "{body}");
    let (code, submitted) = submit(&s.base, "nano-banana-2", "late", "a slow lighthouse").await;
    assert_eq!(code, 200, "{submitted}");
    let id = submitted["id"].as_str().expect("id").to_string();
    let total_used = || {
        let store = store.clone();
        async move {
            let rules = budget::rules(store.as_ref()).await.expect("rules");
            budget::meters(store.as_ref(), &rules).await.expect("meters").into_iter().find(|m| m.kind == budget::CapKind::Total).expect("the total").used
        }
    };
    wait_until("the console gave up on it", 15, || async { store.task_get(&id).await.expect("get").is_some_and(|t| t.state == gateway::TaskState::Expired) }).await;
    assert_eq!(total_used().await, gateway::Credits::ZERO, "the give-up released its hold");
    wait_until("KIE's late completion was taken", 20, || async { store.task_get(&id).await.expect("get").is_some_and(|t| t.state == gateway::TaskState::Success) }).await;
    let t = store.task_get(&id).await.expect("get").expect("task");
    let kie_charge = {
        let w = sim.world();
        let kie_id = t.kie_task_id.as_deref().expect("KIE's id");
        w.tasks.get(kie_id).expect("at KIE").price_milli
    };
    assert!(t.completed_late && t.fail_class.is_none() && !t.result_urls.is_empty(), "{t:?}");
    assert_eq!(t.actual_cost, Some(gateway::Credits(kie_charge)), "counted at KIE's charge");
    assert!(kie_charge > 0);
    assert_eq!(total_used().await, gateway::Credits(kie_charge), "the cost rule counts what KIE charged");
    wait_until("folded into the receipt", 10, || async { store.task_get(&id).await.expect("get").is_some_and(|t| t.folded) }).await;
    let receipt = gateway::money::receipts::receipt(store.as_ref(), "late", None, None, None).await.expect("receipt");
    assert_eq!(receipt.credits, gateway::Credits(kie_charge).to_string(), "the receipt counts it once, at KIE's charge");
    let line = receipt.lines.iter().find(|l| l.task_id == id).expect("its line");
    assert!(line.completed_after_give_up && line.state == "success", "{line:?}");
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_charge_above_the_hold_is_counted_alerted_and_closes_the_cap() {
    let prefix = format!("{}:", testkit::unique("overrun"));
    let (sim_base, _sim) = start_sim_with(unlimited(), KEY, 1_000_000.0, None).await;
    // This catalog says nano-banana-2 costs 1 credit; KIE (kie-sim, the seeds' price) charges
    // more.
    let catalog = testkit::scratch_dir("overrun-catalog").join("models.json");
    let models = json!({"prices_taken": "test", "models": [{"id": "nano-banana-2", "category": "image", "provider": "Google", "purpose": "test", "required": ["prompt"], "price": {"flat": 1}}]});
    std::fs::write(&catalog, models.to_string()).expect("catalog");
    let s = console_with(redis_store(&prefix), &sim_base, "20/10s", |c| c.catalog_file = Some(catalog)).await;
    // One credit a job, three in total.
    let (code, body) = server_fn(&s.base, "set_cost_rule", &form(&[("project", "over"), ("per_job", "0.005"), ("total", "0.015")])).await;
    assert_eq!(code, 200, "{body}");
    let (code, first) = submit(&s.base, "nano-banana-2", "over", "a lighthouse").await;
    assert_eq!(code, 200, "{first}");
    let store = server::open_store(&redis_store(&prefix)).await.expect("store");
    let id = first["id"].as_str().expect("id").to_string();
    wait_until("it ended", 20, || async { store.task_get(&id).await.expect("get").is_some_and(|t| t.state.is_terminal()) }).await;
    let t = store.task_get(&id).await.expect("get").expect("task");
    let charged = t.actual_cost.expect("charged");
    assert!(charged > t.estimated_cost && charged > gateway::Credits::from_credits(3), "KIE charged {charged} for a hold of {}", t.estimated_cost);
    // The total counts the real charge: the cap is closed for the next task.
    let rules = budget::rules(store.as_ref()).await.expect("rules");
    let total = budget::meters(store.as_ref(), &rules).await.expect("meters").into_iter().find(|m| m.kind == budget::CapKind::Total).expect("total");
    assert_eq!(total.used, charged);
    let (code, refused) = submit(&s.base, "nano-banana-2", "over", "another").await;
    assert_eq!(code, 402, "{refused}");
    // Alerted: the per-job cap's overrun (panel 05, the webhook) and the metric.
    wait_until("the overrun alert", 10, || async { budget::alerts(store.as_ref()).await.expect("alerts").iter().any(|a| a.task.as_deref() == Some(id.as_str())) }).await;
    // Under a rule with no per-job cap the overrun is still an alert (panel 05, the webhook),
    // naming what the task held.
    let (code, body) = server_fn(&s.base, "set_cost_rule", &form(&[("project", "over-total"), ("total", "1")])).await;
    assert_eq!(code, 200, "{body}");
    let (code, second) = submit(&s.base, "nano-banana-2", "over-total", "a second lighthouse").await;
    assert_eq!(code, 200, "{second}");
    let second = second["id"].as_str().expect("id").to_string();
    wait_until("the hold's overrun alert", 20, || async {
        budget::alerts(store.as_ref()).await.expect("alerts").iter().any(|a| a.task.as_deref() == Some(second.as_str()) && a.held == Some(gateway::Credits::from_credits(1)) && a.message().contains("above the $0.01 (1 credits) it held"))
    })
    .await;
    let (_, metrics) = get_anon(&format!("{}/metrics", s.base)).await;
    assert!(metrics.lines().any(|l| l.starts_with("control_room_charge_overruns_total{model=\"nano-banana-2\"} 2")), "{metrics}");
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_projects_share_sets_its_owners_queue_quota() {
    let prefix = format!("{}:", testkit::unique("share-quota"));
    let (sim_base, sim) = start_sim_with(unlimited(), KEY, 1_000_000.0, None).await;
    let s = console_with(redis_store(&prefix), &sim_base, "1/60s", |c| c.queue_max_per_owner = 1).await;
    // Project "feature": each owner may have 3 waiting (the default here is 1).
    let (code, said) = server_fn(&s.base, "set_fair_share", &form(&[("project", "feature"), ("weight", "2"), ("max_queued", "3")])).await;
    assert_eq!(code, 200, "{said}");
    let (code, _) = submit(&s.base, "nano-banana-2", "feature", "leaves at once").await;
    assert_eq!(code, 200);
    wait_until("the first task left", 10, || async { sim.world().log.iter().any(|e| e.path.ends_with("createTask") && e.code == 200) }).await;
    for i in 0..3 {
        let (code, body) = submit(&s.base, "nano-banana-2", "feature", &format!("waits {i}")).await;
        assert_eq!(code, 200, "{body}");
    }
    let (code, body) = submit(&s.base, "nano-banana-2", "feature", "one too many").await;
    assert_eq!(code, 429, "{body}");
    assert!(body.to_string().contains("the most one owner may queue is 3"), "{body}");
    // Another project keeps the default of 1.
    assert_eq!(submit(&s.base, "nano-banana-2", "other", "its one").await.0, 200);
    assert_eq!(submit(&s.base, "nano-banana-2", "other", "its second").await.0, 429);
    s.shutdown().await.expect("shutdown");
}
