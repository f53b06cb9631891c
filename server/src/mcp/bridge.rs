//! `control-room mcp`: the Control Room's MCP server on standard input and output, for a
//! desktop agent that starts its servers as programs (Claude Desktop, Cursor, Codex). It holds
//! nothing itself: each message the agent writes (one JSON-RPC message a line, MCP's stdio
//! transport) is posted to a running console's `/mcp` (`CONTROL_ROOM_URL`, with the relay key
//! in `CONTROL_ROOM_KEY`), and each message the console answers with — a JSON body, or the
//! events of an SSE stream, or the session's own stream of notifications — is written back a
//! line each. So the agent meets the same tools, caps and audit as over HTTP.
//!
//! Messages are relayed as they are (never parsed as MCP: the protocol is the console's); a
//! failure to reach the console is answered to the request it concerns as a JSON-RPC error
//! that says what to fix.

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Longest line accepted from the agent.
const MAX_LINE: usize = 4 << 20;
/// Longest SSE event accepted from the console.
const MAX_EVENT: usize = 16 << 20;

/// `control-room mcp`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct McpArgs {
    /// The running console's address (its PUBLIC_URL, e.g. https://control-room.example.com).
    #[arg(long, env = "CONTROL_ROOM_URL")]
    pub url: String,
    /// A relay key (control-room key create): the agent spends under its caps.
    #[arg(long, env = "CONTROL_ROOM_KEY", hide_env_values = true)]
    pub key: String,
}

/// What the relay shares between the agent's messages.
struct Link {
    http: reqwest::Client,
    endpoint: String,
    key: String,
    session: tokio::sync::RwLock<Option<String>>,
    out: mpsc::UnboundedSender<String>,
}

/// Relays until the agent closes standard input, then ends the session.
pub async fn run(args: McpArgs) -> Result<(), String> {
    let base = url::Url::parse(args.url.trim()).map_err(|e| format!("CONTROL_ROOM_URL is not a URL: {e}"))?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err("CONTROL_ROOM_URL must be an http(s) address".into());
    }
    if args.key.trim().is_empty() {
        return Err("CONTROL_ROOM_KEY is empty: give a relay key (control-room key create)".into());
    }
    let endpoint = format!("{}{}", base.as_str().trim_end_matches('/'), super::PATH);
    let http = reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(10)).build().map_err(|e| e.to_string())?;
    let (out, mut lines) = mpsc::unbounded_channel::<String>();
    let link = std::sync::Arc::new(Link { http, endpoint, key: args.key.trim().to_string(), session: Default::default(), out });
    // One writer: whole lines, in the order they are ready.
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(line) = lines.recv().await {
            if stdout.write_all(line.as_bytes()).await.is_err() || stdout.write_all(b"\n").await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let mut line = String::new();
    let mut inflight = tokio::task::JoinSet::new();
    loop {
        line.clear();
        let read = (&mut stdin).take(MAX_LINE as u64 + 1).read_line(&mut line).await.map_err(|e| e.to_string())?;
        if read == 0 {
            break;
        }
        if line.len() > MAX_LINE {
            return Err(format!("a message from the agent is over {MAX_LINE} bytes"));
        }
        let message = line.trim();
        if message.is_empty() {
            continue;
        }
        let (link, message) = (link.clone(), message.to_string());
        // Requests run side by side (a `wait` holds its answer for minutes); `initialize`
        // and notifications in order, since what follows them needs them done.
        if runs_alone(&message) {
            post(&link, message).await;
        } else {
            inflight.spawn(async move { post(&link, message).await });
        }
        while inflight.try_join_next().is_some() {}
    }
    inflight.join_all().await;
    if let Some(id) = link.session.read().await.clone() {
        let _ = link.http.delete(&link.endpoint).bearer_auth(&link.key).header("mcp-session-id", id).send().await;
    }
    drop(link);
    let _ = writer.await;
    Ok(())
}

