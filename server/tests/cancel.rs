//! Cancel: a task still queued here ends `fail` ("cancelled"), its cost-rule hold released,
//! audited, and the relay's recordInfo says so; a task KIE has, or one that ended, is refused
//! with 409 and a reason; only its owner or an admin may cancel it. A task still waiting tells
//! the relay its place and expected wait.

mod support;

use serde_json::{Value, json};
use support::*;

/// The task KIE takes stays running (half a minute), so it is still KIE's when the test tries
/// to cancel it, however loaded the machine.
fn slow() -> kie_sim::Settings {
    kie_sim::Settings { schedule: kie_sim::Schedule { waiting_ms: 100, queuing_ms: 100, generating_ms: 30_000 }, ..Default::default() }
}

/// A console on kie-sim admitting one new task a minute, so a second submission waits in the
/// queue here; its Redis prefix.
async fn harness(label: &str) -> (Running, kie_sim::Sim, String) {
    let (sim_base, sim) = start_sim_with(slow(), KEY, 10_000.0, None).await;
    let prefix = format!("{}:", testkit::unique(label));
    let (listener, base) = bind().await;
    let mut cfg = config(redis_store(&prefix), Some(KEY));
    cfg.kie_base_url = sim_base.parse().unwrap();
    cfg.public_url = Some(base.parse().unwrap());
    cfg.rate_guard = gateway::tasks::rate_guard::parse_rules("1/60s").unwrap();
    (start_on(listener, cfg).await, sim, prefix)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queued_task_is_cancelled_with_its_hold_released_and_a_sent_one_is_refused() {
    let (s, _sim, prefix) = harness("cancel").await;
    let base = s.base.clone();
    let (code, _) = server_fn(&base, "set_cost_rule", &form(&[("project", "trailer"), ("per_day", "50")])).await;
    assert_eq!(code, 200);
    let producer = session(&base, PRODUCER).await;
    let submit = |prompt: &'static str| {
        let (base, producer) = (base.clone(), producer.clone());
        async move {
            let (code, body) = server_fn_as(&base, Some(&producer), "submit_task", &form(&[("model", "google/imagen4-fast"), ("project", "trailer"), ("prompt", prompt)])).await;
            assert_eq!(code, 200, "{body}");
            body["id"].as_str().unwrap().to_string()
        }
    };
    let first = submit("sent at once").await;
    let second = submit("waits for the rate guard").await;
    let store = server::open_store(&redis_store(&prefix)).await.unwrap();
    let used = || async {
        let rules = gateway::money::budget::rules(store.as_ref()).await.unwrap();
        gateway::money::budget::meters(store.as_ref(), &rules).await.unwrap()[0].used
    };
    assert_eq!(used().await, gateway::Credits::from_credits(8), "both estimates held");
    wait_until("the first task reached KIE", 20, || async { store.task_get(&first).await.unwrap().unwrap().kie_task_id.is_some() }).await;

    // Someone else's task: a viewer and another producer may not; the first is KIE's already.
    let viewer = session(&base, VIEWER).await;
    assert_eq!(server_fn_as(&base, Some(&viewer), "cancel_task", &form(&[("id", &second)])).await.0, 403);
    let (code, body) = server_fn_as(&base, Some(&producer), "cancel_task", &form(&[("id", &first)])).await;
    assert_eq!(code, 409, "{body}");
    assert!(body.as_str().unwrap_or_default().contains("KIE has no cancel"), "{body}");
    assert_eq!(server_fn_as(&base, Some(&producer), "cancel_task", &form(&[("id", "no-such-task")])).await.0, 404);

    let (code, body) = server_fn_as(&base, Some(&producer), "cancel_task", &form(&[("id", &second)])).await;
    assert_eq!(code, 200, "{body}");
    let t = store.task_get(&second).await.unwrap().unwrap();
    assert_eq!((t.state, t.fail_class), (gateway::TaskState::Fail, Some(gateway::tasks::task::FailClass::Cancelled)));
    assert!(t.fail_msg.as_deref().unwrap().contains(&format!("cancelled by {PRODUCER}")));
    assert!(t.kie_task_id.is_none(), "it never reached KIE");
    // Its hold is released: only the first task's estimate (or KIE's charge) remains.
    assert_eq!(used().await, gateway::Credits::from_credits(4));
    let (code, body) = server_fn_as(&base, Some(&producer), "cancel_task", &form(&[("id", &second)])).await;
    assert_eq!(code, 409, "{body}");
    assert!(body.as_str().unwrap_or_default().contains("already ended"), "{body}");
    let (_, audit) = server_fn(&base, "audit_log", "").await;
    assert!(audit.to_string().contains("task cancelled"), "audited: {audit}");
    // The dispatcher never sends it: after the rate window it is still not at KIE.
    let (_, review) = server_fn(&base, "review_tasks", "").await;
    assert!(review["rows"].as_array().unwrap().iter().any(|r| r["id"] == second.as_str() && r["fail_class"] == "Cancelled"), "{review}");
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_clients_queued_task_cancelled_by_an_admin_reads_fail_cancelled() {
    let (s, _sim, prefix) = harness("cancel-relay").await;
    let base = s.base.clone();
    let store = server::open_store(&redis_store(&prefix)).await.unwrap();
    let key = gateway::team::relay_keys::create(store.as_ref(), &gateway::team::accounts::Actor::cli(), "trailer", "farm").await.unwrap();
    let create = |prompt: &'static str| {
        let (base, text) = (base.clone(), key.text.expose().to_string());
        async move {
            let body: Value = http().post(format!("{base}/kie/api/v1/jobs/createTask")).bearer_auth(text).json(&json!({"model": "google/imagen4-fast", "input": {"prompt": prompt}})).send().await.unwrap().json().await.unwrap();
            body["data"]["taskId"].as_str().unwrap().to_string()
        }
    };
    let _first = create("first").await;
    let second = create("second").await;
    // A producer cannot cancel a relay key's task; an admin can.
    let producer = session(&base, PRODUCER).await;
    assert_eq!(server_fn_as(&base, Some(&producer), "cancel_task", &form(&[("id", &second)])).await.0, 403);
    let (code, body) = server_fn(&base, "cancel_task", &form(&[("id", &second)])).await;
    assert_eq!(code, 200, "{body}");
    let info: Value = http().get(format!("{base}/kie/api/v1/jobs/recordInfo?taskId={second}")).bearer_auth(key.text.expose()).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["data"]["state"], "fail");
    assert!(info["data"]["failMsg"].as_str().unwrap().starts_with("cancelled"), "{info}");
    s.shutdown().await.unwrap();
}

