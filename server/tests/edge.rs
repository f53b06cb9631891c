//! The edge over real HTTP on loopback: half-sent requests dropped at their deadline while
//! others are served, the connection cap, body and header limits by route, the live streams'
//! caps, sign-in behind a trusted proxy (the attacker throttled, the rightful user in) and
//! without one (forwarding headers ignored), failed sign-ins in aggregate in the audit log,
//! `/metrics` and `/readyz` closed by default, and an evicting Redis refused.

mod support;

use serde_json::Value;
use server::config::{MetricsAccess, Secret};
use server::edge::client_address::TrustedProxies;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn authority(base: &str) -> String {
    base.trim_start_matches("http://").to_string()
}

/// Connections that sent half a request's head and then nothing.
async fn half_sent(base: &str, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = TcpStream::connect(authority(base)).await.expect("connect");
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Slow: ")
            .await
            .expect("write");
        held.push(c);
    }
    held
}

/// Whether the server closed `c` (end of stream, a reset, or a 408 before closing).
async fn closed_by_server(c: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

async fn healthz_within(base: &str, within: Duration) -> bool {
    let client = http_builder()
        .timeout(within)
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_dropped_at_their_deadline_while_others_are_served() {
    testkit::raise_fd_limit();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start(config(embedded(&dir), None)).await;
    let mut held = half_sent(&s.base, 1500).await;
    assert!(
        healthz_within(&s.base, Duration::from_secs(5)).await,
        "/healthz answers while 1,500 half-sent requests are open"
    );
    tokio::time::sleep(server::edge::connections::HEAD_DEADLINE + Duration::from_secs(1)).await;
    let mut closed = 0;
    for c in &mut held {
        closed += usize::from(closed_by_server(c).await);
    }
    assert_eq!(
        closed, 1500,
        "every half-sent request was dropped after the head deadline"
    );
    s.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_a_client_waits_until_one_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(embedded(&dir), None);
    cfg.max_connections = 70;
    let s = start(cfg).await;
    let held = half_sent(&s.base, 70).await;
    assert!(
        !healthz_within(&s.base, Duration::from_millis(1500)).await,
        "the 71st connection is not served while 70 are open"
    );
    drop(held);
    assert!(
        healthz_within(&s.base, Duration::from_secs(5)).await,
        "served once connections closed"
    );
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn each_route_takes_the_body_that_fits_it_and_no_more() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start(config(embedded(&dir), None)).await;
    let post = |path: &str, bytes: usize| {
        let url = format!("{}{path}", s.base);
        async move {
            let r = http()
                .post(url)
                .header("origin", "http://x")
                .header("content-type", "application/json")
                .body(vec![b'x'; bytes])
                .send()
                .await
                .expect("POST");
            let code = r.status().as_u16();
            (code, r.text().await.unwrap_or_default())
        }
    };
    let over = |prefix: &str| server::edge::limits::body_limit(prefix) + 1;
    assert_eq!(
        post("/panel/rules", over("/panel/")).await.0,
        413,
        "a panel's form: 64 KiB"
    );
    assert_eq!(post("/panel/throttle", over("/panel/throttle")).await.0, 413, "panel 06's, with a batch's rows: 512 KiB");
    assert_ne!(post("/panel/throttle", over("/panel/")).await.0, 413, "a batch's rows over 64 KiB are read");
    assert_eq!(post("/auth/signin", over("/auth/")).await.0, 413);
    assert_eq!(
        post(
            "/callbacks/kie/0123456789abcdef0123456789abcdef",
            over("/callbacks/")
        )
        .await
        .0,
        413,
        "a callback: 256 KiB"
    );
    assert_eq!(post("/api/list_tasks", over("/api/")).await.0, 413);
    let (code, body) = post("/kie/api/v1/jobs/createTask", over("/kie/")).await;
    assert_eq!(code, 413);
    let envelope: Value = serde_json::from_str(&body).expect("the relay answers in KIE's envelope");
    assert_eq!(envelope["code"], 413);
    // A callback of a size KIE sends is read (and refused for its unknown token, not its size).
    assert_eq!(
        post("/callbacks/kie/0123456789abcdef0123456789abcdef", 100 << 10)
            .await
            .0,
        404
    );
    // Headers past 64 KiB: 431.
    let r = http()
        .get(format!("{}/healthz", s.base))
        .header(
            "x-big",
            "y".repeat(server::edge::connections::MAX_HEAD_BYTES),
        )
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status().as_u16(), 431);
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn live_streams_are_capped_per_session_and_per_person() {
    use server::live::{PER_PERSON, PER_SESSION};
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start(config(embedded(&dir), None)).await;
    let open = |token: String| {
        let url = format!("{}/events", s.base);
        async move {
            http()
                .get(url)
                .header("cookie", cookie(&token))
                .send()
                .await
                .expect("GET /events")
        }
    };
    let first = sign_in(&s.base, VIEWER, PASSWORD).await.expect("sign in");
    let mut streams = Vec::new();
    for _ in 0..PER_SESSION {
        let r = open(first.clone()).await;
        assert_eq!(r.status().as_u16(), 200);
        streams.push(r);
    }
    let refused = open(first.clone()).await;
    assert_eq!(
        refused.status().as_u16(),
        429,
        "one more than a session may hold"
    );
    assert!(refused.text().await.expect("body").contains("close a tab"));
    // A stream that ends gives its place back.
    drop(streams.pop());
    let mut again = None;
    for _ in 0..50 {
        let r = open(first.clone()).await;
        if r.status().as_u16() == 200 {
            again = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    streams.push(again.expect("the place was given back once the stream closed"));
    // The person's other sessions share the person's cap.
    let second = sign_in(&s.base, VIEWER, PASSWORD)
        .await
        .expect("sign in again");
    for _ in 0..PER_PERSON - PER_SESSION {
        let r = open(second.clone()).await;
        assert_eq!(r.status().as_u16(), 200);
        streams.push(r);
    }
    let third = sign_in(&s.base, VIEWER, PASSWORD)
        .await
        .expect("a third session");
    assert_eq!(
        open(third).await.status().as_u16(),
        429,
        "past the person's cap"
    );
    let other = sign_in(&s.base, PRODUCER, PASSWORD)
        .await
        .expect("someone else");
    assert_eq!(
        open(other).await.status().as_u16(),
        200,
        "someone else is not held back"
    );
    drop(streams);
    s.shutdown().await.expect("shutdown");
}

/// The sign-in form posted by a client behind a proxy that forwarded for `client`.
async fn sign_in_via(
    base: &str,
    client: &str,
    email: &str,
    password: &str,
) -> Result<String, String> {
    let r = http_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(format!("{base}/auth/signin"))
        .header("origin", base)
        .header("x-forwarded-for", format!("{client}, 203.0.113.1"))
        .form(&[("email", email), ("password", password), ("next", "/")])
        .send()
        .await
        .expect("POST");
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            c.strip_prefix("cr_session=")
                .map(|v| v.split(';').next().unwrap_or_default().to_string())
        })
        .filter(|t| !t.is_empty());
    cookie.ok_or(location)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_attacker_is_throttled_and_the_rightful_user_signs_in() {
    let prefix = format!("{}:", testkit::unique("proxy"));
    let mut cfg = config(redis_store(&prefix), None);
    // The test's client is the proxy (loopback), and so is the hop it adds after the client.
    cfg.trusted_proxies = TrustedProxies::parse("127.0.0.1, 203.0.113.1").expect("proxies");
    let s = start(cfg).await;
    let (attacker, admin_home) = ("198.51.100.66", "192.0.2.10");
    for i in 0..12 {
        let want = if i < gateway::team::sessions::MAX_FAILS_PER_ACCOUNT_ADDRESS {
            "error=refused"
        } else {
            "error=throttled"
        };
        let got = sign_in_via(&s.base, attacker, ADMIN, "guess")
            .await
            .expect_err("a wrong password");
        assert!(got.contains(want), "attempt {i}: {got}");
    }
    assert!(
        sign_in_via(&s.base, attacker, ADMIN, PASSWORD)
            .await
            .expect_err("throttled")
            .contains("error=throttled"),
        "the attacker's address stays throttled, right password or not"
    );
    let admin = sign_in_via(&s.base, admin_home, ADMIN, PASSWORD)
        .await
        .expect("the rightful admin signs in from another address at once");

    // 40 addresses each guess 5 times: the audit log has one entry per address, not 200,
    // and the admin's own entries are still in view.
    for n in 0..40 {
        for _ in 0..5 {
            let got = sign_in_via(
                &s.base,
                &format!("198.51.100.{}", 100 + n),
                &format!("nobody{n}@studio.test"),
                "guess",
            )
            .await
            .expect_err("refused");
            assert!(got.contains("error=refused"), "{got}");
        }
    }
    let (code, log) = server_fn_as(&s.base, Some(&admin), "audit_log", "").await;
    assert_eq!(code, 200, "{log}");
    let rows = log["rows"].as_array().expect("rows");
    let refused_from = |from: &str| {
        rows.iter()
            .filter(|r| r["action"] == "sign-in refused" && r["from"].as_str() == Some(from))
            .count()
    };
    assert_eq!(
        refused_from("198.51.100.100"),
        1,
        "one entry for an address's failures in a window"
    );
    assert_eq!(
        rows.iter()
            .filter(|r| r["action"] == "sign-in refused"
                && r["from"]
                    .as_str()
                    .is_some_and(|f| f.starts_with("198.51.100.1")))
            .count(),
        40
    );
    assert!(
        rows.iter()
            .any(|r| r["action"] == "sign-in" && r["target"] == ADMIN && r["from"] == admin_home),
        "the admin's sign-in, from the address behind the proxy, is in view"
    );
    assert_eq!(
        refused_from(attacker),
        2,
        "the attacker's failures and its throttling: an entry each"
    );
    s.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_trusted_proxies_forwarding_headers_are_ignored() {
    let prefix = format!("{}:", testkit::unique("noproxy"));
    let s = start(config(redis_store(&prefix), None)).await;
    for _ in 0..gateway::team::sessions::MAX_FAILS_PER_ACCOUNT_ADDRESS {
        sign_in_via(&s.base, "198.51.100.66", VIEWER, "guess")
            .await
            .expect_err("refused");
    }
    // Another claimed address is the same peer: throttled too.
    let got = sign_in_via(&s.base, "192.0.2.10", VIEWER, PASSWORD)
        .await
        .expect_err("the claimed address is not believed");
    assert!(got.contains("error=throttled"), "{got}");
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn metrics_and_readiness_details_are_closed_by_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(embedded(&dir), None);
    cfg.metrics = MetricsAccess::Closed;
    let s = start(cfg).await;
    let r = http()
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status().as_u16(), 401);
    assert!(
        r.text().await.expect("body").contains("METRICS_TOKEN"),
        "says how to open it"
    );
    let ready: Value = http()
        .get(format!("{}/readyz", s.base))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(
        ready,
        serde_json::json!({"status": "ready"}),
        "ready or not, nothing more"
    );
    s.shutdown().await.expect("shutdown");

    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(embedded(&dir), None);
    cfg.metrics = MetricsAccess::Token(Secret::new("readiness-token-1234"));
    let s = start(cfg).await;
    let ready: Value = http()
        .get(format!("{}/readyz", s.base))
        .bearer_auth("readiness-token-1234")
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(
        ready["store"], "embedded",
        "details with the token: {ready}"
    );
    s.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_redis_that_evicts_keys_is_refused() {
    let redis = testkit::RedisServer::start();
    let client = redis::Client::open(redis.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query_async(&mut conn)
        .await
        .expect("CONFIG SET");
    let cfg = config(
        server::config::StoreConfig::Redis {
            url: redis.url(),
            prefix: "evict:".into(),
            options: Default::default(),
        },
        None,
    );
    let (listener, _) = bind().await;
    let e = server::run(listener, cfg, async {})
        .await
        .expect_err("refused");
    assert!(
        e.to_string().contains("maxmemory-policy allkeys-lru")
            && e.to_string().contains("noeviction"),
        "{e}"
    );
}
