//! The MCP server for agents, over real HTTP on loopback against kie-sim, driven by the official
//! `mcp` Python SDK (PyPI) as the client — over streamable HTTP, and over stdio through
//! `control-room mcp`: the tools listed with their schemas, an estimate, an image and a Veo clip
//! generated and waited for with progress, the Library link fetched, a refusal by a cost rule
//! that says what is left (and nothing sent to KIE for it), the budget, a Library search and
//! resources. Then what the SDK does not show: no key or a wrong key is 401, a session opened on
//! one instance is served by another (kept in the store), and never to another key.

mod support;

use gateway::money::budget::{CapKind, CostRule, Target};
use gateway::team::accounts::Actor;
use gateway::{Credits, TaskState};
use serde_json::{Value, json};
use server::config::StoreConfig;
use std::sync::Arc;
use support::*;

fn fast() -> kie_sim::Settings {
    kie_sim::Settings { schedule: kie_sim::Schedule { waiting_ms: 100, queuing_ms: 100, generating_ms: 200 }, ..Default::default() }
}

async fn instance(store: &StoreConfig, sim_base: &str) -> Running {
    start_on_with(store, sim_base, |_| {}).await
}

async fn start_on_with(store: &StoreConfig, sim_base: &str, adjust: impl FnOnce(&mut server::config::Config)) -> Running {
    let (listener, base) = bind().await;
    let mut cfg = config(store.clone(), Some(KEY));
    cfg.kie_base_url = sim_base.parse().unwrap();
    cfg.public_url = Some(base.parse().unwrap());
    cfg.library = Some(library("mcp"));
    adjust(&mut cfg);
    start_on(listener, cfg).await
}

/// The built-in catalog's image model and a priced language model; one task sent an hour.
fn one_an_hour_with_chat(cfg: &mut server::config::Config) {
    let path = testkit::scratch_dir("mcp-catalog").join("models.json");
    let text = json!({"prices_taken": "test", "models": [
        {"id": "gemini-3-flash", "category": "language", "provider": "Google", "purpose": "test", "price": {"per_1m_tokens": {"input": 1000, "output": 4000}}, "output_tokens": 200},
        {"id": "google/imagen4-fast", "category": "image", "provider": "Google", "purpose": "test", "required": ["prompt"], "price": {"flat": 4}}
    ]});
    std::fs::write(&path, text.to_string()).unwrap();
    cfg.catalog_file = Some(path);
    cfg.rate_guard = gateway::tasks::rate_guard::parse_rules("1/1h").unwrap();
}

/// A relay key of project `project` whose total cap fits an image (4 credits) and one Veo
/// clip (120) but not a second clip.
async fn capped_key(store: &Arc<dyn gateway::Store>, project: &str) -> gateway::team::relay_keys::NewKey {
    let key = gateway::team::relay_keys::create(store.as_ref(), &Actor::cli(), project, "agent").await.unwrap();
    let rule = CostRule::new(Target::relay_key(&key.key.id), [(CapKind::Total, Credits::from_credits(130))]);
    gateway::money::budget::set_rule(store.as_ref(), &Actor::cli(), rule).await.unwrap();
    key
}