/// `initialize`, a notification or an answer: relayed before the next message is read.
fn runs_alone(message: &str) -> bool {
    serde_json::from_str::<Value>(message).is_ok_and(|v| v.get("method").and_then(Value::as_str) == Some("initialize") || v.get("id").is_none() || v.get("method").is_none())
}

/// Posts one message and relays what the console answers with.
async fn post(link: &Link, message: String) {
    let id = serde_json::from_str::<Value>(&message).ok().and_then(|v| v.get("id").cloned());
    let mut req = link
        .http
        .post(&link.endpoint)
        .bearer_auth(&link.key)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(reqwest::header::ACCEPT, "application/json, text/event-stream");
    let known = link.session.read().await.clone();
    if let Some(s) = &known {
        req = req.header("mcp-session-id", s);
    }
    let resp = match req.body(message).send().await {
        Ok(r) => r,
        Err(e) => return fail(link, id, format!("cannot reach the Control Room at {}: {}", link.endpoint, e.without_url())),
    };
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        let hint = match status.as_u16() {
            401 => " (CONTROL_ROOM_KEY is not a valid relay key)",
            404 => " (the session ended: restart the agent's MCP server)",
            _ => "",
        };
        return fail(link, id, format!("the Control Room answered {status}: {}{hint}", text.trim()));
    }
    if known.is_none()
        && let Some(s) = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok())
    {
        *link.session.write().await = Some(s.to_string());
        // The session's own stream: notifications not tied to a request (a watched task ended).
        let (http, endpoint, key, session, out) = (link.http.clone(), link.endpoint.clone(), link.key.clone(), s.to_string(), link.out.clone());
        tokio::spawn(async move {
            let got = http.get(&endpoint).bearer_auth(&key).header("mcp-session-id", session).header(reqwest::header::ACCEPT, "text/event-stream").send().await;
            if let Ok(r) = got.and_then(reqwest::Response::error_for_status) {
                relay_events(r, &out).await;
            }
        });
    }
    let sse = resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/event-stream"));
    if sse {
        relay_events(resp, &link.out).await;
    } else if let Ok(body) = resp.bytes().await
        && let Ok(v) = serde_json::from_slice::<Value>(&body)
    {
        let _ = link.out.send(v.to_string());
    }
}

/// Writes the `data` of each event of an SSE stream as one line.
async fn relay_events(resp: reqwest::Response, out: &mpsc::UnboundedSender<String>) {
    let mut stream = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(Ok(chunk)) = stream.next().await {
        buf.extend_from_slice(&chunk);
        while let Some(end) = event_end(&buf) {
            let event: Vec<u8> = buf.drain(..end.1).collect();
            let text = String::from_utf8_lossy(&event[..end.0]);
            let data: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| d.strip_prefix(' ').unwrap_or(d)).collect();
            if let Ok(v) = serde_json::from_str::<Value>(&data.join("\n")) {
                let _ = out.send(v.to_string());
            }
        }
        if buf.len() > MAX_EVENT {
            return;
        }
    }
}

/// Where the first whole event ends: (its length, with the blank line after it).
fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2));
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, i + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Tells the agent a request could not be relayed (a notification's failure is only logged).
fn fail(link: &Link, id: Option<Value>, msg: String) {
    tracing::warn!("{msg}");
    if let Some(id) = id {
        let _ = link.out.send(json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32000, "message": msg}}).to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_end_at_a_blank_line_of_either_kind() {
        assert_eq!(event_end(b"data: 1\n\ndata: 2"), Some((7, 9)));
        assert_eq!(event_end(b"data: 1\r\n\r\n"), Some((7, 11)));
        assert_eq!(event_end(b"data: 1\n"), None);
    }

    #[test]
    fn requests_run_side_by_side_and_the_rest_in_order() {
        assert!(runs_alone(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#));
        assert!(runs_alone(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#));
        assert!(runs_alone(r#"{"jsonrpc":"2.0","id":7,"result":{}}"#));
        assert!(!runs_alone(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call"}"#));
        assert!(!runs_alone("not json"));
    }
}
