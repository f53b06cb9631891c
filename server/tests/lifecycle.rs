//! The task lifecycle over real HTTP, against kie-sim on loopback: the browser path (server
//! functions) and the relay path (`/kie`), callbacks dropped, duplicated, reordered and forged,
//! createTask errors, a restart in the middle of submission, and two instances on one Redis
//! with a live stream on each.

mod support;

use serde_json::{Value, json};
use server::config::{Secret, StoreConfig};
use std::time::{Duration, Instant};
use support::*;

fn fast() -> kie_sim::Settings {
    kie_sim::Settings { schedule: kie_sim::Schedule { waiting_ms: 200, queuing_ms: 300, generating_ms: 700 }, ..Default::default() }
}

/// A kie-sim and a Control Room whose callbacks reach it back on loopback.
async fn harness(store: StoreConfig, hmac: Option<&str>) -> (Running, kie_sim::Sim) {
    let (sim_base, sim) = start_sim_with(fast(), KEY, 10_000.0, hmac).await;
    let (listener, base) = bind().await;
    let mut cfg = config(store, Some(KEY));
    cfg.kie_base_url = sim_base.parse().expect("url");
    cfg.public_url = Some(base.parse().expect("url"));
    cfg.webhook_hmac_key = hmac.map(Secret::new);
    (start_on(listener, cfg).await, sim)
}

async fn submit(base: &str, model: &str, prompt: &str) -> String {
    let (code, body) = server_fn(base, "submit_task", &form(&[("model", model), ("project", "trailer"), ("prompt", prompt)])).await;
    assert_eq!(code, 200, "{body}");
    body["id"].as_str().expect("task id").to_string()
}

async fn row(base: &str, id: &str) -> Value {
    let (_, list) = server_fn(base, "list_tasks", "limit=100").await;
    list["rows"].as_array().and_then(|rows| rows.iter().find(|r| r["id"] == id).cloned()).unwrap_or(Value::Null)
}

