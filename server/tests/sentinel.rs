//! Past one Redis: a primary and a replica (append-only file on both) watched by three
//! Sentinels (Debian's `redis-server --sentinel`), two control-room instances that find the
//! primary through them, and kie-sim. A burst of tasks goes through the relay; mid-burst the
//! primary is killed with SIGKILL and the Sentinels promote the replica. Then the killed
//! primary comes back (it rejoins as a replica) and the same again the other way.
//!
//! Each time: every task the relay accepted ends `success`, sent to KIE exactly once; KIE never
//! answers 429; the cost rule's meter equals what KIE charged (a reservation made before the
//! kill is neither lost nor counted twice); `/readyz` says "failing over" meanwhile and both
//! instances are ready again, and a new task is accepted, within 30 s of the kill.

mod support;

use gateway::money::budget::{CapKind, CostRule};
use gateway::store::{RedisOptions, SentinelSettings};
use gateway::team::accounts::Actor;
use gateway::{Credits, Store, TaskState};
use serde_json::json;
use server::config::StoreConfig;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;
use testkit::{RedisServer, SentinelServer};

const SERVICE: &str = "studio";
/// Tasks per burst, and the cap that admits all of both bursts (imagen4-fast: 4 credits each).
const BURST: usize = 40;
/// KIE's window, shortened so a burst drains in seconds (the guard matches it).
const RATE: u32 = 20;
const RATE_WINDOW: Duration = Duration::from_secs(2);

