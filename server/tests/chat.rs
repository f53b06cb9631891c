//! Language models through the relay, over real HTTP on loopback: plain and streamed calls
//! relayed byte for byte (the stream measured to arrive chunk by chunk), the `openai` Python
//! package pointed at the relay, usage recorded and cost settled from it, a cap refusing a call
//! before it is sent (402), a tokens-per-minute rule held across two instances with no
//! upstream 429, a client that goes away cancelling the upstream call, and the key in no
//! answer.

mod support;

use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

/// A catalog with token prices for the tests (prices of their own, higher than the built-in
/// one's, so a hold is plainly more than kie-sim charges).
fn priced_catalog() -> std::path::PathBuf {
    let dir = testkit::scratch_dir("chat-catalog");
    let path = dir.join("models.json");
    let text = json!({"prices_taken": "test", "models": [
        {"id": "gemini-3-flash", "category": "language", "provider": "Google", "purpose": "test", "price": {"per_1m_tokens": {"input": 1000, "output": 4000}}, "output_tokens": 200},
        {"id": "gemini-2.5-flash", "category": "language", "provider": "Google", "purpose": "test (no usage reported)", "price": {"per_1m_tokens": {"input": 1000, "output": 4000}}},
        {"id": "claude-sonnet-4-5", "category": "language", "provider": "Anthropic", "purpose": "test (Messages API)", "price": {"per_1m_tokens": {"input": 3000, "output": 15000}}, "output_tokens": 300, "api": "messages"},
        {"id": "gpt-5.1-codex", "category": "language", "provider": "OpenAI", "purpose": "test (Responses API, KIE says what it charged)", "price": "unknown", "output_tokens": 300, "api": "responses"},
        {"id": "gpt-5-4", "category": "language", "provider": "OpenAI", "purpose": "test (Responses API at KIE's Codex path)", "price": "unknown", "output_tokens": 300, "api": "responses", "path": "/codex/v1/responses"},
        {"id": "grok-4-5", "category": "language", "provider": "xAI", "purpose": "test (Responses API at KIE's Grok path)", "price": {"per_1m_tokens": {"input": 1600, "output": 4800}}, "output_tokens": 300, "api": "responses", "path": "/grok/v1/responses"},
        {"id": "google/imagen4-fast", "category": "image", "provider": "Google", "purpose": "test", "required": ["prompt"], "price": {"flat": 4}}
    ]});
    std::fs::write(&path, text.to_string()).unwrap();
    path
}

struct Console {
    s: Running,
    key: String,
    /// The owner its calls carry (`key:<id>`).
    owner: String,
    store: Arc<dyn gateway::store::Store>,
}

async fn console(upstream: &str, store_cfg: gateway_store::StoreCfg, chat_rules: &str) -> Console {
    console_with(upstream, store_cfg, chat_rules, "").await
}

async fn console_with(upstream: &str, store_cfg: gateway_store::StoreCfg, chat_rules: &str, per_model: &str) -> Console {
    let (listener, base) = bind().await;
    let mut cfg = config(store_cfg.clone(), Some(KEY));
    cfg.kie_base_url = upstream.parse().unwrap();
    cfg.public_url = Some(base.parse().unwrap());
    cfg.catalog_file = Some(priced_catalog());
    cfg.chat_rate_guard = gateway::tasks::rate_guard::parse_chat_rules(chat_rules).unwrap();
    cfg.chat_model_rate_guard = gateway::tasks::rate_guard::parse_chat_model_rules(per_model).unwrap();
    let s = start_on(listener, cfg).await;
    let store = server::open_store(&store_cfg).await.unwrap();
    let key = gateway::team::relay_keys::create(store.as_ref(), &gateway::team::accounts::Actor::cli(), "scripts", "writers room").await.unwrap();
    Console { s, key: key.text.expose().to_string(), owner: key.key.owner(), store }
}

mod gateway_store {
    pub type StoreCfg = server::config::StoreConfig;
}

/// An upstream that answers one fixed body, or a fixed stream with a pause between chunks,
/// and counts its calls: to show the relay passes KIE's bytes on unchanged and as they come.
const PLAIN: &str = r#"{"id":"chatcmpl-fixed","object":"chat.completion","created":1,"model":"gemini-3-flash","choices":[{"index":0,"message":{"role":"assistant","content":"A lighthouse at dusk."},"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":5,"total_tokens":16}}"#;
const CHUNKS: [&str; 5] = [
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"A light\"}}]}\n\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"house at dusk.\"}}]}\n\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":5,\"total_tokens\":16}}\n\n",
    "data: [DONE]\n\n",
];
const PAUSE: Duration = Duration::from_millis(400);

async fn fixed_upstream() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let app = axum::Router::new().route(
        "/{model}/v1/chat/completions",
        axum::routing::post(move |headers: axum::http::HeaderMap, axum::Json(body): axum::Json<Value>| {
            let seen = s2.clone();
            async move {
                assert_eq!(headers["authorization"], format!("Bearer {KEY}"), "the KIE key goes upstream, not the relay key");
                let stream = body["stream"] == true;
                seen.lock().unwrap().push(body);
                if !stream {
                    return ([("content-type", "application/json")], PLAIN).into_response();
                }
                let chunks = futures::stream::iter(CHUNKS.iter().enumerate()).then(|(n, c)| async move {
                    if n > 0 {
                        tokio::time::sleep(PAUSE).await;
                    }
                    Ok::<_, std::io::Error>(axum::body::Bytes::from_static(c.as_bytes()))
                });
                ([("content-type", "text/event-stream")], axum::body::Body::from_stream(chunks)).into_response()
            }
        }),
    );
    let (listener, base) = bind().await;
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, seen)
}