/// Waits until task `id`'s row satisfies `done`.
async fn wait_for(base: &str, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let r = row(base, id).await;
        if done(&r) {
            return r;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "task {id} never became {what}: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn state_is(s: &'static str) -> impl Fn(&Value) -> bool {
    move |r| r["state"] == s
}

/// `createTask` calls kie-sim accepted.
fn accepted_creates(sim: &kie_sim::Sim) -> usize {
    sim.world().log.iter().filter(|e| e.path == "/api/v1/jobs/createTask" && e.code == 200).count()
}

/// A live event stream, read until a condition holds.
struct Sse(testkit::sse::SseClient);

impl Sse {
    async fn open(base: &str, after: Option<u64>) -> Sse {
        Sse(testkit::sse::SseClient::open(&client_as(base, ADMIN).await, base, after).await)
    }

    /// Events (id, kind, data) until `done` holds for what was read.
    async fn until(&mut self, done: impl Fn(&[(u64, String, Value)]) -> bool) -> Vec<(u64, String, Value)> {
        let mut out = Vec::new();
        while !done(&out) {
            let e = self.0.next(Duration::from_secs(30)).await.unwrap_or_else(|| panic!("no event in time after {out:?}"));
            out.push((e.id, e.kind, e.data));
        }
        out
    }
}

fn states_of(events: &[(u64, String, Value)], id: &str) -> Vec<String> {
    events.iter().filter(|e| e.2["id"] == id).map(|e| e.2["state"].as_str().unwrap_or("").to_string()).collect()
}

#[tokio::test]
async fn browser_path_success_failure_and_retry_live() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, sim) = harness(embedded(&dir), None).await;
    let mut live = Sse::open(&s.base, None).await;

    let ok = submit(&s.base, "google/imagen4", "a lighthouse at dusk").await;
    let events = live.until(|ev| states_of(ev, &ok).last().is_some_and(|s| s == "success")).await;
    let seen = states_of(&events, &ok);
    assert_eq!(seen.first().map(String::as_str), Some("queued"), "the write-ahead record is announced first: {seen:?}");
    assert!(seen.contains(&"submitted".to_string()), "{seen:?}");
    let ids: Vec<u64> = events.iter().map(|e| e.0).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "event ids increase: {ids:?}");

    let done = row(&s.base, &ok).await;
    assert_eq!(done["actual_credits"], "6", "imagen4 costs 6 credits: {done}");
    let url = done["result_urls"][0].as_str().expect("a result URL");
    let media = reqwest::get(url).await.expect("result");
    assert_eq!(media.status(), 200);
    assert_eq!(accepted_creates(&sim), 1, "sent exactly once");

    let bad = submit(&s.base, "google/imagen4", "sim:fail please").await;
    let failed = wait_for(&s.base, &bad, "fail", state_is("fail")).await;
    assert_eq!(failed["fail_class"], "Upstream error", "{failed}");
    assert!(failed["fail_msg"].as_str().unwrap_or("").contains("Internal error"), "KIE's failMsg is kept: {failed}");

    let (_, review) = server_fn(&s.base, "review_tasks", "").await;
    assert!(review["rows"].as_array().expect("rows").iter().any(|r| r["id"] == bad), "the failure is up for review");
    let (code, retried) = server_fn(&s.base, "retry_task", &form(&[("id", &bad)])).await;
    assert_eq!(code, 200, "{retried}");
    let again = retried["id"].as_str().expect("new id");
    assert_ne!(again, bad);
    let r = wait_for(&s.base, again, "ended", |r| r["terminal"] == true).await;
    assert_eq!(r["retry_of"], bad.as_str(), "the retry links to the task it retries");
    let (code, refused) = server_fn(&s.base, "retry_task", &form(&[("id", &ok)])).await;
    assert!(code >= 400 && refused.to_string().contains("Only a failed or expired task"), "{code} {refused}");

    let (_, status) = server_fn(&s.base, "console_status", "").await;
    assert_eq!(status["ledger"]["credits_consumed"], "6", "failures are not charged: {status}");
    assert_eq!(status["ledger"]["tasks_on_record"], 3);
    assert_eq!(status["ledger"]["in_flight"], 0);
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn bad_submissions_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, sim) = harness(embedded(&dir), None).await;
    let long = "x".repeat(5001);
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("model", "no/such-model"), ("project", "p"), ("prompt", "hi")], "not in the catalog"),
        (&[("model", "google/imagen4"), ("project", "p"), ("prompt", &long)], "the limit is 5000"),
        (&[("model", "google/imagen4"), ("project", "p"), ("prompt", "  ")], "needs input.prompt"),
        (&[("model", "google/imagen4"), ("project", "bad/project"), ("prompt", "hi")], "project must be"),
        (&[("model", "google/nano-banana-edit"), ("project", "p"), ("prompt", "hi")], "needs input.image_urls"),
    ];
    for (pairs, expect) in cases {
        let (code, body) = server_fn(&s.base, "submit_task", &form(pairs)).await;
        assert!((400..600).contains(&code), "{pairs:?}: {code}");
        assert!(body.to_string().contains(expect), "{pairs:?}: {body}");
    }
    let (_, status) = server_fn(&s.base, "console_status", "").await;
    assert_eq!(status["ledger"]["tasks_on_record"], 0, "nothing was written");
    assert_eq!(accepted_creates(&sim), 0);
    s.shutdown().await.expect("shutdown");

    // Without a key: "Not configured", nothing written.
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start(config(embedded(&dir), None)).await;
    let (code, body) = server_fn(&s.base, "submit_task", &form(&[("model", "google/imagen4"), ("project", "p"), ("prompt", "hi")])).await;
    assert!(code >= 400 && body.to_string().contains("Not configured"), "{code} {body}");
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn relay_path_answers_like_kie_and_calls_the_client_back() {
    let prefix = format!("{}:", testkit::unique("relay"));
    let (s, sim) = harness(redis_store(&prefix), None).await;
    let store = server::open_store(&redis_store(&prefix)).await.expect("store");
    let key = gateway::team::relay_keys::create(store.as_ref(), &gateway::team::accounts::Actor::cli(), "trailer", "render farm").await.expect("key");
    let other = gateway::team::relay_keys::create(store.as_ref(), &gateway::team::accounts::Actor::cli(), "promo", "promo batch").await.expect("key");
    let http = http();
    let kie = |path: &str| format!("{}/kie/api/v1/{path}", s.base);
    let (hook, mut calls) = callback_sink().await;

    let create = http
        .post(kie("jobs/createTask"))
        .bearer_auth(key.text.expose())
        .json(&json!({"model": "flux-2/pro-text-to-image", "callBackUrl": hook, "input": {"prompt": "a red kite", "resolution": "2K"}}))
        .send()
        .await
        .expect("createTask");
    assert_eq!(create.status(), 200);
    let body: Value = create.json().await.expect("json");
    assert_eq!(body["code"], 200);
    let id = body["data"]["taskId"].as_str().expect("taskId").to_string();

    let info = |id: String, text: String| {
        let http = http.clone();
        let url = kie("jobs/recordInfo");
        async move { http.get(url).query(&[("taskId", id)]).bearer_auth(text).send().await.expect("recordInfo") }
    };
    let first: Value = info(id.clone(), key.text.expose().to_string()).await.json().await.expect("json");
    assert_eq!(first["code"], 200);
    assert!(["waiting", "queuing", "generating"].contains(&first["data"]["state"].as_str().unwrap_or("")), "{first}");

    let (headers, cb) = tokio::time::timeout(Duration::from_secs(30), calls.recv()).await.expect("callback in time").expect("callback");
    assert_eq!(cb["code"], 200, "{cb}");
    assert_eq!(cb["data"]["taskId"], id.as_str(), "the relay's own task id");
    assert_eq!(cb["data"]["state"], "success");
    let ts = headers["x-webhook-timestamp"].to_str().expect("ts");
    let sig = headers["x-webhook-signature"].to_str().expect("sig");
    let now = gateway::store::now_ms() / 1000;
    gateway::kie::signature::verify(key.key.webhook_secret.as_bytes(), &id, Some(ts), Some(sig), now, Duration::from_secs(300)).expect("signed with the key's secret");

    let done: Value = info(id.clone(), key.text.expose().to_string()).await.json().await.expect("json");
    assert_eq!(done["data"]["state"], "success");
    let result: Value = serde_json::from_str(done["data"]["resultJson"].as_str().expect("resultJson string")).expect("resultJson");
    assert!(result["resultUrls"][0].as_str().is_some_and(|u| u.starts_with("http")), "{done}");
    assert_eq!(done["data"]["creditsConsumed"], 7.0, "2K costs 7 credits");
    // KIE's own task id finds the same task.
    let kie_id = store.task_get(&id).await.expect("read").expect("task").kie_task_id.expect("kie id");
    let by_kie: Value = info(kie_id, key.text.expose().to_string()).await.json().await.expect("json");
    assert_eq!(by_kie["data"]["taskId"], id.as_str());
    // Another project's key cannot read it.
    let foreign = info(id.clone(), other.text.expose().to_string()).await;
    assert_eq!(foreign.status(), 404);
    let credit: Value = http.get(kie("chat/credit")).bearer_auth(key.text.expose()).send().await.expect("credit").json().await.expect("json");
    assert_eq!(credit["code"], 200);
    assert!(credit["data"].as_f64().is_some_and(|b| b < 10_000.0), "the account's real balance: {credit}");

    // Bad input: KIE's envelope, a 4xx that says what to fix, nothing written.
    let before = store.task_counts().await.expect("counts").total;
    let post = |body: String, ctype: &'static str, auth: String| {
        let http = http.clone();
        let url = kie("jobs/createTask");
        async move {
            let r = http.post(url).bearer_auth(auth).header("content-type", ctype).body(body).send().await.expect("post");
            let code = r.status().as_u16();
            (code, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let good_key = key.text.expose().to_string();
    let cases = [
        (post(r#"{"model":"google/imagen4","input":{"prompt":"x"}}"#.into(), "application/json", "kcr_wrong_key".into()).await, 401, "access permissions"),
        (post("{not json".into(), "application/json", good_key.clone()).await, 400, "not valid JSON"),
        (post(r#"{"model":"google/imagen4","input":{"prompt":"x"}}"#.into(), "text/plain", good_key.clone()).await, 415, "Content-Type"),
        (post(r#"{"model":"nope","input":{"prompt":"x"}}"#.into(), "application/json", good_key.clone()).await, 404, "not in the catalog"),
        (post(json!({"model":"google/imagen4","input":{"prompt":"x".repeat(6000)}}).to_string(), "application/json", good_key.clone()).await, 422, "limit is 5000"),
        (post(r#"{"model":"google/imagen4","input":{"prompt":"x"},"callBackUrl":"ftp://x"}"#.into(), "application/json", good_key.clone()).await, 422, "callBackUrl"),
    ];
    for ((code, body), want, says) in cases {
        assert_eq!(code, want, "{body}");
        assert_eq!(body["code"], want, "KIE's envelope: {body}");
        assert!(body["msg"].as_str().unwrap_or("").contains(says), "{body}");
    }
    let oversized = post(
        format!(
            "{{\"model\":\"x\",\"input\":{{\"prompt\":\"{}\"}}}}",
            "y".repeat(server::edge::limits::body_limit("/kie/"))
        ),
        "application/json",
        good_key.clone(),
    )
    .await;
    assert_eq!(oversized.0, 413);
    assert_eq!(store.task_counts().await.expect("counts").total, before, "refusals wrote nothing");

    // A revoked key is refused at once.
    gateway::team::relay_keys::revoke(store.as_ref(), &gateway::team::accounts::Actor::cli(), &key.key.id).await.expect("revoke");
    let revoked = info(id.clone(), good_key).await;
    assert_eq!(revoked.status(), 401);
    assert_eq!(accepted_creates(&sim), 1);
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn dropped_duplicated_reordered_and_forged_callbacks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, sim) = harness(embedded(&dir), Some("webhook-secret")).await;
    sim.world().faults.duplicate_callback = true;
    sim.world().faults.reorder_window_ms = 300;
    let dup = submit(&s.base, "google/imagen4-fast", "duplicated").await;
    let dup2 = submit(&s.base, "google/imagen4-fast", "duplicated too").await;
    wait_for(&s.base, &dup, "success", state_is("success")).await;
    wait_for(&s.base, &dup2, "success", state_is("success")).await;
    {
        let mut w = sim.world();
        w.faults = kie_sim::Faults { drop_callback: true, ..Default::default() };
    }
    let dropped = submit(&s.base, "google/imagen4-fast", "no callback for me").await;
    let r = wait_for(&s.base, &dropped, "success", state_is("success")).await;
    assert_eq!(r["actual_credits"], "4", "the poller found the result");
    let (_, status) = server_fn(&s.base, "console_status", "").await;
    assert_eq!(status["ledger"]["credits_consumed"], "12", "three tasks at 4 credits, each counted once: {status}");

    let unknown = http().post(format!("{}/callbacks/kie/{}", s.base, "0".repeat(32))).json(&json!({"code": 200, "data": {"taskId": "x", "state": "success"}})).send().await.expect("post");
    assert_eq!(unknown.status(), 404, "an unknown token changes nothing");
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn forged_and_replayed_callbacks_change_nothing() {
    let prefix = format!("{}:", testkit::unique("forged"));
    let (s, sim) = harness(redis_store(&prefix), Some("webhook-secret")).await;
    sim.world().settings.schedule.generating_ms = 60_000;
    let id = submit(&s.base, "google/imagen4-fast", "slow one").await;
    wait_for(&s.base, &id, "at KIE", |r| r["kie_task_id"].is_string()).await;
    let store = server::open_store(&redis_store(&prefix)).await.expect("store");
    let t = store.task_get(&id).await.expect("read").expect("task");
    let kie_id = t.kie_task_id.clone().expect("kie id");
    let url = format!("{}/callbacks/kie/{}", s.base, t.callback_token);
    let forged = json!({"code": 200, "msg": "ok", "data": {"taskId": kie_id, "state": "success", "resultJson": "{\"resultUrls\":[\"https://evil.example/x.png\"]}"}});
    let http = http();
    let now = (gateway::store::now_ms() / 1000).to_string();

    let unsigned = http.post(&url).json(&forged).send().await.expect("post");
    assert_eq!(unsigned.status(), 401, "a signature is required when KIE_WEBHOOK_HMAC_KEY is set");
    let send = |ts: String, key: &'static [u8]| {
        let req = http
            .post(&url)
            .header("X-Webhook-Timestamp", &ts)
            .header("X-Webhook-Signature", gateway::kie::signature::sign(key, &kie_id, &ts))
            .json(&forged);
        async move { req.send().await.expect("post").status() }
    };
    assert_eq!(send(now.clone(), b"not-the-key").await, 401);
    let stale = (gateway::store::now_ms() / 1000 - 3600).to_string();
    assert_eq!(send(stale, b"webhook-secret").await, 401, "outside the replay window");
    // Correctly signed but lying about the result: confirmed with recordInfo, which says otherwise.
    assert_eq!(send(now, b"webhook-secret").await, 200);
    let t = store.task_get(&id).await.expect("read").expect("task");
    assert!(!t.state.is_terminal(), "the body is not trusted: {:?}", t.state);
    assert!(t.result_urls.is_empty());
    let garbage = http.post(&url).body("not json").send().await.expect("post");
    assert_eq!(garbage.status(), 400);
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn upstream_errors_on_create_wait_and_retry_or_fail_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (s, sim) = harness(embedded(&dir), None).await;
    {
        let mut w = sim.world();
        w.faults.create_error_code = Some(455);
        w.faults.create_error_count = 2;
    }
    let id = submit(&s.base, "google/imagen4-fast", "during maintenance").await;
    let waiting = wait_for(&s.base, &id, "noted", |r| r["note"].as_str().is_some_and(|n| n.contains("maintenance"))).await;
    assert_eq!(waiting["state"], "queued", "it waits: {waiting}");
    let (_, review) = server_fn(&s.base, "review_tasks", "").await;
    let stuck = review["rows"].as_array().and_then(|r| r.iter().find(|r| r["id"] == id.as_str()).cloned()).unwrap_or(Value::Null);
    assert_eq!(stuck["fail_class"], "Upstream error — retrying", "a stuck task is up for review: {review}");
    wait_for(&s.base, &id, "success", state_is("success")).await;
    assert_eq!(accepted_creates(&sim), 1);

    // 402 from KIE: the task fails and says why.
    sim.world().accounts.get_mut(KEY).expect("account").balance_milli = 1_000;
    let poor = submit(&s.base, "veo3", "too expensive").await;
    let r = wait_for(&s.base, &poor, "fail", state_is("fail")).await;
    assert_eq!(r["fail_class"], "Insufficient credits", "{r}");
    assert_eq!(r["fail_code"], "402");
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_restart_in_the_middle_of_submission_loses_nothing_and_sends_nothing_twice() {
    use gateway::tasks::task::TaskRecord;
    let dir = tempfile::tempdir().expect("tempdir");
    let (sim_base, sim) = start_sim_with(fast(), KEY, 10_000.0, None).await;
    let (listener, base) = bind().await;

    // Before the start: one task recorded but never sent (crash after the write-ahead
    // record), one sent and accepted by KIE but not recorded (crash after createTask).
    let token = "ab".repeat(16);
    {
        let store = server::open_store(&embedded(&dir)).await.expect("store");
        let mut never = TaskRecord::new("cr_never_sent", "ana", "trailer", "google/imagen4-fast", gateway::store::now_ms());
        never.input = json!({"prompt": "recorded, then the crash"});
        never.callback_token = "cd".repeat(16);
        store.task_insert(&never).await.expect("insert");
        store.kv_set(&format!("cbtoken:{}", never.callback_token), b"cr_never_sent", None).await.expect("token");

        let body = json!({"model": "google/imagen4-fast", "callBackUrl": format!("{base}/callbacks/kie/{token}"), "input": {"prompt": "sent, then the crash"}});
        let created = post_kie(&format!("{sim_base}/api/v1/jobs/createTask"), KEY, &body).await;
        assert_eq!(created["code"], 200);
        let mut doubt = TaskRecord::new("cr_in_doubt", "ana", "trailer", "google/imagen4-fast", gateway::store::now_ms());
        doubt.input = json!({"prompt": "sent, then the crash"});
        doubt.callback_token = token.clone();
        doubt.dispatch.attempts = 1;
        doubt.dispatch.sending_since_ms = Some(gateway::store::now_ms());
        store.task_insert(&doubt).await.expect("insert");
        store.kv_set(&format!("cbtoken:{token}"), b"cr_in_doubt", None).await.expect("token");
    }
    assert_eq!(accepted_creates(&sim), 1);

    let mut cfg = config(embedded(&dir), Some(KEY));
    cfg.kie_base_url = sim_base.parse().expect("url");
    cfg.public_url = Some(base.parse().expect("url"));
    let s = start_on(listener, cfg).await;
    let never = wait_for(&s.base, "cr_never_sent", "success", state_is("success")).await;
    assert!(never["kie_task_id"].is_string());
    let doubt = wait_for(&s.base, "cr_in_doubt", "success", state_is("success")).await;
    assert!(doubt["kie_task_id"].is_string(), "KIE's callback resolved the task in doubt: {doubt}");
    assert_eq!(accepted_creates(&sim), 2, "the recorded task was sent once; the one in doubt was never resent");
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn two_instances_on_one_redis_see_each_others_tasks_live() {
    let prefix = format!("{}:", testkit::unique("pair"));
    let (sim_base, sim) = start_sim_with(fast(), KEY, 10_000.0, None).await;
    let mut servers = Vec::new();
    for _ in 0..2 {
        let (listener, base) = bind().await;
        let mut cfg = config(redis_store(&prefix), Some(KEY));
        cfg.kie_base_url = sim_base.parse().expect("url");
        cfg.public_url = Some(base.parse().expect("url"));
        servers.push(start_on(listener, cfg).await);
    }
    let (a, b) = (&servers[0].base, &servers[1].base);
    let mut on_b = Sse::open(b, None).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(submit(a, "google/imagen4-fast", &format!("from A #{i}")).await);
    }
    let events = on_b.until(|ev| ids.iter().all(|id| states_of(ev, id).last().is_some_and(|s| s == "success"))).await;
    for id in &ids {
        assert_eq!(states_of(&events, id).first().map(String::as_str), Some("queued"), "B saw A's task {id} from its first state");
    }
    // Resume: a client that saw up to the middle is sent the rest and nothing before.
    let mid = events[events.len() / 2].0;
    let mut resumed = Sse::open(b, Some(mid)).await;
    let replay = resumed.until(|ev| ev.len() >= events.len() - events.len() / 2 - 1).await;
    assert!(replay.iter().all(|e| e.0 > mid), "only what was missed");
    assert_eq!(replay.first().map(|e| e.0), Some(mid + 1), "from the next one on");
    assert_eq!(accepted_creates(&sim), 6, "each task sent once across both instances");
    let polls = sim.world().log.iter().filter(|e| e.path.contains("recordInfo")).count();
    let rate_limited = sim.world().log.iter().filter(|e| e.code == 429).count();
    assert_eq!(rate_limited, 0, "no 429 from KIE ({polls} recordInfo calls)");
    for s in servers {
        s.shutdown().await.expect("shutdown");
    }
}

#[tokio::test]
async fn relay_keys_from_the_cli_open_the_relay_until_revoked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cli = |args: &[&str]| {
        let (code, out, err) = cli(dir.path(), args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        out
    };
    let created = cli(&["key", "create", "--project", "trailer", "--name", "render farm"]);
    let text = created.lines().find_map(|l| l.strip_prefix("key:")).map(str::trim).expect("the key is printed").to_string();
    assert!(text.starts_with("kcr_"), "{created}");
    let id = text.trim_start_matches("kcr_").split('_').next().expect("id").to_string();
    let listed = cli(&["key", "list"]);
    assert!(listed.contains(&id) && listed.contains("render farm") && listed.contains("trailer"), "{listed}");
    assert!(!listed.contains(&text), "the key itself is never listed");

    let relay = |base: String, key: String| async move {
        http().get(format!("{base}/kie/api/v1/jobs/recordInfo?taskId=nope")).bearer_auth(key).send().await.expect("get").status().as_u16()
    };
    let s = start(config(embedded(&dir), Some(KEY))).await;
    assert_eq!(relay(s.base.clone(), text.clone()).await, 404, "the key opens the relay (the task is unknown)");
    s.shutdown().await.expect("shutdown");

    let revoked = cli(&["key", "revoke", &id]);
    assert!(revoked.contains("Revoked"), "{revoked}");
    let s = start(config(embedded(&dir), Some(KEY))).await;
    assert_eq!(relay(s.base.clone(), text).await, 401, "a revoked key is refused");
    s.shutdown().await.expect("shutdown");
}
