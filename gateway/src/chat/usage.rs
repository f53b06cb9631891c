//! The tokens of a chat call. KIE's answer carries OpenAI's `usage` (`prompt_tokens`,
//! `completion_tokens`) where the model reports it: in the answer, or in the last chunk of a
//! stream; Claude's Messages API carries Anthropic's (`input_tokens`, `output_tokens`): in the
//! answer, or streamed as `message_start` (the input) and `message_delta` (the output so far);
//! the Responses API carries them too, in the answer or in its stream's `response.completed`,
//! with what KIE charged (`credits_consumed`).
//! When it gives none, the console counts about four characters a token (the prompt's text,
//! and the answer's as it arrived) and marks the counts as estimated.

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

/// The characters of a conversation's text (`messages`, or a Responses call's `input`: a list
/// of turns, or one text).
fn turns_chars(turns: Option<&Value>) -> usize {
    match turns {
        Some(Value::Array(m)) => m.iter().map(|m| text_of(&m["content"])).sum(),
        Some(Value::String(s)) => s.chars().count(),
        _ => 0,
    }
}

/// The prompt's tokens as this console estimates them: its messages' text (and a Messages
/// call's `system`, a Responses call's `input` and `instructions`).
pub fn estimate_prompt_tokens(body: &Value) -> u64 {
    let chars = turns_chars(body.get("messages")) + turns_chars(body.get("input"));
    tokens_of_chars(chars + body.get("system").map_or(0, text_of) + body.get("instructions").map_or(0, text_of)).max(1)
}

/// The text of a call's last user turn (what the Monitor shows as its prompt) and how many
/// turns it has, in `api`'s shape.
pub fn last_user_text(body: &Value, api: crate::money::catalog::ChatApi) -> (String, usize) {
    match body.get(api.turns_field()) {
        Some(Value::String(s)) => (s.clone(), 1),
        Some(Value::Array(turns)) => {
            let last = turns.iter().rev().find(|m| m["role"] == "user").map(|m| match &m["content"] {
                Value::String(s) => s.clone(),
                parts => parts.as_array().into_iter().flatten().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join(" "),
            });
            (last.unwrap_or_default(), turns.len())
        }
        _ => (String::new(), 0),
    }
}

/// What KIE said a call charged (`credits_consumed`), when it says.
pub fn charged_of(v: &Value) -> Option<crate::Credits> {
    v.get("credits_consumed").and_then(Value::as_f64).filter(|c| c.is_finite() && *c >= 0.0).and_then(crate::Credits::from_decimal)
}

/// Tokens in and out of a `usage` object, in OpenAI's words or Anthropic's.
fn tokens_in_out(u: &Value) -> (Option<u64>, Option<u64>) {
    let first = |names: [&str; 2]| names.iter().find_map(|n| u.get(*n).and_then(Value::as_u64));
    (first(["prompt_tokens", "input_tokens"]), first(["completion_tokens", "output_tokens"]))
}

/// `usage` as (prompt, completion) tokens, when an answer or chunk has it.
pub fn usage_of(v: &Value) -> Option<(u64, u64)> {
    match tokens_in_out(v.get("usage")?) {
        (Some(i), Some(o)) => Some((i, o)),
        _ => None,
    }
}

