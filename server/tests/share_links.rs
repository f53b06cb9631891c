//! Share links over HTTP: a producer makes one for a project in panel 07; anyone holding it
//! sees that project's Library (and its receipt totals when allowed) without an account, with
//! files served through signed links — and nothing of another project, no session, no other
//! page. A password link asks first (wrong tries refused), each opening is counted, a revoked
//! link is gone, a viewer cannot make one, and every step is audited.

mod support;

use serde_json::json;
use support::*;

fn fast() -> kie_sim::Settings {
    kie_sim::Settings { schedule: kie_sim::Schedule { waiting_ms: 100, queuing_ms: 100, generating_ms: 200 }, ..Default::default() }
}

/// The value of the first `value="…"` after `data-testid="<id>"`.
fn value_of(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!("data-testid=\"{id}\""))?;
    let tag_start = html[..at].rfind('<')?;
    let tag = &html[tag_start..at + html[at..].find('>')?];
    let v = tag.find("value=\"")? + 7;
    Some(tag[v..v + tag[v..].find('"')?].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_share_link_shows_one_projects_library_to_someone_without_an_account_and_nothing_else() {
    let (running, store, _sim) = start_with_library("share", fast()).await;
    let base = running.base.clone();

    // One result in each of two projects, archived in the Library.
    let mut ids = Vec::new();
    for project in ["trailer", "teaser"] {
        let key = gateway::team::relay_keys::create(store.as_ref(), &gateway::team::accounts::Actor::cli(), project, "farm").await.expect("key");
        let created = post_kie(&format!("{base}/kie/api/v1/jobs/createTask"), key.text.expose(), &json!({"model": "google/imagen4-fast", "input": {"prompt": format!("the {project}'s key frame")}})).await;
        ids.push(created["data"]["taskId"].as_str().expect("taskId").to_string());
    }
    for id in &ids {
        let store = store.clone();
        wait_until("archived in the Library", 40, || {
            let store = store.clone();
            async move { store.task_get(id).await.ok().flatten().and_then(|t| t.archive).is_some_and(|a| a.complete()) }
        })
        .await;
    }
    let (trailer, teaser) = (&ids[0], &ids[1]);

    // A viewer may not make one; a producer makes one in panel 07, shown once.
    let viewer = session(&base, VIEWER).await;
    let (code, _) = server_fn_as(&base, Some(&viewer), "create_share_link", &form(&[("project", "trailer"), ("days", "7")])).await;
    assert_eq!(code, 403, "viewers cannot share");
    let producer = session(&base, PRODUCER).await;
    let (code, _) = server_fn_as(&base, Some(&producer), "create_share_link", &form(&[("project", "trailer"), ("days", "91")])).await;
    assert_eq!(code, 422, "at most 90 days");
    let made = post_form(&base, "/panel/retention", Some(&producer), &[("do", "share"), ("project", "trailer"), ("days", "7"), ("receipts", "true")]).await.text().await.expect("body");
    let url = value_of(&made, "share-url").unwrap_or_else(|| panic!("the link is shown: {made}"));
    assert!(url.starts_with(&format!("{base}/share/")), "{url}");

    // Anyone with it: the trailer's results, not the teaser's; no script, not indexed, no referrer.
    let stranger = http_builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let r = stranger.get(&url).send().await.expect("GET");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-robots-tag"], "noindex, nofollow");
    assert_eq!(r.headers()["referrer-policy"], "no-referrer");
    assert!(r.headers()["content-security-policy"].to_str().expect("csp").starts_with("default-src 'none'"));
    let page = r.text().await.expect("page");
    assert!(page.contains(trailer.as_str()) && page.contains("the trailer's key frame"), "{page}");
    assert!(!page.contains(teaser.as_str()) && !page.contains("teaser"), "nothing of another project");
    assert!(!page.contains("<script"), "no script");
    assert!(page.contains("data-testid=\"share-receipts\""), "receipt totals, as allowed");
    // Every address on it is a signed Library file or this same link.
    for href in page.split(['"']).filter(|s| s.starts_with('/')) {
        assert!(href.starts_with("/library/") && href.contains("sig=") || href.starts_with("/share/") || href.starts_with("/pkg/"), "a way out of the share page: {href}");
    }
    let file = page.split('"').find(|s| s.starts_with(&format!("/library/{trailer}/0?"))).expect("the result's signed link").replace("&amp;", "&");
    let bytes = stranger.get(format!("{base}{file}")).send().await.expect("GET file");
    assert_eq!(bytes.status(), 200, "the file, with no account");
    assert_eq!(bytes.headers()["content-type"], "image/png");
    // The link opens nothing else: no session came with it.
    let console = stranger.get(format!("{base}/")).send().await.expect("GET /");
    assert!(console.headers().get("location").and_then(|l| l.to_str().ok()).is_some_and(|l| l.starts_with("/signin")), "the console still asks to sign in");
    assert_eq!(stranger.get(format!("{base}/share/{}", "0".repeat(64))).send().await.expect("GET").status(), 404, "an unknown token");
    assert_eq!(stranger.get(format!("{base}/share/not-a-token")).send().await.expect("GET").status(), 404);

    // A password link asks first; a wrong one is refused; the right one opens it in this browser.
    let (pw_token, _) = gateway::team::share_links::create(
        store.as_ref(),
        &gateway::team::accounts::Actor::cli(),
        &gateway::team::share_links::NewLink { project: "trailer", days: 3, password: Some("a long client password"), receipts: false },
    )
    .await
    .expect("link");
    let pw_url = format!("{base}/share/{}", pw_token.expose());
    let ask = stranger.get(&pw_url).send().await.expect("GET").text().await.expect("page");
    assert!(ask.contains("share-password-form") && !ask.contains(trailer.as_str()), "asks before it shows anything");
    let wrong = stranger.post(&pw_url).header("origin", &base).form(&[("password", "not the password")]).send().await.expect("POST");
    assert_eq!(wrong.status(), 422);
    let right = stranger.post(&pw_url).header("origin", &base).form(&[("password", "a long client password")]).send().await.expect("POST");
    assert_eq!(right.status(), 303);
    let opened = stranger.get(&pw_url).send().await.expect("GET").text().await.expect("page");
    assert!(opened.contains(trailer.as_str()) && !opened.contains("share-receipts"), "open, without receipts");
    let other_browser = http().get(&pw_url).send().await.expect("GET").text().await.expect("page");
    assert!(other_browser.contains("share-password-form"), "the pass is this browser's");

    // Uses counted; revoking ends it at once.
    let (_, links) = server_fn_as(&base, Some(&producer), "list_share_links", "").await;
    let first = links.as_array().expect("links").iter().find(|l| l["receipts"] == true).expect("the first link").clone();
    assert_eq!(first["uses"], 1, "{links}");
    let id = first["id"].as_str().expect("id").to_string();
    let revoked = post_form(&base, "/panel/retention", Some(&producer), &[("do", "share-revoke"), ("id", &id)]).await.text().await.expect("body");
    assert!(revoked.contains("is revoked"), "{revoked}");
    assert_eq!(stranger.get(&url).send().await.expect("GET").status(), 404, "revoked");

    running.shutdown().await.expect("shutdown");
    let log = gateway::team::audit::export(store.as_ref(), &Default::default(), 200).await.expect("audit");
    let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
    for a in ["share link created", "share link revoked"] {
        assert!(actions.contains(&a), "{a} audited: {actions:?}");
    }
}
