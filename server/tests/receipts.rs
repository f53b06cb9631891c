//! Receipts over HTTP, against kie-sim charging a different amount than the catalog's
//! estimate: KIE's amounts on every line, totals exact, projects never mixed, JSON, CSV and
//! the CLI agreeing; and receipt sync delivering every ended task's line, signed, through a
//! receiver that refuses first attempts and through a restart.

mod support;

use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

fn fast_half_price() -> kie_sim::Settings {
    kie_sim::Settings { schedule: kie_sim::Schedule { waiting_ms: 100, queuing_ms: 100, generating_ms: 200 }, ..Default::default() }
}

async fn submit(base: &str, project: &str, prompt: &str) -> String {
    let (code, body) = server_fn(base, "submit_task", &form(&[("model", "google/imagen4-fast"), ("project", project), ("prompt", prompt)])).await;
    assert_eq!(code, 200, "{body}");
    body["id"].as_str().expect("id").to_string()
}

async fn receipt(base: &str, project: &str) -> Value {
    let (code, body) = get(&format!("{base}/receipts.json?project={project}")).await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("json")
}

/// A receiver that answers 503 to the first `refuse` attempts of each Idempotency-Key, then
/// 200; it keeps every attempt (key, body, signature).
type Attempts = Arc<Mutex<Vec<(String, String, String, u16)>>>;
async fn receiver(refuse: usize) -> (String, Attempts) {
    use axum::http::HeaderMap;
    let seen: Attempts = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/receipts",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let s = s.clone();
            async move {
                let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                let sig = headers.get("x-receipt-signature").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                let mut all = s.lock().unwrap();
                let before = all.iter().filter(|(k, ..)| *k == key).count();
                let status = if before < refuse { 503 } else { 200 };
                all.push((key, body, sig, status));
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let (listener, base) = bind().await;
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("{base}/receipts"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receipts_carry_kies_charges_per_project_and_json_csv_and_cli_agree() {
    let mut settings = fast_half_price();
    settings.schedule.generating_ms = 200;
    let (sim_base, sim) = start_sim_with(settings, KEY, 10_000.0, None).await;
    // KIE charges 75 % of the catalog's price: receipts must show KIE's figure.
    sim.world().faults.charge_percent = Some(75);
    let dir = tempfile::tempdir().unwrap();
    let (listener, base) = bind().await;
    let mut cfg = config(embedded(&dir), Some(KEY));
    cfg.kie_base_url = sim_base.parse().unwrap();
    cfg.public_url = Some(base.parse().unwrap());
    cfg.library = Some(library("receipts-lib"));
    // Prepaid credits that expire on the day ten days from today: panel 09 warns. Counted from
    // the start of today, so the run's time of day (even an hour before midnight) cannot make it 11.
    let today_start = gateway::store::now_ms() / 86_400_000 * 86_400_000;
    cfg.credits_expire_on = Some(gateway::money::receipts::day(today_start + 10 * 86_400_000));
    let s = start_on(listener, cfg).await;
    let runway_of = |text: &str| text.lines().find_map(|l| l.strip_prefix("control_room_runway_days ")).map(|v| v.trim().to_string());
    let (_, metrics) = get_anon(&format!("{base}/metrics")).await;
    assert_eq!(runway_of(&metrics).as_deref(), Some("NaN"), "no runway before KIE answered a balance");
    let (_, empty) = get(&format!("{base}/spend.svg?by=project")).await;
    assert!(empty.starts_with("<svg") && empty.contains("No spend folded yet"), "an empty ledger's chart renders");
    // The first balance read is the drift's starting point.
    let (code, first) = server_fn(&base, "ledger_report", "").await;
    assert_eq!(code, 200, "{first}");
    assert_eq!(first["drift"]["drift"], "0");
    let mut ids = Vec::new();
    for (project, prompt) in [("trailer", "a dune at noon"), ("trailer", "a dune at dusk"), ("trailer", "sim:fail this one"), ("teaser", "a red kite")] {
        ids.push((project, submit(&base, project, prompt).await));
    }
    wait_until("every task folded into its receipt", 60, || async {
        receipt(&base, "trailer").await["tasks"] == 3 && receipt(&base, "teaser").await["tasks"] == 1
    })
    .await;
    let trailer = receipt(&base, "trailer").await;
    let teaser = receipt(&base, "teaser").await;
    let lines = trailer["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l["project"] == "trailer"), "projects never mixed: {trailer}");
    assert_eq!(teaser["lines"].as_array().unwrap().len(), 1);
    assert_eq!(teaser["taskIds"], json!([ids[3].1]));
    // KIE's charge: 75 % of 4 credits = 3 per success; the failure is a line at 0.
    let charged: Vec<&str> = lines.iter().map(|l| l["credits"].as_str().unwrap()).collect();
    let mut sorted = charged.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["0", "3", "3"], "{trailer}");
    assert!(lines.iter().all(|l| l["estimatedCredits"] == "4"), "the estimate stays beside it");
    // The Market API says what KIE charged: each charged line says it rests on that.
    assert!(lines.iter().all(|l| if l["credits"] == "0" { l.get("chargeBasis").is_none() } else { l["chargeBasis"] == "reported" }), "{trailer}");
    let failed = lines.iter().find(|l| l["state"] == "fail").expect("the failed task is a line");
    assert_eq!((failed["credits"].as_str(), failed["costUsd"].as_f64()), (Some("0"), Some(0.0)));
    assert_eq!(trailer["credits"], "6", "the folded total equals its lines");
    assert_eq!(trailer["costUsd"].as_f64(), Some(0.03), "1 credit = $0.005");
    assert_eq!(trailer["estimatedCredits"], "12");
    assert_eq!(trailer["routes"], json!(["google/imagen4-fast"]));
    assert_eq!(trailer["kieTaskIds"].as_array().unwrap().len(), 3);
    // Exports: the Library's copies once archived.
    wait_until("the successes' exports are Library links", 30, || async {
        let r = receipt(&base, "trailer").await;
        r["lines"].as_array().unwrap().iter().filter(|l| l["state"] == "success").all(|l| l["exports"][0].as_str().is_some_and(|e| e.starts_with(&format!("{base}/library/"))))
    })
    .await;
    let trailer = receipt(&base, "trailer").await;
    // One task's story, on a page of its own: each step it took, archived and folded too.
    let (code, story) = get(&format!("{base}/tasks/{}", ids[3].1)).await;
    assert_eq!(code, 200, "{story}");
    for step in ["Submitted by ", "Sent to KIE (createTask, attempt 1)", "KIE accepted it as ", "Succeeded with 1 result(s); charged 3 credits (reported)", "Result 1 copied to the Library: ", "Counted in the receipts: 3 credits"] {
        assert!(story.contains(step), "the story tells {step:?}: {story}");
    }
    assert_eq!(get(&format!("{base}/tasks/cr_nosuchtask")).await.0, 404, "an unknown task: 404");
    assert_eq!(get(&format!("{base}/tasks/bad%20id")).await.0, 400, "an id that cannot be one: 400");
    // The same story as the Monitor's drawer reads it (and as its buttons open it without WASM).
    let (code, drawer) = get(&format!("{base}/panel/story?task={}", ids[3].1)).await;
    assert_eq!(code, 200, "{drawer}");
    assert!(drawer.contains("id=\"story-drawer\"") && drawer.contains(&format!("name=\"task\" value=\"{}\"", ids[3].1)) && drawer.contains("Counted in the receipts: 3 credits"), "{drawer}");
    assert!(drawer.contains("data-testid=\"story-close\"") && drawer.contains("data-refresh=\"rows\""), "closed by a button, kept live: {drawer}");
    let (_, closed) = get(&format!("{base}/panel/story?task=")).await;
    assert!(closed.contains("id=\"story\"") && closed.contains(" hidden") && !closed.contains("Steps"), "closed: {closed}");
    let (code, asked) = get(&format!("{base}/tasks?task={}", ids[3].1)).await;
    assert_eq!(code, 200);
    assert!(asked.contains("Counted in the receipts: 3 credits") && asked.contains("Back to the console"), "{asked}");

    // The Monitor's filters: counts by state where the store keeps them, a cost range, a time
    // range and "mine" (the admin submitted all four).
    let listed = |filter: String| {
        let base = base.clone();
        async move {
            let (code, list) = server_fn(&base, "list_tasks", &format!("{filter}&limit=10")).await;
            assert_eq!(code, 200, "{filter}: {list}");
            let ids: Vec<String> = list["rows"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
            (ids, list["matches"].as_u64(), list["states"].clone())
        }
    };
    let (rows, matches, states) = listed("filter[project]=trailer".into()).await;
    assert_eq!((rows.len(), matches), (3, Some(3)));
    assert_eq!(states, json!("By state: done 2 · failed 1"));
    let (_, matches, _) = listed("filter[project]=trailer&filter[state]=success".into()).await;
    assert_eq!(matches, Some(2), "the state's own count");
    let (rows, matches, _) = listed("filter[min]=1".into()).await;
    assert_eq!((rows.len(), matches), (3, None), "charged 3 each, the failure 0: a range is not counted");
    let (rows, _, _) = listed("filter[min]=1&filter[project]=trailer".into()).await;
    assert_eq!(rows.len(), 2);
    let (rows, matches, _) = listed("filter[mine]=1".into()).await;
    assert_eq!((rows.len(), matches), (4, Some(4)), "the admin's own");
    let now = gateway::store::now_ms();
    let (yesterday, tomorrow) = (gateway::money::receipts::day(now - 86_400_000), gateway::money::receipts::day(now + 86_400_000));
    let (rows, _, _) = listed(format!("filter[from]={yesterday}&filter[to]={tomorrow}")).await;
    assert_eq!(rows.len(), 4);
    let (rows, _, _) = listed(format!("filter[to]={yesterday}")).await;
    assert!(rows.is_empty(), "nothing before today");
    for (bad, says) in [("filter[from]=yesterday", "from must be a UTC day"), ("filter[max]=-2", "max must be a number of credits")] {
        let (code, body) = server_fn(&base, "list_tasks", &format!("{bad}&limit=5")).await;
        assert_eq!(code, 422, "{bad}: {body}");
        assert!(body.to_string().contains(says), "{bad}: {body}");
    }

    // CSV: the same lines, the same figures.
    let (code, csv) = get(&format!("{base}/receipts.csv?project=trailer")).await;
    assert_eq!(code, 200);
    let rows: Vec<Vec<String>> = csv.lines().skip(1).map(|l| l.split("\",\"").map(|c| c.trim_matches('"').to_string()).collect()).collect();
    assert_eq!(rows.len(), 3);
    for l in trailer["lines"].as_array().unwrap() {
        let row = rows.iter().find(|r| r[0] == l["taskId"].as_str().unwrap()).expect("every JSON line is a CSV row");
        assert_eq!((row[2].as_str(), row[7].as_str(), row[9].as_str()), ("trailer", l["credits"].as_str().unwrap(), l["exports"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect::<Vec<_>>().join(" ").as_str()));
    }
    // A date range: today holds them all, yesterday none.
    let today = gateway::money::receipts::day(gateway::store::now_ms());
    let (_, ranged) = get(&format!("{base}/receipts.json?project=trailer&from={today}&to={today}")).await;
    assert_eq!(serde_json::from_str::<Value>(&ranged).unwrap()["credits"], "6");
    let yesterday = gateway::money::receipts::day(gateway::store::now_ms() - 86_400_000);
    let (_, none) = get(&format!("{base}/receipts.json?project=trailer&from={yesterday}&to={yesterday}")).await;
    assert_eq!(serde_json::from_str::<Value>(&none).unwrap()["lines"], json!([]));
    // Bad input: a clear 4xx.
    for (q, status, says) in [("", 400, "project"), ("project=bad%20name!", 422, "project must be"), ("project=trailer&from=2026-02-30", 422, "YYYY-MM-DD"), ("project=trailer&from=2026-12-02&to=2026-12-01", 422, "before"), ("project=trailer&from=2020-01-01&to=2026-01-01", 422, "at most")] {
        let (code, body) = get(&format!("{base}/receipts.json?{q}")).await;
        assert_eq!(code, status, "{q}: {body}");
        assert!(body.contains(says), "{q}: {body}");
    }
    assert_eq!(get_anon(&format!("{base}/receipts.csv?project=trailer")).await.0, 401, "signed in only");

    // The spend in pictures and in figures, from the same folded totals.
    let (code, chart) = get(&format!("{base}/spend.svg?by=project")).await;
    assert_eq!(code, 200);
    assert!(chart.contains("<title>trailer: 6 credits (estimated 12), 3 tasks</title>"), "{chart}");
    assert!(chart.contains("<title>teaser: 3 credits (estimated 4), 1 tasks</title>"));
    let (_, table) = get(&format!("{base}/spend.csv?by=project")).await;
    assert_eq!(table, "project,charged_credits,estimated_credits,tasks\r\n\"trailer\",6,12,3\r\n\"teaser\",3,4,1\r\n");
    assert_eq!(get(&format!("{base}/spend.svg?by=nonsense")).await.0, 400);
    let (code, report) = server_fn(&base, "ledger_report", "").await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["total"]["charged"], "9");
    let model = report["models"].as_array().unwrap().iter().find(|m| m["label"] == "google/imagen4-fast").expect("by model");
    assert_eq!((model["estimated"].as_str(), model["charged"].as_str(), model["off_by_percent"].as_i64()), (Some("16"), Some("9"), Some(-43)), "the reconciliation: KIE charged less than estimated");
    let today_row = report["days"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((today_row["label"].as_str(), today_row["tasks"].as_i64()), (Some(today.as_str()), Some(4)));
    let runway = report["runway_days"].as_f64().expect("a runway: the simulator answered a balance and credits were spent");
    assert!(runway > 1000.0, "10,000 credits at 9 a week's day lasts long: {runway}");
    let (_, metrics) = get_anon(&format!("{base}/metrics")).await;
    let exported: f64 = runway_of(&metrics).expect("runway exported").parse().expect("a number");
    assert!((exported - runway).abs() / runway < 0.01, "the gauge is the panel's figure: {exported} vs {runway}");
    assert!(metrics.contains("control_room_runway_alert_days 7"));
    assert!(report["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains("within 10 days")), "{report}");
    // Once the Gateway's probe reads the balance again (every 5 s at most): it fell by what
    // the receipts hold.
    wait_until("KIE's balance fell by what the receipts hold", 20, || async {
        let d = server_fn(&base, "ledger_report", "").await.1["drift"].clone();
        (d["balance_fell"].as_str(), d["accounted"].as_str(), d["drift"].as_str()) == (Some("9"), Some("9"), Some("0"))
    })
    .await;
    // Spend this console did not see (another tool on the same key) shows as drift.
    sim.world().accounts.get_mut(KEY).expect("account").balance_milli -= 5_000;
    wait_until("the drift shows spend the console did not see", 20, || async {
        server_fn(&base, "ledger_report", "").await.1["drift"]["drift"] == "5"
    })
    .await;
    s.shutdown().await.unwrap();

    // The CLI prints the same receipt (the server is stopped: one process per DATA_DIR).
    let (code, out, err) = cli_with(dir.path(), &["receipts", "export", "--project", "trailer", "--format", "csv"], "", &[("PUBLIC_URL", &base), ("LIBRARY_URL", "off")]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, csv, "the CLI's CSV is the console's");
    let (_, out, _) = cli_with(dir.path(), &["receipts", "export", "--project", "trailer"], "", &[("PUBLIC_URL", &base), ("LIBRARY_URL", "off")]);
    let cli_json: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(cli_json["lines"], trailer["lines"]);
    let (code, _, err) = cli_with(dir.path(), &["receipts", "export", "--project", "trailer", "--format", "xml"], "", &[]);
    assert_ne!(code, Some(0));
    assert!(err.contains("json or csv"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receipt_sync_delivers_every_line_signed_through_refusals_and_a_restart() {
    let (sim_base, _sim) = start_sim_with(fast_half_price(), KEY, 10_000.0, None).await;
    let (hook, seen) = receiver(2).await;
    let dir = tempfile::tempdir().unwrap();
    let secret = "receipt-sync-secret-3b1d";
    let make = |base: &str| {
        let mut cfg = config(embedded(&dir), Some(KEY));
        cfg.kie_base_url = sim_base.parse().unwrap();
        cfg.public_url = Some(base.parse().unwrap());
        cfg.receipt_sync = Some(gateway::money::receipt_sync::SyncTarget { url: hook.clone(), secret: gateway::Secret::new(secret) });
        cfg
    };
    let (listener, base) = bind().await;
    let s = start_on(listener, make(&base)).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(submit(&base, "trailer", &format!("shot {i}")).await);
    }
    // The receiver has refused each line at least once: stop the console mid-way.
    wait_until("every line was offered and refused once", 60, || async {
        let all = seen.lock().unwrap().clone();
        ids.iter().all(|id| all.iter().any(|(k, ..)| k == id))
    })
    .await;
    s.shutdown().await.unwrap();
    let (listener, base2) = bind().await;
    let s = start_on(listener, make(&base)).await;
    wait_until("every line delivered after the restart", 120, || async {
        let all = seen.lock().unwrap().clone();
        ids.iter().all(|id| all.iter().any(|(k, _, _, st)| k == id && *st == 200))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Each task's story tells the refusals and the delivery (read on the restarted console).
    let (code, story) = get(&format!("{base2}/tasks/{}", ids[0])).await;
    assert_eq!(code, 200, "{story}");
    assert!(story.contains("Receipt sync not taken (HTTP ") && story.contains("Receipt line synced (attempt "), "{story}");
    let all = seen.lock().unwrap().clone();
    let mut by_key: HashMap<String, Vec<(String, String, u16)>> = HashMap::new();
    for (k, body, sig, st) in all {
        by_key.entry(k).or_default().push((body, sig, st));
    }
    assert_eq!(by_key.len(), 4, "one key per task: {:?}", by_key.keys());
    for (key, attempts) in &by_key {
        assert!(ids.contains(key));
        assert_eq!(attempts.iter().filter(|(.., st)| *st == 200).count(), 1, "{key}: taken once, never sent again after");
        assert!(attempts.len() >= 3, "{key}: refused twice first");
        let first = &attempts[0].0;
        assert!(attempts.iter().all(|(b, ..)| b == first), "{key}: the same body every time");
        for (body, sig, _) in attempts {
            assert_eq!(sig, &gateway::money::receipt_sync::signature(&gateway::Secret::new(secret), body.as_bytes()), "signed with the secret");
        }
        let line: Value = serde_json::from_str(first).unwrap();
        assert_eq!((line["taskId"].as_str(), line["project"].as_str(), line["state"].as_str()), (Some(key.as_str()), Some("trailer"), Some("success")));
    }
    s.shutdown().await.unwrap();
}

#[test]
fn receipt_sync_needs_its_secret() {
    use clap::Parser;
    let dir = testkit::scratch_dir("receipt-cfg");
    let cli = server::config::Cli::try_parse_from(["control-room", "--data-dir", dir.to_str().unwrap(), "--receipt-sync-url", "https://books.example/receipts"]).unwrap();
    struct NoEnv;
    impl server::config::Env for NoEnv {
        fn var(&self, _: &str) -> Option<String> {
            None
        }
    }
    let err = server::config::Config::from_cli(cli, &NoEnv).expect_err("no secret");
    assert!(err.to_string().contains("RECEIPT_SYNC_SECRET"), "{err}");
}
