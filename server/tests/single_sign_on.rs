//! Single sign-on against a real OpenID provider: panva's certified `oidc-provider` (npm),
//! started on loopback by this test (`end2end/oidc/provider.mjs`), signed into through its own
//! login and consent pages by a client that keeps cookies like a browser. Covers the person
//! made on first sign-in, roles from groups (promoted, demoted), a domain not allowed, an
//! unverified email, a replayed or foreign state, a wrong audience, an expired token, a key
//! rotated in, a disabled account, and `PASSWORD_SIGNIN=off` with a break-glass admin.

mod support;

use std::process::Stdio;
use std::sync::Arc;
use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};

const CLIENT_ID: &str = "control-room";
const CLIENT_SECRET: &str = "a-client-secret-for-tests";

/// The provider's process (killed when dropped) and its issuer URL.
struct Provider {
    issuer: String,
    _child: tokio::process::Child,
}

impl Provider {
    async fn start(redirect_uri: &str) -> Provider {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../end2end/oidc/provider.mjs");
        let mut child = tokio::process::Command::new("node")
            .arg(script)
            .env("OIDC_REDIRECT_URI", redirect_uri)
            .env("OIDC_CLIENT_ID", CLIENT_ID)
            .env("OIDC_CLIENT_SECRET", CLIENT_SECRET)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs end2end/oidc/provider.mjs (scripts/setup.sh test installs its packages)");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let line = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line()).await.expect("the provider starts in time").expect("read").expect("a line");
        let issuer = serde_json::from_str::<serde_json::Value>(&line).expect("json")["issuer"].as_str().expect("issuer").to_string();
        Provider { issuer, _child: child }
    }

    async fn control(&self, what: &str, body: serde_json::Value) {
        let r = http().post(format!("{}/test/{what}", self.issuer)).json(&body).send().await.expect("control");
        assert_eq!(r.status().as_u16(), 204, "provider control {what}");
    }
}

