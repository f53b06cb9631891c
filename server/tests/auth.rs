//! Accounts, roles and sessions over real HTTP (real Redis or the embedded store): every server
//! function and route called as anonymous, viewer, producer and admin; relay keys kept to their
//! project; session expiry, sign out everywhere, rotation on sign-in, cross-site refusal,
//! attempt limits, disabled users and role changes, and the audit log that records it all.

mod support;

use gateway::team::accounts::Role;
use serde_json::Value;
use server::config::StoreConfig;
use std::time::Duration;
use support::*;

/// Who calls: no session, or one of the test users.
#[derive(Clone, Copy, Debug)]
enum Caller {
    Anonymous,
    As(Role),
}

impl Caller {
    const ALL: [Caller; 4] = [Caller::Anonymous, Caller::As(Role::Viewer), Caller::As(Role::Producer), Caller::As(Role::Admin)];

    fn email(self) -> Option<&'static str> {
        match self {
            Caller::Anonymous => None,
            Caller::As(Role::Viewer) => Some(VIEWER),
            Caller::As(Role::Producer) => Some(PRODUCER),
            Caller::As(Role::Admin) => Some(ADMIN),
        }
    }

    /// The status a call needing `need` must get: 401 without a session, 403 below the role.
    fn refusal(self, need: Role) -> Option<u16> {
        match self {
            Caller::Anonymous => Some(401),
            Caller::As(r) if !r.allows(need) => Some(403),
            Caller::As(_) => None,
        }
    }
}

async fn token(base: &str, c: Caller) -> Option<String> {
    match c.email() {
        Some(e) => Some(session(base, e).await),
        None => None,
    }
}

async fn harness(store: StoreConfig) -> (Running, kie_sim::Sim) {
    let (sim_base, sim) = start_sim_with(kie_sim::Settings::default(), KEY, 10_000.0, None).await;
    let (listener, base) = bind().await;
    let mut cfg = config(store, Some(KEY));
    cfg.kie_base_url = sim_base.parse().expect("url");
    cfg.public_url = Some(base.parse().expect("url"));
    cfg.library = Some(library("library-auth"));
    (start_on(listener, cfg).await, sim)
}

