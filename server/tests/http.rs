//! The server over real HTTP on loopback: health and readiness, the Control Room page and its
//! server functions, on both stores; two instances sharing one Redis; the key never in a
//! response; bad configuration refused with one clear line.

use gateway::tasks::task::TaskRecord;
use gateway::Credits;
use server::config::{Secret, StoreConfig};


mod support;
use support::*;

#[tokio::test]
async fn health_readiness_and_the_page_without_a_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start(config(embedded(&dir), None)).await;

    assert_eq!(get(&format!("{}/healthz", s.base)).await, (200, r#"{"status":"ok"}"#.to_string()));
    let (code, body) = get(&format!("{}/readyz", s.base)).await;
    assert_eq!(code, 200);
    assert!(body.contains(r#""store":"embedded""#), "{body}");

    let (code, page) = get(&format!("{}/", s.base)).await;
    assert_eq!(code, 200);
    let (code, settings) = get(&format!("{}/settings", s.base)).await;
    assert_eq!(code, 200);
    for n in 1..=11 {
        // What is set once (the vault, callbacks) is on the settings page.
        let on = if matches!(n, 2 | 8) { &settings } else { &page };
        assert!(on.contains(&format!(r#"data-panel="{n:02}""#)), "panel {n:02} missing");
    }
    for heading in ["BROAD|CAST", "Video Creation Studio", "Control Room · Generation Gateway", "KIE Control Room"] {
        assert!(page.contains(heading), "header text {heading:?} missing");
    }
    assert!(page.contains("Not configured"));
    assert!(page.contains("0 while disconnected"));
    assert!(page.contains("/pkg/control-room.js"), "the page loads the hydration bundle");

    let (code, status) = server_fn(&s.base, "console_status", "").await;
    assert_eq!(code, 200, "{status}");
    assert_eq!(status["upstream"], "NotConfigured");
    assert_eq!(status["key"]["configured"], false);
    assert_eq!(status["ledger"]["tasks_on_record"], 0);
    assert_eq!(status["callback_base"], "https://console.example.test");

    s.shutdown().await.expect("graceful shutdown returns Ok");
}

#[tokio::test]
async fn a_configured_key_shows_as_a_fingerprint_and_never_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start(config(embedded(&dir), Some(KEY))).await;
    let fingerprint = Secret::new(KEY).fingerprint();

    let (_, page) = get(&format!("{}/", s.base)).await;
    let (_, settings) = get(&format!("{}/settings", s.base)).await;
    let (_, status) = server_fn(&s.base, "console_status", "").await;
    let (_, tasks) = server_fn(&s.base, "list_tasks", "limit=5").await;
    let (_, bad) = server_fn(&s.base, "list_tasks", "filter[state]=nonsense&limit=5").await;
    let (_, missing) = get(&format!("{}/no/such/page", s.base)).await;
    assert!(settings.contains(&fingerprint), "the vault, on the settings, shows the fingerprint");
    assert_eq!(status["key"]["source"], "environment");
    assert_eq!(status["upstream"]["Kie"]["host"], "127.0.0.1", "{status}");

    let b64 = encode_b64(KEY.as_bytes());
    for (what, body) in [("page", page), ("settings", settings), ("status", status.to_string()), ("tasks", tasks.to_string()), ("error", bad.to_string()), ("404", missing)] {
        assert!(!body.contains(KEY), "the key leaked into the {what}");
        assert!(!body.contains(&b64), "the key (base64) leaked into the {what}");
    }
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn bad_input_to_a_server_function_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start(config(embedded(&dir), None)).await;
    let (code, body) = server_fn(&s.base, "list_tasks", "filter[state]=nonsense&limit=5").await;
    assert!((400..600).contains(&code) && code != 200, "refused: {code}");
    assert!(body.to_string().contains("unknown task state"), "{body}");
    // Oversized bodies are cut off before any handler reads them.
    let huge = format!(
        "limit=5&after={}",
        "x".repeat(server::edge::limits::body_limit("/api/list_tasks") + 10)
    );
    let (code, _) = server_fn(&s.base, "list_tasks", &huge).await;
    assert_eq!(code, 413);
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn records_show_up_in_the_monitor_and_the_meters() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Write records first, through the store, then start the server on the same data dir.
    {
        let store = server::open_store(&embedded(&dir)).await.expect("store");
        let mut t = TaskRecord::new("task-a", "ana", "trailer", "veo3", 1_000);
        t.estimated_cost = Credits::from_credits(120);
        store.task_insert(&t).await.expect("insert");
        let mut f = TaskRecord::new("task-b", "ben", "promo", "nano-banana-2", 2_000);
        f.state = gateway::TaskState::Fail;
        f.fail_code = Some("422".into());
        f.fail_msg = Some("prompt rejected".into());
        store.task_insert(&f).await.expect("insert");
        let charge = gateway::store::ReserveRequest {
            id: "ledger:task-x".into(),
            amount: 12_500,
            scopes: vec![gateway::tasks::lifecycle::credits_consumed_scope()],
            hold_ttl: None,
        };
        store.reserve(&charge).await.expect("ledger");
    }
    let s = start(config(embedded(&dir), None)).await;
    let (_, status) = server_fn(&s.base, "console_status", "").await;
    assert_eq!(status["ledger"]["tasks_on_record"], 2);
    assert_eq!(status["ledger"]["in_flight"], 1);
    assert_eq!(status["ledger"]["to_review"], 1);
    assert_eq!(status["ledger"]["credits_consumed"], "12.5");
    let (_, tasks) = server_fn(&s.base, "list_tasks", "limit=10").await;
    let ids: Vec<&str> = tasks["rows"].as_array().expect("rows").iter().map(|r| r["id"].as_str().unwrap_or("")).collect();
    assert_eq!(ids, ["task-b", "task-a"], "newest first");
    let (_, page) = get(&format!("{}/", s.base)).await;
    assert!(page.contains("prompt rejected"), "the Error Review shows KIE's failMsg");
    assert!(page.contains("task-a"), "the monitor lists the task");
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn two_instances_on_one_redis_act_as_one() {
    let prefix = format!("{}:", testkit::unique("http"));
    let a = start(config(redis_store(&prefix), None)).await;
    let b = start(config(redis_store(&prefix), None)).await;
    let (_, ready) = get(&format!("{}/readyz", a.base)).await;
    assert!(ready.contains(r#""store":"redis""#));

    let store = server::open_store(&redis_store(&prefix)).await.expect("store");
    store.task_insert(&TaskRecord::new("shared-1", "ana", "p", "veo3", 10)).await.expect("insert");
    for base in [&a.base, &b.base] {
        let (_, status) = server_fn(base, "console_status", "").await;
        assert_eq!(status["ledger"]["tasks_on_record"], 1, "instance {base} sees the shared record");
        assert_eq!(status["store"]["backend"], "redis");
    }
    a.shutdown().await.expect("shutdown a");
    b.shutdown().await.expect("shutdown b");
}

#[tokio::test]
async fn readiness_fails_when_redis_goes_away_and_health_does_not() {
    let mut redis = testkit::RedisServer::start();
    let s = start(config(StoreConfig::Redis { url: redis.url(), prefix: "r:".into(), options: Default::default() }, None)).await;
    assert_eq!(get(&format!("{}/readyz", s.base)).await.0, 200);
    redis.stop();
    let (code, body) = get(&format!("{}/readyz", s.base)).await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("unavailable"));
    assert_eq!(get(&format!("{}/healthz", s.base)).await.0, 200);
    // Without the store no session can be checked: the page says so instead of showing zeros.
    let (code, page) = get(&format!("{}/", s.base)).await;
    assert_eq!(code, 503, "{page}");
    assert!(page.contains("store is unavailable"), "{page}");
    s.shutdown().await.expect("shutdown");
}

/// The binary refuses bad configuration with one line and exit code 2.
#[test]
fn bad_configuration_exits_2_with_one_clear_line() {
    let bin = env!("CARGO_BIN_EXE_control-room");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").expect("write");
    let port = testkit::free_port();
    let cases: [(&[(&str, String)], &str); 4] = [
        (&[("DATA_DIR", file.display().to_string())], "DATA_DIR"),
        (&[("KIE_BASE_URL", "not a url".into())], "KIE_BASE_URL"),
        (&[("REDIS_URL", format!("redis://:pw-secret@127.0.0.1:{port}/"))], "cannot use Redis at redis://127.0.0.1"),
        (&[("KIE_API_KEY", "   ".into())], "KIE_API_KEY is set but empty"),
    ];
    for (vars, expect) in cases {
        let mut cmd = std::process::Command::new(bin);
        cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).env("DATA_DIR", dir.path().join("data"));
        cmd.env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{}", testkit::free_port()));
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run control-room");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{vars:?}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("control-room: ") && last.contains(expect), "{vars:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!stderr.contains("pw-secret"), "the Redis password must not be printed");
    }
}

/// The boolean settings take what people write in an environment (`REDIS_ALLOW_EPHEMERAL=1`,
/// as the README writes it, once stopped every command), and refuse anything else by name.
#[test]
fn boolean_settings_take_what_people_write_in_an_environment() {
    let bin = env!("CARGO_BIN_EXE_control-room");
    let run = |value: &str| {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = std::process::Command::new(bin)
            .args(["key", "list"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATA_DIR", dir.path())
            .env("REDIS_ALLOW_EPHEMERAL", value)
            .env("CONTROL_ROOM_SIMULATE", value)
            .output()
            .expect("run control-room");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    for value in ["1", "0", "yes", "no", "on", "off", "true", "false", "TRUE"] {
        let (code, stderr) = run(value);
        assert_eq!(code, Some(0), "{value}: {stderr}");
    }
    let (code, stderr) = run("maybe");
    assert_eq!(code, Some(2));
    assert!(stderr.contains("invalid value 'maybe'") && stderr.contains("not a boolean"), "{stderr}");
}

/// Standard base64, for the leak check (no dependency for one line).
fn encode_b64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
async fn the_gateway_panel_shows_the_upstreams_own_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = start_sim(KEY, 72.62).await;
    let mut cfg = config(embedded(&dir), Some(KEY));
    cfg.kie_base_url = sim.parse().expect("url");
    let s = start(cfg).await;
    let (_, status) = server_fn(&s.base, "console_status", "").await;
    assert_eq!(status["gateway"]["reachable"], true, "{status}");
    assert_eq!(status["gateway"]["balance"], "72.62", "the balance KIE reported");
    assert!(status["gateway"]["error"].is_null());
    let (_, page) = get(&format!("{}/", s.base)).await;
    assert!(page.contains("Connected") && page.contains("72.62"));
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_rejected_key_and_an_unreachable_host_say_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = start_sim("the-right-key", 72.62).await;
    let mut cfg = config(embedded(&dir), Some(KEY));
    cfg.kie_base_url = sim.parse().expect("url");
    let s = start(cfg).await;
    let (_, status) = server_fn(&s.base, "console_status", "").await;
    assert_eq!(status["gateway"]["error"], "The key was rejected (401): check KIE_API_KEY.", "{status}");
    assert!(status["gateway"]["balance"].is_null(), "no invented balance");
    assert!(!status.to_string().contains(KEY));
    s.shutdown().await.expect("shutdown");

    let dir = tempfile::tempdir().expect("tempdir");
    let s = start(config(embedded(&dir), Some(KEY))).await;
    let (_, status) = server_fn(&s.base, "console_status", "").await;
    let err = status["gateway"]["error"].as_str().unwrap_or_default().to_string();
    assert!(err.starts_with("Cannot reach 127.0.0.1"), "{status}");
    assert_eq!(status["gateway"]["reachable"], false);
    let (_, page) = get(&format!("{}/", s.base)).await;
    assert!(page.contains("Not connected"));
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn simulate_mode_is_labelled_and_connected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(embedded(&dir), None);
    cfg.simulate = true;
    let s = start(cfg).await;
    let (_, status) = server_fn(&s.base, "console_status", "").await;
    assert!(status["upstream"]["Simulator"]["host"].as_str().unwrap_or_default().starts_with("127.0.0.1:"), "{status}");
    assert_eq!(status["gateway"]["balance"], "10000");
    assert_eq!(status["key"]["configured"], true);
    let (_, page) = get(&format!("{}/", s.base)).await;
    assert!(page.contains("Simulator — requests go to the bundled KIE simulator"), "every screen says Simulator");
    s.shutdown().await.expect("shutdown");
}

/// `control-room queue pause|pauses|resume` hold and release intake in the store, say what
/// they did, and a bad `QUEUE_PAUSED_INTAKE` is refused by name.
#[test]
fn the_queue_is_paused_and_resumed_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str], intake: &str| cli_with(dir.path(), args, "", &[("QUEUE_PAUSED_INTAKE", intake)]);
    let said = |args: &[&str]| {
        let (code, out, err) = run(args, "refuse");
        assert_eq!(code, Some(0), "{args:?}: {err}");
        out
    };
    assert_eq!(said(&["queue", "pauses"]), "Nothing is paused.\n");
    assert!(said(&["queue", "pause", "--project", "teaser", "--reason", "re-cut"]).starts_with("Project teaser's intake is paused"));
    assert!(said(&["queue", "pause", "--project", "teaser"]).contains("was already paused"));
    assert_eq!(said(&["queue", "pauses"]), "project teaser: Paused: this project's intake is held by Command line (re-cut)\n");
    assert!(said(&["queue", "resume", "--project", "teaser"]).contains("is resumed"));
    assert_eq!(said(&["queue", "pauses"]), "Nothing is paused.\n");
    let (code, _, err) = run(&["queue", "pause", "--project", "teaser/cut"], "queue");
    assert_ne!(code, Some(0), "a bad project name is refused");
    assert!(err.contains("project must be"), "{err}");
    let (code, _, err) = run(&["queue", "pauses"], "sometimes");
    assert_eq!(code, Some(2));
    assert!(err.contains("QUEUE_PAUSED_INTAKE") || err.contains("queue-paused-intake"), "{err}");
    assert!(err.contains("use queue or refuse"), "{err}");
}

#[test]
fn a_bulk_action_is_previewed_started_and_listed_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_path_buf();
    // Two queued tasks of project teaser, written straight to the store (the CLI opens it).
    tokio::runtime::Runtime::new().expect("runtime").block_on(async {
        let store = gateway::EmbeddedStore::open(&data).expect("store");
        for (n, id) in ["cr_bulk1", "cr_bulk2"].iter().enumerate() {
            let mut t = gateway::TaskRecord::new(*id, "ana", "teaser", "google/imagen4-fast", 1_000 + n as u64);
            t.estimated_cost = gateway::Credits::from_credits(4);
            gateway::Store::task_create(&store, &t, &Default::default()).await.expect("create");
        }
    });
    let said = |args: &[&str]| {
        let (code, out, err) = cli(dir.path(), args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        out
    };
    assert_eq!(said(&["queue", "bulk-jobs"]), "No bulk actions.\n");
    assert_eq!(said(&["queue", "bulk", "--action", "cancel", "--project", "teaser"]), "cancel 2 tasks (project teaser): estimated 8 credits.\nNothing done: add --run to start it.\n");
    assert_eq!(said(&["queue", "bulk-jobs"]), "No bulk actions.\n", "a preview starts nothing");
    let started = said(&["queue", "bulk", "--action", "cancel", "--project", "teaser", "--run"]);
    assert!(started.contains("Started bulk_"), "{started}");
    let jobs = said(&["queue", "bulk-jobs"]);
    assert!(jobs.contains("cancel (project teaser) by Command line: Running, 0 done, 0 refused of 2"), "the console does it: {jobs}");
    for (args, says) in [
        (&["queue", "bulk", "--action", "explode"][..], "unknown bulk action"),
        (&["queue", "bulk", "--action", "retry", "--since", "soon"][..], "since must be a UTC day"),
        (&["queue", "bulk", "--action", "cancel", "--project", "nobody", "--run"][..], "Nothing to cancel: no task matches project nobody."),
    ] {
        let (code, _, err) = cli(dir.path(), args);
        assert_ne!(code, Some(0), "{args:?}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn a_batch_is_previewed_submitted_and_listed_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rows = dir.path().join("prompts.csv");
    let csv: String = std::iter::once("prompt,seed\n".to_string()).chain((0..20).map(|i| format!("\"shot {i}, wide\",{i}\n"))).collect();
    std::fs::write(&rows, csv).expect("write the CSV");
    let file = rows.to_str().expect("path");
    let key = [("KIE_API_KEY", "kie-cli-batch-test")];
    let said = |args: &[&str]| {
        let (code, out, err) = cli_with(dir.path(), args, "", &key);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        out
    };
    let submit = ["batch", "submit", "--file", file, "--csv", "--name", "stills", "--project", "teaser", "--model", "google/imagen4-fast"];
    let preview = said(&[&submit[..], &["--preview"]].concat());
    assert_eq!(preview, "Batch stills: 20 tasks of google/imagen4-fast, estimated 80 credits ($0.40) together. Nothing submitted: leave out --preview to submit it.\n");
    assert_eq!(said(&["batch", "list"]), "No batches.\n", "a preview writes nothing");
    let admitted = said(&submit);
    assert!(admitted.starts_with("Batch stills admitted: 20 tasks queued, estimated 80 credits ($0.40)."), "{admitted}");
    assert_eq!(said(&["batch", "list"]), "stills · google/imagen4-fast · project teaser · Admitted: 0/20 done · 20 to go · estimated 80 credits\n");
    assert!(said(&["queue", "bulk", "--action", "cancel", "--batch", "stills"]).starts_with("cancel 20 tasks (batch stills)"), "a bulk action by batch");
    for (args, env, says) in [
        (&submit[..], &key[..], "exists"),
        (&["batch", "submit", "--file", file, "--name", "other", "--project", "teaser", "--model", "google/imagen4-fast", "--variants", "11"][..], &key[..], "variants must be 1–10"),
        (&["batch", "submit", "--file", "/nonexistent.csv", "--name", "x", "--project", "teaser", "--model", "google/imagen4-fast"][..], &key[..], "cannot read /nonexistent.csv"),
        (&["batch", "submit", "--file", file, "--csv", "--name", "keyless", "--project", "teaser", "--model", "google/imagen4-fast"][..], &[][..], "Not configured"),
    ] {
        let (code, _, err) = cli_with(dir.path(), args, "", env);
        assert_ne!(code, Some(0), "{args:?}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn a_tasks_place_and_story_are_shown_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_path_buf();
    tokio::runtime::Runtime::new().expect("runtime").block_on(async {
        let store = gateway::EmbeddedStore::open(&data).expect("store");
        for (n, id) in ["cr_first1", "cr_second2"].iter().enumerate() {
            let mut t = TaskRecord::new(*id, "ana", "teaser", "google/imagen4-fast", 1_000 + n as u64);
            t.estimated_cost = Credits::from_credits(4);
            t.story.push(1_000, "instance-test", gateway::tasks::story::BeatKind::Submitted, "Submitted by ana in the console");
            gateway::Store::task_create(&store, &t, &Default::default()).await.expect("create");
        }
    });
    let (code, out, err) = cli(dir.path(), &["task", "show", "cr_second2"]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "cr_second2 · google/imagen4-fast · project teaser · ana");
    assert!(lines[1].starts_with("state: queued — #2 in the rate guard's queue"), "behind the older one: {out}");
    assert_eq!(lines[2], "cost: estimate 4 credits");
    assert_eq!(lines[3], "1970-01-01T00:00:01Z  submitted  Submitted by ana in the console  · instance-test");
    let (code, _, err) = cli(dir.path(), &["task", "show", "cr_nosuch"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("No task cr_nosuch."), "{err}");
}
