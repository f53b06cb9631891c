//! Two-step sign-in over HTTP, as a browser without script does it: set up from the settings
//! page (the secret and QR code, then a code from the "app" — `totp-rs` here — then the recovery
//! codes, once), then sign-ins: no code asks for one and counts nothing, a wrong one is refused,
//! a code works once, a recovery code works once; turning it off needs a code of one's own, and
//! an admin turns it off for someone who lost their device. Every step is in the audit log.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};
use support::*;
use totp_rs::{Algorithm, Secret, TOTP};

/// What an authenticator app shows for `secret` at `at` (Unix seconds).
fn app_code(secret: &str, at: u64) -> String {
    let bytes = Secret::Encoded(secret.to_string()).to_bytes().expect("base32 secret");
    TOTP::new_unchecked(Algorithm::SHA1, 6, 1, 30, bytes, None, String::new()).generate(at)
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

/// The text inside the first element carrying `data-testid="<id>"`, tags stripped.
fn testid_text(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!("data-testid=\"{id}\""))?;
    let start = at + html[at..].find('>')? + 1;
    let mut depth = 1usize;
    let mut out = String::new();
    let mut rest = &html[start..];
    while depth > 0 && !rest.is_empty() {
        if let Some(tag) = rest.strip_prefix('<') {
            let end = tag.find('>')?;
            if tag.starts_with('/') {
                depth -= 1;
            } else if !tag[..end].ends_with('/') {
                depth += 1;
            }
            out.push(' ');
            rest = &tag[end + 1..];
        } else {
            let next = rest.find('<').unwrap_or(rest.len());
            out.push_str(&rest[..next]);
            rest = &rest[next..];
        }
    }
    Some(out.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Posts a form of the two-step panel: the panel as answered (a refusal keeps its status).
async fn post_panel(base: &str, token: &str, pairs: &[(&str, &str)]) -> (u16, String) {
    let r = post_form(base, "/panel/two-step", Some(token), pairs).await;
    (r.status().as_u16(), r.text().await.expect("body"))
}

async fn sign_in_with(base: &str, email: &str, code: &str) -> Result<String, String> {
    let r = post_form(base, "/auth/signin", None, &[("email", email), ("password", PASSWORD), ("code", code), ("next", "/")]).await;
    let location = r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix(&format!("{}=", server::auth::COOKIE)).map(|rest| rest.split(';').next().unwrap_or_default().to_string()))
        .filter(|t| !t.is_empty())
        .ok_or(location)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_step_sign_in_is_set_up_used_once_per_code_and_turned_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = embedded(&dir);
    seed_users(&store).await;
    let (listener, base) = bind().await;
    let running = start_on(listener, config(store.clone(), None)).await;
    let producer = sign_in(&base, PRODUCER, PASSWORD).await.expect("signed in");

    // Set up: the secret and its QR code, then the app's code turns it on.
    let (_, setup) = post_panel(&base, &producer, &[("do", "begin")]).await;
    assert!(setup.contains("<svg") && setup.contains("QR code"), "a QR code drawn on the server");
    let secret = testid_text(&setup, "two-step-secret").expect("the secret as text");
    assert!(secret.len() >= 26 && secret.chars().all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c)), "base32: {secret}");
    let (status, refused) = post_panel(&base, &producer, &[("do", "confirm"), ("code", "000000")]).await;
    assert_eq!(status, 422);
    assert!(testid_text(&refused, "two-step-error").is_some_and(|e| e.contains("does not match")), "a wrong code does not turn it on");
    let (_, on) = post_panel(&base, &producer, &[("do", "confirm"), ("code", &app_code(&secret, now()))]).await;
    let codes: Vec<String> = testid_text(&on, "two-step-recovery").expect("recovery codes").split_whitespace().map(str::to_string).collect();
    assert_eq!(codes.len(), 10, "{codes:?}");
    let shown = http().get(format!("{base}/panel/two-step")).header("cookie", cookie(&producer)).send().await.expect("GET").text().await.expect("body");
    assert!(!shown.contains(&secret) && !shown.contains(&codes[0]), "the secret and the recovery codes are shown once");
    assert!(testid_text(&shown, "two-step-state").is_some_and(|s| s.contains("On since") && s.contains("10 recovery codes left")), "{shown}");

    // Signing in: no code asks for one; a wrong one is refused; a recovery code works once.
    assert_eq!(sign_in_with(&base, PRODUCER, "").await.expect_err("asks"), "/signin?error=code&next=%2F");
    assert_eq!(sign_in_with(&base, PRODUCER, "123456").await.expect_err("wrong"), "/signin?error=refused&next=%2F");
    sign_in_with(&base, PRODUCER, &codes[3]).await.expect("a recovery code opens the account");
    assert_eq!(sign_in_with(&base, PRODUCER, &codes[3]).await.expect_err("used"), "/signin?error=refused&next=%2F", "once only");
    // The app's next code (the step after the one that turned it on) works, once.
    let next = app_code(&secret, now() + 30);
    let token = sign_in_with(&base, PRODUCER, &next).await.expect("the app's code opens the account");
    assert_eq!(sign_in_with(&base, PRODUCER, &next).await.expect_err("replayed"), "/signin?error=refused&next=%2F", "a code works once");
    // Someone without two-step sign-in is not asked.
    sign_in_with(&base, VIEWER, "").await.expect("a password alone");

    // Turning it off takes a code of one's own.
    let (status, off) = post_panel(&base, &token, &[("do", "off"), ("code", "999999")]).await;
    assert_eq!(status, 422);
    assert!(testid_text(&off, "two-step-error").is_some_and(|e| e.contains("does not match")), "{off}");
    let (_, off) = post_panel(&base, &token, &[("do", "off"), ("code", &codes[0])]).await;
    assert!(testid_text(&off, "two-step-off-done").is_some(), "{off}");
    sign_in_with(&base, PRODUCER, "").await.expect("off: a password alone again");

    // An admin turns it off for someone who lost their device; a producer cannot for another.
    let (_, again) = post_panel(&base, &token, &[("do", "begin")]).await;
    let secret = testid_text(&again, "two-step-secret").expect("secret");
    post_panel(&base, &token, &[("do", "confirm"), ("code", &app_code(&secret, now()))]).await;
    let maker = sign_in(&base, VIEWER, PASSWORD).await.expect("viewer");
    let (code, _) = server_fn_as(&base, Some(&maker), "two_step_off", &form(&[("email", PRODUCER), ("code", "")])).await;
    assert_eq!(code, 403, "only an admin turns off someone else's");
    let admin = sign_in(&base, ADMIN, PASSWORD).await.expect("admin");
    let team = post_form(&base, "/panel/people", Some(&admin), &[("do", "two-step-off"), ("email", PRODUCER)]).await.text().await.expect("body");
    assert!(testid_text(&team, "team-result").is_some_and(|t| t.contains("Two-step sign-in is off for")), "{team}");
    sign_in_with(&base, PRODUCER, "").await.expect("reset by an admin");

    // Every step audited.
    running.shutdown().await.expect("shutdown");
    let s = server::open_store(&store).await.expect("store");
    let log = gateway::team::audit::export(s.as_ref(), &Default::default(), 200).await.expect("audit");
    let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
    for a in ["two-step sign-in turned on", "two-step sign-in turned off", "two-step sign-in reset"] {
        assert!(actions.contains(&a), "{a} audited: {actions:?}");
    }
}

