//! Hostile input and faults over real HTTP, against kie-sim and a real Redis: callback URLs
//! aimed into the network, priced inputs outside the catalog, KIE charging more than the
//! estimate, sign-in floods and open redirects, Redis without persistence, and a store wiped
//! while the console runs.

mod support;

use gateway::team::accounts::Actor;
use gateway::money::budget::{CapKind, CostRule};
use serde_json::{Value, json};
use server::config::StoreConfig;
use std::time::{Duration, Instant};
use support::*;

fn fast() -> kie_sim::Settings {
    kie_sim::Settings { schedule: kie_sim::Schedule { waiting_ms: 100, queuing_ms: 100, generating_ms: 300 }, ..Default::default() }
}

/// A kie-sim and a console on Redis under `prefix`, whose outbound policy allows only
/// `allow`; plus a store handle on the same Redis.
async fn console(prefix: &str, allow: &str) -> (Running, kie_sim::Sim, std::sync::Arc<dyn gateway::Store>) {
    let (sim_base, sim) = start_sim_with(fast(), KEY, 10_000.0, None).await;
    let (listener, base) = bind().await;
    let mut cfg = config(redis_store(prefix), Some(KEY));
    cfg.kie_base_url = sim_base.parse().expect("url");
    cfg.public_url = Some(base.parse().expect("url"));
    cfg.outbound = gateway::outbound::OutboundPolicy::parse(allow).expect("allow");
    let running = start_on(listener, cfg).await;
    let store = server::open_store(&redis_store(prefix)).await.expect("store");
    (running, sim, store)
}

async fn tasks_on_record(store: &dyn gateway::Store) -> u64 {
    store.task_counts().await.expect("counts").total
}

/// A receiver that records what reaches it, answering `status` (with `location` for a 3xx).
async fn receiver(status: u16, location: Option<String>) -> (String, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let (tx, location) = (tx.clone(), location.clone());
        async move {
            let _ = tx.send(serde_json::from_slice(&body).unwrap_or(Value::Null));
            let mut r = axum::response::Response::new(axum::body::Body::from("ok"));
            *r.status_mut() = axum::http::StatusCode::from_u16(status).expect("status");
            if let Some(l) = location {
                r.headers_mut().insert("location", l.parse().expect("location"));
            }
            r
        }
    });
    let (listener, base) = bind().await;
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("{base}/hook"), rx)
}

