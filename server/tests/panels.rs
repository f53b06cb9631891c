//! The server-rendered panels over real HTTP (embedded store): `GET /panel/<slug>` renders one
//! panel for whoever asks, by their role; `POST /panel/<slug>` makes the change through the
//! same server functions (and role checks) as the API and answers the panel with the outcome;
//! bad input gets a 4xx that says what to fix and changes nothing; the page and the bundle are
//! cached as they should be.

mod support;

use support::*;

async fn console() -> (Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (listener, _) = bind().await;
    (start_on(listener, config(embedded(&dir), None)).await, dir)
}

/// A fragment POST as `email`: (status, `X-Refresh`, body).
async fn post_panel(base: &str, email: &str, slug: &str, pairs: &[(&str, &str)]) -> (u16, String, String) {
    let r = client_as(base, email).await.post(format!("{base}/panel/{slug}")).header("x-fragment", "1").form(pairs).send().await.expect("POST");
    let status = r.status().as_u16();
    let also = r.headers().get("x-refresh").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    (status, also, r.text().await.expect("body"))
}

async fn get_as(base: &str, email: &str, path: &str) -> (u16, String) {
    let r = client_as(base, email).await.get(format!("{base}{path}")).send().await.expect("GET");
    (r.status().as_u16(), r.text().await.expect("body"))
}

