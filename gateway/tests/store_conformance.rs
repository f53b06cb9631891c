//! One conformance suite, run against both store backends: every case below runs once on a
//! real Redis (`testkit::redis_url`) and once on the embedded redb store in a temporary
//! directory. A backend passes only if it behaves exactly like the other.

use futures::StreamExt;
use gateway::store::{CreateWith, Created, ReserveOutcome, ReserveRequest, Scope, StoreError};
use gateway::tasks::task::{TaskQuery, TaskRecord, TaskState, index};
use gateway::{Credits, EmbeddedStore, RedisStore, Store};
use std::sync::Arc;
use std::time::Duration;

/// A store under test, plus whatever must live as long as it.
pub struct Backend {
    pub store: Arc<dyn Store>,
    /// A second handle on the same shared state (a second connection for Redis, the same
    /// store for the embedded backend) — stands in for a second instance.
    pub peer: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

async fn redis() -> Backend {
    let prefix = format!("{}:", testkit::unique("conf"));
    let url = testkit::redis_url();
    let a = RedisStore::connect(&url, &prefix).await.expect("connect to test redis");
    let b = RedisStore::connect(&url, &prefix).await.expect("connect to test redis");
    Backend { store: Arc::new(a), peer: Arc::new(b), _dir: None }
}

async fn embedded() -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Arc::new(EmbeddedStore::open(dir.path()).expect("open embedded store"));
    Backend { store: s.clone(), peer: s, _dir: Some(dir) }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod on_redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() { super::cases::$case(super::redis().await).await }) *
        }
        mod on_embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() { super::cases::$case(super::embedded().await).await }) *
        }
    };
}

conformance!(
    task_insert_is_write_once,
    task_update_is_compare_and_set_and_moves_indexes,
    task_delete_is_compare_and_set_and_clears_indexes,
    task_list_is_newest_first_filtered_and_paginated,
    task_counts_follow_states,
    kv_set_get_nx_delete_and_ttl,
    oversized_and_empty_input_is_refused_and_writes_nothing,
    counters_are_exact_under_200_racing_adds,
    counter_ttl_starts_with_the_counter,
    log_is_numbered_paged_newest_first_and_bounded,
    racing_log_appends_get_distinct_numbers,
    reservation_is_all_or_nothing_across_scopes,
    reservation_is_idempotent_and_settles_once,
    racing_reservations_admit_exactly_the_limit,
    racing_reservations_from_two_instances_admit_exactly_the_limit,
    window_admits_n_then_says_when_to_retry,
    window_settle_to_zero_frees_the_slot,
    leases_have_one_holder_and_expire,
    racing_lease_has_one_winner,
    events_reach_subscribers_in_order_across_instances,
    oldest_first_listing_reaches_every_record_in_order,
    kv_replace_sets_only_what_exists,
    amounts_past_the_bound_are_refused_and_sums_stay_exact,
    task_create_writes_record_lookups_and_a_numbered_event_at_once,
    task_create_is_taken_only_while_its_condition_holds,
    task_create_takes_every_hold_and_its_log_line_or_nothing,
    task_update_with_settles_and_counts_with_the_record_or_nothing,
    an_owners_lane_holds_their_queued_tasks_oldest_first,
    usage_many_reads_each_scope_as_usage_does_in_one_call,
    a_search_finds_tasks_by_the_words_they_start_and_follows_their_changes,
    counts_by_state_follow_each_project_person_and_model,
    a_time_and_cost_range_bounds_the_listing_and_its_pages,
    a_members_listing_merges_their_projects_and_shows_nothing_else,
);

fn task(id: &str, project: &str, owner: &str, model: &str, created_ms: u64) -> TaskRecord {
    let mut t = TaskRecord::new(id, owner, project, model, created_ms);
    t.input = serde_json::json!({"prompt": format!("shot {id}")});
    t.estimated_cost = Credits::from_credits(8);
    t
}

fn scope(key: &str, limit: i64) -> Scope {
    Scope { key: key.into(), limit, window: None }
}

fn req(id: &str, amount: i64, scopes: Vec<Scope>) -> ReserveRequest {
    ReserveRequest { id: id.into(), amount, scopes, hold_ttl: None }
}

mod cases {
    use super::*;

    pub async fn a_members_listing_merges_their_projects_and_shows_nothing_else(b: Backend) {
        use gateway::tasks::visible;
        use gateway::team::membership::Membership;
        let project = |i: u64| if i % 2 == 0 { "alpha" } else if i % 5 == 0 { "gamma" } else { "beta" };
        for i in 0..40u64 {
            let mut t = task(&format!("m{i:02}"), project(i), "ana", "m", 10_000 + i);
            if i % 3 == 0 {
                t.state = TaskState::Success;
            }
            assert!(b.store.task_insert(&t).await.unwrap());
        }
        let member = Membership::Only(vec!["alpha".into(), "gamma".into()]);
        let theirs = |oldest_first: bool| {
            let mut ids: Vec<String> = (0..40u64).filter(|i| project(*i) != "beta").map(|i| format!("m{i:02}")).collect();
            if !oldest_first {
                ids.reverse();
            }
            ids
        };
        for oldest_first in [false, true] {
            // Pages of 4 cut across both projects' scans: every one of theirs once, in order.
            let mut q = TaskQuery { oldest_first, limit: 4, ..Default::default() };
            let mut seen = Vec::new();
            for _ in 0..40 {
                let page = visible::list(b.store.as_ref(), &member, &q).await.unwrap();
                assert!(page.tasks.len() <= 4);
                seen.extend(page.tasks.into_iter().map(|t| t.id));
                match page.next {
                    Some(c) => q.after = Some(c),
                    None => break,
                }
            }
            assert_eq!(seen, theirs(oldest_first), "oldest first: {oldest_first}");
        }
        // Another project, named: nothing. One of theirs: that one only.
        let named = |p: &str| TaskQuery { project: Some(p.into()), limit: 100, ..Default::default() };
        assert!(visible::list(b.store.as_ref(), &member, &named("beta")).await.unwrap().tasks.is_empty());
        let alpha = visible::list(b.store.as_ref(), &member, &named("alpha")).await.unwrap();
        assert_eq!(alpha.tasks.len(), 20);
        assert!(alpha.tasks.iter().all(|t| t.project == "alpha"));
        // Everyone else's listing is the store's own.
        let all = visible::list(b.store.as_ref(), &Membership::All, &TaskQuery { limit: 100, ..Default::default() }).await.unwrap();
        assert_eq!(all.tasks.len(), 40);
        // Counts by state: their projects' only.
        let counts = visible::count(b.store.as_ref(), &member, &TaskQuery::default()).await.unwrap().expect("countable");
        let mine: Vec<u64> = (0..40u64).filter(|i| project(*i) != "beta").collect();
        assert_eq!(counts.total(), mine.len() as u64);
        assert_eq!(counts.get(TaskState::Success), mine.iter().filter(|i| *i % 3 == 0).count() as u64);
        let none = visible::count(b.store.as_ref(), &member, &named("beta")).await.unwrap().expect("countable");
        assert_eq!(none.total(), 0);
    }