use axum::response::IntoResponse;
use futures::StreamExt;

fn chat_url(c: &Console, model: &str) -> String {
    format!("{}/kie/{model}/v1/chat/completions", c.s.base)
}

fn ask(stream: bool) -> Value {
    json!({"messages": [{"role": "system", "content": "You write shot prompts."}, {"role": "user", "content": "a lighthouse"}], "stream": stream, "max_tokens": 50})
}

/// The newest ended record whose id starts so (a call is ended just after its answer is
/// handed over, off the response path: waited for, a few seconds at most).
async fn record(c: &Console, id_prefix: &str) -> gateway::TaskRecord {
    let started = Instant::now();
    loop {
        let page = c.store.task_list(&gateway::tasks::task::TaskQuery { limit: 100, ..Default::default() }).await.unwrap();
        if let Some(t) = page.tasks.into_iter().find(|t| t.id.starts_with(id_prefix) && t.state.is_terminal()) {
            return t;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "no ended chat record");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plain_and_streamed_calls_are_relayed_byte_for_byte_and_the_stream_as_it_arrives() {
    let (upstream, seen) = fixed_upstream().await;
    let c = console(&upstream, redis_store(&format!("{}:", testkit::unique("chat-bytes"))), "none").await;
    let r = http().post(chat_url(&c, "gemini-3-flash")).bearer_auth(&c.key).json(&ask(false)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert!(r.headers().get("x-control-room-clamped").is_none(), "no cap: nothing lowered");
    assert_eq!(r.text().await.unwrap(), PLAIN, "KIE's answer, byte for byte");
    assert_eq!(seen.lock().unwrap()[0], ask(false), "the client's body, with the limit it asked for (no cap lowered it)");
    let t = record(&c, "chat_").await;
    let usage = t.chat.clone().unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens, usage.estimated), (11, 5, false), "KIE's usage");
    // 11 × 1000 + 5 × 4000 per million tokens = 0.031 credits.
    assert_eq!(t.actual_cost, Some(gateway::Credits(31)));
    assert_eq!((t.state, t.owner.as_str(), t.project.as_str()), (gateway::TaskState::Success, c.owner.as_str(), "scripts"));
    assert!(c.owner.starts_with("key:") && !c.owner.contains("writers room"), "a key's owner is its id: {}", c.owner);

    // Streamed: each chunk reaches the client when KIE sends it, not at the end.
    let started = Instant::now();
    let r = http().post(chat_url(&c, "gemini-3-flash")).bearer_auth(&c.key).json(&ask(true)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut body = Vec::new();
    let mut arrivals = Vec::new();
    let mut stream = r.bytes_stream();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.unwrap());
        arrivals.push(started.elapsed());
    }
    assert_eq!(String::from_utf8(body).unwrap(), CHUNKS.concat(), "the stream, byte for byte");
    let total = PAUSE * (CHUNKS.len() as u32 - 1);
    assert!(arrivals[0] < total / 2, "the first chunk came at {:?}, before KIE's stream was half done ({total:?}): {arrivals:?}", arrivals[0]);
    assert!(arrivals.len() >= 3, "it came in pieces: {arrivals:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let page = c.store.task_list(&gateway::tasks::task::TaskQuery { limit: 100, ..Default::default() }).await.unwrap();
    let streamed = page.tasks.iter().find(|t| t.chat.as_ref().is_some_and(|u| u.streamed)).expect("the streamed call is on record");
    assert_eq!(streamed.state, gateway::TaskState::Success);
    assert_eq!(streamed.chat.as_ref().map(|u| (u.prompt_tokens, u.completion_tokens)), Some((11, 5)), "usage from the last chunk");
    c.s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cap_refuses_a_call_before_it_is_sent_and_bad_calls_say_what_to_fix() {
    let (upstream, seen) = fixed_upstream().await;
    let c = console(&upstream, redis_store(&format!("{}:", testkit::unique("chat-cap"))), "none").await;
    // The prompt alone may cost up to its ~95 bytes × 1000 per million ≈ 0.095 credits: a cap
    // of 0.04 credits affords no answer at all.
    let (code, body) = server_fn(&c.s.base, "set_cost_rule", &form(&[("project", "scripts"), ("per_job", "0.0002")])).await;
    assert_eq!(code, 200, "{body}");
    let r = http().post(chat_url(&c, "gemini-3-flash")).bearer_auth(&c.key).json(&ask(false)).send().await.unwrap();
    assert_eq!(r.status(), 402);
    let refusal: Value = r.json().await.unwrap();
    assert!(refusal["msg"].as_str().unwrap().contains("one job may cost at most"), "{refusal}");
    let cases = [
        ("no-such-model", ask(false), 404, "not supported"),
        ("veo3", ask(false), 404, "not supported"),
        ("gemini-3-flash", json!({"stream": false}), 422, "messages is required"),
        ("gemini-3-flash", json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}), 422, "max_tokens"),
    ];
    for (model, body, code, says) in cases {
        let r = http().post(chat_url(&c, model)).bearer_auth(&c.key).json(&body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), code, "{model} {body}");
        let answer: Value = r.json().await.unwrap();
        assert!(answer["msg"].as_str().unwrap_or("").contains(says), "{model}: {answer}");
    }
    let r = http().post(chat_url(&c, "gemini-3-flash")).bearer_auth("kcr_wrong").json(&ask(false)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(seen.lock().unwrap().is_empty(), "nothing reached KIE");
    assert_eq!(c.store.task_counts().await.unwrap().total, 0, "nothing was recorded");
    c.s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tokens_per_minute_rule_holds_across_two_instances_with_no_upstream_429() {
    let (sim_base, sim) = start_sim_with(kie_sim::Settings { chat_tokens_per_min: 400, ..Default::default() }, KEY, 10_000.0, None).await;
    let prefix = format!("{}:", testkit::unique("chat-tpm"));
    // Each call is estimated at its prompt (~8 tokens) plus max_tokens (50): 300 a minute fit 5.
    let a = console(&sim_base, redis_store(&prefix), "tokens:300/1m").await;
    let b = console(&sim_base, redis_store(&prefix), "tokens:300/1m").await;
    let mut calls = Vec::new();
    for n in 0..12 {
        let c = if n % 2 == 0 { &a } else { &b };
        let (url, key) = (chat_url(c, "gemini-3-flash"), c.key.clone());
        calls.push(tokio::spawn(async move {
            let r = http().post(url).bearer_auth(key).json(&ask(false)).send().await.unwrap();
            (r.status().as_u16(), r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string()))
        }));
    }
    let mut answered = 0;
    let mut refused = 0;
    for call in calls {
        match call.await.unwrap() {
            (200, _) => answered += 1,
            (429, Some(after)) => {
                assert!(after.parse::<u64>().unwrap() >= 1);
                refused += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(answered >= 5 && refused >= 1, "answered {answered}, refused {refused}");
    let log = sim.world().log.clone();
    let upstream_429 = log.iter().filter(|e| e.method == "CHAT" && e.code == 429).count();
    assert_eq!(upstream_429, 0, "the console caused no upstream 429");
    let sent = log.iter().filter(|e| e.method == "CHAT" && e.code == 200).count();
    assert_eq!(sent, answered, "only admitted calls were sent");
    a.s.shutdown().await.unwrap();
    b.s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_goes_away_cancels_the_upstream_call_and_an_answer_without_usage_is_estimated() {
    let (sim_base, sim) = start_sim_with(kie_sim::Settings { chat_chunk_ms: 250, ..Default::default() }, KEY, 10_000.0, None).await;
    let c = console(&sim_base, redis_store(&format!("{}:", testkit::unique("chat-cancel"))), "concurrent:2").await;
    let r = http().post(chat_url(&c, "gemini-3-flash")).bearer_auth(&c.key).json(&ask(true)).send().await.unwrap();
    let mut stream = r.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    drop(stream);
    wait_until("kie-sim saw the stream cancelled", 10, || async { sim.world().log.iter().any(|e| e.method == "CHAT" && e.detail.as_deref().is_some_and(|d| d.starts_with("cancelled after"))) }).await;
    wait_until("the call is on record as cancelled", 10, || async {
        let page = c.store.task_list(&gateway::tasks::task::TaskQuery { limit: 10, ..Default::default() }).await.unwrap();
        page.tasks.iter().any(|t| t.fail_class == Some(gateway::tasks::task::FailClass::Cancelled))
    })
    .await;
    // KIE generated (and bills) what it streamed before the client left, and no usage came:
    // the call counts its whole hold, never 0.
    let page = c.store.task_list(&gateway::tasks::task::TaskQuery { limit: 10, ..Default::default() }).await.unwrap();
    let cancelled = page.tasks.iter().find(|t| t.fail_class == Some(gateway::tasks::task::FailClass::Cancelled)).unwrap();
    assert!(cancelled.estimated_cost > gateway::Credits::ZERO);
    assert_eq!(cancelled.actual_cost, Some(cancelled.estimated_cost), "counted at its hold");
    // Its concurrency slot is free again: two more calls run at once.
    for _ in 0..2 {
        let r = http().post(chat_url(&c, "gemini-2.5-flash")).bearer_auth(&c.key).json(&ask(false)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let answer: Value = r.json().await.unwrap();
        assert!(answer.get("usage").is_none(), "this model reports no usage");
        assert!(!answer.to_string().contains(KEY));
    }
    // Ended just after the answer was handed over (off the response path).
    let ended = || async {
        let page = c.store.task_list(&gateway::tasks::task::TaskQuery { limit: 10, ..Default::default() }).await.unwrap();
        page.tasks.into_iter().filter(|t| t.model == "gemini-2.5-flash" && t.state.is_terminal()).collect::<Vec<_>>()
    };
    wait_until("both answered calls ended", 5, || async { ended().await.len() == 2 }).await;
    let estimated = ended().await.remove(0);
    let usage = estimated.chat.clone().unwrap();
    assert!(usage.estimated && usage.prompt_tokens > 0 && usage.completion_tokens > 0, "{usage:?}");
    // Counted in the ledger and the metrics.
    let (_, status) = server_fn(&c.s.base, "console_status", "").await;
    assert_ne!(status["ledger"]["credits_consumed"], "0", "{status}");
    let (_, metrics) = get_anon(&format!("{}/metrics", c.s.base)).await;
    assert!(metrics.lines().any(|l| l.starts_with("control_room_chat_calls_total{") && l.contains("outcome=\"cancelled\"")), "{metrics}");
    assert!(!metrics.contains(KEY));
    c.s.shutdown().await.unwrap();
}

/// Runs a Python `script` of a vendor's client (from `tools/venv`) against the relay at
/// `base_url` with the console's relay key; its last line of output, as JSON.
fn python_client(c: &Console, script: &str, base_url: &str) -> Value {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/venv/bin/python");
    assert!(python.exists(), "tools/venv is made by scripts/setup.sh test");
    let out = std::process::Command::new(python).arg("-c").arg(script).arg(base_url).arg(&c.key).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_openai_python_client_works_against_the_relay_unchanged() {
    let (sim_base, _sim) = start_sim_with(kie_sim::Settings { chat_chunk_ms: 5, ..Default::default() }, KEY, 10_000.0, None).await;
    let c = console(&sim_base, redis_store(&format!("{}:", testkit::unique("chat-openai"))), "requests:100/1m").await;
    let script = r#"
import json, sys
from openai import OpenAI
client = OpenAI(base_url=sys.argv[1], api_key=sys.argv[2])
plain = client.chat.completions.create(model="gemini-3-flash", messages=[{"role": "user", "content": "a lighthouse"}], max_tokens=20)
parts = [c.choices[0].delta.content or "" for c in client.chat.completions.create(model="gemini-3-flash", messages=[{"role": "user", "content": "a harbour"}], stream=True) if c.choices]
print(json.dumps({"plain": plain.choices[0].message.content, "usage": plain.usage.total_tokens, "streamed": "".join(parts)}))
"#;
    let got = python_client(&c, script, &format!("{}/kie/gemini-3-flash/v1", c.s.base));
    assert!(got["plain"].as_str().unwrap().contains("a lighthouse"), "{got}");
    assert!(got["usage"].as_u64().unwrap() > 0);
    assert!(got["streamed"].as_str().unwrap().contains("a harbour"), "{got}");
    c.s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_anthropic_python_client_works_against_the_relay_unchanged() {
    let (sim_base, _sim) = start_sim_with(kie_sim::Settings { chat_chunk_ms: 5, ..Default::default() }, KEY, 10_000.0, None).await;
    let c = console(&sim_base, redis_store(&format!("{}:", testkit::unique("chat-claude"))), "requests:100/1m").await;
    // Anthropic's client as a team would use it: the relay key as its API key (sent as
    // x-api-key), the console's /kie/claude as its base URL; a plain call and a stream.
    let script = r#"
import json, sys
from anthropic import Anthropic
client = Anthropic(base_url=sys.argv[1], api_key=sys.argv[2])
plain = client.messages.create(model="claude-sonnet-4-5", max_tokens=40, system="You write shot prompts.", messages=[{"role": "user", "content": "a lighthouse"}])
with client.messages.stream(model="claude-sonnet-4-5", max_tokens=40, messages=[{"role": "user", "content": "a harbour"}]) as stream:
    streamed = "".join(stream.text_stream)
    final = stream.get_final_message()
print(json.dumps({"plain": plain.content[0].text, "usage": [plain.usage.input_tokens, plain.usage.output_tokens], "streamed": streamed, "stream_usage": [final.usage.input_tokens, final.usage.output_tokens]}))
"#;
    let got = python_client(&c, script, &format!("{}/kie/claude", c.s.base));
    assert!(got["plain"].as_str().unwrap().contains("a lighthouse"), "{got}");
    assert!(got["streamed"].as_str().unwrap().contains("a harbour"), "{got}");
    // Each call recorded for the key, ended at the tokens KIE reported (not an estimate).
    let ended = || async {
        let page = c.store.task_list(&gateway::tasks::task::TaskQuery { limit: 10, ..Default::default() }).await.unwrap();
        page.tasks.into_iter().filter(|t| t.model == "claude-sonnet-4-5" && t.state == gateway::TaskState::Success).collect::<Vec<_>>()
    };
    wait_until("both Claude calls ended", 5, || async { ended().await.len() == 2 }).await;
    let mut counted: Vec<(u64, u64)> = ended().await.iter().map(|t| t.chat.as_ref().map(|u| { assert!(!u.estimated, "{u:?}"); (u.prompt_tokens, u.completion_tokens) }).unwrap()).collect();
    counted.sort();
    let mut reported: Vec<(u64, u64)> = ["usage", "stream_usage"].iter().map(|k| (got[k][0].as_u64().unwrap(), got[k][1].as_u64().unwrap())).collect();
    reported.sort();
    assert_eq!(counted, reported, "counted at KIE's usage, streamed or not");
    assert!(ended().await.iter().all(|t| t.owner == c.owner && t.actual_cost.is_some_and(|a| a > gateway::Credits::ZERO)));
    // Refused before anything is sent: another API's model on either path, no key, a thinking
    // budget the console cannot price, no messages.
    let messages = format!("{}/kie/claude/v1/messages", c.s.base);
    let post = |url: String, key: Option<String>, body: Value| async move {
        let mut r = http().post(url).json(&body);
        if let Some(k) = key {
            r = r.header("x-api-key", k);
        }
        let r = r.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    let key = || Some(c.key.clone());
    let hello = json!([{"role": "user", "content": "hi"}]);
    assert_eq!(post(chat_url(&c, "claude-sonnet-4-5"), None, json!({"messages": hello})).await.0, 401, "no key");
    let r = http().post(chat_url(&c, "claude-sonnet-4-5")).bearer_auth(&c.key).json(&json!({"messages": hello})).send().await.unwrap();
    assert_eq!(r.status(), 404, "a Claude model is not a chat completions model");
    assert_eq!(post(messages.clone(), key(), json!({"model": "gemini-3-flash", "max_tokens": 10, "messages": hello})).await.0, 404);
    assert_eq!(post(messages.clone(), Some("not-a-key".into()), json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": hello})).await.0, 401);
    let (code, body) = post(messages.clone(), key(), json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "thinking": {"type": "enabled", "budget_tokens": 50}, "messages": hello})).await;
    assert_eq!(code, 422);
    assert!(body.contains("thinking"), "{body}");
    assert_eq!(post(messages.clone(), key(), json!({"model": "claude-sonnet-4-5", "max_tokens": 10})).await.0, 422);
    assert_eq!(post(messages, key(), json!({"max_tokens": 10, "messages": hello})).await.0, 422, "no model");
    // The composer drafts with a Claude model too, asked in its own API.
    let producer = session(&c.s.base, PRODUCER).await;
    let (code, started) = server_fn_as(&c.s.base, Some(&producer), "start_draft", &form(&[("model", "claude-sonnet-4-5"), ("project", "trailer"), ("prompt", "a harbour at dawn"), ("for_model", "veo3")])).await;
    assert_eq!(code, 200, "{started}");
    let draft = http().get(format!("{}/draft/{}", c.s.base, started["token"].as_str().unwrap())).header("cookie", cookie(&producer)).send().await.unwrap().text().await.unwrap();
    let text: String = draft.lines().filter_map(|l| l.strip_prefix("data: ")).filter_map(|d| serde_json::from_str::<String>(d).ok()).collect();
    assert!(text.contains("a harbour at dawn"), "the draft's text: {draft}");
    c.s.shutdown().await.unwrap();
}

/// The `openai` package's Responses API against `/kie/api/v1`, unchanged: a plain call and a
/// stream, each counted at what KIE said it charged (`credits_consumed`), its tokens at KIE's
/// usage; what the console cannot price or bound is refused before anything is sent. Against
/// `/kie/codex/v1` the same, for the models KIE serves at its Codex path.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_openai_python_clients_responses_work_against_the_relay_counted_at_what_kie_charged() {
    let (sim_base, sim) = start_sim_with(kie_sim::Settings { chat_chunk_ms: 5, ..Default::default() }, KEY, 10_000.0, None).await;
    let c = console(&sim_base, redis_store(&format!("{}:", testkit::unique("chat-responses"))), "requests:100/1m").await;
    // No price is published for it: a per-job cap ($1, 200 credits) is what a call holds.
    let (code, body) = server_fn(&c.s.base, "set_cost_rule", &form(&[("per_job", "1")])).await;
    assert_eq!(code, 200, "{body}");
    let script = r#"
import json, sys
from openai import OpenAI
client = OpenAI(base_url=sys.argv[1], api_key=sys.argv[2])
plain = client.responses.create(model="gpt-5.1-codex", instructions="You write shot prompts.", input="a lighthouse", max_output_tokens=40, reasoning={"effort": "low"})
parts, usage = [], None
for event in client.responses.create(model="gpt-5.1-codex", input=[{"role": "user", "content": "a harbour"}], stream=True):
    if event.type == "response.output_text.delta":
        parts.append(event.delta)
    elif event.type == "response.completed":
        usage = [event.response.usage.input_tokens, event.response.usage.output_tokens]
print(json.dumps({"plain": plain.output_text, "usage": [plain.usage.input_tokens, plain.usage.output_tokens], "streamed": "".join(parts), "stream_usage": usage}))
"#;
    let got = python_client(&c, script, &format!("{}/kie/api/v1", c.s.base));
    assert!(got["plain"].as_str().unwrap().contains("a lighthouse"), "{got}");
    assert!(got["streamed"].as_str().unwrap().contains("a harbour"), "{got}");
    let ended = || async {
        let page = c.store.task_list(&gateway::tasks::task::TaskQuery { limit: 10, ..Default::default() }).await.unwrap();
        page.tasks.into_iter().filter(|t| t.model == "gpt-5.1-codex" && t.state == gateway::TaskState::Success).collect::<Vec<_>>()
    };
    wait_until("both Responses calls ended", 5, || async { ended().await.len() == 2 }).await;
    let mut counted = Vec::new();
    for t in ended().await {
        let u = t.chat.clone().unwrap();
        assert!(!u.estimated, "{u:?}");
        // kie-sim charges 0.0001 credit a token, to the cent: what it said is what is counted.
        let said = ((((u.prompt_tokens + u.completion_tokens) as f64) * 0.0001 * 100.0).round() / 100.0).max(0.01);
        assert_eq!(t.actual_cost, gateway::Credits::from_decimal(said), "{t:?}");
        assert_eq!(t.charge_basis, Some(gateway::tasks::task::ChargeBasis::Reported));
        assert!(t.estimated_cost == gateway::Credits::from_credits(200), "the cap it held: {}", t.estimated_cost);
        counted.push((u.prompt_tokens, u.completion_tokens));
    }
    counted.sort();
    let mut reported: Vec<(u64, u64)> = ["usage", "stream_usage"].iter().map(|k| (got[k][0].as_u64().unwrap(), got[k][1].as_u64().unwrap())).collect();
    reported.sort();
    assert_eq!(counted, reported, "counted at KIE's usage, streamed or not");
    // Refused before anything is sent: a reasoning budget it cannot bound, no input, a length
    // out of range, another API's model, no key.
    let url = format!("{}/kie/api/v1/responses", c.s.base);
    for (body, code, says) in [
        (json!({"model": "gpt-5.1-codex", "input": "hi", "reasoning": {"effort": "high", "budget_tokens": 50000}}), 422, "reasoning"),
        (json!({"model": "gpt-5.1-codex"}), 422, "input is required"),
        (json!({"model": "gpt-5.1-codex", "input": "hi", "max_output_tokens": 0}), 422, "max_output_tokens"),
        (json!({"model": "gpt-5.1-codex", "input": "hi", "max_tokens": 10}), 422, "max_tokens"),
        (json!({"model": "gemini-3-flash", "input": "hi"}), 404, "not supported"),
        (json!({"input": "hi"}), 422, "model is required"),
    ] {
        let r = http().post(&url).bearer_auth(&c.key).json(&body).send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, code, "{body}: {text}");
        assert!(text.contains(says), "{body}: {text}");
    }
    assert_eq!(http().post(&url).json(&json!({"model": "gpt-5.1-codex", "input": "hi"})).send().await.unwrap().status(), 401);
    let calls = sim.world().log.iter().filter(|e| e.path == "/api/v1/responses" && e.code != 0).count();
    assert_eq!(calls, 2, "nothing refused reached KIE");

    // KIE's Codex and Grok paths: the same package pointed at `/kie/codex/v1` and
    // `/kie/grok/v1`, each model sent to KIE's own path (Grok's priced by its tokens, no per-job
    // cap needed); asked for at another path, the refusal names the right one.
    for (name, model, prompt) in [("codex", "gpt-5-4", "a lighthouse"), ("grok", "grok-4-5", "a tagline for a lighthouse")] {
        let script = format!(
            r#"
import json, sys
from openai import OpenAI
client = OpenAI(base_url=sys.argv[1], api_key=sys.argv[2])
plain = client.responses.create(model="{model}", input="{prompt}", max_output_tokens=40)
print(json.dumps({{"plain": plain.output_text}}))
"#
        );
        let got = python_client(&c, &script, &format!("{}/kie/{name}/v1", c.s.base));
        assert!(got["plain"].as_str().unwrap().contains(prompt), "{got}");
        let sent = format!("/{name}/v1/responses");
        assert_eq!(sim.world().log.iter().filter(|e| e.path == sent && e.code != 0).count(), 1, "{model} sent to KIE's {sent}");
    }
    for (at, model, says) in [
        ("/kie/codex/v1/responses", "gpt-5.1-codex", "served at /kie/api/v1/responses"),
        ("/kie/api/v1/responses", "gpt-5-4", "served at /kie/codex/v1/responses"),
        ("/kie/codex/v1/responses", "grok-4-5", "served at /kie/grok/v1/responses"),
        ("/kie/grok/v1/responses", "gpt-5-4", "served at /kie/codex/v1/responses"),
    ] {
        let r = http().post(format!("{}{at}", c.s.base)).bearer_auth(&c.key).json(&json!({"model": model, "input": "hi"})).send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, 404, "{model} at {at}: {text}");
        assert!(text.contains(says), "{model} at {at}: {text}");
    }
    assert_eq!(sim.world().log.iter().filter(|e| e.path.ends_with("/v1/responses") && e.code != 0).count(), 4, "nothing refused reached KIE");
    c.s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_composers_draft_streams_text_once_for_the_person_who_started_it() {
    let (sim_base, _sim) = start_sim_with(kie_sim::Settings { chat_chunk_ms: 20, ..Default::default() }, KEY, 10_000.0, None).await;
    let c = console(&sim_base, redis_store(&format!("{}:", testkit::unique("chat-draft"))), "none").await;
    let producer = session(&c.s.base, PRODUCER).await;
    let start = |who: String| {
        let base = c.s.base.clone();
        async move { server_fn_as(&base, Some(&who), "start_draft", &form(&[("model", "gemini-3-flash"), ("project", "trailer"), ("prompt", "a lighthouse in a storm"), ("for_model", "veo3")])).await }
    };
    let (code, started) = start(producer.clone()).await;
    assert_eq!(code, 200, "{started}");
    assert!(started["estimate"].as_str().unwrap().starts_with("estimate "), "{started}");
    let token = started["token"].as_str().unwrap().to_string();
    let url = format!("{}/draft/{token}", c.s.base);
    // Someone else cannot read it (and does not use it up).
    let viewer = session(&c.s.base, VIEWER).await;
    assert_eq!(http().get(&url).header("cookie", cookie(&viewer)).send().await.unwrap().status(), 404);
    let r = http().get(&url).header("cookie", cookie(&producer)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let events = r.text().await.unwrap();
    let text: String = events.lines().filter_map(|l| l.strip_prefix("data: ")).filter_map(|d| serde_json::from_str::<String>(d).ok()).collect();
    assert!(text.contains("a lighthouse in a storm"), "the model's answer, as text: {events}");
    assert!(events.contains("event: done"), "{events}");
    assert!(!events.contains("chat.completion.chunk"), "text only, not KIE's chunks");
    assert_eq!(http().get(&url).header("cookie", cookie(&producer)).send().await.unwrap().status(), 404, "a draft is read once");
    // Recorded like any chat call, for the person, in the project.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = record(&c, "chat_").await;
    assert_eq!((t.owner.as_str(), t.project.as_str(), t.state), (PRODUCER, "trailer", gateway::TaskState::Success));
    // A viewer cannot start one.
    assert_eq!(start(viewer).await.0, 403);
    c.s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_models_own_rule_holds_only_that_model_and_shows_in_the_throttle_panel() {
    let (sim_base, _sim) = start_sim_with(kie_sim::Settings::default(), KEY, 10_000.0, None).await;
    let c = console_with(&sim_base, redis_store(&format!("{}:", testkit::unique("chat-model"))), "none", "gemini-3-flash=requests:2/1m").await;
    let call = |model: &'static str| {
        let (url, key) = (chat_url(&c, model), c.key.clone());
        async move { http().post(url).bearer_auth(key).json(&ask(false)).send().await.unwrap().status().as_u16() }
    };
    assert_eq!((call("gemini-3-flash").await, call("gemini-3-flash").await), (200, 200));
    // Its window frees in about a minute, longer than a call may wait: refused at once, with
    // when to come back.
    let started = Instant::now();
    let r = http().post(chat_url(&c, "gemini-3-flash")).bearer_auth(&c.key).json(&ask(false)).send().await.unwrap();
    assert_eq!(r.status(), 429, "its own window is full");
    let after: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((50..=61).contains(&after), "Retry-After {after}");
    assert!(started.elapsed() < Duration::from_secs(4), "no pointless wait");
    assert_eq!(call("gemini-2.5-flash").await, 200, "another model is not held by it");
    let (_, throttle) = server_fn(&c.s.base, "throttle_status", "").await;
    let rule = throttle["rules"].as_array().unwrap().iter().find(|r| r["rule"].as_str().unwrap_or("").starts_with("chat gemini-3-flash:")).cloned().expect("the model's rule is shown");
    assert_eq!((rule["used"].as_i64(), rule["limit"].as_i64()), (Some(2), Some(2)), "{rule}");
    c.s.shutdown().await.unwrap();
}

/// What kie-sim logged it generated for each chat call it admitted, in order: (prompt,
/// completion) tokens — what KIE bills.
fn sim_usage(sim: &kie_sim::Sim) -> Vec<(i64, i64)> {
    sim.world()
        .log
        .iter()
        .filter(|e| e.method == "CHAT")
        .filter_map(|e| {
            let (p, c) = e.detail.as_deref()?.split_once(" usage ")?.1.split_once('+')?;
            Some((p.parse().ok()?, c.parse().ok()?))
        })
        .collect()
}

/// The test catalog's gemini-3-flash price (1,000 and 4,000 credits per million tokens) in
/// milli-credits: what KIE would bill for these tokens.
fn billed(usage: (i64, i64)) -> i64 {
    usage.0 + 4 * usage.1
}

fn long_answers() -> kie_sim::Settings {
    kie_sim::Settings { chat_answer_tokens: Some(20_000), chat_chunk_ms: 0, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_per_job_cap_holds_against_what_kie_bills_with_every_limit_field_plain_and_streamed() {
    let (sim_base, sim) = start_sim_with(long_answers(), KEY, 10_000.0, None).await;
    let c = console(&sim_base, redis_store(&format!("{}:", testkit::unique("chat-perjob"))), "none").await;
    // One credit a job ($0.005): about 230 answer tokens after the prompt.
    let (code, body) = server_fn(&c.s.base, "set_cost_rule", &form(&[("project", "scripts"), ("per_job", "0.005")])).await;
    assert_eq!(code, 200, "{body}");
    let cap = 1000;
    let huge = json!(100_000);
    let variants: [(&str, Vec<(&str, Value)>); 6] = [
        ("absent", vec![]),
        ("null", vec![("max_tokens", Value::Null), ("max_completion_tokens", Value::Null)]),
        ("huge max_tokens", vec![("max_tokens", huge.clone())]),
        ("huge max_completion_tokens", vec![("max_completion_tokens", huge.clone())]),
        ("both huge", vec![("max_tokens", huge.clone()), ("max_completion_tokens", json!(900_000))]),
        ("two answers", vec![("max_completion_tokens", huge.clone()), ("n", json!(2))]),
    ];
    for stream in [false, true] {
        for (name, fields) in &variants {
            let mut body = json!({"messages": [{"role": "user", "content": "write the whole screenplay"}], "stream": stream});
            for (k, v) in fields {
                body[*k] = v.clone();
            }
            let before = sim_usage(&sim).len();
            let r = http().post(chat_url(&c, "gemini-3-flash")).bearer_auth(&c.key).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200, "{name} stream={stream}");
            let clamped = r.headers().get("x-control-room-clamped").map(|v| v.to_str().unwrap().to_string());
            let _ = r.bytes().await.unwrap();
            let usage = sim_usage(&sim);
            assert_eq!(usage.len(), before + 1, "{name}: one call reached KIE");
            let bill = billed(usage[before]);
            assert!(bill > 0 && bill <= cap, "{name} stream={stream}: KIE billed {bill} milli-credits under a cap of {cap}");
            if name.contains("huge") || name.contains("two") {
                let said = clamped.unwrap_or_else(|| panic!("{name}: the clamp is said"));
                let field = if name.contains("huge max_tokens") || name.contains("both") { "max_tokens=" } else { "max_completion_tokens=" };
                assert!(said.starts_with(field), "{name}: {said}");
            }
        }
    }
    // Settled at what KIE's usage says, never above the cap.
    wait_until("every call ended", 10, || async {
        let page = c.store.task_list(&gateway::tasks::task::TaskQuery { limit: 100, ..Default::default() }).await.unwrap();
        page.tasks.len() == 12 && page.tasks.iter().all(|t| t.state.is_terminal())
    })
    .await;
    let page = c.store.task_list(&gateway::tasks::task::TaskQuery { limit: 100, ..Default::default() }).await.unwrap();
    for t in &page.tasks {
        let actual = t.actual_cost.expect("settled").0;
        assert!(actual > 0 && actual <= cap && t.estimated_cost.0 <= cap, "{}: held {:?}, counted {actual}", t.id, t.estimated_cost);
    }
    // What cannot be priced, or a model other than the path's, is refused before anything is sent.
    let sent = sim_usage(&sim).len();
    for (body, says) in [
        (json!({"messages": [{"role": "user", "content": "x"}], "model": "gemini-3-pro"}), "path's model"),
        (json!({"messages": [{"role": "user", "content": "x"}], "thinking": {"type": "enabled", "budget_tokens": 100000}}), "thinking cannot be priced"),
        (json!({"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": -1}), "max_completion_tokens must be"),
        (json!({"messages": [{"role": "user", "content": "x"}], "n": 50}), "n must be"),
    ] {
        let r = http().post(chat_url(&c, "gemini-3-flash")).bearer_auth(&c.key).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 422, "{body}");
        let answer: Value = r.json().await.unwrap();
        assert!(answer["msg"].as_str().unwrap_or("").contains(says), "{body}: {answer}");
    }
    let r = http().post(chat_url(&c, "gemini-3-flash")).bearer_auth(&c.key).json(&json!({"messages": [{"role": "user", "content": "x"}], "model": "gemini-3-flash"})).send().await.unwrap();
    assert_eq!(r.status(), 200, "the path's own model may be named");
    assert_eq!(sim_usage(&sim).len(), sent + 1, "only the good call was sent");
    c.s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_total_cap_refuses_what_it_cannot_afford_and_kies_bill_stays_inside_it() {
    let (sim_base, sim) = start_sim_with(long_answers(), KEY, 10_000.0, None).await;
    let c = console(&sim_base, redis_store(&format!("{}:", testkit::unique("chat-total"))), "none").await;
    // Four credits in total and no per-job cap: a call that may write 100,000 tokens (400
    // credits) cannot be afforded, so none is sent.
    let (code, body) = server_fn(&c.s.base, "set_cost_rule", &form(&[("project", "scripts"), ("total", "0.02")])).await;
    assert_eq!(code, 200, "{body}");
    let long = |stream: bool| json!({"messages": [{"role": "user", "content": "write it all"}], "max_completion_tokens": 100_000, "stream": stream});
    let calls = |n: usize| {
        let (url, key) = (chat_url(&c, "gemini-3-flash"), c.key.clone());
        futures::future::join_all((0..n).map(move |i| {
            let (url, key, body) = (url.clone(), key.clone(), long(i % 2 == 1));
            async move {
                let r = http().post(url).bearer_auth(key).json(&body).send().await.unwrap();
                let code = r.status().as_u16();
                let _ = r.bytes().await;
                code
            }
        }))
    };
    let codes = calls(8).await;
    assert!(codes.iter().all(|c| *c == 402), "{codes:?}");
    assert!(sim_usage(&sim).is_empty(), "nothing reached KIE");
    // With a per-job cap of one credit as well, each call is clamped to what it affords and
    // the total lets at most four through: what KIE bills stays inside the total.
    let (code, body) = server_fn(&c.s.base, "set_cost_rule", &form(&[("project", "scripts"), ("per_job", "0.005"), ("total", "0.02")])).await;
    assert_eq!(code, 200, "{body}");
    let codes = calls(8).await;
    let answered = codes.iter().filter(|c| **c == 200).count();
    assert!((1..=4).contains(&answered) && codes.iter().all(|c| *c == 200 || *c == 402), "{codes:?}");
    let bills: i64 = sim_usage(&sim).into_iter().map(billed).sum();
    assert!(bills <= 4000, "KIE billed {bills} milli-credits under a total cap of 4,000");
    assert_eq!(sim_usage(&sim).len(), answered);
    c.s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_abandoned_before_its_first_byte_frees_its_slot_at_once_and_is_paid_for() {
    let (sim_base, sim) = start_sim_with(kie_sim::Settings { chat_first_byte_ms: 2_000, ..Default::default() }, KEY, 10_000.0, None).await;
    let c = console(&sim_base, redis_store(&format!("{}:", testkit::unique("chat-abandon"))), "concurrent:1").await;
    let impatient = http_builder().timeout(Duration::from_millis(300)).build().unwrap();
    let gone = impatient.post(chat_url(&c, "gemini-3-flash")).bearer_auth(&c.key).json(&ask(false)).send().await;
    assert!(gone.is_err(), "the client gave up before KIE's first byte");
    tokio::time::sleep(Duration::from_millis(700)).await;
    // One call at a time: the next is admitted at once, not after the abandoned call's slot
    // times out (a call waits 5 s at most for a slot, then 429).
    let started = Instant::now();
    let r = http().post(chat_url(&c, "gemini-3-flash")).bearer_auth(&c.key).json(&ask(false)).send().await.unwrap();
    assert_eq!(r.status(), 200, "the abandoned call's slot was freed");
    assert!(started.elapsed() < Duration::from_secs(4), "it did not wait for the slot: {:?}", started.elapsed());
    assert_eq!(sim_usage(&sim).len(), 2, "both calls reached KIE, and KIE bills both");
    let page = c.store.task_list(&gateway::tasks::task::TaskQuery { limit: 10, ..Default::default() }).await.unwrap();
    let abandoned = page.tasks.iter().find(|t| t.fail_class == Some(gateway::tasks::task::FailClass::Cancelled)).expect("the abandoned call ended as cancelled");
    assert!(abandoned.estimated_cost > gateway::Credits::ZERO);
    assert_eq!(abandoned.actual_cost, Some(abandoned.estimated_cost), "no usage came: counted at its hold, never 0");
    // Counted in the receipts too.
    let id = abandoned.id.clone();
    wait_until("the abandoned call folded", 10, || async { c.store.task_get(&id).await.unwrap().is_some_and(|t| t.folded) }).await;
    let receipt = gateway::money::receipts::receipt(c.store.as_ref(), "scripts", None, None, None).await.unwrap();
    let line = receipt.lines.iter().find(|l| l.task_id == id).expect("its line");
    assert_eq!((line.state.as_str(), line.credits.clone(), line.charge_basis.as_deref()), ("fail", abandoned.estimated_cost.to_string(), Some("estimate")));
    c.s.shutdown().await.unwrap();
}