#[tokio::test]
async fn every_server_function_and_route_checks_the_session_and_the_role() {
    let s = harness(redis_store(&format!("{}:", testkit::unique("matrix")))).await;
    let base = &s.0.base;
    // (server function, form, the role it needs). Each call is one the role could sensibly
    // make; an allowed call may still be refused for its arguments (404, 422), never 401/403.
    let calls: Vec<(&str, String, Role)> = vec![
        ("console_status", String::new(), Role::Viewer),
        ("list_tasks", "limit=5".into(), Role::Viewer),
        ("review_tasks", String::new(), Role::Viewer),
        ("task_story", form(&[("id", "no-such-task")]), Role::Viewer),
        ("review_board", String::new(), Role::Viewer),
        ("resolve_failure", form(&[("id", "no-such-task")]), Role::Producer),
        ("retry_failures", form(&[("class", "Upstream error"), ("model", "google/imagen4")]), Role::Producer),
        ("bulk_action", form(&[("action", "cancel"), ("project", "matrix")]), Role::Producer),
        ("submit_batch", form(&[("name", "matrix"), ("project", "matrix"), ("model", "google/imagen4"), ("rows", "a kite\na boat")]), Role::Producer),
        ("list_models", String::new(), Role::Viewer),
        ("budget_status", String::new(), Role::Viewer),
        ("throttle_status", String::new(), Role::Viewer),
        ("library_status", String::new(), Role::Viewer),
        ("ledger_report", String::new(), Role::Viewer),
        ("library_items", form(&[("project", "")]), Role::Viewer),
        ("delete_library_project", form(&[("project", "matrix"), ("confirm", "matrix")]), Role::Admin),
        ("library_project_copies", form(&[("project", "matrix")]), Role::Admin),
        ("whoami", String::new(), Role::Viewer),
        ("submit_task", form(&[("model", "google/imagen4"), ("project", "matrix"), ("prompt", "a red kite")]), Role::Producer),
        ("retry_task", form(&[("id", "no-such-task")]), Role::Producer),
        ("cancel_task", form(&[("id", "no-such-task")]), Role::Producer),
        ("rerun_draft", form(&[("id", "no-such-task")]), Role::Producer),
        ("start_draft", form(&[("model", "gemini-3-flash"), ("project", "matrix"), ("prompt", "a kite"), ("for_model", "veo3")]), Role::Producer),
        ("set_pin", form(&[("model", "veo3"), ("pinned", "true")]), Role::Producer),
        ("set_cost_rule", form(&[("project", "matrix"), ("per_day", "50")]), Role::Admin),
        ("delete_cost_rule", form(&[("project", "matrix")]), Role::Admin),
        ("set_fair_share", form(&[("project", "matrix"), ("weight", "2")]), Role::Admin),
        ("set_pause", form(&[("project", "matrix"), ("paused", "false")]), Role::Producer),
        ("set_pause", form(&[("paused", "false")]), Role::Admin),
        ("list_users", String::new(), Role::Admin),
        ("add_user", form(&[("email", "new@studio.test"), ("name", "New"), ("role", "viewer"), ("password", "another long password")]), Role::Admin),
        ("set_user_role", form(&[("email", "new@studio.test"), ("role", "producer")]), Role::Admin),
        ("set_user_disabled", form(&[("email", "new@studio.test"), ("disabled", "true")]), Role::Admin),
        ("reset_user_password", form(&[("email", "new@studio.test"), ("password", "a third long password")]), Role::Admin),
        ("list_relay_keys", String::new(), Role::Admin),
        ("create_relay_key", form(&[("project", "matrix"), ("name", "matrix batch")]), Role::Admin),
        ("revoke_relay_key", form(&[("id", "0123456789ab")]), Role::Admin),
        ("audit_log", String::new(), Role::Admin),
    ];
    let mut table = Vec::new();
    for (name, body, need) in &calls {
        for caller in Caller::ALL {
            let t = token(base, caller).await;
            let (code, answer) = server_fn_as(base, t.as_deref(), name, body).await;
            match caller.refusal(*need) {
                Some(expected) => {
                    assert_eq!(code, expected, "{name} as {caller:?}: {answer}");
                    let said = answer.as_str().map(str::to_string).unwrap_or_else(|| answer.to_string());
                    assert!(said.contains("Sign in") || said.contains(&format!("needs the {need} role")), "{name} as {caller:?} says why: {said}");
                }
                None => assert!(!matches!(code, 401 | 403), "{name} as {caller:?} must be allowed, got {code}: {answer}"),
            }
            table.push((name.to_string(), format!("{caller:?}"), code));
        }
    }
    // What the admin's calls did is real: the user exists, disabled, as a producer.
    let (_, users) = server_fn(base, "list_users", "").await;
    let new = users.as_array().and_then(|u| u.iter().find(|u| u["email"] == "new@studio.test").cloned()).expect("new user listed");
    assert_eq!((new["role"].as_str(), new["disabled"].as_bool()), (Some("producer"), Some(true)));
    assert!(table.iter().any(|(n, c, code)| n == "submit_task" && c.contains("Producer") && *code == 200), "a producer's submission is accepted: {table:?}");

    // Ending sessions: your own always, someone else's only as an admin.
    let viewer = token(base, Caller::As(Role::Viewer)).await;
    let (code, _) = server_fn_as(base, viewer.as_deref(), "end_user_sessions", &form(&[("email", PRODUCER)])).await;
    assert_eq!(code, 403, "a viewer cannot end a producer's sessions");

    // Routes.
    let anon = |path: &str| {
        let url = format!("{base}{path}");
        async move { get_anon(&url).await }
    };
    let page = http_builder().redirect(reqwest::redirect::Policy::none()).build().expect("client").get(format!("{base}/")).send().await.expect("GET /");
    assert_eq!(page.status().as_u16(), 303, "a page without a session sends the browser to sign in");
    assert_eq!(page.headers()["location"], "/signin?next=%2F");
    let (code, signin) = anon("/signin").await;
    assert!(code == 200 && signin.contains("signin-form"), "the sign-in page is public");
    assert_eq!(anon("/events").await.0, 401, "the live stream needs a session");
    assert_eq!(anon("/audit.csv").await.0, 401);
    assert_eq!(anon("/draft/0123456789abcdef0123456789abcdef").await.0, 401, "a draft needs a session");
    let story = http_builder().redirect(reqwest::redirect::Policy::none()).build().expect("client").get(format!("{base}/tasks/cr_x")).send().await.expect("GET /tasks/cr_x");
    assert_eq!((story.status().as_u16(), story.headers()["location"].to_str().ok()), (303, Some("/signin?next=%2Ftasks%2Fcr_x")), "a task's story page sends the browser to sign in");
    let asked = http_builder().redirect(reqwest::redirect::Policy::none()).build().expect("client").get(format!("{base}/tasks?task=cr_x")).send().await.expect("GET /tasks?task=cr_x");
    assert_eq!(asked.status().as_u16(), 303, "so does the drawer's page without WASM");
    assert_eq!(client_as(base, VIEWER).await.get(format!("{base}/tasks?task=cr_x")).send().await.expect("GET").status().as_u16(), 404, "a viewer reads it: no such task");
    for path in ["/receipts.json?project=matrix", "/receipts.csv?project=matrix", "/spend.svg?by=day", "/spend.csv?by=model", "/library/x/0", "/panel/story?task=cr_x"] {
        assert_eq!(anon(path).await.0, 401, "{path} needs a session");
        let r = client_as(base, VIEWER).await.get(format!("{base}{path}")).send().await.expect("GET");
        assert!(!matches!(r.status().as_u16(), 401 | 403), "a viewer reads {path}: {}", r.status());
    }
    assert_eq!(anon("/pkg/no-such-file.js").await.0, 404, "the static bundle is public (and missing files are 404)");
    for (who, expected) in [(VIEWER, 403), (PRODUCER, 403), (ADMIN, 200)] {
        let r = client_as(base, who).await.get(format!("{base}/audit.csv")).send().await.expect("GET /audit.csv");
        assert_eq!(r.status().as_u16(), expected, "audit export as {who}");
    }
    let events = client_as(base, VIEWER).await.get(format!("{base}/events")).send().await.expect("GET /events");
    assert_eq!(events.status().as_u16(), 200, "a viewer follows the live stream");
    assert_eq!(post_form(base, "/auth/signout-all", None, &[]).await.status().as_u16(), 401, "sign out everywhere needs a session");
    s.0.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_relay_key_reads_only_its_own_projects_tasks() {
    let (s, _sim) = harness(redis_store(&format!("{}:", testkit::unique("relayscope")))).await;
    let base = &s.base;
    let mut keys = Vec::new();
    for project in ["alpha", "beta"] {
        let (code, k) = server_fn(base, "create_relay_key", &form(&[("project", project), ("name", project)])).await;
        assert_eq!(code, 200, "{k}");
        keys.push(k["key"].as_str().expect("key shown once").to_string());
    }
    let http = http();
    let created = post_kie(&format!("{base}/kie/api/v1/jobs/createTask"), &keys[1], &serde_json::json!({"model": "google/imagen4", "input": {"prompt": "beta only"}})).await;
    let id = created["data"]["taskId"].as_str().expect("task id");
    let read = |key: String| {
        let http = http.clone();
        let url = format!("{base}/kie/api/v1/jobs/recordInfo?taskId={id}");
        async move { http.get(url).bearer_auth(key).send().await.expect("get").status().as_u16() }
    };
    assert_eq!(read(keys[0].clone()).await, 404, "project alpha's key cannot see project beta's task");
    assert_eq!(read(keys[1].clone()).await, 200, "project beta's key can");
    s.shutdown().await.expect("shutdown");
}

/// The session cookie's attributes, and what the sign-in page is told.
#[tokio::test]
async fn sessions_rotate_expire_end_everywhere_and_refuse_cross_site_posts() {
    let mut cfg = config(redis_store(&format!("{}:", testkit::unique("sessions"))), None);
    cfg.sessions = gateway::team::sessions::SessionPolicy { idle: Duration::from_millis(1500), absolute: Duration::from_secs(4), ..Default::default() };
    let s = start(cfg).await;
    let base = &s.base;
    let alive = |t: String| async move { server_fn_as(base, Some(&t), "whoami", "").await.0 };

    // The cookie: HttpOnly, SameSite=Lax, Secure (PUBLIC_URL is https in this config).
    let r = post_form(base, "/auth/signin", None, &[("email", PRODUCER), ("password", PASSWORD)]).await;
    let set_cookie = r.headers()["set-cookie"].to_str().expect("cookie").to_string();
    for attr in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(set_cookie.contains(attr), "{attr} in {set_cookie}");
    }

    // Rotation: signing in again while holding a session gives a new token and ends the old.
    let first = sign_in(base, PRODUCER, PASSWORD).await.expect("sign in");
    let r = post_form(base, "/auth/signin", Some(&first), &[("email", PRODUCER), ("password", PASSWORD)]).await;
    let second = r.headers()["set-cookie"].to_str().expect("cookie").split(';').next().unwrap_or_default().trim_start_matches("cr_session=").to_string();
    assert_ne!(first, second, "a new session id on sign-in");
    assert_eq!(alive(first.clone()).await, 401, "the session signed in over is gone");
    assert_eq!(alive(second.clone()).await, 200);

    // Idle expiry: used within the idle time it lives; left alone longer, it is gone.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(alive(second.clone()).await, 200, "used within the idle time");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(alive(second.clone()).await, 200, "each use moves the idle end");
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(alive(second).await, 401, "idle longer than 1.5 s: expired");

    // Absolute expiry: kept busy, it still ends 4 s after sign-in.
    let busy = sign_in(base, PRODUCER, PASSWORD).await.expect("sign in");
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(3600) {
        assert_eq!(alive(busy.clone()).await, 200, "alive at {:?}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(alive(busy).await, 401, "past the absolute limit, however busy");

    // Sign out everywhere: two browsers, one signs out everywhere, both are out.
    let (a, b) = (sign_in(base, PRODUCER, PASSWORD).await.expect("a"), sign_in(base, PRODUCER, PASSWORD).await.expect("b"));
    let mut live = http().get(format!("{base}/events")).header("cookie", cookie(&b)).send().await.expect("GET /events");
    assert_eq!(live.status().as_u16(), 200);
    let r = post_form(base, "/auth/signout-all", Some(&a), &[]).await;
    assert_eq!(r.status().as_u16(), 303);
    assert!(r.headers()["set-cookie"].to_str().expect("cookie").contains("Max-Age=0"), "the cookie is cleared");
    assert_eq!((alive(a).await, alive(b).await), (401, 401), "both browsers are signed out");
    // The open live stream of the other browser ends too (it rechecks its session).
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = live.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the live stream of a signed-out session was closed");

    // A cross-site POST with a valid session is refused and changes nothing.
    let admin = sign_in(base, ADMIN, PASSWORD).await.expect("admin");
    for origin in [Some("https://evil.example"), None] {
        let mut req = http()
            .post(format!("{base}/api/set_cost_rule"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", cookie(&admin))
            .body(form(&[("per_day", "1")]));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let r = req.send().await.expect("POST");
        assert_eq!(r.status().as_u16(), 403, "origin {origin:?}");
        assert!(r.text().await.expect("body").contains("Cross-site request refused"));
    }
    let (_, budget) = server_fn_as(base, Some(&admin), "budget_status", "").await;
    assert_eq!(budget["rules"], Value::Array(vec![]), "no rule was set by the refused requests");

    // Sign-in attempts are limited per account and address: after 5 failures from this
    // address even the right password waits here.
    for _ in 0..gateway::team::sessions::MAX_FAILS_PER_ACCOUNT_ADDRESS {
        assert_eq!(
            sign_in(base, VIEWER, "wrong password!").await,
            Err("/signin?error=refused&next=%2F".into())
        );
    }
    assert_eq!(sign_in(base, VIEWER, PASSWORD).await, Err("/signin?error=throttled&next=%2F".into()), "the right password now waits");
    assert!(sign_in(base, PRODUCER, PASSWORD).await.is_ok(), "another account from the same address still signs in (5 < 20)");

    // A disabled user's sessions end at once; a role change holds at the next request.
    let producer = sign_in(base, PRODUCER, PASSWORD).await.expect("producer");
    let (code, _) = server_fn_as(base, Some(&admin), "set_user_role", &form(&[("email", PRODUCER), ("role", "viewer")])).await;
    assert_eq!(code, 200);
    let (code, body) = server_fn_as(base, Some(&producer), "set_pin", &form(&[("model", "veo3"), ("pinned", "true")])).await;
    assert_eq!(code, 403, "now a viewer: {body}");
    let (code, _) = server_fn_as(base, Some(&admin), "set_user_disabled", &form(&[("email", PRODUCER), ("disabled", "true")])).await;
    assert_eq!(code, 200);
    assert_eq!(alive(producer).await, 401, "disabled: the session ended");
    assert!(sign_in(base, PRODUCER, PASSWORD).await.is_err(), "a disabled user cannot sign in");
    // The last admin cannot be demoted.
    let (code, body) = server_fn_as(base, Some(&admin), "set_user_role", &form(&[("email", ADMIN), ("role", "viewer")])).await;
    assert_eq!(code, 409, "{body}");

    // The audit log holds all of it, with where it came from, and exports as CSV.
    let (_, log) = server_fn_as(base, Some(&admin), "audit_log", "").await;
    let rows = log["rows"].as_array().expect("rows");
    let has = |action: &str, target: &str| rows.iter().any(|r| r["action"] == action && r["target"] == target);
    assert!(has("sign-in", PRODUCER) && has("sign-in refused", VIEWER) && has("role changed", PRODUCER) && has("user disabled", PRODUCER) && has("signed out everywhere", PRODUCER));
    let role_change = rows.iter().find(|r| r["action"] == "role changed").expect("role change");
    assert_eq!((role_change["who"].as_str(), role_change["from"].as_str(), role_change["before"].as_str(), role_change["after"].as_str()), (Some(ADMIN), Some("127.0.0.1"), Some("producer"), Some("viewer")));
    let (_, filtered) = server_fn_as(base, Some(&admin), "audit_log", &form(&[("filter[action]", "refused")])).await;
    let refused = filtered["rows"].as_array().expect("rows");
    // Failures from one address are one entry (with a count at the 10th, the 100th…), and
    // the throttling one more: not an entry per guess.
    assert!(refused.len() == 2 && refused.iter().all(|r| r["action"] == "sign-in refused"), "{filtered}");
    let csv = http().get(format!("{base}/audit.csv?action=refused")).header("cookie", cookie(&admin)).send().await.expect("csv");
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let text = csv.text().await.expect("csv body");
    assert!(text.starts_with("seq,time_utc,who,from,action,target,before,after\r\n"));
    assert_eq!(text.lines().count(), refused.len() + 1, "one line per matching entry: {text}");
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_user_cli_adds_lists_and_changes_people_with_the_password_on_stdin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, out, err) = cli_with_input(dir.path(), &["user", "add", "Chief@Studio.test", "--role", "admin", "--name", "Chief"], "a long admin password\n");
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Added chief@studio.test (Chief) as admin."), "{out}");
    let (code, _, err) = cli_with_input(dir.path(), &["user", "add", "short@studio.test"], "short\n");
    assert_ne!(code, Some(0));
    assert!(err.contains("a password must be 10–256 characters"), "{err}");
    let (code, _, err) = cli_with_input(dir.path(), &["user", "add", "nopass@studio.test"], "");
    assert_ne!(code, Some(0));
    assert!(err.contains("standard input"), "{err}");
    let (code, _, err) = cli(dir.path(), &["user", "set-role", "chief@studio.test", "viewer"]);
    assert_ne!(code, Some(0), "the last admin stays an admin");
    assert!(err.contains("last active admin"), "{err}");
    let (_, list, _) = cli(dir.path(), &["user", "list"]);
    assert!(list.contains("chief@studio.test") && list.contains("admin") && list.contains("active") && !list.contains("short@"), "{list}");
    // A producer limited to two projects, shown in the list; a bad name changes nothing; --all lifts it.
    let (code, _, err) = cli_with_input(dir.path(), &["user", "add", "fay@studio.test", "--role", "producer"], "a long freelancer password\n");
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = cli(dir.path(), &["user", "projects", "fay@studio.test", "--set", "teaser, trailer"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("fay@studio.test reaches teaser, trailer."), "{out}");
    let (code, _, err) = cli(dir.path(), &["user", "projects", "fay@studio.test", "--set", "ok, no/slash"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("not a project name"), "{err}");
    let (_, list, _) = cli(dir.path(), &["user", "list"]);
    assert!(list.lines().any(|l| l.starts_with("fay@studio.test") && l.ends_with("projects teaser trailer")), "{list}");
    let (_, out, _) = cli(dir.path(), &["user", "projects", "fay@studio.test", "--all"]);
    assert!(out.contains("fay@studio.test reaches all projects."), "{out}");
    // The password set on stdin signs in.
    let cfg = config(embedded(&dir), None);
    let s = start(cfg).await;
    assert!(sign_in(&s.base, "chief@studio.test", "a long admin password").await.is_ok());
    assert!(sign_in(&s.base, "chief@studio.test", "not the password").await.is_err());
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn on_the_embedded_store_a_session_survives_a_restart_and_sign_out_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start(config(embedded(&dir), None)).await;
    let (kept, ended) = (sign_in(&s.base, VIEWER, PASSWORD).await.expect("a"), sign_in(&s.base, VIEWER, PASSWORD).await.expect("b"));
    let r = post_form(&s.base, "/auth/signout", Some(&ended), &[]).await;
    assert_eq!(r.status().as_u16(), 303);
    s.shutdown().await.expect("shutdown");
    let s = start(config(embedded(&dir), None)).await;
    assert_eq!(server_fn_as(&s.base, Some(&kept), "whoami", "").await.0, 200, "sessions are in the store, not in memory");
    assert_eq!(server_fn_as(&s.base, Some(&ended), "whoami", "").await.0, 401, "a signed-out session stays out");
    s.shutdown().await.expect("shutdown");
}
