//! Callback delivery, the way KIE describes it: a POST of the recordInfo object in KIE's
//! envelope (code 200 or 501) to the task's `callBackUrl` when it ends (a model-specific
//! family's task sends its own bodies: [`crate::families`]), optional signature
//! headers, a 15-second timeout, and up to 3 retries. Faults: drop, delay, duplicate, reorder,
//! wrong signature.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::cmp::Reverse;
use std::time::Duration;

use crate::Sim;
use crate::world::epoch_ms;

/// One callback ready to send.
struct Outgoing {
    task_id: String,
    url: String,
    /// Sent in order (Suno calls back three times).
    bodies: Vec<Value>,
    hmac_key: Option<String>,
    delay: Duration,
    copies: u32,
    wrong_signature: bool,
    retries: u32,
    timeout: Duration,
}

/// Runs forever: pops tasks whose completion time has come and delivers their callbacks.
pub async fn dispatcher(sim: Sim) {
    let http = reqwest::Client::builder().user_agent("kie-sim").build().unwrap_or_default();
    loop {
        let (ready, wait) = take_due(&sim);
        for out in ready {
            tokio::spawn(deliver(sim.clone(), http.clone(), out));
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = sim.notified() => {}
        }
    }
}

/// Everything due now, and how long to sleep until the next one.
fn take_due(sim: &Sim) -> (Vec<Outgoing>, Duration) {
    let mut w = sim.world();
    let now = w.clock.now_ms();
    let mut ready = Vec::new();
    while let Some(Reverse((due, _))) = w.due.peek() {
        if *due > now {
            break;
        }
        let Some(Reverse((_, id))) = w.due.pop() else { break };
        let Some(data) = w.record_json(&id) else { continue };
        let faults = crate::world::World::task_fault_for(&w, &id);
        let chance = |percent: u8| percent > 0 && fastrand::u8(0..100) < percent;
        if faults.drop_callback || chance(faults.drop_callback_percent) {
            w.record("CALLBACK", "(dropped)", 0, Some(id), Some("fault: drop".into()));
            continue;
        }
        let bodies = if w.tasks.get(&id).is_some_and(|t| t.family != "market") {
            w.family_callbacks(&id)
        } else {
            let ok = data["state"] == "success";
            vec![json!({
                "code": if ok { 200 } else { 501 },
                "msg": if ok { "Playground task completed successfully." } else { "Playground task failed." },
                "data": data,
            })]
        };
        let Some(task) = w.tasks.get(&id) else { continue };
        let Some(url) = task.callback_url.clone() else { continue };
        let jitter = if faults.reorder_window_ms > 0 { fastrand::u64(0..=faults.reorder_window_ms) } else { 0 };
        ready.push(Outgoing {
            hmac_key: w.accounts.get(&task.key).and_then(|a| a.hmac_key.clone()),
            task_id: id,
            url,
            bodies,
            delay: Duration::from_millis(faults.callback_delay_ms + jitter),
            copies: if faults.duplicate_callback || chance(faults.duplicate_callback_percent) { 2 } else { 1 },
            wrong_signature: faults.wrong_signature,
            retries: w.settings.callback_retries,
            timeout: Duration::from_millis(w.settings.callback_timeout_ms),
        });
    }
    let wait = match w.due.peek() {
        Some(Reverse((due, _))) => w.clock.real_until(*due).min(Duration::from_millis(250)),
        None => Duration::from_millis(250),
    };
    (ready, wait)
}

pub fn sign(key: &str, task_id: &str, ts: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.as_bytes()) else { return String::new() };
    mac.update(format!("{task_id}.{ts}").as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

async fn deliver(sim: Sim, http: reqwest::Client, out: Outgoing) {
    if !out.delay.is_zero() {
        tokio::time::sleep(out.delay).await;
    }
    for body in (0..out.copies).flat_map(|_| out.bodies.iter()) {
        let mut attempt = 0;
        loop {
            let ts = (epoch_ms() / 1000).to_string();
            let mut req = http.post(&out.url).timeout(out.timeout).json(body);
            if let Some(key) = &out.hmac_key {
                let key = if out.wrong_signature { "not-the-webhook-key" } else { key.as_str() };
                req = req.header("X-Webhook-Timestamp", &ts).header("X-Webhook-Signature", sign(key, &out.task_id, &ts));
            }
            let (code, detail) = match req.send().await {
                Ok(r) => (i64::from(r.status().as_u16()), None),
                Err(e) => (0, Some(e.without_url().to_string())),
            };
            sim.world().record("CALLBACK", &out.url, code, Some(out.task_id.clone()), detail);
            if (200..300).contains(&code) || attempt >= out.retries {
                break;
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(200 * (1 << attempt))).await;
        }
    }
}