/// Runs the agent (`support/mcp_agent.py`) and returns what it saw.
fn agent(args: &[&str]) -> Value {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = dir.join("../tools/venv/bin/python");
    assert!(python.exists(), "tools/venv is made by scripts/setup.sh test");
    let out = std::process::Command::new(python).arg(dir.join("tests/support/mcp_agent.py")).args(args).output().unwrap();
    assert!(out.status.success(), "the agent failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// What an agent saw, checked: every tool, the money, the waits, the Library, the refusal.
fn check_agent(seen: &Value, base: &str, label: &str) {
    let tools: Vec<&str> = seen["tools"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(tools, ["budget", "cancel", "chat", "estimate", "generate", "get_asset", "library_search", "list_models", "status", "wait"], "{label}");
    assert_eq!(seen["generate_schema"]["required"], json!(["model", "input"]), "{label}: generate's schema");
    assert!(seen["image_models"].as_array().unwrap().contains(&json!("google/imagen4-fast")), "{label}");
    assert!(!seen["image_models"].as_array().unwrap().contains(&json!("veo3")), "{label}: only the category asked for");
    assert_eq!(seen["estimate"]["cost"], json!({"credits": 4.0, "usd": "$0.020"}), "{label}");
    assert_eq!(seen["estimate"]["would_be_refused"], false, "{label}");
    for name in ["image", "clip"] {
        let made = &seen["made"][name];
        assert_eq!(made["wait"]["state"], "success", "{label} {name}: {made}");
        let library = &made["wait"]["library"][0];
        assert_eq!(library["state"], "in the Library", "{label} {name}: wait answers once the Library holds it: {made}");
        assert!(library["link"].as_str().unwrap().starts_with(&format!("{base}/library/")), "{label} {name}: {library}");
        let progress = made["progress"].as_array().unwrap();
        assert!(progress.len() >= 2, "{label} {name}: progress was notified: {progress:?}");
        assert_eq!(progress.last().unwrap()["progress"], progress.last().unwrap()["total"], "{label} {name}: the last notification is the end");
        let steps: Vec<f64> = progress.iter().map(|p| p["progress"].as_f64().unwrap()).collect();
        assert!(steps.windows(2).all(|w| w[0] <= w[1]), "{label} {name}: progress never goes back: {steps:?}");
    }
    assert_eq!(seen["made"]["clip"]["wait"]["charged"]["credits"], 120.0, "{label}");
    let clip = seen["made"]["clip"]["task_id"].as_str().unwrap();
    assert_eq!(seen["updated"], json!([format!("control-room://task/{clip}")]), "{label}: the subscription told the clip's end, once");
    let asset = &seen["asset"];
    assert_eq!(asset["info"]["content_type"], "image/png", "{label}");
    assert_eq!(asset["kinds"], json!(["text", "image"]), "{label}: a small image also comes as image content");
    assert_eq!(asset["link_status"], 200, "{label}: the signed link works with no other credential");
    assert_eq!(asset["link_bytes"], asset["info"]["bytes"], "{label}");
    let refused = &seen["refused"];
    assert_eq!(refused["is_error"], true, "{label}: {refused}");
    let text = refused["text"].as_str().unwrap();
    assert!(text.contains("Refused by the cost rule") && text.contains("6 credits) left") && text.contains("needs $0.60 (120 credits)"), "{label}: the refusal says what refused it and what is left: {text}");
    assert!(text.contains("What this key may still spend"), "{label}: {text}");
    assert_eq!(seen["estimate_after"]["would_be_refused"], true, "{label}: the estimate foresaw it");
    assert!(seen["bad_input"].as_str().unwrap().contains("is not in the catalog"), "{label}");
    assert_eq!(seen["budget"]["caps"][0]["left"]["credits"], 6.0, "{label}");
    assert_eq!(seen["search"]["tasks"].as_array().unwrap().len(), 2, "{label}: both results are in the Library: {}", seen["search"]);
    assert!(seen["status_missing"].as_str().unwrap().starts_with("No task cr_nosuchtask"), "{label}");
    let resources: Vec<String> = seen["resources"].as_array().unwrap().iter().map(|r| r[0].as_str().unwrap().to_string()).collect();
    assert!(resources.contains(&"control-room://catalog".to_string()), "{label}: {resources:?}");
    assert!(resources.contains(&format!("control-room://library/{}/0", seen["made"]["image"]["task_id"].as_str().unwrap())), "{label}: {resources:?}");
    assert_eq!(seen["task_resource"]["state"], "success", "{label}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_generates_waits_and_is_refused_by_a_cap_through_the_python_sdk_over_http_and_stdio() {
    let (sim_base, sim) = start_sim_with(fast(), KEY, 10_000.0, None).await;
    let store_cfg = StoreConfig::Redis { url: testkit::redis_url(), prefix: format!("{}:", testkit::unique("mcp")), options: Default::default() };
    let s = instance(&store_cfg, &sim_base).await;
    let store = server::open_store(&store_cfg).await.unwrap();

    let over_http = capped_key(&store, "trailer").await;
    let seen = agent(&["http", &s.base, over_http.text.expose()]);
    check_agent(&seen, &s.base, "over HTTP");

    let over_stdio = capped_key(&store, "teaser").await;
    let binary = env!("CARGO_BIN_EXE_control-room");
    let seen = agent(&["stdio", binary, &s.base, over_stdio.text.expose()]);
    check_agent(&seen, &s.base, "over stdio");

    // Each key's tasks are its own project's, owned by the key; the refused clips were never
    // recorded nor sent: two tasks a key, four creates at KIE.
    for (key, project) in [(&over_http, "trailer"), (&over_stdio, "teaser")] {
        let q = gateway::tasks::task::TaskQuery { owner: Some(key.key.owner()), ..Default::default() };
        let tasks = store.task_list(&q).await.unwrap().tasks;
        assert_eq!(tasks.len(), 2, "{project}");
        assert!(tasks.iter().all(|t| t.project == project && t.state == TaskState::Success));
    }
    let creates = sim.world().log.iter().filter(|e| e.path.ends_with("/createTask") || e.path.ends_with("/veo/generate")).count();
    assert_eq!(creates, 4, "nothing was sent to KIE for the refusals");
    s.shutdown().await.unwrap();
}

/// One JSON-RPC message to `/mcp`; the answer's status and, for a request, its JSON-RPC
/// answer (read from the JSON body or the SSE stream).
async fn rpc(base: &str, key: Option<&str>, session: Option<&str>, message: Value) -> (u16, Option<String>, Value) {
    let mut req = http().post(format!("{base}/mcp")).header("accept", "application/json, text/event-stream").header("mcp-protocol-version", "2025-06-18").json(&message);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let session = r.headers().get("mcp-session-id").map(|v| v.to_str().unwrap().to_string());
    let sse = r.headers().get("content-type").is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
    let text = r.text().await.unwrap();
    let body = if sse {
        text.lines().filter_map(|l| l.strip_prefix("data:")).filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok()).find(|v| v.get("id").is_some()).unwrap_or(Value::Null)
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, session, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mcp_needs_a_relay_key_and_a_session_is_served_by_any_instance_to_its_own_key_only() {
    let (sim_base, _sim) = start_sim_with(fast(), KEY, 10_000.0, None).await;
    let store_cfg = StoreConfig::Redis { url: testkit::redis_url(), prefix: format!("{}:", testkit::unique("mcp-sessions")), options: Default::default() };
    let a = start_on_with(&store_cfg, &sim_base, one_an_hour_with_chat).await;
    let b = start_on_with(&store_cfg, &sim_base, one_an_hour_with_chat).await;
    let store = server::open_store(&store_cfg).await.unwrap();
    let key = gateway::team::relay_keys::create(store.as_ref(), &Actor::cli(), "trailer", "agent").await.unwrap();
    let other = gateway::team::relay_keys::create(store.as_ref(), &Actor::cli(), "trailer", "someone else").await.unwrap();
    let (key, other) = (key.text.expose().to_string(), other.text.expose().to_string());
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}});

    for wrong in [None, Some("kcr_0000_nope"), Some("")] {
        let r = http().post(format!("{}/mcp", a.base)).header("accept", "application/json, text/event-stream").json(&init);
        let r = if let Some(k) = wrong { r.bearer_auth(k) } else { r };
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 401, "{wrong:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        assert!(r.text().await.unwrap().contains("relay key"));
    }

    let (status, session, answer) = rpc(&a.base, Some(&key), None, init.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"]["serverInfo"]["name"], "kie-control-room", "{answer}");
    let session = session.expect("a session id");
    let (status, _, _) = rpc(&a.base, Some(&key), Some(&session), json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
    assert_eq!(status, 202);

    // Instance B never saw this session: it restores it from the store.
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let (status, _, answer) = rpc(&b.base, Some(&key), Some(&session), list.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"]["tools"].as_array().map(Vec::len), Some(10), "{answer}");
    // Another key cannot use it, on either instance; a made-up session is unknown.
    for base in [&a.base, &b.base] {
        let (status, _, answer) = rpc(base, Some(&other), Some(&session), list.clone()).await;
        assert_eq!(status, 404, "{answer}");
    }
    let (status, _, _) = rpc(&a.base, Some(&key), Some("not-a-session"), list.clone()).await;
    assert_eq!(status, 404);

    // A language model, through the same admission as the relay's chat calls.
    let call = |id: u64, name: &str, arguments: Value| json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": arguments}});
    let (_, _, answer) = rpc(&b.base, Some(&key), Some(&session), call(3, "chat", json!({"model": "gemini-3-flash", "messages": [{"role": "user", "content": "a lighthouse in a storm"}], "max_tokens": 50}))).await;
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    assert!(answer["result"]["content"][0]["text"].as_str().unwrap().contains("a lighthouse in a storm"), "{answer}");
    let chats = store.task_list(&gateway::tasks::task::TaskQuery { model: Some("gemini-3-flash".into()), ..Default::default() }).await.unwrap().tasks;
    assert_eq!(chats.len(), 1, "the call is recorded like the relay's");
    let chat_id = chats[0].id.clone();
    wait_until("the chat call is charged from KIE's usage", 10, || async { store.task_get(&chat_id).await.unwrap().is_some_and(|t| t.actual_cost.is_some_and(|c| c > Credits::ZERO)) }).await;

    // One task an hour: the first is sent, the second waits and is cancelled by the agent,
    // which the audit log tells with where it came from.
    let generate = |id: u64| call(id, "generate", json!({"model": "google/imagen4-fast", "input": {"prompt": "a harbour"}}));
    let (_, _, first) = rpc(&a.base, Some(&key), Some(&session), generate(4)).await;
    assert_eq!(first["result"]["isError"], false, "{first}");
    let (_, _, second) = rpc(&a.base, Some(&key), Some(&session), generate(5)).await;
    let waiting: Value = serde_json::from_str(second["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    let waiting = waiting["task_id"].as_str().unwrap().to_string();
    let (_, _, cancelled) = rpc(&b.base, Some(&key), Some(&session), call(6, "cancel", json!({"task_id": waiting}))).await;
    assert_eq!(cancelled["result"]["isError"], false, "{cancelled}");
    let t = store.task_get(&waiting).await.unwrap().unwrap();
    assert_eq!(t.state, TaskState::Fail, "cancelled before it reached KIE");
    let log = gateway::team::audit::search(store.as_ref(), &Default::default(), None, 50).await.unwrap();
    let by_mcp: Vec<&str> = log.entries.iter().filter(|e| e.from.ends_with(" via mcp")).map(|e| e.action.as_str()).collect();
    assert!(by_mcp.contains(&"task cancelled") && by_mcp.contains(&"mcp session opened"), "{by_mcp:?}");
    // Another project's task reads like a missing one.
    let elsewhere = gateway::team::relay_keys::create(store.as_ref(), &Actor::cli(), "teaser", "elsewhere").await.unwrap();
    let elsewhere = elsewhere.text.expose().to_string();
    let (_, theirs, _) = rpc(&a.base, Some(&elsewhere), None, init.clone()).await;
    let (_, _, not_yours) = rpc(&a.base, Some(&elsewhere), theirs.as_deref(), call(7, "status", json!({"task_id": waiting}))).await;
    assert_eq!(not_yours["result"]["isError"], true, "{not_yours}");
    assert!(not_yours["result"]["content"][0]["text"].as_str().unwrap().starts_with(&format!("No task {waiting} in project teaser")), "{not_yours}");

    // The MCP Inspector (npm) in its CLI mode lists the same tools.
    let inspector = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/node_modules/.bin/mcp-inspector");
    let out = std::process::Command::new(inspector)
        .env("MCP_CATALOG_PATH", testkit::scratch_dir("mcp-inspector").join("catalog.json"))
        .args(["--cli", &format!("{}/mcp", a.base), "--method", "tools/list", "--header", &format!("Authorization: Bearer {key}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["tools"].as_array().map(Vec::len), Some(10), "{listed}");

    // Counted with the relay's requests, under their own route.
    let (_, metrics) = get_anon(&format!("{}/metrics", a.base)).await;
    for status in ["200", "401", "404"] {
        assert!(metrics.contains(&format!("relay_requests_total{{route=\"/mcp\",status=\"{status}\"}}")), "{status}: {}", metrics.lines().filter(|l| l.contains("/mcp")).collect::<Vec<_>>().join("\n"));
    }
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
