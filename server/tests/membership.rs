//! Projects people belong to, over HTTP: a producer limited to project `trailer` walks every
//! page, every panel, every server function the console registers and every read route, and
//! finds nothing of project `kestrel-9` — no task id, no prompt, not its name — while the admin
//! sees both. A task of `kestrel-9` asked for by id is not found (404), never forbidden; work
//! in `kestrel-9` is refused; the live stream's replay carries only `trailer`. Lifting the limit
//! (an audited change) shows everything again.

mod support;

use serde_json::json;
use support::*;

fn fast() -> kie_sim::Settings {
    kie_sim::Settings { schedule: kie_sim::Schedule { waiting_ms: 100, queuing_ms: 100, generating_ms: 200 }, ..Default::default() }
}

const OURS: &str = "trailer";
const THEIRS: &str = "kestrel-9";

/// What of `kestrel-9` must never reach the limited producer: its name, its tasks' ids, prompts.
struct Secret {
    words: Vec<String>,
}

impl Secret {
    /// The first secret word in `body` with what surrounds it (ignoring `sent`, which the
    /// caller gave themselves and an error may repeat back).
    fn leaked(&self, body: &str, sent: &[&str]) -> Option<String> {
        let word = self.words.iter().filter(|w| !sent.contains(&w.as_str())).find(|w| body.contains(w.as_str()))?;
        let at = body.find(word.as_str())?;
        let from = body.floor_char_boundary(at.saturating_sub(200));
        let to = body.ceil_char_boundary((at + word.len() + 200).min(body.len()));
        Some(format!("{word:?} in …{}…", &body[from..to]))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn someone_limited_to_one_project_finds_nothing_of_another_anywhere() {
    let (running, store, _sim) = start_with_library("members", fast()).await;
    let base = running.base.clone();
    let cli = gateway::team::accounts::Actor::cli();

    // A result in each project, and a failure to review in kestrel-9.
    let mut made = Vec::new();
    for (project, prompt) in [(OURS, "the trailer's key frame"), (THEIRS, "the kestrel shoot's hidden harbour"), (THEIRS, "sim:fail the kestrel shoot's lost pier")] {
        let key = gateway::team::relay_keys::create(store.as_ref(), &cli, project, "farm").await.expect("key");
        let created = post_kie(&format!("{base}/kie/api/v1/jobs/createTask"), key.text.expose(), &json!({"model": "google/imagen4-fast", "input": {"prompt": prompt}})).await;
        made.push(created["data"]["taskId"].as_str().expect("taskId").to_string());
    }
    let (ours, theirs, theirs_failed) = (made[0].clone(), made[1].clone(), made[2].clone());
    for (id, archived) in [(&ours, true), (&theirs, true), (&theirs_failed, false)] {
        let store = store.clone();
        wait_until("the task ended (and its result is in the Library)", 40, || {
            let store = store.clone();
            async move { store.task_get(id).await.ok().flatten().is_some_and(|t| t.state.is_terminal() && (!archived || t.archive.is_some_and(|a| a.complete()))) }
        })
        .await;
    }
    // kestrel-9 has a cost rule, a fair share, a pause and a share link of its own.
    let rule = gateway::money::budget::CostRule::in_usd(Some(THEIRS.into()), None, [(gateway::money::budget::CapKind::PerDay, "per day", 40.0)]).expect("rule");
    gateway::money::budget::set_rule(store.as_ref(), &cli, rule).await.expect("rule set");
    gateway::tasks::fair_share::set(store.as_ref(), &cli, THEIRS, 3, None, Default::default()).await.expect("share");
    gateway::tasks::pause::set(store.as_ref(), &cli, Some(THEIRS), true, Some("kestrel-9 on hold")).await.expect("pause");
    gateway::team::share_links::create(store.as_ref(), &cli, &gateway::team::share_links::NewLink { project: THEIRS, days: 3, password: None, receipts: true }).await.expect("link");

    // The admin limits the producer to the trailer (audited); a viewer cannot.
    let viewer = session(&base, VIEWER).await;
    let (code, _) = server_fn_as(&base, Some(&viewer), "set_user_projects", &form(&[("email", PRODUCER), ("projects", OURS)])).await;
    assert_eq!(code, 403, "only admins set who sees what");
    let (code, bad) = server_fn(&base, "set_user_projects", &form(&[("email", PRODUCER), ("projects", "trailer, no/slashes")])).await;
    assert_eq!(code, 422, "{bad}");
    let set = post_form(&base, "/panel/people", Some(&session(&base, ADMIN).await), &[("do", "projects"), ("email", PRODUCER), ("projects", OURS)]).await.text().await.expect("body");
    assert!(set.contains("now sees only trailer"), "{set}");

    let secret = Secret { words: vec![THEIRS.into(), theirs.clone(), theirs_failed.clone(), "hidden harbour".into(), "lost pier".into()] };
    let producer = session(&base, PRODUCER).await;
    let as_producer = client_as(&base, PRODUCER).await;
    let as_admin = client_as(&base, ADMIN).await;

    // Every page and every panel: ours is there, nothing of theirs.
    let mut paths: Vec<String> = vec!["/".into(), "/settings".into(), format!("/tasks/{ours}"), "/spend.svg?by=project".into(), "/spend.csv?by=project".into(), format!("/receipts.json?project={OURS}"), format!("/receipts.csv?project={OURS}"), format!("/library/{ours}/0")];
    paths.extend(app::panels::PanelId::ALL.iter().map(|p| format!("/panel/{}", p.slug())));
    for path in &paths {
        let r = as_producer.get(format!("{base}{path}")).send().await.expect("GET");
        let status = r.status().as_u16();
        let body = String::from_utf8_lossy(&r.bytes().await.expect("body")).into_owned();
        assert!(status < 500, "{path}: {status}");
        assert_eq!(secret.leaked(&body, &[]), None, "{path} ({status}) shows another project's work");
    }
    let monitor = as_producer.get(format!("{base}/")).send().await.expect("GET").text().await.expect("page");
    assert!(monitor.contains(&ours), "the producer's own project is shown");
    let admin_page = as_admin.get(format!("{base}/")).send().await.expect("GET").text().await.expect("page");
    assert!(admin_page.contains(&theirs) && admin_page.contains(&ours), "the admin sees both");

    // Every server function the console has, called as the producer with their own project and
    // then with kestrel-9's names: nothing of kestrel-9 comes back that they did not send.
    let mut names: Vec<&str> = leptos::server_fn::axum::server_fn_paths().filter_map(|(p, _)| p.strip_prefix("/api/")).collect();
    names.sort();
    assert!(names.len() >= 40, "the registry lists the console's server functions: {names:?}");
    // These change the person themselves (their sessions, their second factor), not a project.
    let personal = ["end_user_sessions", "two_step_begin", "two_step_confirm", "two_step_off"];
    for (id, project) in [(ours.as_str(), OURS), (theirs.as_str(), THEIRS)] {
        let args = [
            ("id", id),
            ("project", project),
            ("email", PRODUCER),
            ("model", "google/imagen4-fast"),
            ("prompt", "a walk"),
            ("name", "walk"),
            ("by", "project"),
            ("limit", "50"),
            ("days", "7"),
            ("action", "cancel"),
            ("run", "false"),
            ("rows", "a walk"),
            ("format", "prompts"),
            ("for_model", "google/imagen4-fast"),
            ("class", "Policy"),
            ("weight", "1"),
            ("paused", "false"),
            ("pinned", "false"),
            ("on", "false"),
            ("role", "viewer"),
            ("filter[project]", project),
        ];
        let sent = [id, project];
        for name in names.iter().filter(|n| !personal.contains(n)) {
            let (status, body) = server_fn_as(&base, Some(&producer), name, &form(&args)).await;
            assert_eq!(secret.leaked(&body.to_string(), &sent), None, "{name} ({status}) with {project} answers with another project's work: {body}");
        }
    }

    // kestrel-9's tasks by id: not found, never forbidden.
    for (name, id) in [("task_story", &theirs), ("rerun_draft", &theirs), ("cancel_task", &theirs), ("retry_task", &theirs_failed), ("resolve_failure", &theirs_failed)] {
        let (status, body) = server_fn_as(&base, Some(&producer), name, &form(&[("id", id)])).await;
        assert_eq!(status, 404, "{name} {id}: {body}");
    }
    let (status, _) = server_fn_as(&base, Some(&producer), "task_story", &form(&[("id", &ours)])).await;
    assert_eq!(status, 200, "their own task's story");
    for path in [format!("/tasks/{theirs}"), format!("/library/{theirs}/0"), format!("/receipts.csv?project={THEIRS}")] {
        assert_eq!(as_producer.get(format!("{base}{path}")).send().await.expect("GET").status(), 404, "{path}");
    }
    assert_eq!(as_producer.get(format!("{base}/spend.svg?by=day")).send().await.expect("GET").status(), 403, "no breakdown that mixes in other projects");
    // Work in kestrel-9 is refused, saying which projects are theirs.
    for (name, args) in [
        ("submit_task", vec![("model", "google/imagen4-fast"), ("project", THEIRS), ("prompt", "x")]),
        ("start_draft", vec![("model", "google/imagen4-fast"), ("project", THEIRS), ("prompt", "x"), ("for_model", "x")]),
        ("submit_batch", vec![("name", "walk"), ("model", "google/imagen4-fast"), ("project", THEIRS), ("rows", "x")]),
        ("create_share_link", vec![("project", THEIRS), ("days", "3")]),
        ("set_pause", vec![("project", THEIRS), ("paused", "false")]),
        ("bulk_action", vec![("action", "cancel")]),
    ] {
        let (status, body) = server_fn_as(&base, Some(&producer), name, &form(&args)).await;
        assert_eq!(status, 403, "{name}: {body}");
        assert!(body.to_string().contains(OURS), "{name} names the projects that are theirs: {body}");
    }
    // kestrel-9's results are not theirs to use as inputs, nor its Library theirs to add to.
    let reference = format!("control-room://library/{theirs}/0");
    let (status, body) = server_fn_as(&base, Some(&producer), "submit_task", &form(&[("model", "kling-2.6/image-to-video"), ("project", OURS), ("prompt", "x"), ("choice", "5"), ("mode", "std"), ("image_url", &reference)])).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("that you can use"), "{body}");
    let png = kie_sim::media::png(4, 4, [1, 2, 3]);
    let desk = reqwest::multipart::Form::new().text("project", THEIRS).part("file", reqwest::multipart::Part::bytes(png).file_name("frame.png"));
    let r = as_producer.post(format!("{base}/library/upload")).multipart(desk).send().await.expect("POST");
    assert_eq!(r.status(), 403);
    assert!(r.text().await.expect("body").contains(OURS), "names the projects that are theirs");
    let (status, body) = server_fn_as(&base, Some(&producer), "submit_task", &form(&[("model", "google/imagen4-fast"), ("project", OURS), ("prompt", "the trailer's second frame")])).await;
    assert_eq!(status, 200, "their own project takes work: {body}");

    // The live stream's replay: their project's rows, none of kestrel-9's.
    let mut live = testkit::sse::SseClient::open(&as_producer, &base, Some(0)).await;
    let mut rows = Vec::new();
    while let Some(e) = live.next(std::time::Duration::from_millis(1500)).await {
        rows.push(e.data.to_string());
    }
    assert!(rows.iter().any(|r| r.contains(&ours)), "their rows are streamed: {rows:?}");
    for r in &rows {
        assert_eq!(secret.leaked(r, &[]), None, "the live stream carried another project's row: {r}");
    }

    // Lifted: every project again.
    let (code, _) = server_fn(&base, "set_user_projects", &form(&[("email", PRODUCER), ("projects", "")])).await;
    assert_eq!(code, 200);
    let (_, listed) = server_fn_as(&base, Some(&producer), "list_tasks", &form(&[("limit", "50")])).await;
    assert!(listed.to_string().contains(&theirs), "with no limit the producer sees kestrel-9 again: {listed}");

    running.shutdown().await.expect("shutdown");
    let log = gateway::team::audit::export(store.as_ref(), &Default::default(), 200).await.expect("audit");
    let changes: Vec<(&str, Option<&str>)> = log.iter().filter(|e| e.action == "projects changed").map(|e| (e.target.as_str(), e.after.as_deref())).collect();
    assert!(changes.contains(&(PRODUCER, Some(OURS))) && changes.contains(&(PRODUCER, Some("all projects"))), "{changes:?}");
}
