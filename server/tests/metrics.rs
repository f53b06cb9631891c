//! `/metrics` over real HTTP, against kie-sim and a real Redis: after a known sequence (three
//! tasks through the relay, one refused by validation and one by a cost rule, one 429 from
//! KIE, a forged and an unknown callback)
//! the counters and histogram counts are exactly what happened; the token is enforced; no
//! label carries an id, a key, a token or an email.

mod support;

use gateway::team::accounts::Actor;
use gateway::money::budget::{CapKind, CostRule, Target};
use gateway::{Credits, Secret};
use serde_json::json;
use std::time::Duration;
use support::*;

const HMAC: &str = "metrics-webhook-hmac-key";
const TOKEN: &str = "scrape-token-3b9d";
const MODEL: &str = "google/imagen4-fast";

/// The value of the sample `name{labels}` (labels as written, in order), if present.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = if labels.is_empty() { format!("{name} ") } else { format!("{name}{{{labels}}} ") };
    text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok())
}

async fn scrape(base: &str, token: Option<&str>, accept: Option<&str>) -> (u16, String, String) {
    let mut req = http().get(format!("{base}/metrics"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let r = req.send().await.expect("GET /metrics");
    let status = r.status().as_u16();
    let ctype = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    (status, ctype, r.text().await.expect("body"))
}

/// Sets `rule`'s caps on `project` (from the command line) and makes a relay key for it.
async fn project_with_rule(store: &dyn gateway::Store, project: &str, mut rule: CostRule) -> gateway::team::relay_keys::NewKey {
    rule.target = Target { project: Some(project.into()), user: None };
    gateway::money::budget::set_rule(store, &Actor::cli(), rule).await.expect("rule");
    gateway::team::relay_keys::create(store, &Actor::cli(), project, "farm").await.expect("key")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_exactly_what_happened_and_name_no_one() {
    let settings = kie_sim::Settings { schedule: kie_sim::Schedule { waiting_ms: 100, queuing_ms: 100, generating_ms: 300 }, ..Default::default() };
    let (sim_base, sim) = start_sim_with(settings, KEY, 10_000.0, Some(HMAC)).await;
    // KIE refuses the first createTask with 429; the dispatcher backs off and sends it again.
    sim.world().faults.create_error_code = Some(429);
    sim.world().faults.create_error_count = 1;
    let prefix = format!("{}:", testkit::unique("metrics"));
    let (listener, base) = bind().await;
    let mut cfg = config(redis_store(&prefix), Some(KEY));
    cfg.kie_base_url = sim_base.parse().expect("url");
    cfg.public_url = Some(base.parse().expect("url"));
    cfg.webhook_hmac_key = Some(Secret::new(HMAC));
    cfg.metrics = server::config::MetricsAccess::Token(Secret::new(TOKEN));
    let s = start_on(listener, cfg).await;
    let store = server::open_store(&redis_store(&prefix)).await.expect("store");

    // The token is enforced, and the sign-in page never stands in front.
    for token in [None, Some("wrong"), Some("")] {
        let (status, _, body) = scrape(&s.base, token, None).await;
        assert_eq!(status, 401, "{token:?}: {body}");
    }

    // The project's total cap: its fill is a shared gauge.
    let key = project_with_rule(store.as_ref(), "metrics", CostRule::new(Target::default(), [(CapKind::Total, Credits::from_credits(10_000))])).await;
    let create = format!("{}/kie/api/v1/jobs/createTask", s.base);
    let mut ids = Vec::new();
    for i in 0..3 {
        let body = post_kie(&create, key.text.expose(), &json!({"model": MODEL, "input": {"prompt": format!("shot {i}")}})).await;
        assert_eq!(body["code"], 200, "{body}");
        ids.push(body["data"]["taskId"].as_str().expect("id").to_string());
    }
    let refused = post_kie(&create, key.text.expose(), &json!({"model": "no/such-model", "input": {"prompt": "x"}})).await;
    assert_eq!(refused["code"], 404, "{refused}");
    // A project whose cost rule caps one job below this model's price.
    let capped = project_with_rule(store.as_ref(), "capped", CostRule::new(Target::default(), [(CapKind::PerJob, Credits::from_credits(1))])).await;
    let over = post_kie(&create, capped.text.expose(), &json!({"model": MODEL, "input": {"prompt": "x"}})).await;
    assert_eq!(over["code"], 402, "{over}");

    // A callback with a real token and a forged signature, and one with a token nobody has.
    let token = store.task_get(&ids[0]).await.expect("get").expect("task").callback_token;
    let callback = |path: String| {
        http()
            .post(format!("{}/callbacks/kie/{path}", s.base))
            .header("x-webhook-timestamp", (gateway::store::now_ms() / 1000).to_string())
            .header("x-webhook-signature", "Zm9yZ2Vk")
            .json(&json!({"code": 200, "data": {"taskId": "kie-forged", "state": "success"}}))
            .send()
    };
    assert!(callback(token.clone()).await.expect("post").status().is_client_error());
    assert!(callback("0".repeat(32)).await.expect("post").status().is_client_error());

    wait_until("every task ended", 60, || {
        let (store, ids) = (store.clone(), ids.clone());
        async move {
            for id in &ids {
                if store.task_get(id).await.expect("get").is_none_or(|t| t.state != gateway::TaskState::Success) {
                    return false;
                }
            }
            true
        }
    })
    .await;

    // The rate guard's window (KIE's 20 per 10 s) as the store holds it, before and after the
    // scrape: the gauge reads the same scope (it only empties from here: nothing more is sent).
    let window = gateway::store::Scope { key: "rate:kie:requests:10000".into(), limit: 20, window: Some(Duration::from_millis(10_050)) };
    let before = store.usage(&window).await.expect("usage");
    let (status, ctype, text) = scrape(&s.base, Some(TOKEN), None).await;
    let after = store.usage(&window).await.expect("usage");
    let fill = sample(&text, "control_room_rate_guard_used_ratio", "rule=\"20 requests / 10 s\"").expect("the rate guard's fill") * 20.0;
    assert!(before >= 3 && (after as f64..=before as f64).contains(&fill.round()), "window fill {fill} of 20, the store says {before} then {after}");
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    assert!(!text.contains("# EOF"), "the Prometheus text format has no EOF marker");
    let mp = format!("model=\"{MODEL}\",project=\"metrics\"");
    let tasks = store.task_list(&gateway::tasks::task::TaskQuery { project: Some("metrics".into()), ..Default::default() }).await.expect("list").tasks;
    let charged: f64 = tasks.iter().filter_map(|t| t.actual_cost).map(|c| c.as_f64()).sum();
    let estimated: f64 = tasks.iter().map(|t| t.estimated_cost.as_f64()).sum();
    assert!(charged > 0.0);
    let expect = [
        ("control_room_tasks_submitted_total", mp.clone(), 3.0),
        ("control_room_submissions_refused_total", "reason=\"validation\"".into(), 1.0),
        ("control_room_tasks_ended_total", format!("model=\"{MODEL}\",outcome=\"success\""), 3.0),
        ("control_room_credits_charged_total", mp.clone(), charged),
        ("control_room_credits_estimated_total", mp.clone(), estimated),
        ("control_room_kie_rate_limited_total", String::new(), 1.0),
        ("control_room_dispatch_backoffs_total", String::new(), 1.0),
        ("control_room_dispatch_in_doubt_total", String::new(), 0.0),
        ("control_room_callbacks_received_total", "outcome=\"forged\"".into(), 1.0),
        ("control_room_callbacks_received_total", "outcome=\"unknown_token\"".into(), 1.0),
        ("control_room_relay_requests_total", "route=\"/kie/api/v1/jobs/createTask\",status=\"200\"".into(), 3.0),
        ("control_room_relay_requests_total", "route=\"/kie/api/v1/jobs/createTask\",status=\"404\"".into(), 1.0),
        ("control_room_relay_requests_total", "route=\"/kie/api/v1/jobs/createTask\",status=\"402\"".into(), 1.0),
        ("control_room_relay_request_duration_seconds_count", "route=\"/kie/api/v1/jobs/createTask\"".into(), 5.0),
        ("control_room_submissions_refused_total", "reason=\"budget\"".into(), 1.0),
        ("control_room_budget_refusals_total", "rule=\"per_job\"".into(), 1.0),
        // Three sends that KIE took and the one it answered 429.
        ("control_room_kie_request_duration_seconds_count", "endpoint=\"createTask\"".into(), 4.0),
        ("control_room_tasks", "state=\"success\"".into(), 3.0),
        ("control_room_tasks", "state=\"queued\"".into(), 0.0),
        ("control_room_sse_clients", String::new(), 0.0),
        ("control_room_store_up", String::new(), 1.0),
        ("control_room_budget_used_ratio", "scope=\"project\",project=\"metrics\",rule=\"total\"".into(), charged / 10_000.0),
        // Each relayed record is one store step: three, and the capped project's once (under
        // the rules this instance had in memory, which the store found changed; judged again
        // under the new rule, which refused it before anything was written).
        ("control_room_store_operation_duration_seconds_count", "backend=\"redis\",operation=\"task_create\"".into(), 4.0),
        ("control_room_build_info", format!("version=\"{}\"", env!("CARGO_PKG_VERSION")), 1.0),
    ];
    for (name, labels, value) in &expect {
        let got = sample(&text, name, labels).unwrap_or_else(|| panic!("{name}{{{labels}}} missing from:\n{text}"));
        assert!((got - value).abs() < 1e-6, "{name}{{{labels}}} = {got}, expected {value}");
    }
    assert!(text.contains("# TYPE control_room_tasks_submitted_total counter"), "counters are named as their samples");
    assert!(text.contains("# TYPE control_room_relay_request_duration_seconds histogram"));

    // OpenMetrics when asked for.
    let (status, ctype, om) = scrape(&s.base, Some(TOKEN), Some("application/openmetrics-text;version=1.0.0")).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    assert!(om.trim_end().ends_with("# EOF"), "OpenMetrics ends with # EOF");
    assert_eq!(sample(&om, "control_room_tasks_submitted_total", &mp), Some(3.0));

    // No label names anyone or anything: no task id, key, token or email.
    for (what, secret) in [("relay key", key.text.expose().to_string()), ("key id", key.key.id.clone()), ("KIE key", KEY.into()), ("callback token", token), ("HMAC key", HMAC.into()), ("metrics token", TOKEN.into())]
        .into_iter()
        .chain([("capped key", capped.text.expose().to_string())])
        .chain(ids.iter().map(|id| ("task id", id.clone())))
    {
        assert!(!text.contains(&secret) && !om.contains(&secret), "the {what} is in /metrics");
    }
    assert!(!text.contains('@'), "no email in /metrics");

    // Every metric the dashboard and the alert rules read is one this console exports.
    let families: std::collections::HashSet<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    for file in ["../deploy/grafana/control-room.json", "../deploy/prometheus/alerts.yml"] {
        let body = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut named = 0;
        for (at, _) in body.match_indices("control_room_") {
            let name: String = body[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let family = ["_bucket", "_count", "_sum"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name);
            assert!(families.contains(family) || families.contains(name.as_str()), "{file} reads {name}, which /metrics does not export");
            named += 1;
        }
        assert!(named >= 5, "{file} names the console's metrics");
    }
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn without_a_token_metrics_are_open_and_requests_carry_an_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start(config(embedded(&dir), None)).await;
    let (status, _, text) = scrape(&s.base, None, None).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(sample(&text, "control_room_tasks", "state=\"queued\""), Some(0.0));
    // Every answer carries a request id; one the client sent is kept.
    let r = http().get(format!("{}/healthz", s.base)).send().await.expect("GET");
    let id = r.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert_eq!(id.len(), 36, "a UUID: {id:?}");
    let r = http().get(format!("{}/healthz", s.base)).header("x-request-id", "trace-me-42").send().await.expect("GET");
    assert_eq!(r.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some("trace-me-42"));
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn json_logs_give_each_request_its_id_route_status_and_latency_and_no_token() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let port = testkit::free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_control-room"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", dir.path())
        .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run control-room");
    let base = format!("http://127.0.0.1:{port}");
    wait_until("the console listens", 20, || {
        let url = format!("{base}/healthz");
        async move { http().get(url).send().await.is_ok() }
    })
    .await;
    let token = "ab".repeat(16);
    let r = http().post(format!("{base}/callbacks/kie/{token}")).header("x-request-id", "log-me-1").json(&json!({"code": 200})).send().await.expect("POST");
    assert_eq!(r.status().as_u16(), 404, "an unknown callback token");
    // SIGTERM: a clean stop, then the log ends.
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    let out = BufReader::new(child.stdout.take().expect("stdout"));
    let lines: Vec<String> = out.lines().map_while(Result::ok).collect();
    let _ = child.wait();
    let events: Vec<serde_json::Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {l}"))).collect();
    let answered = events
        .iter()
        .find(|e| e["span"]["request_id"] == "log-me-1" && e.get("status").is_some())
        .unwrap_or_else(|| panic!("no response event for the request:\n{}", lines.join("\n")));
    assert_eq!(answered["span"]["route"], "/callbacks/kie/{token}");
    assert_eq!(answered["span"]["method"], "POST");
    assert_eq!(answered["status"], 404);
    assert!(answered.get("latency").is_some(), "{answered}");
    assert!(!lines.iter().any(|l| l.contains(&token)), "the callback token reached the log");
}

#[tokio::test]
async fn the_relay_is_described_path_for_path_and_the_description_is_served() {
    let doc: serde_json::Value = serde_json::from_str(server::relay::OPENAPI_DOC).expect("openapi.json is JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let described: Vec<String> = doc["paths"].as_object().expect("paths").keys().cloned().collect();
    let mut routes = server::relay::paths();
    routes.sort_unstable();
    let mut sorted = described.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, routes, "every relay route is described, and nothing else");
    // Every operation documents its refusals in KIE's envelope.
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            assert!(op["responses"]["200"].is_object(), "{method} {path}: 200 described");
            if path != "/kie/openapi.json" {
                assert!(op["responses"]["401"].is_object(), "{method} {path}: 401 described");
            }
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start(config(embedded(&dir), None)).await;
    let r = http().get(format!("{}/kie/openapi.json", s.base)).send().await.expect("GET");
    assert_eq!(r.status().as_u16(), 200, "served with no key or session");
    let served: serde_json::Value = r.json().await.expect("JSON");
    assert_eq!(served, serde_json::from_str::<serde_json::Value>(&server::relay::document(&gateway::money::catalog::Catalog::builtin())).expect("JSON"));
    // What the catalog adds: the Market jobs API's body is one schema per task model, each
    // naming its model and its input's required fields; the chat path names the language models.
    let catalog = gateway::money::catalog::Catalog::builtin();
    let market: Vec<&gateway::money::catalog::Model> = catalog.models().iter().filter(|m| m.family == gateway::kie::Family::Market && !m.is_chat()).collect();
    let one_of = served["paths"]["/kie/api/v1/jobs/createTask"]["post"]["requestBody"]["content"]["application/json"]["schema"]["oneOf"].as_array().expect("oneOf").clone();
    assert_eq!(one_of.len(), market.len());
    for (schema, m) in one_of.iter().zip(&market) {
        assert_eq!(schema["properties"]["model"]["const"], m.id.as_str());
        assert_eq!(schema["properties"]["input"]["required"], serde_json::json!(m.required), "{}", m.id);
    }
    // …and each language-model path its own API's models (chat completions, Claude's Messages).
    let of_api = |api| catalog.models().iter().filter(|m| m.is_chat() && m.api == api).map(|m| serde_json::json!(m.id)).collect::<Vec<_>>();
    let chat_models = served["paths"]["/kie/{model}/v1/chat/completions"]["post"]["parameters"][0]["schema"]["enum"].clone();
    assert_eq!(chat_models, serde_json::json!(of_api(gateway::money::catalog::ChatApi::Completions)));
    let claude_models = served["paths"]["/kie/claude/v1/messages"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]["model"]["enum"].clone();
    assert_eq!(claude_models, serde_json::json!(of_api(gateway::money::catalog::ChatApi::Messages)));
    assert!(claude_models.as_array().is_some_and(|m| !m.is_empty()));
    // A family's body names the cost multipliers it refuses (Veo takes no `n`; Runway's
    // `duration` is its own field).
    let refused = |path: &str| served["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["propertyNames"]["not"]["enum"].clone();
    assert!(refused("/kie/api/v1/veo/generate").as_array().expect("veo").contains(&serde_json::json!("n")));
    assert!(!refused("/kie/api/v1/runway/generate").as_array().expect("runway").contains(&serde_json::json!("duration")));
    // Everything else is the document as written.
    let written: serde_json::Value = serde_json::from_str(server::relay::OPENAPI_DOC).expect("JSON");
    assert_eq!(served["paths"]["/kie/api/v1/jobs/recordInfo"], written["paths"]["/kie/api/v1/jobs/recordInfo"]);
    assert_eq!(served["components"], written["components"]);
    // And as a page: every operation, its body fields and its answers.
    let r = http().get(format!("{}/kie/docs", s.base)).send().await.expect("GET");
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"].to_str().expect("type").starts_with("text/html"));
    let page = r.text().await.expect("body");
    for text in ["<code>/kie/api/v1/jobs/createTask</code>", "<code>/kie/api/v1/jobs/recordInfo</code>", "<code>/kie/api/v1/chat/credit</code>", "<code>callBackUrl</code>", "<code>taskId</code>", "<td>402</td>"] {
        assert!(page.contains(text), "/kie/docs lacks {text}");
    }
    assert!(!page.contains("<script"), "a page without scripts");
    s.shutdown().await.expect("shutdown");
}