    /// Search (`TaskQuery::text`): each word must start a word of the task's ids, model,
    /// project, owner or prompt, case-insensitive; read from the index of the longest word's
    /// first letters, so 1,000 other tasks cost a scan of none of them; the index follows a
    /// task's changes (KIE's id arriving) and forgets what a change took away.
    pub async fn a_search_finds_tasks_by_the_words_they_start_and_follows_their_changes(b: Backend) {
        let prompt = |id: &str, p: &str| {
            let mut t = task(id, "trailer", "ana@studio.test", "google/imagen4-fast", 5_000 + id.len() as u64);
            t.input = serde_json::json!({"prompt": p});
            t
        };
        for i in 0..1_000u64 {
            b.store.task_insert(&task(&format!("noise{i:04}"), "teaser", "bo@studio.test", "veo3", 1_000 + i)).await.unwrap();
        }
        b.store.task_insert(&prompt("cr_aa01", "A red Kite over the dunes at dusk")).await.unwrap();
        b.store.task_insert(&prompt("cr_bb02", "kites, kitesurfers and a lighthouse")).await.unwrap();
        let find = |text: &str| {
            let q = TaskQuery { text: Some(text.into()), limit: 50, ..Default::default() };
            let peer = b.peer.clone();
            async move {
                let page = peer.task_list(&q).await.unwrap();
                let mut ids: Vec<String> = page.tasks.into_iter().map(|t| t.id).collect();
                ids.sort();
                (ids, page.next)
            }
        };
        assert_eq!(find("kite").await, (vec!["cr_aa01".to_string(), "cr_bb02".to_string()], None), "the start of a word, in any case");
        assert_eq!(find("KITE red").await.0, vec!["cr_aa01"], "every word must match");
        assert_eq!(find("dusk imagen4").await.0, vec!["cr_aa01"], "the model's words too");
        assert_eq!(find("cr_bb02").await.0, vec!["cr_bb02"], "its id");
        assert_eq!(find("trail lig").await.0, vec!["cr_bb02"], "its project and prompt");
        assert_eq!(find("ite").await.0, Vec::<String>::new(), "not the middle of a word");
        assert_eq!(find("kite teaser").await.0, Vec::<String>::new());
        // KIE's id arrives, a word goes: the index follows.
        let mut t = b.store.task_get("cr_aa01").await.unwrap().unwrap();
        t.kie_task_id = Some("task_imagen4_9f8e7d".into());
        t.state = TaskState::Submitted;
        t.input = serde_json::json!({"prompt": "A red kite at dawn"});
        b.store.task_update(&t).await.unwrap().unwrap();
        assert_eq!(find("9f8e7d").await.0, vec!["cr_aa01"], "KIE's id, once known");
        assert_eq!(find("dusk").await.0, Vec::<String>::new(), "a word the change took away");
        assert_eq!(find("dawn kite").await.0, vec!["cr_aa01"]);
        let q = TaskQuery { text: Some("kite".into()), state: Some(TaskState::Submitted), limit: 50, ..Default::default() };
        assert_eq!(b.store.task_list(&q).await.unwrap().tasks.len(), 1, "with the other filters");
        assert_eq!(q.driving_index(), "word:kit", "read from the word's index, not the state's");
    }

    /// `usage_many`: running totals and windows alike, in order, a scope never touched at 0;
    /// a batch past the bound is refused.
    pub async fn usage_many_reads_each_scope_as_usage_does_in_one_call(b: Backend) {
        let window = Scope { key: "w".into(), limit: 10, window: Some(Duration::from_secs(60)) };
        b.store.reserve(&req("r1", 3, vec![scope("a", 100), window.clone()])).await.unwrap();
        b.store.reserve(&req("r2", 5, vec![scope("b", 100)])).await.unwrap();
        let scopes = vec![scope("b", 100), window.clone(), scope("never", 1), scope("a", 100)];
        let many = b.peer.usage_many(&scopes).await.unwrap();
        assert_eq!(many, vec![5, 3, 0, 3]);
        for (s, got) in scopes.iter().zip(&many) {
            assert_eq!(b.store.usage(s).await.unwrap(), *got, "{}", s.key);
        }
        assert_eq!(b.store.usage_many(&[]).await.unwrap(), Vec::<i64>::new());
        let too_many: Vec<Scope> = (0..=gateway::store::MAX_USAGE_BATCH).map(|i| scope(&format!("s{i}"), 1)).collect();
        assert!(matches!(b.store.usage_many(&too_many).await, Err(StoreError::Invalid(_))));
    }

    /// The fair queue's lanes: `(Queued, owner)` reads that owner's queued tasks only, oldest
    /// first, at any depth, and a task leaves its lane when it leaves the queue.
    pub async fn an_owners_lane_holds_their_queued_tasks_oldest_first(b: Backend) {
        for i in 0..260u64 {
            let owner = if i % 10 == 3 { "bo" } else { "key:7f3a9c" };
            b.store.task_insert(&task(&format!("t{i:03}"), "p", owner, "m", 1_000 + i)).await.unwrap();
        }
        let lane = |owner: &str, after: Option<String>| TaskQuery { state: Some(TaskState::Queued), owner: Some(owner.into()), oldest_first: true, after, limit: 200, ..Default::default() };
        let first = b.peer.task_list(&lane("key:7f3a9c", None)).await.unwrap();
        let rest = b.peer.task_list(&lane("key:7f3a9c", first.next.clone())).await.unwrap();
        let ids: Vec<String> = first.tasks.iter().chain(&rest.tasks).map(|t| t.id.clone()).collect();
        let expected: Vec<String> = (0..260u64).filter(|i| i % 10 != 3).map(|i| format!("t{i:03}")).collect();
        assert_eq!(ids, expected, "the key's lane, oldest first, across pages, and nobody else's");
        let bo = b.store.task_list(&lane("bo", None)).await.unwrap().tasks;
        assert_eq!(bo.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["t003", "t013", "t023", "t033", "t043", "t053", "t063", "t073", "t083", "t093", "t103", "t113", "t123", "t133", "t143", "t153", "t163", "t173", "t183", "t193", "t203", "t213", "t223", "t233", "t243", "t253"]);
        // Sent: out of the lane.
        let mut sent = bo[0].clone();
        sent.state = TaskState::Submitted;
        b.store.task_update(&sent).await.unwrap().unwrap();
        let bo = b.peer.task_list(&lane("bo", None)).await.unwrap().tasks;
        assert_eq!(bo.first().map(|t| t.id.as_str()), Some("t013"));
        assert_eq!(bo.len(), 25);
    }

    pub async fn task_insert_is_write_once(b: Backend) {
        let t = task("t1", "trailer", "ana", "nano-banana-2", 1_000);
        assert!(b.store.task_insert(&t).await.unwrap());
        let mut other = t.clone();
        other.project = "someone-else".into();
        assert!(!b.store.task_insert(&other).await.unwrap(), "a second insert of the same id must be refused");
        assert_eq!(b.peer.task_get("t1").await.unwrap(), Some(t), "the first record stands, readable from a peer");
        assert_eq!(b.store.task_get("missing").await.unwrap(), None);
    }

    pub async fn task_update_is_compare_and_set_and_moves_indexes(b: Backend) {
        let t = task("t1", "trailer", "ana", "veo3", 5_000);
        b.store.task_insert(&t).await.unwrap();
        let mut next = t.clone();
        next.state = TaskState::Submitted;
        next.kie_task_id = Some("kie-123".into());
        assert_eq!(b.store.task_update(&next).await.unwrap(), Some(2));

        // The same base version again is stale now: refused, nothing changes.
        let mut stale = t.clone();
        stale.state = TaskState::Fail;
        assert_eq!(b.store.task_update(&stale).await.unwrap(), None);
        let stored = b.store.task_get("t1").await.unwrap().unwrap();
        assert_eq!((stored.version, stored.state), (2, TaskState::Submitted));
        assert_eq!(stored.kie_task_id.as_deref(), Some("kie-123"));

        // Indexes moved with the state.
        let queued = TaskQuery { state: Some(TaskState::Queued), ..Default::default() };
        let submitted = TaskQuery { state: Some(TaskState::Submitted), ..Default::default() };
        assert!(b.store.task_list(&queued).await.unwrap().tasks.is_empty());
        assert_eq!(b.store.task_list(&submitted).await.unwrap().tasks.len(), 1);

        // Updating a task that does not exist changes nothing.
        let ghost = task("ghost", "p", "o", "m", 1);
        assert_eq!(b.store.task_update(&ghost).await.unwrap(), None);
        assert_eq!(b.store.task_get("ghost").await.unwrap(), None);
    }

