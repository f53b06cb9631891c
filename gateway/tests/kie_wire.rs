//! KIE's wire formats: every example in KIE-API.md parses to what it says, every documented
//! variant is accepted, and no input (arbitrary bytes, arbitrary JSON) makes a parser panic.

use gateway::Credits;
use gateway::kie::wire::{CreateTaskData, Envelope, KieState, RecordInfo, credit_balance};
use gateway::kie::{ApiFamily, KieError, MarketJobs, UpstreamState};
use proptest::prelude::*;
use serde_json::{Value, json};

#[test]
fn documented_create_task_response_parses() {
    let body = r#"{"code":200,"msg":"success","data":{"taskId":"task_kling-2.6_1765182405025"}}"#;
    let env: Envelope<Value> = serde_json::from_str(body).unwrap();
    assert_eq!(env.code, 200);
    assert_eq!(MarketJobs.parse_created(env.data.unwrap()).unwrap(), "task_kling-2.6_1765182405025");
    // Live responses add recordId; older shapes say task_id.
    let live: CreateTaskData = serde_json::from_value(json!({"taskId": "a", "recordId": "a"})).unwrap();
    assert_eq!(live.task_id, "a");
    let snake: CreateTaskData = serde_json::from_value(json!({"task_id": "b"})).unwrap();
    assert_eq!(snake.task_id, "b");
}

#[test]
fn documented_record_info_parses_with_strings_inside() {
    let body = r#"{"code":200,"msg":"success","data":{
      "taskId":"32b1348d0d6bf09b002a88315528e574","model":"nano-banana-2","state":"success",
      "param":"{\"model\":\"nano-banana-2\",\"callBackUrl\":\"...\",\"input\":{}}",
      "resultJson":"{\"resultUrls\":[\"https://tempfile.aiquickdraw.com/na2/x.jpeg\"]}",
      "failCode":null,"failMsg":null,"costTime":274,
      "completeTime":1774509366025,"createTime":1774509092129}}"#;
    let env: Envelope<RecordInfo> = serde_json::from_str(body).unwrap();
    let info = env.data.unwrap();
    assert_eq!(info.state, KieState::Success);
    assert_eq!(info.result().result_urls, vec!["https://tempfile.aiquickdraw.com/na2/x.jpeg"]);
    assert_eq!(info.fail_code, None);
    assert_eq!(info.cost_time, Some(274.0));
    assert_eq!(info.update_time, None, "updateTime may be missing");
    assert!(info.param.unwrap().contains("nano-banana-2"));
}

#[test]
fn documented_variants_are_all_accepted() {
    // message instead of msg.
    let env: Envelope<Value> = serde_json::from_str(r#"{"code":401,"message":"You do not have access permissions"}"#).unwrap();
    assert_eq!(KieError::from_code(env.code, env.msg), KieError::Auth("You do not have access permissions".into()));
    // failed, "" fail fields, consumeCredits, task_id, numeric failCode, text results.
    let info: RecordInfo = serde_json::from_value(json!({
        "task_id": "t", "state": "failed", "failCode": "", "failMsg": "", "consumeCredits": "12.5",
        "resultJson": "{\"resultObject\":{\"text\":\"hi\"}}"
    }))
    .unwrap();
    assert_eq!((info.state.clone(), info.fail_code.clone(), info.fail_msg.clone()), (KieState::Fail, None, None));
    assert_eq!(info.credits(), Some(Credits::from_decimal(12.5).unwrap()));
    assert_eq!(info.result().result_object, Some(json!({"text": "hi"})));
    let info: RecordInfo = serde_json::from_value(json!({"taskId": "t", "state": "fail", "failCode": 500, "failMsg": "Internal error", "creditsConsumed": 0})).unwrap();
    assert_eq!(info.fail_code.as_deref(), Some("500"));
    // Video extras.
    let info: RecordInfo = serde_json::from_value(json!({"taskId": "v", "state": "success",
        "resultJson": "{\"resultUrls\":[\"https://x/v.mp4\"],\"firstFrameUrl\":\"https://x/f.jpg\",\"lastFrameUrl\":\"https://x/l.jpg\"}"})).unwrap();
    assert_eq!(info.result().first_frame_url.as_deref(), Some("https://x/f.jpg"));
}

#[test]
fn documented_callback_parses_through_the_market_adapter() {
    let body = json!({"code": 501, "msg": "Playground task failed.", "data": {
        "taskId": "task_9", "model": "veo3", "state": "fail", "param": "{}", "resultJson": "",
        "failCode": "422", "failMsg": "content policy", "costTime": 3, "completeTime": 1, "createTime": 0,
        "updateTime": 1, "creditsConsumed": 0}});
    let st = MarketJobs.parse_callback(body.to_string().as_bytes()).unwrap();
    assert_eq!((st.task_id.as_str(), st.state), ("task_9", UpstreamState::Fail));
    assert_eq!(st.fail_msg.as_deref(), Some("content policy"));
    assert!(st.result_urls.is_empty());
}

#[test]
fn credit_balance_may_be_fractional() {
    let env: Envelope<Value> = serde_json::from_str(r#"{"code":200,"msg":"success","data":72.62}"#).unwrap();
    assert_eq!(credit_balance(&env.data.unwrap()), Some(Credits::from_decimal(72.62).unwrap()));
    assert_eq!(credit_balance(&json!(100)), Some(Credits::from_credits(100)));
    assert_eq!(credit_balance(&json!(null)), None);
}

#[test]
fn every_body_code_has_its_own_error() {
    let codes = [(400, "BadRequest"), (401, "Auth"), (402, "InsufficientCredits"), (404, "NotFound"), (422, "Validation"),
        (429, "RateLimited"), (433, "SubKeyLimit"), (455, "Maintenance"), (500, "Upstream"), (501, "GenerationFailed"), (505, "FeatureDisabled")];
    for (code, name) in codes {
        let e = KieError::from_code(code, Some("m".into()));
        assert!(format!("{e:?}").starts_with(name), "{code} -> {e:?}");
        assert_eq!(e.code(), Some(code));
    }
    assert!(KieError::from_code(455, None).is_transient());
    assert!(!KieError::from_code(402, None).is_transient());
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![Just("success"), Just("failed"), Just("waiting"), Just("")].prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![Just("code".to_string()), Just("msg".to_string()), Just("data".to_string()), Just("taskId".to_string()),
                    Just("state".to_string()), Just("resultJson".to_string()), Just("failCode".to_string()), Just("creditsConsumed".to_string()), ".{0,6}".prop_map(|s| s)],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Cases per property: `PROPTEST_CASES` when set (a longer run on demand), else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(2000)))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = serde_json::from_slice::<Envelope<RecordInfo>>(&bytes);
        let _ = MarketJobs.parse_callback(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(v in arb_json()) {
        let _ = MarketJobs.parse_status(v.clone());
        let _ = MarketJobs.parse_created(v.clone());
        let _ = credit_balance(&v);
        let _ = MarketJobs.parse_callback(v.to_string().as_bytes());
        if let Ok(info) = serde_json::from_value::<RecordInfo>(v) {
            let _ = info.result();
            let _ = info.credits();
        }
    }
}