/// A task waiting for the rate guard tells the relay where it stands: `queuePosition` in the
/// order tasks leave and `etaSeconds` by the guard's window (here one send a minute), beside
/// KIE's shape; one KIE has carries neither, nor does one held by a pause. A create may set
/// a deadline (`X-Control-Room-Send-By`), refused with 422 when it cannot be one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn record_info_says_where_a_queued_task_stands() {
    let (s, _sim, prefix) = harness("place").await;
    let base = s.base.clone();
    let (code, k) = server_fn(&base, "create_relay_key", &form(&[("project", "trailer"), ("name", "farm")])).await;
    assert_eq!(code, 200, "{k}");
    let key = k["key"].as_str().unwrap().to_string();
    // A deadline rides on any create: refused when it cannot be one, kept when it can.
    let create = |deadline: &'static str| {
        let (base, key) = (base.clone(), key.clone());
        async move {
            let r = http().post(format!("{base}/kie/api/v1/jobs/createTask")).bearer_auth(key).header("x-control-room-send-by", deadline).json(&json!({"model": "google/imagen4-fast", "input": {"prompt": "with a deadline"}})).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    for bad in ["yesterday", "0s", "200h", "2020-01-01T00:00:00Z"] {
        let (code, body) = create(bad).await;
        assert_eq!((code, body["code"].as_i64()), (422, Some(422)), "{bad}: {body}");
        assert!(body["msg"].as_str().unwrap().contains("at most 7 days ahead"), "{body}");
    }
    let mut ids = Vec::new();
    for i in 0..4 {
        let created = post_kie(&format!("{base}/kie/api/v1/jobs/createTask"), &key, &json!({"model": "google/imagen4-fast", "input": {"prompt": format!("shot {i}")}})).await;
        ids.push(created["data"]["taskId"].as_str().unwrap().to_string());
    }
    let read = |id: String| {
        let (base, key) = (base.clone(), key.clone());
        async move {
            let r = http().get(format!("{base}/kie/api/v1/jobs/recordInfo?taskId={id}")).bearer_auth(key).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()["data"].clone()
        }
    };
    let store = server::open_store(&redis_store(&prefix)).await.unwrap();
    let (code, body) = create("2h").await;
    assert_eq!(code, 200, "{body}");
    let t = store.task_get(body["data"]["taskId"].as_str().unwrap()).await.unwrap().unwrap();
    let ahead = t.send_by_ms.unwrap() - t.created_ms;
    assert!((7_190_000..=7_200_000).contains(&ahead), "send by two hours after it was created: {ahead} ms");
    wait_until("the first task reached KIE", 20, || async { store.task_get(&ids[0]).await.unwrap().unwrap().kie_task_id.is_some() }).await;
    // A snapshot taken after the first left (at most a second old).
    tokio::time::sleep(gateway::tasks::lifecycle::queue::SNAPSHOT_FOR).await;
    assert!(read(ids[0].clone()).await.get("queuePosition").is_none(), "a task KIE has has no place here");
    // Places 1, 2, 3 (in the order they came; two made in one millisecond go by id).
    let mut places = Vec::new();
    for id in &ids[1..] {
        let d = read(id.clone()).await;
        assert_eq!(d["state"], "waiting", "{d}");
        let place = d["queuePosition"].as_u64().unwrap_or_else(|| panic!("a place: {d}"));
        // The next window opens within a minute of the first send; each later one a minute on.
        let eta = d["etaSeconds"].as_u64().unwrap();
        assert!(eta > 60 * (place - 1) && eta <= 61 * place, "#{place} waits ≈ {eta} s: {d}");
        places.push(place);
    }
    places.sort();
    assert_eq!(places, [1, 2, 3]);
    let (code, said) = server_fn(&base, "set_pause", &form(&[("project", "trailer"), ("paused", "true")])).await;
    assert_eq!(code, 200, "{said}");
    tokio::time::sleep(gateway::tasks::lifecycle::queue::SNAPSHOT_FOR).await;
    let d = read(ids[1].clone()).await;
    assert!(d.get("queuePosition").is_none() && d["state"] == "waiting", "held by a pause: no place, still waiting: {d}");
    s.shutdown().await.unwrap();
}