/// A browser: one cookie jar for the console and the provider, redirects followed by hand.
fn browser() -> reqwest::Client {
    http_builder().cookie_provider(Arc::new(reqwest::cookie::Jar::default())).redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

fn location(r: &reqwest::Response) -> Option<String> {
    r.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn absolute(base: &str, loc: &str) -> String {
    url::Url::parse(base).expect("base").join(loc).expect("join").to_string()
}

/// The form's action on a provider page.
fn form_action(html: &str) -> String {
    let at = html.find("action=\"").expect("a form") + 8;
    html[at..at + html[at..].find('"').expect("end")].replace("&amp;", "&")
}

/// Walks the provider's pages as `login` (its login form, then its consent form) until it
/// sends the browser back to the console: the callback URL, not yet followed.
async fn through_provider(b: &reqwest::Client, mut url: String, login: &str) -> String {
    for _ in 0..20 {
        if url.contains("/auth/oidc/callback") {
            return url;
        }
        let r = b.get(&url).send().await.expect("GET");
        if let Some(next) = location(&r) {
            url = absolute(&url, &next);
            continue;
        }
        let page = r.text().await.expect("page");
        let action = absolute(&url, &form_action(&page));
        let form: Vec<(&str, &str)> = if page.contains("value=\"login\"") {
            vec![("prompt", "login"), ("login", login), ("password", "anything")]
        } else if page.contains("value=\"consent\"") {
            vec![("prompt", "consent")]
        } else {
            panic!("an unexpected provider page at {url}: {page}")
        };
        let r = b.post(&action).form(&form).send().await.expect("POST");
        url = absolute(&action, &location(&r).unwrap_or_else(|| panic!("the provider's form answers with a redirect at {action}")));
    }
    panic!("the provider never sent the browser back")
}

/// Signs in as `login` from the console's sign-in button: `Ok(session token)` and where it
/// landed, or `Err(location)` when the console sent the browser back to the sign-in page.
async fn sso(base: &str, b: &reqwest::Client, login: &str) -> Result<(String, String), String> {
    let callback = start_and_walk(base, b, login).await;
    finish(b, &callback).await
}

async fn start_and_walk(base: &str, b: &reqwest::Client, login: &str) -> String {
    let r = b.get(format!("{base}/auth/oidc/start?next=/settings")).send().await.expect("start");
    assert_eq!(r.status().as_u16(), 303, "start redirects to the provider");
    through_provider(b, location(&r).expect("to the provider"), login).await
}

async fn finish(b: &reqwest::Client, callback: &str) -> Result<(String, String), String> {
    let r = b.get(callback).send().await.expect("callback");
    let to = location(&r).unwrap_or_default();
    let token = r.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find_map(|c| c.strip_prefix(&format!("{}=", server::auth::COOKIE)).map(|rest| rest.split(';').next().unwrap_or_default().to_string())).filter(|t| !t.is_empty());
    token.map(|t| (t, to.clone())).ok_or(to)
}

fn settings(issuer: &str, base: &str) -> server::config::SingleSignOnSettings {
    server::config::SingleSignOnSettings {
        issuer: issuer.parse().expect("issuer"),
        client_id: CLIENT_ID.into(),
        client_secret: gateway::Secret::new(CLIENT_SECRET),
        redirect: format!("{base}/auth/oidc/callback").parse().expect("redirect"),
        provider_name: "Studio ID".into(),
        role_claim: "groups".into(),
        scopes: vec!["email".into(), "profile".into()],
        admission: gateway::team::single_sign_on::Admission {
            allowed_domains: vec!["studio.test".into()],
            allowed_groups: vec![],
            admin_groups: vec!["cr-admins".into()],
            producer_groups: vec!["cr-producers".into()],
        },
    }
}

async fn role_of(base: &str, token: &str) -> String {
    let (_, who) = server_fn_as(base, Some(token), "whoami", &form(&[])).await;
    who["role"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_sign_in_through_the_teams_openid_provider_and_only_the_right_ones_get_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = embedded(&dir);
    seed_users(&store).await;
    let (listener, base) = bind().await;
    let provider = Provider::start(&format!("{base}/auth/oidc/callback")).await;
    let mut cfg = config(store.clone(), None);
    cfg.public_url = Some(base.parse().expect("url"));
    cfg.single_sign_on = Some(settings(&provider.issuer, &base));
    let running = start_on(listener, cfg).await;

    // The sign-in page offers the provider, without script.
    let page = http().get(format!("{base}/signin")).send().await.expect("GET").text().await.expect("body");
    assert!(page.contains("Sign in with Studio ID") && page.contains("/auth/oidc/start"), "the button");

    // Ada (group cr-admins) is made on her first sign-in, an admin, and lands where she was going.
    let ada = browser();
    let callback = start_and_walk(&base, &ada, "ada@studio.test").await;
    let (token, to) = finish(&ada, &callback).await.expect("Ada signs in");
    assert_eq!(to, "/settings");
    assert_eq!(role_of(&base, &token).await, "admin");
    // The same callback again: its state was used.
    assert_eq!(finish(&ada, &callback).await.expect_err("replayed"), "/signin?error=sso-state");
    // A callback delivered to another browser (a login link planted on someone): refused.
    let planted = start_and_walk(&base, &browser(), "vic@studio.test").await;
    assert_eq!(finish(&browser(), &planted).await.expect_err("foreign state"), "/signin?error=sso-state");

    // Pat is a producer, Vic (no group) a viewer; an account made this way has no password.
    let (pat, _) = sso(&base, &browser(), "pat@studio.test").await.expect("Pat");
    assert_eq!(role_of(&base, &pat).await, "producer");
    let vic_browser = browser();
    let (vic, _) = sso(&base, &vic_browser, "vic@studio.test").await.expect("Vic");
    assert_eq!(role_of(&base, &vic).await, "viewer");
    assert!(sign_in(&base, "vic@studio.test", "").await.is_err(), "no password opens a single sign-on account");

    // Who may not enter: another domain, an unverified email. Nobody is made for them.
    assert_eq!(sso(&base, &browser(), "eve@elsewhere.test").await.expect_err("domain"), "/signin?error=sso-not-allowed");
    assert_eq!(sso(&base, &browser(), "una@studio.test").await.expect_err("unverified"), "/signin?error=sso-email");

    // Roles follow the groups at every sign-in: Vic promoted, then demoted.
    provider.control("groups", serde_json::json!({"sub": "vic@studio.test", "groups": ["cr-admins"]})).await;
    let (vic, _) = sso(&base, &vic_browser, "vic@studio.test").await.expect("Vic again");
    assert_eq!(role_of(&base, &vic).await, "admin", "promoted by the provider's group");
    provider.control("groups", serde_json::json!({"sub": "vic@studio.test", "groups": []})).await;
    let (vic, _) = sso(&base, &vic_browser, "vic@studio.test").await.expect("Vic once more");
    assert_eq!(role_of(&base, &vic).await, "viewer", "demoted");

    // A token for another audience, and an expired one: refused, and said why in the audit log.
    provider.control("tamper", serde_json::json!({"aud": "another-app"})).await;
    assert_eq!(sso(&base, &browser(), "pat@studio.test").await.expect_err("audience"), "/signin?error=sso-failed");
    provider.control("tamper", serde_json::json!({"expired": true})).await;
    assert_eq!(sso(&base, &browser(), "pat@studio.test").await.expect_err("expired"), "/signin?error=sso-failed");

    // The provider rotates its signing key: the console fetches the keys again and goes on.
    provider.control("rotate", serde_json::json!({})).await;
    sso(&base, &browser(), "pat@studio.test").await.expect("a rotated key is fetched");

    // Disabled here wins over the provider.
    let r = post_form(&base, "/panel/people", Some(&token), &[("do", "disable"), ("email", "vic@studio.test")]).await;
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(sso(&base, &vic_browser, "vic@studio.test").await.expect_err("disabled"), "/signin?error=sso-disabled");

    running.shutdown().await.expect("shutdown");
    let s = server::open_store(&store).await.expect("store");
    let users = gateway::team::accounts::list(s.as_ref()).await.expect("users");
    assert!(!users.iter().any(|u| u.email.ends_with("elsewhere.test") || u.email.starts_with("una@")), "nobody made for those refused");
    assert!(users.iter().find(|u| u.email == "ada@studio.test").is_some_and(|u| u.federated.is_some() && u.password_hash.is_empty()));
    let log = gateway::team::audit::export(s.as_ref(), &Default::default(), 500).await.expect("audit");
    let said = |needle: &str| log.iter().any(|e| e.after.as_deref().unwrap_or_default().contains(needle));
    assert!(said("audience is not this console's OIDC_CLIENT_ID"), "the wrong audience audited");
    assert!(!said("not the one this browser started") && !said("already used"), "stray callbacks are logged, not audited (a stranger cannot flood the log)");
    assert!(said("it has expired"), "the expired token audited");
    assert!(said("domain \"elsewhere.test\" is not allowed"), "the domain audited");
    assert!(log.iter().any(|e| e.action == "role changed" && e.target == "vic@studio.test"), "role changes audited");
    assert!(log.iter().any(|e| e.action == "user added" && e.target == "ada@studio.test"), "the first sign-in audited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_passwords_off_only_a_break_glass_admin_uses_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = embedded(&dir);
    seed_users(&store).await;
    {
        let s = server::open_store(&store).await.expect("store");
        let cli = gateway::team::accounts::Actor::cli();
        assert!(gateway::team::accounts::set_break_glass(s.as_ref(), &cli, VIEWER, true).await.is_err(), "only an admin can be break-glass");
        gateway::team::accounts::set_break_glass(s.as_ref(), &cli, ADMIN, true).await.expect("break-glass");
    }
    let (listener, base) = bind().await;
    let provider = Provider::start(&format!("{base}/auth/oidc/callback")).await;
    let mut cfg = config(store.clone(), None);
    cfg.public_url = Some(base.parse().expect("url"));
    cfg.single_sign_on = Some(settings(&provider.issuer, &base));
    cfg.sessions.passwords = gateway::team::sessions::PasswordSignIn::BreakGlassOnly;
    let running = start_on(listener, cfg).await;

    assert_eq!(sign_in(&base, PRODUCER, PASSWORD).await.expect_err("passwords off"), "/signin?error=passwords-off&next=%2F");
    sign_in(&base, ADMIN, PASSWORD).await.expect("the break-glass admin");
    let page = http().get(format!("{base}/signin")).send().await.expect("GET").text().await.expect("body");
    assert!(page.contains("break-glass admins only"), "the page says so");
    sso(&base, &browser(), "pat@studio.test").await.expect("single sign-on still works");
    // Started sign-ins are limited per address: a stranger cannot fill the store with them.
    let mut last = String::new();
    for _ in 0..20 {
        let r = no_redirects().get(format!("{base}/auth/oidc/start")).send().await.expect("start");
        last = location(&r).unwrap_or_default();
    }
    assert_eq!(last, "/signin?error=sso-throttled", "the 21st start from one address is refused");
    running.shutdown().await.expect("shutdown");
}
