//! Property tests with hostile input: arbitrary JSON for every price rule of the catalog, and
//! arbitrary amounts and limits for `reserve` and `settle` on both store backends. Nothing may
//! panic, wrap around or come out as a zero price; whatever is accepted stays exact.
//!
//! `PROPTEST_CASES` sets how many cases run (the test command runs the default; set it higher
//! for a longer run on demand).

use gateway::money::catalog::Catalog;
use gateway::store::{MAX_AMOUNT, ReserveOutcome, ReserveRequest, Scope, StoreError};
use gateway::{Credits, EmbeddedStore, RedisStore, Store};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Any JSON value, biased toward the shapes that broke prices: huge, negative, fractional and
/// non-finite-looking numbers, numeric strings with junk, objects and arrays.
fn hostile_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|v| json!(v)),
        any::<u64>().prop_map(|v| json!(v)),
        any::<f64>().prop_filter("JSON numbers are finite", |v| v.is_finite()).prop_map(|v| json!(v)),
        prop_oneof![Just("inf"), Just("-inf"), Just("NaN"), Just("1e300"), Just("5; x"), Just("5.0"), Just(" 10 "), Just("10"), Just("5"), Just("2K"), Just("4k"), Just("pro"), Just("")]
            .prop_map(|s| json!(s)),
        "[ -~]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array), prop::collection::btree_map("[a-z]{1,4}", inner, 0..3).prop_map(|m| json!(m))]
    })
}

/// Cases per property: `PROPTEST_CASES` when set (a longer run on demand), else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(512)))]

    #[test]
    fn every_price_rule_refuses_or_prices_above_zero(
        duration in hostile_json(),
        resolution in hostile_json(),
        quality in hostile_json(),
        mode in hostile_json(),
        drop in prop::collection::vec(any::<bool>(), 4),
    ) {
        let catalog = Catalog::builtin();
        let mut input = serde_json::Map::new();
        for (i, (k, v)) in [("duration", duration), ("resolution", resolution), ("quality", quality), ("mode", mode)].into_iter().enumerate() {
            if !drop[i] {
                input.insert(k.into(), v);
            }
        }
        let input = Value::Object(input);
        for m in catalog.models() {
            match m.estimate(&input) {
                Ok(c) => {
                    prop_assert!(c > Credits::ZERO, "{}: zero price for {input}", m.id);
                    prop_assert!(c <= Credits::from_credits(1_000_000), "{}: {c} for {input}", m.id);
                    // What was priced is one of the catalog's choices (or absent).
                    if let Some(field) = m.price.priced_by() {
                        let given = input.get(field).filter(|v| !v.is_null());
                        let choices = m.price.choices();
                        let ok = given.is_none_or(|v| {
                            let text = match v { Value::String(s) => s.trim().to_string(), other => other.to_string() };
                            choices.iter().any(|c| c.eq_ignore_ascii_case(&text))
                        });
                        prop_assert!(ok, "{}: priced {field} = {given:?}, not one of {choices:?}", m.id);
                    }
                }
                // A model no source prices is refused for every input (a per-job cap stands in).
                Err(msg) if !m.price_known() => prop_assert!(msg.contains("no known price"), "{}: {msg}", m.id),
                // A priced language model is no task: called through its chat path, by its tokens.
                Err(msg) if m.is_chat() => prop_assert!(msg.contains("is a language model: call it through"), "{}: {msg}", m.id),
                Err(msg) => prop_assert!(msg.contains("must be one of") || msg.contains("no usable price"), "{}: {msg}", m.id),
            }
        }
    }
}

/// One reservation or settlement of a generated sequence.
#[derive(Debug, Clone)]
enum Op {
    Reserve { amount: i64, limit: i64 },
    Settle { which: usize, actual: i64 },
}

fn amount() -> impl Strategy<Value = i64> {
    prop_oneof![any::<i64>(), 0..=MAX_AMOUNT, Just(MAX_AMOUNT), Just(MAX_AMOUNT + 1), Just(i64::MAX), Just(i64::MIN), -5i64..5]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        (amount(), prop_oneof![any::<i64>(), Just(i64::MAX), 0..=(4 * MAX_AMOUNT)]).prop_map(|(amount, limit)| Op::Reserve { amount, limit }),
        (0usize..8, amount()).prop_map(|(which, actual)| Op::Settle { which, actual }),
    ];
    prop::collection::vec(op, 1..24)
}

/// Runs `ops` against `store`, keeping a model of what must be held, and checks the store
/// agrees after every step.
async fn check_sequence(store: &dyn Store, ops: &[Op]) -> Result<(), TestCaseError> {
    let scope = |limit| Scope { key: "total".into(), limit, window: None };
    let mut held: Vec<(String, i64)> = Vec::new();
    let mut model = 0i64;
    for (i, op) in ops.iter().enumerate() {
        match *op {
            Op::Reserve { amount, limit } => {
                let req = ReserveRequest { id: format!("r{i}"), amount, scopes: vec![scope(limit)], hold_ttl: None };
                match store.reserve(&req).await {
                    Ok(ReserveOutcome::Reserved) => {
                        prop_assert!((0..=MAX_AMOUNT).contains(&amount) && limit >= 0);
                        prop_assert!(model + amount <= limit, "reserved past the limit: {model} + {amount} > {limit}");
                        model += amount;
                        held.push((req.id, amount));
                    }
                    Ok(ReserveOutcome::Refused(r)) => {
                        prop_assert!(model + amount > limit, "refused although it fits: {model} + {amount} <= {limit}");
                        prop_assert_eq!(r.used, model);
                    }
                    Ok(ReserveOutcome::AlreadyHeld) => prop_assert!(false, "ids are unique"),
                    Err(StoreError::Invalid(_)) => prop_assert!(!(0..=MAX_AMOUNT).contains(&amount) || limit < 0),
                    Err(e) => prop_assert!(false, "{e}"),
                }
            }
            Op::Settle { which, actual } => {
                let Some((id, amount)) = held.get(which).cloned() else { continue };
                match store.settle(&id, actual).await {
                    Ok(true) => {
                        model += actual - amount;
                        held.remove(which);
                    }
                    Ok(false) => prop_assert!(false, "a live hold was not found"),
                    Err(StoreError::Invalid(_)) => prop_assert!(!(0..=MAX_AMOUNT).contains(&actual)),
                    Err(e) => prop_assert!(false, "{e}"),
                }
            }
        }
        prop_assert!(model >= 0);
        prop_assert_eq!(store.usage(&scope(i64::MAX)).await.map_err(|e| TestCaseError::fail(e.to_string()))?, model, "after {:?}", op);
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    #[test]
    fn reserve_and_settle_never_wrap_on_the_embedded_store(ops in ops()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        runtime().block_on(check_sequence(&store, &ops))?;
    }

    #[test]
    fn reserve_and_settle_never_wrap_on_redis(ops in ops()) {
        runtime().block_on(async {
            let store = RedisStore::connect(&testkit::redis_url(), &format!("{}:", testkit::unique("prop"))).await.expect("redis");
            check_sequence(&store, &ops).await
        })?;
    }
}