#[tokio::test]
async fn a_panel_renders_for_its_reader_by_role_and_refuses_strangers() {
    let (server, _dir) = console().await;
    let base = &server.base;
    let (status, _) = get_anon(&format!("{base}/panel/rules")).await;
    assert_eq!(status, 401, "no session, no panel (and no redirect: the browser's reload asks)");

    let (status, html) = get_as(base, VIEWER, "/panel/rules").await;
    assert_eq!(status, 200);
    assert!(html.starts_with("<section") && html.contains(r#"data-src="rules""#), "{html}");
    assert!(html.contains("Only admins set cost rules"), "a viewer reads the rules but gets no form");
    assert!(!html.contains(r#"data-testid="budget-form""#));
    let (_, html) = get_as(base, ADMIN, "/panel/rules").await;
    assert!(html.contains(r#"data-testid="budget-form""#), "an admin gets the form");

    assert_eq!(get_as(base, PRODUCER, "/panel/people").await.0, 403, "the Team panel is for admins");
    assert_eq!(get_as(base, ADMIN, "/panel/people").await.0, 200);
    assert_eq!(get_as(base, ADMIN, "/panel/no-such-panel").await.0, 404);

    // The Market's query is the filter form's values.
    let (_, html) = get_as(base, VIEWER, "/panel/market?q=veo&open=veo3&count=3").await;
    assert!(html.contains(r#"data-model="veo3""#) && !html.contains(r#"data-model="google/imagen4-fast""#), "the search filters");
    assert!(html.contains("3 × 120 cr = 360 credits · $1.80"), "the open model page prices the inputs");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_change_goes_through_the_role_check_and_bad_input_changes_nothing() {
    let (server, _dir) = console().await;
    let base = &server.base;
    let rules = |html: &str| html.matches(r#"class="rule""#).count();

    // A viewer's post is refused with the role it needs; no rule appears.
    let (status, _, html) = post_panel(base, VIEWER, "rules", &[("project", "trailer"), ("per_day", "5")]).await;
    assert_eq!(status, 403);
    assert!(html.contains("This needs the admin role"), "{html}");
    assert_eq!(rules(&get_as(base, ADMIN, "/panel/rules").await.1), 0);

    // An amount that is not one: a 4xx that says what to fix, and still no rule.
    let (status, _, html) = post_panel(base, ADMIN, "rules", &[("project", "trailer"), ("per_day", "five")]).await;
    assert!((400..500).contains(&status), "{status}: {html}");
    assert!(html.contains(r#"data-testid="budget-error""#), "{html}");
    assert_eq!(rules(&get_as(base, ADMIN, "/panel/rules").await.1), 0);

    // The admin's rule is saved; the status strip is named for a reload.
    let (status, also, html) = post_panel(base, ADMIN, "rules", &[("project", "trailer"), ("per_day", "5")]).await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(also, "status,budget", "the strip and the meters move with a rule");
    assert!(html.contains("Rule saved.") && rules(&html) == 1, "{html}");

    // A pin re-renders the Market and names the Pinned panel.
    let (status, also, html) = post_panel(base, PRODUCER, "market", &[("q", "veo"), ("pin", "on:veo3")]).await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(also, "market,pinned");
    assert!(html.contains("Pinned veo3.") && html.contains(r#"aria-pressed="true""#), "{html}");
    assert!(get_as(base, PRODUCER, "/panel/pinned").await.1.contains(r#"data-model="veo3""#));
    let (status, _, _) = post_panel(base, PRODUCER, "market", &[("pin", "on:no/such-model")]).await;
    assert!((400..500).contains(&status), "an unknown model is refused");

    // Panels without changes, too many fields, and a cross-site post.
    assert_eq!(post_panel(base, ADMIN, "delivery", &[("x", "y")]).await.0, 405);
    let many: Vec<(String, String)> = (0..40).map(|i| (format!("f{i}"), "v".into())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(post_panel(base, ADMIN, "rules", &many).await.0, 400);
    let long = "x".repeat(6_000);
    assert_eq!(get_as(base, ADMIN, &format!("/panel/market?q={long}")).await.0, 400);
    let forged = http().post(format!("{base}/panel/rules")).header("cookie", cookie(&session(base, ADMIN).await)).form(&[("project", "evil"), ("per_day", "1")]).send().await.expect("POST");
    assert_eq!(forged.status().as_u16(), 403, "no Origin: refused as cross-site");
    assert_eq!(rules(&get_as(base, ADMIN, "/panel/rules").await.1), 1, "nothing changed by the refused posts");
    server.shutdown().await.expect("shutdown");
}

/// Nothing destructive on one click: a cost rule's Delete and an admin's demotion ask first
/// and say what they will do; Cancel (or an unconfirmed post) changes nothing; a rule with no
/// amount is refused instead of removed; a role changes with its Save; the last admin stays.
#[tokio::test]
async fn a_destructive_change_asks_first_and_cancel_changes_nothing() {
    let (server, _dir) = console().await;
    let base = &server.base;
    let rules = |html: &str| html.matches(r#"class="rule""#).count();
    let budget = || async { get_as(base, ADMIN, "/panel/rules").await.1 };
    let (status, _, html) = post_panel(base, ADMIN, "rules", &[("project", "trailer"), ("per_day", "5"), ("do", "save")]).await;
    assert_eq!(status, 200, "{html}");
    let (status, _, html) = post_panel(base, ADMIN, "rules", &[("project", "trailer"), ("per_day", " "), ("do", "save")]).await;
    assert_eq!(status, 422, "{html}");
    assert!(html.contains("Give at least one amount for project trailer"), "{html}");
    let page = budget().await;
    assert_eq!(rules(&page), 1, "a blank save removes nothing");
    assert!(page.contains(r#"data-testid="budget-edit""#) && page.contains(r#"value="5.00""#), "its Edit is filled with its amounts: {page}");

    let (status, _, html) = post_panel(base, ADMIN, "rules", &[("project", "trailer"), ("label", "project trailer"), ("do", "delete-ask")]).await;
    assert_eq!(status, 200);
    assert!(html.contains("Delete the cost rule for project trailer?") && html.contains(r#"data-testid="confirm-yes""#), "{html}");
    assert_eq!(rules(&html), 1, "asked, not done");
    let (_, _, html) = post_panel(base, ADMIN, "rules", &[("project", "trailer"), ("confirm", "yes"), ("do", "cancel")]).await;
    assert!(html.contains("Cancelled: nothing was changed.") && rules(&html) == 1, "{html}");
    let (_, _, html) = post_panel(base, ADMIN, "rules", &[("project", "trailer"), ("do", "delete")]).await;
    assert_eq!(rules(&html), 1, "a delete without its confirmation is cancelled");
    let (status, _, html) = post_panel(base, ADMIN, "rules", &[("project", "trailer"), ("confirm", "yes"), ("do", "delete")]).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Rule deleted.") && rules(&html) == 0, "{html}");
    let (status, _, html) = post_panel(base, ADMIN, "rules", &[("project", "trailer"), ("confirm", "yes"), ("do", "delete")]).await;
    assert_eq!(status, 404);
    assert!(html.contains("There is no cost rule for project trailer."), "{html}");

    // Roles: no list that saves on change; a Save; demoting an admin asks first.
    let people = get_as(base, ADMIN, "/panel/people").await.1;
    assert!(!people.contains("data-autosubmit") && people.contains(r#"data-testid="user-role-save""#), "{people}");
    let role_of = |email: &'static str| async move {
        let (_, users) = server_fn(base, "list_users", "").await;
        users.as_array().expect("users").iter().find(|u| u["email"] == email).map(|u| u["role"].as_str().unwrap_or_default().to_string())
    };
    let (status, _, html) = post_panel(base, ADMIN, "people", &[("do", "add"), ("email", "boss@studio.test"), ("name", "Boss"), ("role", "admin"), ("password", "a long enough password")]).await;
    assert_eq!(status, 200, "{html}");
    let (status, _, html) = post_panel(base, ADMIN, "people", &[("email", "boss@studio.test"), ("role", "viewer"), ("do", "role")]).await;
    assert_eq!(status, 200);
    assert!(html.contains("Demote boss@studio.test from admin to viewer?"), "{html}");
    assert_eq!(role_of("boss@studio.test").await.as_deref(), Some("admin"), "asked, not done");
    let (_, _, html) = post_panel(base, ADMIN, "people", &[("email", "boss@studio.test"), ("role", "viewer"), ("confirm", "yes"), ("do", "role")]).await;
    assert!(html.contains("boss@studio.test is now viewer."), "{html}");
    assert_eq!(role_of("boss@studio.test").await.as_deref(), Some("viewer"));
    let (_, _, html) = post_panel(base, ADMIN, "people", &[("email", PRODUCER), ("role", "viewer"), ("do", "role")]).await;
    assert!(html.contains(&format!("{PRODUCER} is now viewer.")), "no question for a producer: {html}");
    let (status, _, html) = post_panel(base, ADMIN, "people", &[("email", ADMIN), ("role", "producer"), ("confirm", "yes"), ("do", "role")]).await;
    assert!((400..500).contains(&status) && html.contains("last active admin"), "{status}: {html}");
    assert_eq!(role_of(ADMIN).await.as_deref(), Some("admin"));
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn without_wasm_a_post_answers_a_page_with_the_outcome_and_the_page_is_not_cached() {
    let (server, _dir) = console().await;
    let base = &server.base;
    let r = client_as(base, ADMIN).await.post(format!("{base}/panel/secret")).form(&[("do", "create"), ("project", "promo"), ("name", "render farm")]).send().await.expect("POST");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"), "a page with a new key is never cached");
    let page = r.text().await.expect("body");
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains(r#"href="/settings#secret""#), "a page of its own with a way back to its page");
    assert!(page.contains(r#"data-testid="relay-key-created""#) && page.contains(r#"<code class="once">"#), "the new key is shown once: {page}");

    let r = client_as(base, ADMIN).await.get(format!("{base}/")).send().await.expect("GET");
    assert_eq!(r.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-cache"), "the console page is revalidated");
    let page = r.text().await.expect("body");
    for id in ["operate", "money", "library", "team", "monitor", "status", "gateway", "budget", "people", "audit"] {
        assert!(page.contains(&format!(r#"id="{id}""#)), "the page has the anchor #{id}");
    }
    // What is set once is on the settings page, not on the daily one.
    let settings = client_as(base, ADMIN).await.get(format!("{base}/settings")).send().await.expect("GET").text().await.expect("body");
    for id in ["secret", "rules", "delivery"] {
        assert!(settings.contains(&format!(r#"id="{id}""#)), "settings have #{id}");
        assert!(!page.contains(&format!(r#"id="{id}""#)), "the console does not have #{id}");
    }
    assert!(settings.contains(r#"href="/#operate""#) && page.contains(r#"href="/settings""#), "each page links to the other");
    let viewer = client_as(base, VIEWER).await.get(format!("{base}/")).send().await.expect("GET").text().await.expect("body");
    assert!(viewer.contains(r#"id="monitor""#) && !viewer.contains(r#"id="team""#) && !viewer.contains(r##"href="#team""##), "a viewer gets no Team section");
    let signin = http().get(format!("{base}/signin")).send().await.expect("GET").text().await.expect("body");
    assert!(!signin.contains(".wasm") && !signin.contains("control-room.js"), "the sign-in page loads no bundle");
    assert!(signin.contains("/pkg/control-room.css"), "only the stylesheet");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_projects_fair_share_is_set_by_an_admin_in_panel_06_audited_and_refused_to_others() {
    let (server, _dir) = console().await;
    let base = &server.base;
    let (status, _, html) = post_panel(base, PRODUCER, "throttle", &[("project", "feature"), ("weight", "3")]).await;
    assert_eq!(status, 403, "{html}");
    let (status, _, html) = post_panel(base, ADMIN, "throttle", &[("project", "feature"), ("weight", "0")]).await;
    assert_eq!(status, 400, "{html}");
    assert!(html.contains("weight must be a whole number from 1 to 100"), "{html}");
    let (status, _, html) = post_panel(base, ADMIN, "throttle", &[("project", "feature"), ("weight", "3"), ("max_queued", "")]).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Share saved for project feature") && html.contains("weight 3"), "{html}");
    let (status, _, html) = post_panel(base, ADMIN, "throttle", &[("project", "feature"), ("weight", "3"), ("max_queued", "40")]).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("weight 3 · at most 40 waiting per owner"), "{html}");
    let (status, _, html) = post_panel(base, ADMIN, "throttle", &[("project", "feature"), ("weight", "3"), ("max_queued", "40"), ("priority", "urgent")]).await;
    assert_eq!(status, 400, "{html}");
    assert!(html.contains("priority \"urgent\" is not one of high, normal, low"), "{html}");
    let (status, _, html) = post_panel(base, ADMIN, "throttle", &[("project", "feature"), ("weight", "3"), ("max_queued", "40"), ("priority", "high")]).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("weight 3 · at most 40 waiting per owner · high priority by default"), "{html}");
    // Read-only for everyone else, and audited.
    let (_, html) = get_as(base, VIEWER, "/panel/throttle").await;
    assert!(html.contains("weight 3 · at most 40 waiting per owner") && !html.contains("share-form"), "{html}");
    let (_, log) = server_fn(base, "audit_log", "").await;
    let entries = log.to_string();
    assert!(entries.contains("fair share set") && entries.contains("project feature"), "{entries}");
    server.shutdown().await.expect("shutdown");
}

#[test]
fn the_cli_sets_and_lists_fair_shares() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, out, err) = cli(dir.path(), &["queue", "share", "--project", "promo", "--weight", "4", "--max-queued", "50"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(out.trim(), "Project promo: weight 4 · at most 50 waiting per owner.");
    let (code, out, _) = cli(dir.path(), &["queue", "shares"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("promo: weight 4 · at most 50 waiting per owner (set by cli)"), "{out}");
    let (code, _, err) = cli(dir.path(), &["queue", "share", "--project", "promo", "--weight", "101"]);
    assert_ne!(code, Some(0), "a weight over 100 is refused");
    assert!(err.contains("weight must be a whole number from 1 to 100"), "{err}");
    let (_, out, _) = cli(dir.path(), &["queue", "share", "--project", "promo"]);
    assert!(out.contains("the default share"), "weight 1 with no quota removes it: {out}");
    let (_, out, _) = cli(dir.path(), &["queue", "shares"]);
    assert!(out.starts_with("Every project has the default share"), "{out}");
}
