//! A client for the console's live event stream (`GET /events`, Server-Sent Events), for tests
//! and benchmarks: reads events one by one over a real HTTP connection.

use std::time::Duration;

/// One event: its id, its kind (`task`, `reset`) and its data (JSON if it parses).
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: u64,
    pub kind: String,
    pub data: serde_json::Value,
}

pub struct SseClient {
    resp: reqwest::Response,
    buf: String,
}

impl SseClient {
    /// Opens `{base}/events`, resuming after `last_id` if given. Panics unless it is an event
    /// stream (this is test support).
    pub async fn open(http: &reqwest::Client, base: &str, last_id: Option<u64>) -> SseClient {
        let mut req = http.get(format!("{base}/events"));
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let resp = req.send().await.expect("GET /events");
        assert_eq!(resp.status(), 200, "GET /events");
        let ctype = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        assert!(ctype.starts_with("text/event-stream"), "content-type {ctype}");
        SseClient { resp, buf: String::new() }
    }

    /// The next event, or `None` if none came within `wait` or the stream ended.
    pub async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                if let Some(e) = parse(&block) {
                    return Some(e);
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk()).await.ok()?.ok()??;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// One SSE block; `None` for a comment-only block (keep-alive).
fn parse(block: &str) -> Option<SseEvent> {
    let (mut id, mut kind, mut data) = (0, String::new(), String::new());
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("id:") {
            id = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("event:") {
            kind = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    if kind.is_empty() {
        return None;
    }
    let data = serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data));
    Some(SseEvent { id, kind, data })
}