async fn redis_info(port: u16, section: &str) -> String {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("client");
    match client.get_multiplexed_async_connection().await {
        Ok(mut c) => redis::cmd("INFO").arg(section).query_async(&mut c).await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Until `replica` replicates from `primary` with its link up, and every Sentinel knows it.
async fn replicating(replica: u16, primary: u16, sentinels: &[SentinelServer]) {
    wait_until("the replica is in sync", 60, || async move {
        let info = redis_info(replica, "replication").await;
        info.contains("role:slave") && info.contains(&format!("master_port:{primary}")) && info.contains("master_link_status:up")
    })
    .await;
    for s in sentinels {
        let port = s.port;
        wait_until("every Sentinel knows the replica", 60, || async move {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("client");
            let Ok(mut c) = client.get_multiplexed_async_connection().await else { return false };
            let replicas: Vec<HashMap<String, String>> = redis::cmd("SENTINEL").arg("REPLICAS").arg(SERVICE).query_async(&mut c).await.unwrap_or_default();
            replicas.iter().any(|r| r.get("port").is_some_and(|p| p == &replica.to_string()) && !r.get("flags").is_some_and(|f| f.contains("down")))
        })
        .await;
    }
}

/// What `/readyz` answered, polled every 100 ms on each instance while a failover runs.
fn watch_readiness(bases: Vec<String>) -> (Arc<Mutex<Vec<(Instant, u16, String)>>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let handle = tokio::spawn(async move {
        loop {
            for b in &bases {
                let (status, body) = get_anon(&format!("{b}/readyz")).await;
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                log.lock().unwrap().push((Instant::now(), status, v["status"].as_str().unwrap_or_default().to_string()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (seen, handle)
}

struct Cluster {
    bases: [String; 2],
    key: String,
    store: Arc<dyn Store>,
    sim: kie_sim::Sim,
}

/// A burst of [`BURST`] tasks through both instances, `kill` called a second into it, and one
/// more task once the kill; then the checks of the module's docs for the tasks it accepted.
/// Returns their ids, and how many answers said a task may still run.
async fn burst_through_a_failover(c: &Cluster, round: &str, kill: impl FnOnce()) -> (Vec<String>, usize) {
    let (readiness, watcher) = watch_readiness(c.bases.to_vec());
    let mut handles = Vec::new();
    let mut kill = Some(kill);
    let mut killed_at = None;
    let started = Instant::now();
    for n in 0..BURST {
        let base = c.bases[n % 2].clone();
        let key = c.key.clone();
        let label = format!("{round}-{n}");
        handles.push(tokio::spawn(async move { submit_until_answered(&base, &key, &format!("failover shot {label}")).await }));
        tokio::time::sleep(Duration::from_millis(50)).await;
        if started.elapsed() >= Duration::from_secs(1)
            && let Some(k) = kill.take()
        {
            k();
            killed_at = Some(Instant::now());
        }
    }
    let killed_at = killed_at.expect("the primary was killed mid-burst");
    // A new task is accepted within 30 s of the kill.
    let (code, after) = submit_until_answered(&c.bases[0], &c.key, &format!("failover shot {round}-after")).await;
    assert_eq!(code, 200);
    let accepted_after = killed_at.elapsed();
    assert!(accepted_after < Duration::from_secs(30), "a new task took {accepted_after:?} after the kill");
    let mut outcomes = Vec::new();
    for h in handles {
        outcomes.push(h.await.expect("join"));
    }
    // Both instances ready again within 30 s of the kill.
    for b in &c.bases {
        wait_until("ready again", 30u64.saturating_sub(killed_at.elapsed().as_secs()).max(1), || async move { get_anon(&format!("{b}/readyz")).await.0 == 200 }).await;
    }
    watcher.abort();
    let seen = readiness.lock().unwrap().clone();
    assert!(seen.iter().any(|(_, s, st)| *s == 503 && st == "failing over"), "/readyz said \"failing over\" meanwhile: {:?}", seen.iter().map(|(_, s, st)| (s, st)).collect::<HashSet<_>>());

    let mut accepted: Vec<String> = outcomes.iter().filter(|(c, _)| *c == 200).filter_map(|(_, id)| id.clone()).collect();
    let in_doubt = outcomes.iter().filter(|(c, _)| *c == 503).count();
    assert_eq!(accepted.len() + in_doubt, BURST, "each accepted or in doubt: {outcomes:?}");
    assert!(accepted.len() >= BURST - 2, "nearly all accepted: {outcomes:?}");
    accepted.extend(after);

    // Every accepted task ends `success`. A send the failover refused backs off (up to a minute
    // a try), so on a loaded machine the last one may wait for several tries.
    let start = Instant::now();
    loop {
        let mut pending = Vec::new();
        for id in &accepted {
            match c.store.task_get(id).await.ok().flatten() {
                Some(t) if t.state == TaskState::Success => {}
                Some(t) if t.state.is_terminal() => panic!("{id} ended {} ({:?})", t.state, t.note),
                other => pending.push((id.clone(), other.map(|t| (t.state, t.note, t.dispatch.attempts, t.dispatch.sending_since_ms.is_some())))),
            }
        }
        if pending.is_empty() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(180), "{round}: not ended after 180 s (state, note, send attempts, in doubt): {pending:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!("{round}: {} accepted ({in_doubt} in doubt); a new task accepted {accepted_after:?} after the kill", accepted.len());
    (accepted, in_doubt)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_primary_killed_mid_burst_fails_over_twice_and_nothing_is_lost_or_doubled() {
    let mut first = RedisServer::start();
    let mut second = RedisServer::start_replica_of(first.port);
    let sentinels: Vec<SentinelServer> = (0..3).map(|_| SentinelServer::start(SERVICE, first.port, 2, 1000)).collect();
    replicating(second.port, first.port, &sentinels).await;

    let store_cfg = StoreConfig::Redis {
        // Sentinels name the node; the URL gives the database (and a user and password, were
        // there any).
        url: "redis://127.0.0.1:1/0".into(),
        prefix: format!("{}:", testkit::unique("sentinel")),
        options: RedisOptions { sentinel: Some(SentinelSettings { sentinels: sentinels.iter().map(|s| ("127.0.0.1".to_string(), s.port)).collect(), service: SERVICE.into(), password: None }), ..Default::default() },
    };
    let settings = kie_sim::Settings { rate_limit: RATE, rate_window_ms: RATE_WINDOW.as_millis() as u64, schedule: kie_sim::Schedule { waiting_ms: 200, queuing_ms: 200, generating_ms: 400 }, ..Default::default() };
    let (sim_base, sim) = start_sim_with(settings, KEY, 100_000.0, None).await;
    let mut instances = Vec::new();
    let mut bases = Vec::new();
    for _ in 0..2 {
        let (listener, base) = bind().await;
        let mut cfg = config(store_cfg.clone(), Some(KEY));
        cfg.kie_base_url = sim_base.parse().expect("url");
        cfg.public_url = Some(base.parse().expect("url"));
        cfg.rate_guard = vec![gateway::tasks::rate_guard::LimitRule::Requests { limit: i64::from(RATE), window: RATE_WINDOW }];
        instances.push(start_on(listener, cfg).await);
        bases.push(base);
    }
    let store: Arc<dyn Store> = server::open_store(&store_cfg).await.expect("store");
    let cap = Credits::from_credits(4 * (2 * BURST as i64 + 10));
    gateway::money::budget::set_rule(store.as_ref(), &Actor::cli(), CostRule::new(Default::default(), [(CapKind::Total, cap)])).await.expect("rule");
    let key = gateway::team::relay_keys::create(store.as_ref(), &Actor::cli(), "failover", "burst").await.expect("key");
    let cluster = Cluster { bases: [bases[0].clone(), bases[1].clone()], key: key.text.expose().to_string(), store, sim };

    // The first failover: the primary killed, the replica promoted.
    let (mut accepted, mut in_doubt) = burst_through_a_failover(&cluster, "first", || first.kill()).await;

    // The killed primary comes back from its append-only file; the Sentinels make it a
    // replica of the new primary. Then the new primary is killed: back to the first.
    first.restart();
    replicating(first.port, second.port, &sentinels).await;
    let (more, doubt) = burst_through_a_failover(&cluster, "second", || second.kill()).await;
    accepted.extend(more);
    in_doubt += doubt;

    // Sent to KIE exactly once each: one KIE task per callback token, and each accepted
    // task's token among them.
    let sent: Vec<(String, Option<String>)> = cluster.sim.world().tasks.values().map(|t| (t.id.clone(), t.callback_url.clone())).collect();
    let mut per_token: HashMap<String, usize> = HashMap::new();
    for (_, url) in &sent {
        *per_token.entry(url.as_deref().and_then(|u| u.rsplit('/').next()).unwrap_or_default().to_string()).or_default() += 1;
    }
    assert!(per_token.values().all(|n| *n == 1), "a task was sent twice: {per_token:?}");
    let mut charged = 0;
    for id in &accepted {
        let t = cluster.store.task_get(id).await.expect("read").expect("on record");
        assert_eq!(per_token.get(&t.callback_token), Some(&1), "{id} sent once");
        charged += t.actual_cost.expect("actual cost").milli();
    }
    assert_eq!(cluster.sim.world().log.iter().filter(|e| e.code == 429).count(), 0, "KIE never answered 429");

    assert!(sent.len() >= accepted.len() && sent.len() <= accepted.len() + in_doubt, "nothing but the accepted tasks (and any whose answer said it may still run) reached KIE: {} sent", sent.len());

    // The meter holds exactly what KIE charged: no reservation lost, none counted twice.
    let rules = gateway::money::budget::rules(cluster.store.as_ref()).await.expect("rules");
    let sim_charged = || -> Option<i64> {
        let w = cluster.sim.world();
        w.tasks.values().all(|t| t.settled).then(|| w.tasks.values().filter(|t| t.fail.is_none()).map(|t| t.price_milli).sum())
    };
    wait_until("KIE has settled every task", 60, || async { sim_charged().is_some() }).await;
    let sim_charged = sim_charged().expect("settled");
    assert!(sim_charged >= charged);
    wait_until("the meter equals what KIE charged", 60, || {
        let (store, rules) = (cluster.store.clone(), rules.clone());
        async move { gateway::money::budget::meters(store.as_ref(), &rules).await.is_ok_and(|m| m[0].used.milli() == sim_charged) }
    })
    .await;
    for i in instances {
        i.shutdown().await.expect("shutdown");
    }
}

/// With `REDIS_MIN_REPLICAS_ACKS=1` and no replica to acknowledge, a create is not accepted:
/// 503 with a reason, the task ended unsent and its hold released, nothing sent to KIE. Once a
/// replica follows the primary, the same create is accepted and runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_no_replica_acknowledged_is_not_accepted_and_nothing_is_sent() {
    let primary = RedisServer::start();
    let store_cfg = StoreConfig::Redis {
        url: primary.url(),
        prefix: format!("{}:", testkit::unique("acks")),
        options: RedisOptions { acks: gateway::store::ReplicaAcks { min: Some(1), timeout: Duration::from_millis(1000) }, ..Default::default() },
    };
    let (sim_base, sim) = start_sim_with(kie_sim::Settings { schedule: kie_sim::Schedule { waiting_ms: 100, queuing_ms: 100, generating_ms: 200 }, ..Default::default() }, KEY, 1_000.0, None).await;
    let (listener, base) = bind().await;
    let mut cfg = config(store_cfg.clone(), Some(KEY));
    cfg.kie_base_url = sim_base.parse().expect("url");
    cfg.public_url = Some(base.parse().expect("url"));
    // The key and the cost rule are written before the instance needs a replica for them.
    let plain = server::open_store(&StoreConfig::Redis { url: primary.url(), prefix: match &store_cfg { StoreConfig::Redis { prefix, .. } => prefix.clone(), _ => unreachable!() }, options: Default::default() }).await.expect("store");
    let key = gateway::team::relay_keys::create(plain.as_ref(), &Actor::cli(), "acks", "no replica").await.expect("key");
    let key = key.text.expose().to_string();
    let running = start_on(listener, cfg).await;

    let body = json!({"model": "google/imagen4-fast", "input": {"prompt": "a lighthouse at dusk"}});
    let refused = post_kie(&format!("{base}/kie/api/v1/jobs/createTask"), &key, &body).await;
    assert_eq!(refused["code"], 503, "{refused}");
    assert!(refused["msg"].as_str().is_some_and(|m| m.contains("replica")), "the answer says why: {refused}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(sim.world().tasks.is_empty(), "nothing reached KIE");
    let page = plain.task_list(&gateway::tasks::task::TaskQuery { limit: 10, ..Default::default() }).await.expect("list");
    for t in &page.tasks {
        assert!(t.state.is_terminal() && t.kie_task_id.is_none(), "a task no replica has is ended unsent: {:?} {:?}", t.state, t.note);
    }

    // A replica follows: the same create is accepted and runs.
    let replica = RedisServer::start_replica_of(primary.port);
    wait_until("the replica is in sync", 30, || async { redis_info(replica.port, "replication").await.contains("master_link_status:up") }).await;
    // And the primary counts it (what WAIT waits on), not only the replica itself.
    wait_until("the primary sees its replica online", 30, || async { redis_info(primary.port, "replication").await.contains("state=online") }).await;
    let accepted = post_kie(&format!("{base}/kie/api/v1/jobs/createTask"), &key, &body).await;
    assert_eq!(accepted["code"], 200, "{accepted}");
    let id = accepted["data"]["taskId"].as_str().expect("id").to_string();
    wait_until("the task succeeds", 30, || {
        let (plain, id) = (plain.clone(), id.clone());
        async move { plain.task_get(&id).await.ok().flatten().is_some_and(|t| t.state == TaskState::Success) }
    })
    .await;
    // The hold of the refused one was released: only the task that ran is charged.
    assert_eq!(sim.world().tasks.len(), 1);
    running.shutdown().await.expect("shutdown");
}
