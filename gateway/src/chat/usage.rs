//! The tokens of a chat call. KIE's answer carries OpenAI's `usage` (`prompt_tokens`,
//! `completion_tokens`) where the model reports it: in the answer, or in the last chunk of a
//! stream. When it gives none, the console counts about four characters a token (the prompt's
//! text, and the answer's as it arrived) and marks the counts as estimated.

use serde_json::Value;

/// Longest SSE line kept while looking for `usage` (a longer one is passed on, not read).
const MAX_LINE: usize = 1 << 20;

/// About four characters a token.
pub fn tokens_of_chars(chars: usize) -> u64 {
    (chars as u64).div_ceil(4)
}

fn text_of(content: &Value) -> usize {
    match content {
        Value::String(s) => s.chars().count(),
        Value::Array(parts) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).map(|t| t.chars().count()).sum(),
        _ => 0,
    }
}

/// The prompt's tokens as this console estimates them: its messages' text.
pub fn estimate_prompt_tokens(body: &Value) -> u64 {
    let chars = body.get("messages").and_then(Value::as_array).map(|m| m.iter().map(|m| text_of(&m["content"])).sum()).unwrap_or(0);
    tokens_of_chars(chars).max(1)
}

/// `usage` as (prompt, completion) tokens, when an answer or chunk has it.
pub fn usage_of(v: &Value) -> Option<(u64, u64)> {
    let u = v.get("usage")?;
    Some((u.get("prompt_tokens")?.as_u64()?, u.get("completion_tokens")?.as_u64()?))
}

/// The characters of a plain answer's text.
pub fn answer_chars(v: &Value) -> usize {
    v.get("choices").and_then(Value::as_array).map(|c| c.iter().map(|c| text_of(&c["message"]["content"])).sum()).unwrap_or(0)
}

/// Reads a stream as it passes: the last `usage` seen, the answer's characters so far, and
/// whether `data: [DONE]` came. Bytes are never changed; lines may be split across chunks.
#[derive(Debug, Default)]
pub struct StreamScan {
    line: Vec<u8>,
    skipping: bool,
    pub usage: Option<(u64, u64)>,
    pub chars: usize,
    pub done: bool,
    /// The answer's text that arrived since [`StreamScan::take_text`] was last called.
    text: String,
}

impl StreamScan {
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                if !self.skipping {
                    let line = std::mem::take(&mut self.line);
                    self.read_line(&line);
                }
                self.line.clear();
                self.skipping = false;
            } else if self.line.len() >= MAX_LINE {
                self.skipping = true;
                self.line.clear();
            } else if !self.skipping {
                self.line.push(b);
            }
        }
    }

    fn read_line(&mut self, line: &[u8]) {
        let Some(data) = line.strip_prefix(b"data:") else { return };
        let data = data.trim_ascii();
        if data == b"[DONE]" {
            self.done = true;
            return;
        }
        let Ok(chunk) = serde_json::from_slice::<Value>(data) else { return };
        if let Some(u) = usage_of(&chunk) {
            self.usage = Some(u);
        }
        if let Some(choices) = chunk.get("choices").and_then(Value::as_array) {
            for c in choices {
                if let Some(t) = c["delta"]["content"].as_str() {
                    self.chars += t.chars().count();
                    self.text.push_str(t);
                }
            }
        }
    }

    /// The answer's text that arrived since the last call.
    pub fn take_text(&mut self) -> String {
        std::mem::take(&mut self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_stream_is_read_across_any_split_and_its_last_usage_kept() {
        let stream = concat!(
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hello \"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"wörld\"}}]}\n\n",
            ": a comment\n",
            "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3,\"total_tokens\":15}}\n\n",
            "data: [DONE]\n\n"
        );
        for split in [1, 2, 7, 50, stream.len()] {
            let mut scan = StreamScan::default();
            for piece in stream.as_bytes().chunks(split) {
                scan.feed(piece);
            }
            assert_eq!((scan.usage, scan.chars, scan.done), (Some((12, 3)), 11, true), "split every {split}");
            assert_eq!(scan.take_text(), "Hello wörld");
            assert_eq!(scan.take_text(), "", "taken once");
        }
        let mut partial = StreamScan::default();
        partial.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"abcd\"}}]}\n\ndata: {\"cho");
        assert_eq!((partial.usage, partial.chars, partial.done), (None, 4, false), "a cut stream: what arrived, no usage");
    }

    #[test]
    fn estimates_count_the_messages_text() {
        let body = json!({"messages": [{"role": "system", "content": "abcd"}, {"role": "user", "content": [{"type": "text", "text": "efgh"}, {"type": "image_url", "image_url": {"url": "x"}}]}]});
        assert_eq!(estimate_prompt_tokens(&body), 2);
        assert_eq!(estimate_prompt_tokens(&json!({})), 1);
        assert_eq!(usage_of(&json!({"usage": {"prompt_tokens": 5, "completion_tokens": 7}})), Some((5, 7)));
        assert_eq!(answer_chars(&json!({"choices": [{"message": {"content": "twelve chars"}}]})), 12);
    }
}