    pub async fn task_delete_is_compare_and_set_and_clears_indexes(b: Backend) {
        let t = task("t1", "trailer", "ana", "veo3", 5_000);
        b.store.task_insert(&t).await.unwrap();
        assert!(!b.store.task_delete("t1", t.version + 1).await.unwrap(), "a wrong version must not delete");
        assert!(b.store.task_get("t1").await.unwrap().is_some());
        assert!(b.peer.task_delete("t1", t.version).await.unwrap());
        assert_eq!(b.store.task_get("t1").await.unwrap(), None);
        assert!(!b.store.task_delete("t1", t.version).await.unwrap(), "a second delete finds nothing");
        let by_project = TaskQuery { project: Some("trailer".into()), ..Default::default() };
        assert!(b.store.task_list(&by_project).await.unwrap().tasks.is_empty(), "no index entry may be left behind");
        assert_eq!(b.store.task_counts().await.unwrap().total, 0);
    }

    pub async fn task_list_is_newest_first_filtered_and_paginated(b: Backend) {
        let projects = ["trailer", "promo", "teaser"];
        let owners = ["ana", "ben"];
        for i in 0..120u64 {
            let mut t = task(&format!("t{i:03}"), projects[(i % 3) as usize], owners[(i % 2) as usize], "veo3", 10_000 + i);
            if i % 5 == 0 {
                t.state = TaskState::Success;
            }
            assert!(b.store.task_insert(&t).await.unwrap());
        }
        // All, newest first, in pages of 25, with no task twice and none missing.
        let mut seen = Vec::new();
        let mut q = TaskQuery { limit: 25, ..Default::default() };
        loop {
            let page = b.store.task_list(&q).await.unwrap();
            assert!(page.tasks.len() <= 25);
            seen.extend(page.tasks.iter().map(|t| t.created_ms));
            match page.next {
                Some(c) => q.after = Some(c),
                None => break,
            }
        }
        let expected: Vec<u64> = (0..120u64).rev().map(|i| 10_000 + i).collect();
        assert_eq!(seen, expected);

        // Combined filters: project promo (i % 3 == 1) and owner ben (i % 2 == 1) and success (i % 5 == 0).
        let q = TaskQuery {
            project: Some("promo".into()),
            owner: Some("ben".into()),
            state: Some(TaskState::Success),
            limit: 200,
            ..Default::default()
        };
        let ids: Vec<String> = b.store.task_list(&q).await.unwrap().tasks.into_iter().map(|t| t.id).collect();
        let want: Vec<String> = (0..120u64).rev().filter(|i| i % 3 == 1 && i % 2 == 1 && i % 5 == 0).map(|i| format!("t{i:03}")).collect();
        assert_eq!(ids, want);

        // Oversized pages are clamped.
        let big = TaskQuery { limit: 10_000, ..Default::default() };
        assert_eq!(b.store.task_list(&big).await.unwrap().tasks.len(), 120.min(gateway::tasks::task::MAX_PAGE));
    }

    pub async fn oldest_first_listing_reaches_every_record_in_order(b: Backend) {
        // Deeper than any one scan of the workers (1,000) and than a page (200).
        let n = 1_100u64;
        for i in 0..n {
            let mut t = task(&format!("q{i:04}"), "p", if i % 3 == 0 { "ana" } else { "ben" }, "m", 50_000 + i);
            if i % 10 == 0 {
                t.state = TaskState::Success;
            }
            assert!(b.store.task_insert(&t).await.unwrap());
        }
        let mut seen = Vec::new();
        let mut q = TaskQuery { state: Some(TaskState::Queued), oldest_first: true, limit: 200, ..Default::default() };
        loop {
            let page = b.store.task_list(&q).await.unwrap();
            seen.extend(page.tasks.iter().map(|t| t.created_ms));
            match page.next {
                Some(c) => q.after = Some(c),
                None => break,
            }
        }
        let want: Vec<u64> = (0..n).filter(|i| i % 10 != 0).map(|i| 50_000 + i).collect();
        assert_eq!(seen, want, "oldest first, every queued record once, none missing");
        // The first page oldest first is the far end of a newest-first listing.
        let first = b.store.task_list(&TaskQuery { oldest_first: true, limit: 3, ..Default::default() }).await.unwrap();
        assert_eq!(first.tasks.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["q0000", "q0001", "q0002"]);
    }

    pub async fn kv_replace_sets_only_what_exists(b: Backend) {
        assert!(!b.store.kv_replace("s", b"touched", Some(Duration::from_secs(5))).await.unwrap(), "absent: nothing set");
        assert_eq!(b.store.kv_get("s").await.unwrap(), None);
        b.store.kv_set("s", b"open", Some(Duration::from_secs(5))).await.unwrap();
        assert!(b.peer.kv_replace("s", b"touched", Some(Duration::from_secs(5))).await.unwrap());
        assert_eq!(b.store.kv_get("s").await.unwrap().as_deref(), Some(&b"touched"[..]));
        assert!(b.store.kv_delete("s").await.unwrap());
        assert!(!b.peer.kv_replace("s", b"again", Some(Duration::from_secs(5))).await.unwrap(), "a deleted key is not brought back");
        assert_eq!(b.store.kv_get("s").await.unwrap(), None);
        b.store.kv_set("gone", b"x", Some(Duration::from_millis(50))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!b.store.kv_replace("gone", b"y", None).await.unwrap(), "an expired key is not brought back");
        assert_eq!(b.store.kv_get("gone").await.unwrap(), None);
    }

    pub async fn amounts_past_the_bound_are_refused_and_sums_stay_exact(b: Backend) {
        use gateway::store::MAX_AMOUNT;
        for amount in [MAX_AMOUNT + 1, i64::MAX, -1, i64::MIN] {
            assert!(matches!(b.store.reserve(&req("big", amount, vec![scope("total", i64::MAX)])).await, Err(StoreError::Invalid(_))), "{amount}");
        }
        assert!(matches!(b.store.reserve(&req("neg", 1, vec![scope("total", -5)])).await, Err(StoreError::Invalid(_))));
        assert_eq!(b.store.usage(&scope("total", i64::MAX)).await.unwrap(), 0, "a refused request writes nothing");
        // The largest amounts add up exactly, and a cap holds at its edge.
        for i in 0..3 {
            assert_eq!(b.store.reserve(&req(&format!("max{i}"), MAX_AMOUNT, vec![scope("total", i64::MAX)])).await.unwrap(), ReserveOutcome::Reserved);
        }
        assert_eq!(b.store.usage(&scope("total", i64::MAX)).await.unwrap(), 3 * MAX_AMOUNT);
        assert!(matches!(b.store.settle("max0", MAX_AMOUNT + 1).await, Err(StoreError::Invalid(_))));
        assert!(b.store.settle("max0", MAX_AMOUNT - 1).await.unwrap());
        assert_eq!(b.store.usage(&scope("total", i64::MAX)).await.unwrap(), 3 * MAX_AMOUNT - 1);
        let cap = 2 * MAX_AMOUNT;
        assert_eq!(b.store.reserve(&req("c1", MAX_AMOUNT, vec![scope("cap", cap)])).await.unwrap(), ReserveOutcome::Reserved);
        assert_eq!(b.store.reserve(&req("c2", MAX_AMOUNT, vec![scope("cap", cap)])).await.unwrap(), ReserveOutcome::Reserved);
        assert!(matches!(b.store.reserve(&req("c3", 1, vec![scope("cap", cap)])).await.unwrap(), ReserveOutcome::Refused(r) if r.used == cap && r.limit == cap));
    }

