//! Key leak scan: the real binary runs with a distinctive KIE key against kie-sim; every page,
//! server function, API route, the live stream and error paths are exercised as anonymous,
//! viewer and admin, tasks run upstream (so the key is used), and then every response (status
//! line, headers, body) and every log line (at debug level) is searched for the key and its
//! base64, URL-safe base64, percent-encoded and hex forms. The WASM/JS bundle is scanned by the
//! end-to-end suite, against a release build made with the same key in its environment.

mod support;

use base64::Engine;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// The canary: distinctive, and what a real KIE key looks like in length.
const CANARY: &str = "kie-LEAKCANARY-5e1f0c9a7b3d2e4f6a8b";

fn leak_forms() -> Vec<(String, &'static str)> {
    let b = CANARY.as_bytes();
    vec![
        (CANARY.to_string(), "plain"),
        (CANARY.to_lowercase(), "lower case"),
        (base64::engine::general_purpose::STANDARD.encode(b).trim_end_matches('=').to_string(), "base64"),
        (base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b), "URL-safe base64"),
        (url::form_urlencoded::byte_serialize(b).collect::<String>(), "percent-encoded"),
        (b.iter().map(|x| format!("{x:02x}")).collect::<String>(), "hex"),
        // The middle of the key alone (a truncated or masked echo would still leak it).
        ("LEAKCANARY-5e1f0c9a".to_string(), "fragment"),
    ]
}

/// Every exchange, written down whole: what the scan reads.
#[derive(Default)]
struct Transcript(Vec<String>);

impl Transcript {
    async fn take(&mut self, what: &str, r: reqwest::Response) -> (u16, String) {
        let status = r.status().as_u16();
        let headers: Vec<String> = r.headers().iter().map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(v.as_bytes()))).collect();
        let body = r.text().await.unwrap_or_default();
        self.0.push(format!("== {what} -> {status}\n{}\n\n{body}", headers.join("\n")));
        (status, body)
    }
}