/// A form POST to the enrolment page with its ticket, as the browser sends it.
async fn post_enrol(base: &str, ticket: &str, code: &str) -> String {
    no_redirects().post(format!("{base}/auth/enrol")).header("origin", base).header("cookie", format!("cr_enrol={ticket}")).form(&[("code", code)]).send().await.expect("POST").text().await.expect("body")
}

/// The `cr_enrol` cookie a response sets, if any.
fn enrol_ticket(r: &reqwest::Response) -> Option<String> {
    r.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find_map(|c| c.strip_prefix("cr_enrol=").map(|rest| rest.split(';').next().unwrap_or_default().to_string())).filter(|t| !t.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_that_requires_two_step_sign_in_sets_it_up_before_the_first_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = embedded(&dir);
    seed_users(&store).await;
    let (listener, base) = bind().await;
    let running = start_on(listener, config(store.clone(), None)).await;
    let admin = sign_in(&base, ADMIN, PASSWORD).await.expect("admin");

    // Only an admin sets the rule.
    let viewer = sign_in(&base, VIEWER, PASSWORD).await.expect("viewer");
    let (code, _) = server_fn_as(&base, Some(&viewer), "require_two_step", &form(&[("on", "true")])).await;
    assert_eq!(code, 403, "a viewer cannot require it");
    let team = post_form(&base, "/panel/people", Some(&admin), &[("do", "two-step-rule"), ("on", "true")]).await.text().await.expect("body");
    assert!(testid_text(&team, "team-result").is_some_and(|t| t.contains("now required")), "{team}");
    assert!(team.contains("Stop requiring it"), "the panel shows the rule");

    // A right password gives no session but a ticket to set it up; a wrong one gives neither.
    let wrong = post_form(&base, "/auth/signin", None, &[("email", VIEWER), ("password", "not the password"), ("next", "/")]).await;
    assert!(enrol_ticket(&wrong).is_none(), "no ticket for a wrong password");
    let r = post_form(&base, "/auth/signin", None, &[("email", VIEWER), ("password", PASSWORD), ("next", "/")]).await;
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers().get("location").and_then(|v| v.to_str().ok()), Some("/auth/enrol"));
    assert!(!r.headers().get_all("set-cookie").iter().any(|v| v.to_str().is_ok_and(|c| c.starts_with(&format!("{}=", server::auth::COOKIE)) && !c.contains("Max-Age=0"))), "no session before it is set up");
    let ticket = enrol_ticket(&r).expect("an enrolment ticket");
    let with_ticket = |path: &str| http().get(format!("{base}{path}")).header("cookie", format!("cr_enrol={ticket}"));
    let page = with_ticket("/auth/enrol").send().await.expect("GET").text().await.expect("body");
    assert!(page.contains("<svg"), "a QR code drawn on the server");
    let secret = testid_text(&page, "enrol-secret").expect("the secret as text");
    // The ticket opens nothing else.
    let elsewhere = with_ticket("/").send().await.expect("GET /");
    assert!(elsewhere.url().path().starts_with("/signin") || elsewhere.status().as_u16() == 401, "a ticket is not a session: {}", elsewhere.url());

    // A wrong code is refused; the app's code turns it on and shows the recovery codes once.
    let refused = post_enrol(&base, &ticket, "000000").await;
    assert!(testid_text(&refused, "enrol-error").is_some_and(|e| e.contains("does not match")), "{refused}");
    let page = with_ticket("/auth/enrol").send().await.expect("GET").text().await.expect("body");
    let secret = testid_text(&page, "enrol-secret").unwrap_or(secret);
    let done = post_enrol(&base, &ticket, &app_code(&secret, now())).await;
    let codes = testid_text(&done, "enrol-recovery").expect("recovery codes");
    assert_eq!(codes.split_whitespace().count(), 10, "{codes}");

    // The ticket is spent: the page sends the browser back to sign in.
    let spent = http().get(format!("{base}/auth/enrol")).header("cookie", format!("cr_enrol={ticket}")).send().await.expect("GET");
    assert!(spent.url().as_str().ends_with("/signin?error=enrol-expired"), "{}", spent.url());
    let none = http().get(format!("{base}/auth/enrol")).send().await.expect("GET");
    assert!(none.url().as_str().ends_with("/signin?error=enrol-expired"), "no ticket: {}", none.url());

    // From now on: password and code.
    assert_eq!(sign_in_with(&base, VIEWER, "").await.expect_err("asks"), "/signin?error=code&next=%2F");
    sign_in_with(&base, VIEWER, &app_code(&secret, now() + 30)).await.expect("password and the app's code");

    // Stopping the rule: a password alone again for whoever has none.
    post_form(&base, "/panel/people", Some(&admin), &[("do", "two-step-rule"), ("on", "false")]).await;
    sign_in_with(&base, PRODUCER, "").await.expect("optional again");
    running.shutdown().await.expect("shutdown");
    let s = server::open_store(&store).await.expect("store");
    let log = gateway::team::audit::export(s.as_ref(), &Default::default(), 200).await.expect("audit");
    assert!(log.iter().any(|e| e.action == "two-step sign-in requirement"), "the rule audited");
}