    pub async fn task_create_writes_record_lookups_and_a_numbered_event_at_once(b: Backend) {
        use gateway::store::{Announcement, Lookup};
        let mut sub = b.peer.subscribe("created").await.unwrap();
        let announce = |id: &str| Announcement {
            seq_key: "created:seq".into(),
            log_prefix: "created:log:".into(),
            keep: Duration::from_secs(60),
            channel: "created".into(),
            before: "{\"n\":".into(),
            after: format!(",\"id\":\"{id}\"}}"),
        };
        b.store.counter_add("created:seq", 41, None).await.unwrap();
        let t = task("made", "p", "o", "m", 5);
        let lookup = Lookup { key: "token:abc".into(), value: b"made".to_vec(), ttl: Some(Duration::from_secs(60)) };
        assert_eq!(b.store.task_create(&t, &CreateWith { lookups: &[lookup], announce: Some(&announce("made")), ..Default::default() }).await.unwrap(), Created::Inserted(42));
        assert_eq!(b.peer.task_get("made").await.unwrap().map(|t| t.version), Some(1));
        assert_eq!(b.peer.kv_get("token:abc").await.unwrap().as_deref(), Some(&b"made"[..]));
        assert_eq!(b.peer.kv_get("created:log:42").await.unwrap().as_deref(), Some(&br#"{"n":42,"id":"made"}"#[..]));
        let got = tokio::time::timeout(Duration::from_secs(5), sub.next()).await.unwrap().unwrap();
        assert_eq!(got, br#"{"n":42,"id":"made"}"#);
        let listed = b.store.task_list(&TaskQuery { state: Some(TaskState::Queued), ..Default::default() }).await.unwrap();
        assert_eq!(listed.tasks.len(), 1, "indexed");
        // The same id again changes nothing: no lookup, no number, no message.
        let other = Lookup { key: "token:def".into(), value: b"x".to_vec(), ttl: None };
        assert_eq!(b.store.task_create(&t, &CreateWith { lookups: &[other], announce: Some(&announce("again")), ..Default::default() }).await.unwrap(), Created::Exists);
        assert_eq!(b.store.kv_get("token:def").await.unwrap(), None);
        assert_eq!(b.store.counter_get("created:seq").await.unwrap(), 42);
        assert!(tokio::time::timeout(Duration::from_millis(300), sub.next()).await.is_err(), "nothing published");
        // Without an announcement: the record and lookups only.
        assert_eq!(b.store.task_create(&task("quiet", "p", "o", "m", 6), &CreateWith::default()).await.unwrap(), Created::Inserted(0));
        assert_eq!(b.store.counter_get("created:seq").await.unwrap(), 42);
        let mut bad = task("bad|id", "p", "o", "m", 7);
        assert!(matches!(b.store.task_create(&bad, &CreateWith::default()).await, Err(StoreError::Invalid(_))));
        bad.id = "big".into();
        let huge = Lookup { key: "k".into(), value: vec![0; gateway::store::MAX_VALUE_BYTES + 1], ttl: None };
        assert!(matches!(b.store.task_create(&bad, &CreateWith { lookups: &[huge], ..Default::default() }).await, Err(StoreError::Invalid(_))));
        assert_eq!(b.store.task_get("big").await.unwrap(), None, "refused: nothing written");
    }

    pub async fn task_create_takes_every_hold_and_its_log_line_or_nothing(b: Backend) {
        use gateway::store::LogLine;
        let window = Scope { key: "adm:rate".into(), limit: 1, window: Some(Duration::from_secs(10)) };
        let place = |id: &str| req(id, 1, vec![scope("adm:queue", 2)]);
        let rate = |id: &str| ReserveRequest { hold_ttl: Some(Duration::from_secs(10)), ..req(id, 1, vec![window.clone()]) };
        let line = |who: &'static str| Some(LogLine { log: "adm:arrivals", entry: who.as_bytes(), keep: 10 });
        let h1 = [place("p1"), rate("r1")];
        let made = b.store.task_create(&task("a1", "p", "o", "m", 1), &CreateWith { holds: &h1, log: line("ana"), ..Default::default() }).await.unwrap();
        assert_eq!(made, Created::Inserted(0));
        assert_eq!(b.peer.usage(&scope("adm:queue", 2)).await.unwrap(), 1, "the place is taken");
        assert_eq!(b.peer.usage(&window).await.unwrap(), 1, "the window slot is taken");
        let logged = b.peer.log_read("adm:arrivals", None, 10).await.unwrap();
        assert_eq!(logged.iter().map(|e| e.data.clone()).collect::<Vec<_>>(), vec![b"ana".to_vec()]);
        // The second hold does not fit: nothing is written, not even the first hold or the line.
        let h2 = [place("p2"), rate("r2")];
        match b.store.task_create(&task("a2", "p", "o", "m", 2), &CreateWith { holds: &h2, log: line("ben"), ..Default::default() }).await.unwrap() {
            Created::Refused(1, r) => {
                assert_eq!((r.scope, r.key.as_str(), r.used, r.limit), (0, "adm:rate", 1, 1));
                assert!(r.retry_after.is_some_and(|w| w <= Duration::from_secs(10)), "how long until it fits: {:?}", r.retry_after);
            }
            other => panic!("the rate hold should refuse: {other:?}"),
        }
        assert_eq!(b.peer.task_get("a2").await.unwrap(), None, "no record");
        assert_eq!(b.peer.usage(&scope("adm:queue", 2)).await.unwrap(), 1, "the place was not taken");
        assert!(!b.peer.settle("p2", 0).await.unwrap(), "no hold p2");
        assert_eq!(b.peer.log_read("adm:arrivals", None, 10).await.unwrap().len(), 1, "no line");
        // A hold already held is left as it is (not counted twice); the others are taken.
        let h3 = [place("p1"), place("p3")];
        assert!(matches!(b.store.task_create(&task("a3", "p", "o", "m", 3), &CreateWith { holds: &h3, ..Default::default() }).await, Err(StoreError::Invalid(_))), "one scope in two holds is refused");
        let h3 = [place("p1")];
        assert_eq!(b.store.task_create(&task("a3", "p", "o", "m", 3), &CreateWith { holds: &h3, ..Default::default() }).await.unwrap(), Created::Inserted(0));
        assert_eq!(b.peer.usage(&scope("adm:queue", 2)).await.unwrap(), 1, "p1 counted once");
        // A task that exists takes no hold.
        let h4 = [place("p4")];
        assert_eq!(b.store.task_create(&task("a1", "p", "o", "m", 1), &CreateWith { holds: &h4, log: line("cy"), ..Default::default() }).await.unwrap(), Created::Exists);
        assert_eq!(b.peer.usage(&scope("adm:queue", 2)).await.unwrap(), 1);
        assert_eq!(b.peer.log_read("adm:arrivals", None, 10).await.unwrap().len(), 1);
        // Holds taken with a record settle like any other.
        assert!(b.peer.settle("p1", 0).await.unwrap());
        assert_eq!(b.peer.usage(&scope("adm:queue", 2)).await.unwrap(), 0);
        assert!(b.peer.settle("r1", 0).await.unwrap());
        assert_eq!(b.peer.usage(&window).await.unwrap(), 0);
        // A bad hold is refused before anything is written.
        let bad = [req("neg", -1, vec![scope("adm:queue", 2)])];
        assert!(matches!(b.store.task_create(&task("a5", "p", "o", "m", 5), &CreateWith { holds: &bad, ..Default::default() }).await, Err(StoreError::Invalid(_))));
        assert_eq!(b.peer.task_get("a5").await.unwrap(), None);
    }

    pub async fn task_update_with_settles_and_counts_with_the_record_or_nothing(b: Backend) {
        use gateway::store::UpdateWith;
        let window = Scope { key: "end:tokens".into(), limit: 100, window: Some(Duration::from_secs(60)) };
        b.store.task_insert(&task("call", "p", "o", "m", 1)).await.unwrap();
        let tokens = ReserveRequest { hold_ttl: Some(Duration::from_secs(60)), ..req("tokens:call", 10, vec![window.clone()]) };
        assert_eq!(b.store.reserve(&tokens).await.unwrap(), ReserveOutcome::Reserved);
        assert_eq!(b.store.reserve(&req("running:call", 1, vec![scope("end:running", 5)])).await.unwrap(), ReserveOutcome::Reserved);
        assert_eq!(b.store.reserve(&req("other", 2, vec![scope("end:other", 5)])).await.unwrap(), ReserveOutcome::Reserved);
        let ledger = |id: &str| req(id, 7, vec![scope("end:ledger", 1)]);
        let mut t = b.store.task_get("call").await.unwrap().unwrap();
        t.state = TaskState::Success;
        // A stale version changes nothing: no settlement, no charge.
        let mut stale = t.clone();
        stale.version = 9;
        let mut sub = b.peer.subscribe("ended").await.unwrap();
        let announce = gateway::store::Announcement {
            seq_key: "ended:seq".into(),
            log_prefix: "ended:log:".into(),
            keep: Duration::from_secs(60),
            channel: "ended".into(),
            before: "{\"n\":".into(),
            after: ",\"id\":\"call\"}".into(),
        };
        let with = UpdateWith { settles: &[("other", 0)], charges: &[ledger("ledger:stale")], announce: Some(&announce) };
        assert_eq!(b.store.task_update_with(&stale, &with).await.unwrap(), None);
        assert_eq!(b.peer.usage(&scope("end:other", 5)).await.unwrap(), 2, "not settled");
        assert_eq!(b.peer.usage(&scope("end:ledger", 1)).await.unwrap(), 0, "not counted");
        assert_eq!(b.peer.counter_get("ended:seq").await.unwrap(), 0, "not announced");
        // The version matches: the record, its settlements, its charge and its event, at once.
        let settles = [("tokens:call", 4), ("running:call", 0), ("never-held", 3)];
        let charges = [ledger("ledger:call")];
        assert_eq!(b.store.task_update_with(&t, &UpdateWith { settles: &settles, charges: &charges, announce: Some(&announce) }).await.unwrap(), Some(2));
        assert_eq!(b.peer.task_get("call").await.unwrap().map(|t| (t.state, t.version)), Some((TaskState::Success, 2)));
        assert_eq!(b.peer.kv_get("ended:log:1").await.unwrap().as_deref(), Some(&br#"{"n":1,"id":"call"}"#[..]), "kept for replay");
        let got = tokio::time::timeout(Duration::from_secs(5), sub.next()).await.unwrap().unwrap();
        assert_eq!(got, br#"{"n":1,"id":"call"}"#, "published once written, never for the stale write");
        assert_eq!(b.peer.usage(&window).await.unwrap(), 4, "the window holds what was used");
        assert_eq!(b.peer.usage(&scope("end:running", 5)).await.unwrap(), 0, "the slot is free");
        assert_eq!(b.peer.usage(&scope("end:ledger", 1)).await.unwrap(), 7, "counted past its limit: it was spent");
        let listed = b.store.task_list(&TaskQuery { state: Some(TaskState::Success), ..Default::default() }).await.unwrap();
        assert_eq!(listed.tasks.len(), 1, "indexed under its new state");
        // A charge already counted is not counted twice; settled holds are gone.
        t.version = 2;
        assert_eq!(b.store.task_update_with(&t, &UpdateWith { settles: &settles, charges: &charges, announce: None }).await.unwrap(), Some(3));
        assert_eq!(b.peer.counter_get("ended:seq").await.unwrap(), 1, "announced only when asked");
        assert_eq!(b.peer.usage(&scope("end:ledger", 1)).await.unwrap(), 7);
        assert_eq!(b.peer.usage(&window).await.unwrap(), 4);
        assert!(b.peer.settle("other", 0).await.unwrap(), "an unrelated hold is untouched");
        // Bad input is refused before anything is written.
        t.version = 3;
        assert!(matches!(b.store.task_update_with(&t, &UpdateWith { settles: &[("bad", -1)], ..Default::default() }).await, Err(StoreError::Invalid(_))));
        assert_eq!(b.peer.task_get("call").await.unwrap().map(|t| t.version), Some(3));
    }

    pub async fn task_create_is_taken_only_while_its_condition_holds(b: Backend) {
        use gateway::store::{Lookup, Unchanged};
        let lookup = || Lookup { key: "cond:token".into(), value: b"x".to_vec(), ttl: None };
        // Absent, as read: holds until something is written there (by another instance).
        let absent = Unchanged::of("cond:rules", None);
        assert_eq!(b.store.task_create(&task("k1", "p", "o", "m", 1), &CreateWith { unchanged: Some(&absent), ..Default::default() }).await.unwrap(), Created::Inserted(0));
        b.peer.kv_set("cond:rules", b"[1]", None).await.unwrap();
        assert_eq!(b.store.task_create(&task("k2", "p", "o", "m", 2), &CreateWith { lookups: &[lookup()], unchanged: Some(&absent), ..Default::default() }).await.unwrap(), Created::Changed);
        assert_eq!(b.store.task_get("k2").await.unwrap(), None, "nothing written");
        assert_eq!(b.store.kv_get("cond:token").await.unwrap(), None, "not even the lookup");
        // A value, as read: holds while the value is byte for byte the same.
        let read = Unchanged::of("cond:rules", Some(b"[1]"));
        assert_eq!(b.store.task_create(&task("k2", "p", "o", "m", 2), &CreateWith { lookups: &[lookup()], unchanged: Some(&read), ..Default::default() }).await.unwrap(), Created::Inserted(0));
        b.peer.kv_set("cond:rules", b"[1,2]", None).await.unwrap();
        assert_eq!(b.store.task_create(&task("k3", "p", "o", "m", 3), &CreateWith { unchanged: Some(&read), ..Default::default() }).await.unwrap(), Created::Changed);
        b.peer.kv_delete("cond:rules").await.unwrap();
        assert_eq!(b.store.task_create(&task("k3", "p", "o", "m", 3), &CreateWith { unchanged: Some(&read), ..Default::default() }).await.unwrap(), Created::Changed, "gone is a change");
        assert_eq!(b.store.task_create(&task("k3", "p", "o", "m", 3), &CreateWith { unchanged: Some(&absent), ..Default::default() }).await.unwrap(), Created::Inserted(0));
        // An expired value is no value.
        b.peer.kv_set("cond:short", b"v", Some(Duration::from_millis(50))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        let short = Unchanged::of("cond:short", None);
        assert_eq!(b.store.task_create(&task("k4", "p", "o", "m", 4), &CreateWith { unchanged: Some(&short), ..Default::default() }).await.unwrap(), Created::Inserted(0));
        let bent = Unchanged { key: "cond:rules".into(), sha1: Some("not hex".into()) };
        assert!(matches!(b.store.task_create(&task("k5", "p", "o", "m", 5), &CreateWith { unchanged: Some(&bent), ..Default::default() }).await, Err(StoreError::Invalid(_))));
    }

    /// The Monitor's counts by state for one project, person or model, as tasks are written,
    /// move and are deleted, read through the other instance; a filter they cannot count has
    /// none.
    pub async fn counts_by_state_follow_each_project_person_and_model(b: Backend) {
        use gateway::tasks::facets::count;
        for (i, (p, o, m)) in [("teaser", "ana", "veo3"), ("teaser", "ben", "veo3"), ("trailer", "ana", "kling"), ("teaser", "ana", "kling")].into_iter().enumerate() {
            b.store.task_insert(&task(&format!("f{i}"), p, o, m, 200 + i as u64)).await.unwrap();
        }
        let counted = |project: Option<&str>, owner: Option<&str>, model: Option<&str>| {
            let q = TaskQuery { project: project.map(Into::into), owner: owner.map(Into::into), model: model.map(Into::into), ..Default::default() };
            let peer = b.peer.clone();
            async move { count(peer.as_ref(), &q).await.unwrap().map(|c| (c.get(TaskState::Queued), c.get(TaskState::Success), c.total())) }
        };
        assert_eq!(counted(Some("teaser"), None, None).await, Some((3, 0, 3)));
        assert_eq!(counted(None, Some("ana"), None).await, Some((3, 0, 3)));
        assert_eq!(counted(None, None, Some("kling")).await, Some((2, 0, 2)));
        assert_eq!(counted(None, None, None).await, Some((4, 0, 4)), "the team's");
        let mut t = b.store.task_get("f3").await.unwrap().unwrap();
        t.state = TaskState::Success;
        let version = b.store.task_update(&t).await.unwrap().unwrap();
        assert_eq!(counted(Some("teaser"), None, None).await, Some((2, 1, 3)));
        assert_eq!(counted(None, Some("ana"), None).await, Some((2, 1, 3)));
        assert_eq!(counted(None, None, Some("kling")).await, Some((1, 1, 2)));
        assert_eq!(counted(None, Some("ben"), None).await, Some((1, 0, 1)));
        assert!(b.store.task_delete("f3", version).await.unwrap());
        assert_eq!(counted(Some("teaser"), None, None).await, Some((2, 0, 2)), "deleted, uncounted");
        assert_eq!(counted(Some("nobody's"), None, None).await, Some((0, 0, 0)));
        assert_eq!(counted(Some("teaser"), None, Some("veo3")).await, None, "two dimensions are not counted");
        // The listing of a project in a state is read from that count's index.
        let q = TaskQuery { project: Some("teaser".into()), state: Some(TaskState::Queued), ..Default::default() };
        assert_eq!(q.driving_index(), index::facet("project", "teaser", TaskState::Queued));
        let ids: Vec<String> = b.peer.task_list(&q).await.unwrap().tasks.into_iter().map(|t| t.id).collect();
        assert_eq!(ids, ["f1", "f0"]);
    }

    /// Created from / before and a cost range: only those tasks, newest first, paged by cursor
    /// within the range; an empty range lists nothing.
    pub async fn a_time_and_cost_range_bounds_the_listing_and_its_pages(b: Backend) {
        for i in 0..8u64 {
            let mut t = task(&format!("r{i}"), "p", "o", "m", 1_000 + i * 10);
            t.estimated_cost = Credits::from_credits(i as i64);
            if i == 5 {
                t.actual_cost = Some(Credits::from_credits(50));
            }
            b.store.task_insert(&t).await.unwrap();
        }
        let list = |q: TaskQuery| {
            let peer = b.peer.clone();
            async move {
                let page = peer.task_list(&q).await.unwrap();
                (page.tasks.into_iter().map(|t| t.id).collect::<Vec<_>>(), page.next)
            }
        };
        let range = TaskQuery { created_from_ms: Some(1_020), created_before_ms: Some(1_060), limit: 2, ..Default::default() };
        let (first, next) = list(range.clone()).await;
        assert_eq!(first, ["r5", "r4"]);
        let (second, _) = list(TaskQuery { after: next, ..range.clone() }).await;
        assert_eq!(second, ["r3", "r2"], "the next page stays in the range");
        let (old, _) = list(TaskQuery { oldest_first: true, limit: 10, ..range.clone() }).await;
        assert_eq!(old, ["r2", "r3", "r4", "r5"], "oldest first too");
        let (indexed, _) = list(TaskQuery { project: Some("p".into()), limit: 10, ..range.clone() }).await;
        assert_eq!(indexed, ["r5", "r4", "r3", "r2"], "on any index");
        let (cost, _) = list(TaskQuery { cost_min: Some(Credits::from_credits(3)), cost_max: Some(Credits::from_credits(6)), limit: 10, ..Default::default() }).await;
        assert_eq!(cost, ["r6", "r4", "r3"], "r5's charge of 50 is its cost, not its estimate");
        let (none, next) = list(TaskQuery { created_from_ms: Some(1_050), created_before_ms: Some(1_050), ..Default::default() }).await;
        assert!(none.is_empty() && next.is_none(), "an empty range");
    }

    pub async fn task_counts_follow_states(b: Backend) {
        for i in 0..6u64 {
            b.store.task_insert(&task(&format!("c{i}"), "p", "o", "m", 100 + i)).await.unwrap();
        }
        let mut t = b.store.task_get("c0").await.unwrap().unwrap();
        t.state = TaskState::Success;
        b.store.task_update(&t).await.unwrap();
        let counts = b.store.task_counts().await.unwrap();
        assert_eq!(counts.total, 6);
        assert_eq!(counts.get(TaskState::Queued), 5);
        assert_eq!(counts.get(TaskState::Success), 1);
        assert_eq!(counts.in_flight(), 5);
        // Any index counted without reading it: a batch's, by state, as it moves.
        let keys = [index::batch("b1"), index::batch_state("b1", TaskState::Queued), index::batch_state("b1", TaskState::Success), index::batch("none")].map(String::from).to_vec();
        for id in ["c1", "c2"] {
            let mut t = b.store.task_get(id).await.unwrap().unwrap();
            t.batch = Some("b1".into());
            b.store.task_update(&t).await.unwrap();
        }
        assert_eq!(b.peer.index_counts(&keys).await.unwrap(), vec![2, 2, 0, 0]);
        let mut t = b.store.task_get("c2").await.unwrap().unwrap();
        t.state = TaskState::Success;
        b.store.task_update(&t).await.unwrap();
        assert_eq!(b.peer.index_counts(&keys).await.unwrap(), vec![2, 1, 1, 0]);
        let too_many = vec![index::ALL.to_string(); gateway::store::MAX_INDEX_COUNTS + 1];
        assert!(matches!(b.store.index_counts(&too_many).await, Err(StoreError::Invalid(_))));
    }

    pub async fn kv_set_get_nx_delete_and_ttl(b: Backend) {
        b.store.kv_set("a", b"one", None).await.unwrap();
        assert_eq!(b.peer.kv_get("a").await.unwrap().as_deref(), Some(&b"one"[..]));
        assert!(!b.store.kv_set_nx("a", b"two", None).await.unwrap());
        assert_eq!(b.store.kv_get("a").await.unwrap().as_deref(), Some(&b"one"[..]));
        assert!(b.store.kv_delete("a").await.unwrap());
        assert!(!b.store.kv_delete("a").await.unwrap());
        assert!(b.store.kv_set_nx("a", b"three", None).await.unwrap());

        b.store.kv_set("short", b"x", Some(Duration::from_millis(150))).await.unwrap();
        assert!(b.store.kv_get("short").await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(b.store.kv_get("short").await.unwrap(), None, "expired values vanish");
        assert!(b.store.kv_set_nx("short", b"y", None).await.unwrap(), "an expired key counts as absent");
    }

    pub async fn oversized_and_empty_input_is_refused_and_writes_nothing(b: Backend) {
        let big = vec![0u8; gateway::store::MAX_VALUE_BYTES + 1];
        assert!(matches!(b.store.kv_set("big", &big, None).await, Err(StoreError::Invalid(_))));
        assert_eq!(b.store.kv_get("big").await.unwrap(), None);
        assert!(matches!(b.store.kv_get("").await, Err(StoreError::Invalid(_))));
        let dup = req("r", 1, vec![scope("s", 10), scope("s", 10)]);
        assert!(matches!(b.store.reserve(&dup).await, Err(StoreError::Invalid(_))));
        assert!(matches!(b.store.reserve(&req("r", -1, vec![scope("s", 10)])).await, Err(StoreError::Invalid(_))));
        assert_eq!(b.store.usage(&scope("s", 10)).await.unwrap(), 0);
        let mut bad = task("bad|id", "p", "o", "m", 1);
        assert!(matches!(b.store.task_insert(&bad).await, Err(StoreError::Invalid(_))));
        bad.id = "v0".into();
        bad.version = 0;
        assert!(matches!(b.store.task_insert(&bad).await, Err(StoreError::Invalid(_))));
        assert_eq!(b.store.task_counts().await.unwrap().total, 0);
    }

    pub async fn counters_are_exact_under_200_racing_adds(b: Backend) {
        let mut handles = Vec::new();
        for i in 0..200 {
            let s = if i % 2 == 0 { b.store.clone() } else { b.peer.clone() };
            handles.push(tokio::spawn(async move { s.counter_add("hits", 3, None).await.unwrap() }));
        }
        let mut results = Vec::new();
        for h in handles {
            results.push(h.await.unwrap());
        }
        results.sort();
        let expected: Vec<i64> = (1..=200).map(|i| i * 3).collect();
        assert_eq!(results, expected, "every add saw a distinct value: none lost, none doubled");
        assert_eq!(b.store.counter_get("hits").await.unwrap(), 600);
    }

    pub async fn counter_ttl_starts_with_the_counter(b: Backend) {
        assert_eq!(b.store.counter_add("alerts", 1, Some(Duration::from_millis(300))).await.unwrap(), 1);
        tokio::time::sleep(Duration::from_millis(150)).await;
        // A later add must not push the window's end out.
        assert_eq!(b.store.counter_add("alerts", 1, Some(Duration::from_millis(300))).await.unwrap(), 2);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(b.store.counter_get("alerts").await.unwrap(), 0, "the window ended 300 ms after its first add");
        assert_eq!(b.store.counter_add("alerts", 1, Some(Duration::from_millis(300))).await.unwrap(), 1);
    }

    pub async fn log_is_numbered_paged_newest_first_and_bounded(b: Backend) {
        for i in 1..=7u64 {
            let entry = format!("entry {i} | with a bar");
            assert_eq!(b.store.log_append("audit", entry.as_bytes(), 5).await.unwrap(), i);
        }
        let page = b.peer.log_read("audit", None, 3).await.unwrap();
        let seqs: Vec<u64> = page.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![7, 6, 5], "newest first");
        assert_eq!(page[0].data, b"entry 7 | with a bar".to_vec(), "the entry comes back byte for byte");
        let rest = b.store.log_read("audit", Some(5), 10).await.unwrap();
        let seqs: Vec<u64> = rest.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![4, 3], "only the newest 5 are kept; the page continues below 5");
        assert!(b.store.log_read("other", None, 10).await.unwrap().is_empty(), "logs are separate");
        assert!(matches!(b.store.log_read("audit", None, 0).await, Err(StoreError::Invalid(_))));
        assert!(matches!(b.store.log_append("audit", b"x", 0).await, Err(StoreError::Invalid(_))));
        assert_eq!(b.store.log_read("audit", None, 100).await.unwrap().len(), 5, "refused appends wrote nothing");
    }

    pub async fn racing_log_appends_get_distinct_numbers(b: Backend) {
        let mut handles = Vec::new();
        for i in 0..100 {
            let s = if i % 2 == 0 { b.store.clone() } else { b.peer.clone() };
            handles.push(tokio::spawn(async move { s.log_append("race", format!("{i}").as_bytes(), 1000).await.unwrap() }));
        }
        let mut seqs = Vec::new();
        for h in handles {
            seqs.push(h.await.unwrap());
        }
        seqs.sort();
        assert_eq!(seqs, (1..=100).collect::<Vec<u64>>(), "none lost, none doubled");
        assert_eq!(b.store.log_read("race", None, 1000).await.unwrap().len(), 100);
    }

    pub async fn reservation_is_all_or_nothing_across_scopes(b: Backend) {
        let team = scope("budget:team", 200);
        let day = Scope { key: "budget:day".into(), limit: 100, window: Some(Duration::from_secs(86_400)) };
        let project = scope("budget:project", 120);
        let scopes = vec![team.clone(), day.clone(), project.clone()];
        assert_eq!(b.store.reserve(&req("a", 40, scopes.clone())).await.unwrap(), ReserveOutcome::Reserved);
        assert_eq!(b.store.reserve(&req("b", 40, scopes.clone())).await.unwrap(), ReserveOutcome::Reserved);
        // 40 more would break the day scope (index 1): refused, and no scope moved.
        match b.store.reserve(&req("c", 40, scopes.clone())).await.unwrap() {
            ReserveOutcome::Refused(r) => {
                assert_eq!((r.scope, r.key.as_str(), r.used, r.limit), (1, "budget:day", 80, 100));
                let retry = r.retry_after.expect("a window says when to retry");
                assert!(retry <= Duration::from_secs(86_400) && retry > Duration::from_secs(86_000));
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(b.store.usage(&team).await.unwrap(), 80);
        assert_eq!(b.store.usage(&day).await.unwrap(), 80);
        assert_eq!(b.store.usage(&project).await.unwrap(), 80);
        // An amount over a scope's limit alone never fits: no retry time.
        match b.store.reserve(&req("d", 101, vec![day.clone()])).await.unwrap() {
            ReserveOutcome::Refused(r) => assert_eq!(r.retry_after, None),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    pub async fn reservation_is_idempotent_and_settles_once(b: Backend) {
        let total = scope("spend:total", 1_000);
        let day = Scope { key: "spend:day".into(), limit: 1_000, window: Some(Duration::from_secs(3600)) };
        let r = req("task-1", 300, vec![total.clone(), day.clone()]);
        assert_eq!(b.store.reserve(&r).await.unwrap(), ReserveOutcome::Reserved);
        assert_eq!(b.peer.reserve(&r).await.unwrap(), ReserveOutcome::AlreadyHeld, "a repeated reserve must not double");
        assert_eq!(b.store.usage(&total).await.unwrap(), 300);
        // The task cost 120 in the end.
        assert!(b.store.settle("task-1", 120).await.unwrap());
        assert_eq!(b.store.usage(&total).await.unwrap(), 120);
        assert_eq!(b.store.usage(&day).await.unwrap(), 120);
        assert!(!b.peer.settle("task-1", 0).await.unwrap(), "settling twice changes nothing");
        assert_eq!(b.store.usage(&total).await.unwrap(), 120);
        // A failed task releases everything.
        b.store.reserve(&req("task-2", 500, vec![total.clone(), day.clone()])).await.unwrap();
        assert!(b.store.settle("task-2", 0).await.unwrap());
        assert_eq!(b.store.usage(&total).await.unwrap(), 120);
        assert_eq!(b.store.usage(&day).await.unwrap(), 120);
        assert!(!b.store.settle("never-reserved", 10).await.unwrap());
    }

    async fn race(stores: [Arc<dyn Store>; 2], n: usize, limit: i64) -> usize {
        let mut handles = Vec::new();
        for i in 0..n {
            let s = stores[i % 2].clone();
            let scopes = vec![
                scope("race:project", limit * 7),
                Scope { key: "race:day".into(), limit, window: Some(Duration::from_secs(60)) },
                scope("race:team", limit),
            ];
            handles.push(tokio::spawn(async move { s.reserve(&req(&format!("job-{i}"), 7, scopes)).await.unwrap() }));
        }
        let mut reserved = 0;
        for h in handles {
            if h.await.unwrap() == ReserveOutcome::Reserved {
                reserved += 1;
            }
        }
        reserved
    }

    pub async fn racing_reservations_admit_exactly_the_limit(b: Backend) {
        // 200 tasks of 7 race a team limit of 7 * 137: exactly 137 fit.
        let reserved = race([b.store.clone(), b.store.clone()], 200, 7 * 137).await;
        assert_eq!(reserved, 137);
        assert_eq!(b.store.usage(&scope("race:team", 0)).await.unwrap(), 7 * 137);
    }

    pub async fn racing_reservations_from_two_instances_admit_exactly_the_limit(b: Backend) {
        let reserved = race([b.store.clone(), b.peer.clone()], 200, 7 * 61).await;
        assert_eq!(reserved, 61);
        let day = Scope { key: "race:day".into(), limit: 0, window: Some(Duration::from_secs(60)) };
        assert_eq!(b.peer.usage(&day).await.unwrap(), 7 * 61);
    }

    pub async fn window_admits_n_then_says_when_to_retry(b: Backend) {
        let w = Scope { key: "rate:kie".into(), limit: 5, window: Some(Duration::from_millis(600)) };
        let ttl = Some(Duration::from_millis(600));
        for i in 0..5 {
            let r = ReserveRequest { id: format!("s{i}"), amount: 1, scopes: vec![w.clone()], hold_ttl: ttl };
            assert_eq!(b.store.reserve(&r).await.unwrap(), ReserveOutcome::Reserved);
        }
        let sixth = ReserveRequest { id: "s5".into(), amount: 1, scopes: vec![w.clone()], hold_ttl: ttl };
        let retry = match b.peer.reserve(&sixth).await.unwrap() {
            ReserveOutcome::Refused(r) => {
                assert_eq!((r.used, r.limit), (5, 5));
                r.retry_after.expect("window refusal carries a retry time")
            }
            other => panic!("sixth request in the window must be refused, got {other:?}"),
        };
        assert!(retry <= Duration::from_millis(600), "retry {retry:?} within the window");
        assert_eq!(b.store.usage(&w).await.unwrap(), 5);
        tokio::time::sleep(retry + Duration::from_millis(30)).await;
        assert_eq!(b.store.reserve(&sixth).await.unwrap(), ReserveOutcome::Reserved, "admitted once the oldest aged out");
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(b.store.usage(&w).await.unwrap(), 0, "a window forgets what is older than itself");
    }

    pub async fn window_settle_to_zero_frees_the_slot(b: Backend) {
        // A concurrency-style window slot released early (e.g. task ended).
        let w = Scope { key: "tpm".into(), limit: 1_000, window: Some(Duration::from_secs(60)) };
        b.store.reserve(&ReserveRequest { id: "q1".into(), amount: 800, scopes: vec![w.clone()], hold_ttl: None }).await.unwrap();
        assert!(b.store.settle("q1", 350).await.unwrap(), "actual tokens known");
        assert_eq!(b.store.usage(&w).await.unwrap(), 350);
        b.store.reserve(&ReserveRequest { id: "q2".into(), amount: 600, scopes: vec![w.clone()], hold_ttl: None }).await.unwrap();
        assert_eq!(b.store.usage(&w).await.unwrap(), 950);
        assert!(b.store.settle("q2", 0).await.unwrap());
        assert_eq!(b.store.usage(&w).await.unwrap(), 350);
    }

    pub async fn leases_have_one_holder_and_expire(b: Backend) {
        let ttl = Duration::from_millis(250);
        assert!(b.store.lease_acquire("poller", "a", ttl).await.unwrap());
        assert!(!b.peer.lease_acquire("poller", "b", ttl).await.unwrap());
        assert!(b.store.lease_acquire("poller", "a", ttl).await.unwrap(), "the holder renews");
        assert!(!b.peer.lease_release("poller", "b").await.unwrap(), "only the holder releases");
        assert!(b.store.lease_release("poller", "a").await.unwrap());
        assert!(b.peer.lease_acquire("poller", "b", ttl).await.unwrap());
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(b.store.lease_acquire("poller", "a", ttl).await.unwrap(), "an expired lease is free");
    }

    pub async fn racing_lease_has_one_winner(b: Backend) {
        let mut handles = Vec::new();
        for i in 0..40 {
            let s = if i % 2 == 0 { b.store.clone() } else { b.peer.clone() };
            handles.push(tokio::spawn(async move { s.lease_acquire("retention", &format!("worker-{i}"), Duration::from_secs(30)).await.unwrap() }));
        }
        let mut winners = 0;
        for h in handles {
            winners += h.await.unwrap() as usize;
        }
        assert_eq!(winners, 1);
    }

    pub async fn events_reach_subscribers_in_order_across_instances(b: Backend) {
        let mut sub = b.store.subscribe("tasks").await.unwrap();
        let mut other = b.store.subscribe("other").await.unwrap();
        for i in 0..50 {
            b.peer.publish("tasks", format!("event-{i}").as_bytes()).await.unwrap();
        }
        b.peer.publish("other", b"x").await.unwrap();
        for i in 0..50 {
            let got = tokio::time::timeout(Duration::from_secs(5), sub.next()).await.expect("event within 5 s").expect("stream open");
            assert_eq!(got, format!("event-{i}").into_bytes());
        }
        let got = tokio::time::timeout(Duration::from_secs(5), other.next()).await.unwrap().unwrap();
        assert_eq!(got, b"x", "channels are separate");
    }
}

/// Embedded only: what was written survives a restart, and a second process is refused.
mod embedded_only {
    use super::*;

    #[tokio::test]
    async fn expired_rows_are_purged_while_running() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open_with(dir.path(), Duration::from_millis(100)).unwrap();
        for i in 0..50 {
            // Long enough that all 50 are written and counted before any expires, even on a
            // loaded machine (20 ms was not).
            s.kv_set(&format!("replay:{i}"), b"x", Some(Duration::from_millis(1500))).await.unwrap();
        }
        s.kv_set("keep", b"v", None).await.unwrap();
        assert_eq!(s.kv_rows().await.unwrap(), 51);
        tokio::time::sleep(Duration::from_millis(1800)).await;
        // Any write gives the purge its turn; nothing else is needed.
        s.counter_add("tick", 1, None).await.unwrap();
        assert_eq!(s.kv_rows().await.unwrap(), 1, "expired rows are gone from the file, not only invisible");
        assert_eq!(s.kv_get("keep").await.unwrap().as_deref(), Some(&b"v"[..]));
    }

    #[tokio::test]
    async fn everything_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = EmbeddedStore::open(dir.path()).unwrap();
            s.task_insert(&task("keep", "p", "o", "m", 7)).await.unwrap();
            s.counter_add("n", 5, None).await.unwrap();
            s.reserve(&req("held", 9, vec![scope("b", 100)])).await.unwrap();
            s.kv_set("k", b"v", None).await.unwrap();
        }
        let s = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(s.task_get("keep").await.unwrap().map(|t| t.project), Some("p".to_string()));
        assert_eq!(s.counter_get("n").await.unwrap(), 5);
        assert_eq!(s.kv_get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(s.usage(&scope("b", 100)).await.unwrap(), 9);
        assert!(s.settle("held", 0).await.unwrap(), "a hold made before the restart can still be settled");
        assert_eq!(s.usage(&scope("b", 100)).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn task_counts_are_kept_and_a_store_from_before_them_is_counted_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = EmbeddedStore::open(dir.path()).unwrap();
            for i in 0..30u64 {
                s.task_insert(&task(&format!("t{i}"), "p", "o", "m", 100 + i)).await.unwrap();
            }
            let mut t = s.task_get("t3").await.unwrap().unwrap();
            t.state = TaskState::Success;
            s.task_update(&t).await.unwrap();
            let t = s.task_get("t4").await.unwrap().unwrap();
            assert!(s.task_delete("t4", t.version).await.unwrap());
        }
        // The file as an older console left it: tasks and their index, no counts.
        {
            let db = redb::Database::create(dir.path().join("control-room.redb")).unwrap();
            let tx = db.begin_write().unwrap();
            assert!(tx.delete_table(redb::TableDefinition::<&str, u64>::new("index_sizes")).unwrap(), "the counts were kept");
            tx.commit().unwrap();
        }
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let counts = s.task_counts().await.unwrap();
        assert_eq!((counts.total, counts.get(TaskState::Queued), counts.get(TaskState::Success)), (29, 28, 1));
    }

    #[tokio::test]
    async fn a_data_dir_in_use_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let _first = EmbeddedStore::open(dir.path()).unwrap();
        let err = EmbeddedStore::open(dir.path()).err().expect("second open must fail");
        assert!(err.to_string().contains("in use by another process"), "{err}");
    }
}

/// Redis only: a bad URL and an unreachable server fail with a clear error, not a hang.
mod redis_only {
    use super::*;

    #[tokio::test]
    async fn unreachable_redis_is_a_clear_error() {
        let port = testkit::free_port();
        let err = RedisStore::connect(&format!("redis://127.0.0.1:{port}/"), "x:").await.err().expect("nothing listens there");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        let err = RedisStore::connect("not a url", "x:").await.err().expect("malformed URL");
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    }
}