fn spawn(dir: &std::path::Path, port: u16, sim: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_control-room"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", dir)
        .env("KIE_API_KEY", CANARY)
        .env("KIE_BASE_URL", sim)
        .env("PUBLIC_URL", format!("http://127.0.0.1:{port}"))
        .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
        .env("LEPTOS_SITE_ROOT", concat!(env!("CARGO_MANIFEST_DIR"), "/../target/site"))
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start control-room")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_kie_key_appears_in_no_response_and_no_log_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (email, role) in [(ADMIN, "admin"), (VIEWER, "viewer")] {
        let (code, _, err) = cli_with_input(dir.path(), &["user", "add", email, "--role", role], &format!("{PASSWORD}\n"));
        assert_eq!(code, Some(0), "{err}");
    }
    let (sim_base, sim) = start_sim_with(kie_sim::Settings::default(), CANARY, 1000.0, None).await;
    let port = testkit::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = spawn(dir.path(), port, &sim_base);
    // Drain the logs as they come (a full pipe would stall the server).
    let drain = |r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut r = r;
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut r, &mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let http = http_builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "control-room did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut t = Transcript::default();

    // Anonymous: pages, routes and refusals.
    for path in ["/", "/settings", "/signin", "/signin?error=refused", "/healthz", "/readyz", "/metrics", "/no/such/page", "/events", "/audit.csv", "/receipts.json?project=leak", "/receipts.csv?project=leak", "/spend.svg?by=day", "/spend.csv?by=owner", "/pkg/control-room.js", "/api/console_status"] {
        let r = http.get(format!("{base}{path}")).send().await.expect("GET");
        t.take(&format!("anonymous GET {path}"), r).await;
    }
    let r = http.post(format!("{base}/auth/signin")).header("origin", &base).form(&[("email", ADMIN), ("password", "wrong password")]).send().await.expect("POST");
    t.take("wrong password", r).await;
    let r = http.post(format!("{base}/api/console_status")).header("origin", "https://evil.example").send().await.expect("POST");
    t.take("cross-site", r).await;

    // Signed in: every server function, with good input and bad.
    let admin = sign_in(&base, ADMIN, PASSWORD).await.expect("admin signs in");
    let viewer = sign_in(&base, VIEWER, PASSWORD).await.expect("viewer signs in");
    let calls: Vec<(&str, String)> = vec![
        ("console_status", String::new()),
        ("list_tasks", "limit=20".into()),
        ("list_tasks", "filter[state]=nonsense&limit=5".into()),
        ("review_tasks", String::new()),
        ("task_story", form(&[("id", "nope")])),
        ("task_story", form(&[("id", "bad id <script>")])),
        ("review_board", String::new()),
        ("resolve_failure", form(&[("id", "nope")])),
        ("retry_failures", form(&[("class", "Upstream error"), ("model", "nope")])),
        ("bulk_action", form(&[("action", "cancel"), ("project", "leak")])),
        ("bulk_action", form(&[("action", "retry"), ("since", "whenever")])),
        ("submit_batch", form(&[("name", "leak"), ("project", "leak"), ("model", "google/imagen4-fast"), ("rows", "a kite"), ("run", "true")])),
        ("submit_batch", form(&[("name", "bad name!"), ("project", "leak"), ("model", "nope"), ("rows", "")])),
        ("list_models", String::new()),
        ("budget_status", String::new()),
        ("throttle_status", String::new()),
        ("library_status", String::new()),
        ("ledger_report", String::new()),
        ("library_items", form(&[("project", "")])),
        ("library_items", form(&[("project", "bad project!")])),
        ("delete_library_project", form(&[("project", "leak")])),
        ("delete_library_project", form(&[("project", "leak"), ("confirm", "leak")])),
        ("library_project_copies", form(&[("project", "leak")])),
        ("whoami", String::new()),
        ("submit_task", form(&[("model", "google/imagen4"), ("project", "leak"), ("prompt", "a lighthouse")])),
        ("submit_task", form(&[("model", "no/such-model"), ("project", "leak"), ("prompt", "x")])),
        ("submit_task", form(&[("model", "google/imagen4"), ("project", "bad project name!"), ("prompt", "x")])),
        ("retry_task", form(&[("id", "nope")])),
        ("cancel_task", form(&[("id", "nope")])),
        ("rerun_draft", form(&[("id", "nope")])),
        ("start_draft", form(&[("model", "gemini-3-flash"), ("project", "leak"), ("prompt", "x"), ("for_model", "veo3")])),
        ("submit_task", form(&[("model", "gemini-3-flash"), ("project", "leak"), ("prompt", "x")])),
        ("set_pin", form(&[("model", "veo3"), ("pinned", "true")])),
        ("set_cost_rule", form(&[("project", "leak"), ("per_day", "-1")])),
        ("set_cost_rule", form(&[("project", "leak"), ("per_day", "100")])),
        ("set_cost_rule", form(&[("project", "leak")])),
        ("delete_cost_rule", form(&[("project", "leak")])),
        ("set_fair_share", form(&[("project", "leak"), ("weight", "0")])),
        ("set_pause", form(&[("project", "leak"), ("paused", "false")])),
        ("list_users", String::new()),
        ("add_user", form(&[("email", "p@studio.test"), ("name", "P"), ("role", "producer"), ("password", "short")])),
        ("list_relay_keys", String::new()),
        ("revoke_relay_key", form(&[("id", "ffffffffffff")])),
        ("audit_log", String::new()),
        ("no_such_function", String::new()),
    ];
    for (who, token) in [("admin", &admin), ("viewer", &viewer)] {
        for (name, body) in &calls {
            let r = http
                .post(format!("{base}/api/{name}"))
                .header("origin", &base)
                .header("cookie", cookie(token))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.clone())
                .send()
                .await
                .expect("POST");
            t.take(&format!("{who} {name}({body})"), r).await;
        }
        for path in ["/", "/settings", "/audit.csv", "/no/such/page"] {
            let r = http.get(format!("{base}{path}")).header("cookie", cookie(token)).send().await.expect("GET");
            t.take(&format!("{who} GET {path}"), r).await;
        }
    }

    // The relay: a key created in the console, good and bad calls, including the credit call
    // that goes to KIE with the key.
    let r = http.post(format!("{base}/api/create_relay_key")).header("origin", &base).header("cookie", cookie(&admin)).form(&[("project", "leak"), ("name", "scan")]).send().await.expect("POST");
    let (_, created) = t.take("create_relay_key", r).await;
    let relay_key = serde_json::from_str::<Value>(&created).expect("json")["key"].as_str().expect("relay key").to_string();
    for key in [relay_key.as_str(), "kcr_0000_wrong"] {
        let r = http.post(format!("{base}/kie/api/v1/jobs/createTask")).bearer_auth(key).json(&json!({"model": "google/imagen4", "input": {"prompt": "relay"}})).send().await.expect("POST");
        t.take("relay createTask", r).await;
        let r = http.post(format!("{base}/kie/api/v1/jobs/createTask")).bearer_auth(key).header("content-type", "application/json").body("{not json").send().await.expect("POST");
        t.take("relay createTask bad JSON", r).await;
        let r = http.get(format!("{base}/kie/api/v1/chat/credit")).bearer_auth(key).send().await.expect("GET");
        t.take("relay credit", r).await;
        let r = http.get(format!("{base}/kie/api/v1/jobs/recordInfo?taskId=nope")).bearer_auth(key).send().await.expect("GET");
        t.take("relay recordInfo", r).await;
    }
    let r = http.post(format!("{base}/callbacks/kie/{}", "0".repeat(32))).json(&json!({"code": 200, "data": {"taskId": "x"}})).send().await.expect("POST");
    t.take("forged callback", r).await;

    // The live stream while the tasks run upstream (the key is used), until both have ended.
    let mut stream = http.get(format!("{base}/events")).header("cookie", cookie(&admin)).send().await.expect("GET /events");
    let mut events = String::new();
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until && events.matches("\"state\":\"success\"").count() < 2 {
        match tokio::time::timeout(Duration::from_millis(500), stream.chunk()).await {
            Ok(Ok(Some(c))) => events.push_str(&String::from_utf8_lossy(&c)),
            Ok(_) => break,
            Err(_) => {}
        }
    }
    assert!(events.matches("\"state\":\"success\"").count() >= 2, "both tasks ran upstream with the key: {events}");
    t.0.push(format!("== live events\n{events}"));
    assert!(sim.world().log.iter().any(|e| e.path == "/api/v1/jobs/createTask"), "KIE was called with the key");

    // Stop, and read the logs.
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    tokio::task::spawn_blocking(move || child.wait()).await.expect("join").expect("exit");
    let logs = format!("{}{}", stdout.join().expect("stdout"), stderr.join().expect("stderr"));
    assert!(logs.contains("signed in") && logs.contains("DEBUG"), "the logs were captured at debug level");

    let status = t.0.iter().find(|e| e.starts_with("== admin console_status(")).expect("status");
    let fingerprint = gateway::Secret::new(CANARY).fingerprint();
    assert!(status.contains(&fingerprint), "the vault shows the key's fingerprint, so the key was configured");
    for (needle, form) in leak_forms() {
        for exchange in &t.0 {
            assert!(!exchange.contains(&needle), "the key ({form}) leaked in:\n{}", exchange.chars().take(2000).collect::<String>());
        }
        assert!(!logs.contains(&needle), "the key ({form}) leaked in the logs");
    }
    assert!(t.0.len() > 60, "the scan covered {} exchanges", t.0.len());
}