/// Panel 06's bulk cancel over HTTP: a preview that does nothing and says how many and what
/// they cost, then the run, followed to its end in the panel's list; a bad action or time and a
/// viewer are refused with a 4xx, changing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bulk_cancel_from_panel_06_is_previewed_then_run_to_its_end() {
    let (s, _sim, _) = harness("bulk-panel").await;
    let base = s.base.clone();
    let (code, said) = server_fn(&base, "set_pause", &form(&[("project", "promo"), ("paused", "true")])).await;
    assert_eq!(code, 200, "{said}");
    let mut ids = Vec::new();
    for i in 0..3 {
        let (code, body) = server_fn(&base, "submit_task", &form(&[("model", "google/imagen4-fast"), ("project", "promo"), ("prompt", &format!("held {i}"))])).await;
        assert_eq!(code, 200, "{body}");
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    let post = |who: &'static str, pairs: Vec<(&'static str, &'static str)>| {
        let base = base.clone();
        async move {
            let r = client_as(&base, who).await.post(format!("{base}/panel/throttle")).header("x-fragment", "1").form(&pairs).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let filter = vec![("do", "bulk"), ("action", "cancel"), ("project", "promo")];
    let (code, html) = post(ADMIN, filter.clone()).await;
    assert_eq!(code, 200, "{html}");
    assert!(html.contains("Cancel 3 tasks (project promo): estimated 12 credits ($0.060).") && html.contains(r#"data-testid="bulk-run""#), "{html}");
    let (_, tasks) = server_fn(&base, "list_tasks", "filter[project]=promo&limit=10").await;
    assert!(tasks["rows"].as_array().unwrap().iter().all(|r| r["state"] == "queued"), "a preview does nothing: {tasks}");
    for (pairs, status, says) in [
        (vec![("do", "bulk"), ("action", "explode")], 422, "unknown bulk action"),
        (vec![("do", "bulk"), ("action", "cancel"), ("since", "soon")], 422, "since must be a UTC day"),
        (vec![("do", "bulk"), ("action", "retry"), ("state", "queued")], 422, "retry takes only failed or expired tasks"),
    ] {
        let (code, html) = post(ADMIN, pairs).await;
        assert_eq!(code, status, "{html}");
        assert!(html.contains(says), "{says}: {html}");
    }
    assert_eq!(post(VIEWER, filter.clone()).await.0, 403, "a viewer may not");
    let mut run = filter.clone();
    run.push(("run", "1"));
    let (code, html) = post(ADMIN, run).await;
    assert_eq!(code, 200, "{html}");
    assert!(html.contains("Started bulk_"), "{html}");
    wait_until("the bulk cancel ended", 20, || async {
        let (_, t) = server_fn(&base, "throttle_status", "").await;
        t["bulk"][0]["state"] == "done" && t["bulk"][0]["done"] == 3
    })
    .await;
    let (_, tasks) = server_fn(&base, "list_tasks", "filter[project]=promo&limit=10").await;
    assert!(tasks["rows"].as_array().unwrap().iter().all(|r| r["state"] == "fail" && r["fail_class"] == "Cancelled"), "{tasks}");
    let (_, html) = client_as(&base, VIEWER).await.get(format!("{base}/panel/throttle")).send().await.map(|r| (r.status(), r)).unwrap();
    let html = html.text().await.unwrap();
    assert!(html.contains(r#"data-testid="bulk-job" data-state="done""#) && html.contains("3 done, 0 refused of 3"), "the panel follows it: {html}");
    let (_, audit) = server_fn(&base, "audit_log", "").await;
    assert!(audit.to_string().contains("bulk action started"), "{audit}");
    s.shutdown().await.unwrap();
}