fn port_of(url: &str) -> u16 {
    url::Url::parse(url).expect("url").port().expect("port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callback_urls_into_the_network_are_refused_and_redirects_not_followed() {
    // The one receiver this deployment may call back on loopback.
    let (evil_target, mut evil_hits) = receiver(200, None).await;
    let (redirector, mut redirector_hits) = receiver(307, Some(evil_target.clone())).await;
    let prefix = format!("{}:", testkit::unique("ssrf"));
    let (s, _sim, store) = console(&prefix, &format!("127.0.0.1:{}", port_of(&redirector))).await;
    let key = gateway::team::relay_keys::create(store.as_ref(), &Actor::cli(), "trailer", "farm").await.expect("key");
    let create = format!("{}/kie/api/v1/jobs/createTask", s.base);
    let redis_port = url::Url::parse(&testkit::redis_url()).expect("url").port().expect("port");
    for target in [
        format!("http://127.0.0.1:{redis_port}/"),
        format!("http://2130706433:{redis_port}/"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[::1]:8080/hook".to_string(),
        "http://[::ffff:127.0.0.1]/hook".to_string(),
        "http://10.0.0.8/hook".to_string(),
        "http://100.64.1.1/hook".to_string(),
        "http://localhost/hook".to_string(),
        evil_target.clone(),
    ] {
        let before = tasks_on_record(store.as_ref()).await;
        let body = post_kie(&create, key.text.expose(), &json!({"model": "google/imagen4-fast", "input": {"prompt": "x"}, "callBackUrl": target})).await;
        assert_eq!(body["code"], 422, "{target}: {body}");
        let msg = body["msg"].as_str().unwrap_or_default();
        assert!(msg.contains("callBackUrl refused") && msg.contains("address"), "{target}: {msg}");
        assert_eq!(tasks_on_record(store.as_ref()).await, before, "{target}: nothing recorded");
    }

    // An allowed receiver that answers with a redirect into the network: never followed.
    let body = post_kie(&create, key.text.expose(), &json!({"model": "google/imagen4-fast", "input": {"prompt": "x"}, "callBackUrl": redirector})).await;
    assert_eq!(body["code"], 200, "{body}");
    let id = body["data"]["taskId"].as_str().expect("id").to_string();
    tokio::time::timeout(Duration::from_secs(30), redirector_hits.recv()).await.expect("the callback reached the allowed receiver");
    wait_until("the delivery was recorded", 10, || {
        let store = store.clone();
        let id = id.clone();
        async move { store.task_get(&id).await.expect("get").and_then(|t| t.relay_callback).is_some_and(|c| c.attempts >= 1) }
    })
    .await;
    let cb = store.task_get(&id).await.expect("get").and_then(|t| t.relay_callback).expect("callback");
    assert!(!cb.delivered && cb.last_error.as_deref().is_some_and(|e| e.contains("redirect")), "{cb:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(evil_hits.try_recv().is_err(), "the redirect's target was never called");
    s.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn priced_inputs_outside_the_catalog_are_refused_with_the_choices() {
    let prefix = format!("{}:", testkit::unique("price"));
    let (s, sim, store) = console(&prefix, "").await;
    let key = gateway::team::relay_keys::create(store.as_ref(), &Actor::cli(), "trailer", "farm").await.expect("key");
    let create = format!("{}/kie/api/v1/jobs/createTask", s.base);
    for duration in [json!("inf"), json!("1e300"), json!(-5), json!(7.5), json!("5; x"), json!({"s": 5}), json!("NaN"), json!(2305843009213690u64)] {
        let body = post_kie(&create, key.text.expose(), &json!({"model": "kling-2.6/text-to-video", "input": {"prompt": "a kite", "duration": duration}})).await;
        assert_eq!(body["code"], 422, "{duration}: {body}");
        assert!(body["msg"].as_str().unwrap_or_default().contains("input.duration must be one of 5, 10"), "{body}");
    }
    // The browser's path says the same.
    let (code, body) = server_fn(&s.base, "submit_task", &form(&[("model", "flux-2/pro-text-to-image"), ("project", "trailer"), ("prompt", "x"), ("choice", "8K")])).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(tasks_on_record(store.as_ref()).await, 0, "nothing recorded");
    assert_eq!(sim.world().log.iter().filter(|e| e.path == "/api/v1/jobs/createTask").count(), 0, "nothing sent");
    s.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_charge_above_the_estimate_raises_the_alerts_it_crosses() {
    let prefix = format!("{}:", testkit::unique("overrun"));
    let (s, sim, store) = console(&prefix, "").await;
    // KIE charges three times the catalog's price (imagen4-fast: 4 credits → 12).
    sim.world().faults.charge_percent = Some(300);
    let rule = CostRule::in_usd(Some("trailer".into()), None, [(CapKind::PerJob, "per job", 0.03), (CapKind::PerDay, "per day", 0.05)]).expect("rule");
    gateway::money::budget::set_rule(store.as_ref(), &Actor::cli(), rule).await.expect("set rule");
    let (code, body) = server_fn(&s.base, "submit_task", &form(&[("model", "google/imagen4-fast"), ("project", "trailer"), ("prompt", "dear")])).await;
    assert_eq!(code, 200, "estimated at 4 credits, inside both caps: {body}");
    let id = body["id"].as_str().expect("id").to_string();
    assert!(gateway::money::budget::alerts(store.as_ref()).await.expect("alerts").is_empty(), "4 of 10 credits: no alert yet");
    wait_until("the task succeeded and settled", 30, || {
        let store = store.clone();
        let id = id.clone();
        async move { store.task_get(&id).await.expect("get").is_some_and(|t| t.state == gateway::TaskState::Success) }
    })
    .await;
    wait_until("the alerts were raised", 10, || {
        let store = store.clone();
        async move { gateway::money::budget::alerts(store.as_ref()).await.expect("alerts").len() >= 2 }
    })
    .await;
    let alerts = gateway::money::budget::alerts(store.as_ref()).await.expect("alerts");
    let day = alerts.iter().find(|a| a.kind == gateway::money::budget::CapKind::PerDay).expect("day alert");
    assert_eq!((day.level, day.used, day.cap), (100, gateway::Credits::from_credits(12), gateway::Credits::from_credits(10)), "the actual charge passed the day cap");
    let job = alerts.iter().find(|a| a.kind == gateway::money::budget::CapKind::PerJob).expect("per-job alert");
    assert_eq!((job.task.as_deref(), job.used, job.cap), (Some(id.as_str()), gateway::Credits::from_credits(12), gateway::Credits::from_credits(6)));
    // The Error Review names it.
    let (_, review) = server_fn(&s.base, "review_tasks", "").await;
    let row = review["rows"].as_array().expect("rows").iter().find(|r| r["id"] == id.as_str()).cloned().expect("in the Error Review");
    assert_eq!(row["fail_class"], "Cost over the per-job cap", "{row}");
    let rules = gateway::money::budget::rules(store.as_ref()).await.expect("rules");
    let used = gateway::money::budget::meters(store.as_ref(), &rules).await.expect("meters")[0].used;
    assert_eq!(used, gateway::Credits::from_credits(12), "the day meter holds KIE's charge");
    s.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_wrong_passwords_is_throttled_and_logged_once() {
    let prefix = format!("{}:", testkit::unique("burst"));
    let (s, _sim, store) = console(&prefix, "").await;
    let base = s.base.clone();
    // An open redirect through `next` is not possible.
    for next in ["/\t/evil.example", "/\n/evil.example", "//evil.example", "/\\evil.example", "/a//evil"] {
        let r = post_form(&base, "/auth/signin", None, &[("email", PRODUCER), ("password", PASSWORD), ("next", next)]).await;
        assert_eq!(r.headers()["location"], "/", "{next:?}");
    }
    let attempts: Vec<_> = (0..30).map(|_| {
        let base = base.clone();
        tokio::spawn(async move { sign_in(&base, VIEWER, "not the password").await })
    }).collect();
    let mut refused = 0;
    let mut throttled = 0;
    for a in attempts {
        match a.await.expect("join") {
            Err(loc) if loc.contains("error=refused") => refused += 1,
            Err(loc) if loc.contains("error=throttled") => throttled += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        (refused, throttled),
        (
            gateway::team::sessions::MAX_FAILS_PER_ACCOUNT_ADDRESS as usize,
            25
        ),
        "only 5 passwords were checked"
    );
    let log = gateway::team::audit::search(store.as_ref(), &Default::default(), None, 1000)
        .await
        .expect("audit");
    let entries: Vec<_> = log
        .entries
        .iter()
        .filter(|e| e.action == "sign-in refused")
        .collect();
    // The 5 wrong passwords are one entry (the first failure from the address), and the
    // throttled flood one more.
    let wrong = entries
        .iter()
        .filter(|e| {
            e.after
                .as_deref()
                .is_some_and(|a| a.starts_with("wrong email or password"))
        })
        .count();
    assert_eq!(
        wrong, 1,
        "the first failure from the address, not one entry per guess: {entries:?}"
    );
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(entries.iter().any(|e| {
        e.after
            .as_deref()
            .is_some_and(|a| a.contains("too many attempts"))
    }));

    s.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_live_streams_rechecks_do_not_keep_an_idle_session_alive() {
    use gateway::team::sessions::{self, SessionPolicy, Use};
    let store = server::open_store(&redis_store(&format!("{}:", testkit::unique("idle")))).await.expect("store");
    let user = gateway::team::accounts::add(store.as_ref(), &Actor::cli(), "idle@studio.test", "", gateway::team::accounts::Role::Viewer, PASSWORD).await.expect("user");
    let policy = SessionPolicy { idle: Duration::from_millis(1_500), absolute: Duration::from_secs(60), ..Default::default() };
    let token = sessions::open(store.as_ref(), &user, "127.0.0.1", &policy).await.expect("open");
    // Checks only, for longer than the idle time: the session ends.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2_000) {
        sessions::resolve(store.as_ref(), token.expose(), &policy, Use::Check).await.expect("resolve");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(sessions::resolve(store.as_ref(), token.expose(), &policy, Use::Activity).await.expect("resolve").is_none(), "idle: only checks came");
    // Activity keeps one alive; a touch after sign-out does not bring it back.
    let token = sessions::open(store.as_ref(), &user, "127.0.0.1", &policy).await.expect("open");
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2_000) {
        assert!(sessions::resolve(store.as_ref(), token.expose(), &policy, Use::Activity).await.expect("resolve").is_some());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sessions::close(store.as_ref(), token.expose()).await.expect("close");
    assert!(sessions::resolve(store.as_ref(), token.expose(), &policy, Use::Activity).await.expect("resolve").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_without_persistence_is_refused_unless_allowed() {
    let redis = testkit::RedisServer::start_ephemeral();
    let store = StoreConfig::Redis { url: redis.url(), prefix: "eph:".into(), options: Default::default() };
    let (listener, _) = bind().await;
    let err = server::run(listener, config(store.clone(), None), std::future::pending()).await.expect_err("refused");
    let msg = err.to_string();
    assert!(msg.contains("keeps nothing on disk") && msg.contains("appendonly yes") && msg.contains("REDIS_ALLOW_EPHEMERAL"), "{msg}");
    let mut cfg = config(store, None);
    cfg.redis_allow_ephemeral = true;
    let s = start(cfg).await;
    assert_eq!(get_anon(&format!("{}/readyz", s.base)).await.0, 200, "allowed explicitly, it starts");
    s.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_wiped_while_running_stops_the_console_loudly() {
    let prefix = format!("{}:", testkit::unique("wipe"));
    let (s, sim, store) = console(&prefix, "").await;
    let key = gateway::team::relay_keys::create(store.as_ref(), &Actor::cli(), "trailer", "farm").await.expect("key");
    assert_eq!(get_anon(&format!("{}/readyz", s.base)).await.0, 200);
    // Everything under the prefix vanishes (FLUSHDB, a Redis restarted without its data).
    let client = redis::Client::open(testkit::redis_url()).expect("client");
    let mut conn = client.get_multiplexed_async_connection().await.expect("conn");
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut conn).await.expect("keys");
    let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.expect("del");
    let base = s.base.clone();
    wait_until("readyz said not ready", 10, || {
        let base = base.clone();
        async move { get_anon(&format!("{base}/readyz")).await.0 == 503 }
    })
    .await;
    let (_, body) = get_anon(&format!("{}/readyz", s.base)).await;
    assert!(body.contains("lost its data"), "{body}");
    // Someone starts writing into the empty store again (a new relay key): the console
    // accepts nothing on it and sends nothing to KIE.
    drop(key);
    let key = gateway::team::relay_keys::create(store.as_ref(), &Actor::cli(), "trailer", "farm again").await.expect("key");
    let body = post_kie(&format!("{}/kie/api/v1/jobs/createTask", s.base), key.text.expose(), &json!({"model": "google/imagen4-fast", "input": {"prompt": "x"}})).await;
    assert_eq!(body["code"], 503, "{body}");
    assert_eq!(tasks_on_record(store.as_ref()).await, 0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sim.world().log.iter().filter(|e| e.path == "/api/v1/jobs/createTask").count(), 0);
    s.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_relay_key_is_refused_at_once_on_every_instance() {
    let prefix = format!("{}:", testkit::unique("revoke"));
    let (a, _sim, store) = console(&prefix, "").await;
    let (b, _sim_b, _) = console(&prefix, "").await;
    let key = gateway::team::relay_keys::create(store.as_ref(), &Actor::cli(), "trailer", "farm").await.expect("key");
    let read = |base: String| {
        let text = key.text.expose().to_string();
        async move {
            let r = http().get(format!("{base}/kie/api/v1/jobs/recordInfo?taskId=cr_nothing")).bearer_auth(text).send().await.expect("GET");
            r.status().as_u16()
        }
    };
    // Both instances have checked (and cached) the key.
    for _ in 0..3 {
        assert_eq!(read(a.base.clone()).await, 404, "a good key, an unknown task");
        assert_eq!(read(b.base.clone()).await, 404);
    }
    gateway::team::relay_keys::revoke(store.as_ref(), &Actor::cli(), &key.key.id).await.expect("revoke");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(read(a.base.clone()).await, 401, "refused at once on instance a");
    assert_eq!(read(b.base.clone()).await, 401, "and on instance b");
    a.shutdown().await.expect("shutdown");
    b.shutdown().await.expect("shutdown");
}