/// The characters of a plain answer's text: its choices' messages (chat completions), its
/// content blocks (Messages) or its output's (Responses).
pub fn answer_chars(v: &Value) -> usize {
    match (v.get("choices").and_then(Value::as_array), v.get("output").and_then(Value::as_array)) {
        (Some(c), _) => c.iter().map(|c| text_of(&c["message"]["content"])).sum(),
        (None, Some(out)) => out.iter().map(|o| text_of(&o["content"])).sum(),
        (None, None) => v.get("content").map_or(0, text_of),
    }
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
    /// What KIE said the call charged (a Responses stream's `credits_consumed`).
    pub charged: Option<crate::Credits>,
    /// The answer's text that arrived since [`StreamScan::take_text`] was last called.
    text: String,
    /// A Messages stream's input tokens, from its `message_start`.
    input: Option<u64>,
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
        match chunk.get("type").and_then(Value::as_str) {
            // Claude's Messages stream: the input counted at the start, the output as it grows.
            Some("message_start") => self.input = tokens_in_out(&chunk["message"]["usage"]).0,
            Some("message_delta") => {
                if let (input, Some(output)) = tokens_in_out(&chunk["usage"]) {
                    self.usage = Some((input.or(self.input).unwrap_or(0), output));
                }
            }
            Some("content_block_delta") => self.add_text(chunk["delta"]["text"].as_str()),
            Some("message_stop") => self.done = true,
            // The Responses API's stream: text deltas, then the usage and the charge at the end.
            Some("response.output_text.delta") => self.add_text(chunk["delta"].as_str()),
            Some("response.completed") => {
                self.usage = usage_of(&chunk["response"]).or(self.usage);
                self.charged = charged_of(&chunk).or_else(|| charged_of(&chunk["response"]));
            }
            _ => {
                if let Some(u) = usage_of(&chunk) {
                    self.usage = Some(u);
                }
                for c in chunk.get("choices").and_then(Value::as_array).into_iter().flatten() {
                    self.add_text(c["delta"]["content"].as_str());
                }
            }
        }
    }

    fn add_text(&mut self, t: Option<&str>) {
        if let Some(t) = t {
            self.chars += t.chars().count();
            self.text.push_str(t);
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
    fn a_responses_stream_gives_its_text_usage_and_charge() {
        let stream = concat!(
            "event: response.output_text.delta\n",
            "data: {\"type\":\"response.output_text.delta\",\"delta\":\"Hello\",\"output_index\":1}\n\n",
            "event: response.output_text.delta\n",
            "data: {\"type\":\"response.output_text.delta\",\"delta\":\" there\",\"output_index\":1}\n\n",
            "event: response.completed\n",
            "data: {\"credits_consumed\":0.49,\"response\":{\"usage\":{\"input_tokens\":4427,\"output_tokens\":137,\"total_tokens\":4564}},\"type\":\"response.completed\"}\n\n",
            "data: [DONE]\n\n"
        );
        let mut scan = StreamScan::default();
        for piece in stream.as_bytes().chunks(9) {
            scan.feed(piece);
        }
        assert_eq!((scan.usage, scan.chars, scan.done), (Some((4427, 137)), 11, true));
        assert_eq!(scan.charged, crate::Credits::from_decimal(0.49));
        assert_eq!(scan.take_text(), "Hello there");
        let plain = json!({"output": [{"type": "reasoning", "summary": []}, {"type": "message", "content": [{"type": "output_text", "text": "twelve chars"}]}], "usage": {"input_tokens": 9, "output_tokens": 3}, "credits_consumed": 0.48});
        assert_eq!((usage_of(&plain), answer_chars(&plain), charged_of(&plain)), (Some((9, 3)), 12, crate::Credits::from_decimal(0.48)));
        let body = json!({"input": [{"role": "user", "content": [{"type": "input_text", "text": "what is"}, {"type": "input_text", "text": "this"}]}]});
        assert_eq!(last_user_text(&body, crate::money::catalog::ChatApi::Responses), ("what is this".to_string(), 1));
        assert_eq!(last_user_text(&json!({"input": "hello"}), crate::money::catalog::ChatApi::Responses), ("hello".to_string(), 1));
    }

    #[test]
    fn a_claude_messages_stream_gives_its_usage_and_text() {
        let stream = concat!(
            "event: message_start\n",
            "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\n",
            "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\n",
            "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello \"}}\n\n",
            "event: content_block_delta\n",
            "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"wörld\"}}\n\n",
            "event: message_delta\n",
            "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\n",
            "event: message_stop\n",
            "data: {\"type\":\"message_stop\"}\n\n"
        );
        for split in [1, 3, 64, stream.len()] {
            let mut scan = StreamScan::default();
            for piece in stream.as_bytes().chunks(split) {
                scan.feed(piece);
            }
            assert_eq!((scan.usage, scan.chars, scan.done), (Some((25, 15)), 11, true), "split every {split}");
            assert_eq!(scan.take_text(), "Hello wörld");
        }
        let plain = json!({"type": "message", "content": [{"type": "text", "text": "twelve chars"}], "usage": {"input_tokens": 9, "output_tokens": 3}});
        assert_eq!((usage_of(&plain), answer_chars(&plain)), (Some((9, 3)), 12));
        assert_eq!(estimate_prompt_tokens(&json!({"system": "abcdefgh", "messages": [{"role": "user", "content": "abcd"}]})), 3);
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
