//! OpenAI-shaped JSON bodies and the small text helpers behind them.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// Chunk sizes (in characters) that streamed text is cut into, cycled.
const CHUNK_SIZES: [usize; 6] = [3, 5, 8, 4, 6, 7];

/// Whitespace-separated words: the stand-in's token count.
pub(crate) fn count_words(text: &str) -> u32 {
    u32::try_from(text.split_whitespace().count()).unwrap_or(u32::MAX)
}

/// The text of a message's `content`: a string, or the `text` parts of a content array.
pub(crate) fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// Prompt tokens of a request: words in every message's content.
pub(crate) fn prompt_tokens(request: &Value) -> u32 {
    request
        .get("messages")
        .and_then(Value::as_array)
        .map(|messages| {
            messages
                .iter()
                .map(|m| count_words(&content_text(m.get("content").unwrap_or(&Value::Null))))
                .sum()
        })
        .unwrap_or(0)
}

/// The answer given when no reply is scripted.
pub(crate) fn default_answer(request: &Value) -> String {
    let last_user = request
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|messages| {
            messages
                .iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        })
        .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)))
        .unwrap_or_default();
    format!("Penguin stand-in reply to: {last_user}")
}

/// Cuts text into 3–8 character pieces (on character boundaries).
pub(crate) fn chunk_text(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut sizes = CHUNK_SIZES.iter().cycle();
    while start < chars.len() {
        let end = (start + sizes.next().copied().unwrap_or(4)).min(chars.len());
        chunks.push(chars[start..end].iter().collect());
        start = end;
    }
    chunks
}

/// The `usage` object.
pub(crate) fn usage(prompt_tokens: u32, completion_tokens: u32) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

/// Seconds since the epoch, for `created`.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The tool calls of an assistant message, OpenAI-shaped (arguments as JSON text).
pub(crate) fn tool_calls(id: u64, calls: &[(String, Value)]) -> Vec<Value> {
    calls
        .iter()
        .enumerate()
        .map(|(i, (name, arguments))| {
            json!({
                "id": format!("call_standin_{id}_{i}"),
                "type": "function",
                "function": {"name": name, "arguments": arguments.to_string()},
            })
        })
        .collect()
}

/// A whole (non-streamed) completion.
pub(crate) fn completion(
    id: u64,
    model: &str,
    message: Value,
    finish_reason: &str,
    usage: Value,
) -> Value {
    json!({
        "id": format!("chatcmpl-standin-{id}"),
        "object": "chat.completion",
        "created": now_secs(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason,
        }],
        "usage": usage,
        "system_fingerprint": "fp_standin",
    })
}

/// One streamed chunk. `choice` is `None` for the final usage-only chunk.
pub(crate) fn chunk(
    id: u64,
    model: &str,
    choice: Option<(Value, Option<&str>)>,
    usage: Option<Value>,
    include_usage: bool,
) -> Value {
    let choices = match choice {
        Some((delta, finish_reason)) => json!([{
            "index": 0,
            "delta": delta,
            "logprobs": null,
            "finish_reason": finish_reason,
        }]),
        None => json!([]),
    };
    let mut chunk = json!({
        "id": format!("chatcmpl-standin-{id}"),
        "object": "chat.completion.chunk",
        "created": now_secs(),
        "model": model,
        "system_fingerprint": "fp_standin",
        "choices": choices,
    });
    if include_usage {
        // Like OpenAI: every chunk carries `usage`, null until the last one.
        chunk["usage"] = usage.unwrap_or(Value::Null);
    }
    chunk
}

/// An OpenAI-shaped error body.
pub(crate) fn error(status: u16, message: &str) -> Value {
    let (kind, code) = match status {
        401 => ("invalid_request_error", json!("invalid_api_key")),
        404 => ("invalid_request_error", json!("not_found")),
        429 => ("rate_limit_error", json!("rate_limit_exceeded")),
        400..=499 => ("invalid_request_error", Value::Null),
        _ => ("server_error", Value::Null),
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_reassemble_and_stay_small() {
        let text = "Hello, wörld! This is a streamed answer.";
        let chunks = chunk_text(text);
        assert_eq!(chunks.concat(), text);
        assert!(chunks.len() > 3);
        assert!(chunks.iter().all(|c| (1..=8).contains(&c.chars().count())));
    }

    #[test]
    fn default_answer_uses_last_user_message() {
        let request = json!({"messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "second"}]},
        ]});
        assert_eq!(
            default_answer(&request),
            "Penguin stand-in reply to: second"
        );
        assert_eq!(prompt_tokens(&request), 5);
    }
}
