//! The chat-completions wire format and its mapping to and from the provider-neutral types.
//!
//! Outgoing structs borrow from the [`ChatRequest`]. Incoming structs are deliberately lenient
//! (every field optional, unknown fields ignored) so answers from OpenAI, OpenRouter, Ollama, vLLM
//! and llama.cpp all parse.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::types::{ChatMessage, ChatRequest, ChatResponse, Role, ToolCall, ToolSpec, Usage};

/// A `POST /chat/completions` body.
#[derive(Debug, Serialize)]
pub(crate) struct Request<'a> {
    model: &'a str,
    messages: Vec<Message<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Tool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

#[derive(Debug, Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Debug, Serialize)]
struct Message<'a> {
    role: Role,
    /// `null` only for an assistant message that just calls tools.
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OutToolCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct OutToolCall<'a> {
    id: &'a str,
    r#type: &'static str,
    function: OutFunction<'a>,
}

#[derive(Debug, Serialize)]
struct OutFunction<'a> {
    name: &'a str,
    arguments: &'a str,
}

#[derive(Debug, Serialize)]
struct Tool<'a> {
    r#type: &'static str,
    function: ToolFunction<'a>,
}

#[derive(Debug, Serialize)]
struct ToolFunction<'a> {
    name: &'a str,
    description: &'a str,
    parameters: &'a Value,
}

impl<'a> Request<'a> {
    /// The wire body of `request`; an empty `model` becomes `default_model`. Streaming bodies
    /// ask for a final usage chunk.
    pub(crate) fn new(request: &'a ChatRequest, default_model: &'a str, stream: bool) -> Self {
        Request {
            model: if request.model.is_empty() {
                default_model
            } else {
                &request.model
            },
            messages: request.messages.iter().map(Message::from_neutral).collect(),
            tools: request.tools.iter().map(Tool::from_neutral).collect(),
            max_tokens: request.max_tokens,
            temperature: request.temperature,
            stream,
            stream_options: stream.then_some(StreamOptions {
                include_usage: true,
            }),
        }
    }

    /// The model the body names.
    pub(crate) fn model(&self) -> &str {
        self.model
    }
}

impl<'a> Message<'a> {
    fn from_neutral(message: &'a ChatMessage) -> Self {
        let calls_only = message.role == Role::Assistant
            && message.content.is_empty()
            && !message.tool_calls.is_empty();
        Message {
            role: message.role,
            content: (!calls_only).then_some(message.content.as_str()),
            tool_calls: message
                .tool_calls
                .iter()
                .map(|call| OutToolCall {
                    id: &call.id,
                    r#type: "function",
                    function: OutFunction {
                        name: &call.name,
                        arguments: &call.arguments,
                    },
                })
                .collect(),
            tool_call_id: message.tool_call_id.as_deref(),
        }
    }
}

impl<'a> Tool<'a> {
    fn from_neutral(tool: &'a ToolSpec) -> Self {
        Tool {
            r#type: "function",
            function: ToolFunction {
                name: &tool.name,
                description: &tool.description,
                parameters: &tool.parameters,
            },
        }
    }
}

/// Reads `null` as the type's default (some servers send `"choices": null`).
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A `chat/completions` answer, or one streamed chunk of it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Completion {
    pub(crate) model: Option<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub(crate) choices: Vec<Choice>,
    pub(crate) usage: Option<WireUsage>,
    /// Some providers (OpenRouter) report failures inside a 200 answer or a stream.
    pub(crate) error: Option<Value>,
}

/// One choice; `message` in whole answers, `delta` in streamed chunks.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Choice {
    pub(crate) message: Option<InMessage>,
    pub(crate) delta: Option<InMessage>,
    pub(crate) finish_reason: Option<String>,
}

/// An answer's message or a chunk's delta.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct InMessage {
    pub(crate) content: Option<Content>,
    pub(crate) tool_calls: Option<Vec<InToolCall>>,
}

/// Message content: text, or (some providers) an array of parts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Part {
    text: Option<String>,
}

impl Content {
    /// The text, with array parts joined.
    pub(crate) fn into_text(self) -> String {
        match self {
            Content::Text(text) => text,
            Content::Parts(parts) => parts.into_iter().filter_map(|p| p.text).collect(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct InToolCall {
    id: Option<String>,
    function: InFunction,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct InFunction {
    name: String,
    /// JSON text per the spec; some servers send an object instead.
    arguments: Option<Value>,
}

/// Token accounting as sent.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WireUsage {
    #[serde(deserialize_with = "null_as_default")]
    prompt_tokens: u32,
    #[serde(deserialize_with = "null_as_default")]
    completion_tokens: u32,
    total_tokens: Option<u32>,
}

impl From<WireUsage> for Usage {
    fn from(usage: WireUsage) -> Self {
        Usage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage
                .total_tokens
                .unwrap_or(usage.prompt_tokens + usage.completion_tokens),
        }
    }
}

impl Completion {
    /// The neutral answer; `requested_model` stands in when the provider names none.
    /// `Err` carries a description of what is missing.
    pub(crate) fn into_response(self, requested_model: &str) -> Result<ChatResponse, String> {
        let choice = self
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| "the answer has no choices".to_string())?;
        let message = choice
            .message
            .ok_or_else(|| "the answer's first choice has no message".to_string())?;
        let tool_calls = message
            .tool_calls
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, call)| ToolCall {
                id: call
                    .id
                    .filter(|id| !id.is_empty())
                    .unwrap_or_else(|| format!("call_{i}")),
                name: call.function.name,
                arguments: match call.function.arguments {
                    None | Some(Value::Null) => "{}".to_string(),
                    Some(Value::String(text)) => text,
                    Some(other) => other.to_string(),
                },
            })
            .collect();
        Ok(ChatResponse {
            message: ChatMessage {
                role: Role::Assistant,
                content: message.content.map(Content::into_text).unwrap_or_default(),
                tool_calls,
                tool_call_id: None,
            },
            usage: self.usage.map(Usage::from),
            model: self
                .model
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| requested_model.to_string()),
            finish_reason: choice.finish_reason,
        })
    }
}

/// The `GET /models` answer.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ModelList {
    #[serde(deserialize_with = "null_as_default")]
    pub(crate) data: Vec<WireModel>,
}

/// One listed model.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WireModel {
    pub(crate) id: String,
    /// OpenRouter's display name.
    pub(crate) name: Option<String>,
    /// OpenRouter's modality description.
    pub(crate) architecture: Option<Architecture>,
}

/// OpenRouter's `architecture` object.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Architecture {
    pub(crate) input_modalities: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_maps_every_field() {
        let mut assistant = ChatMessage::new(Role::Assistant, "");
        assistant.tool_calls.push(ToolCall {
            id: "call_1".into(),
            name: "read_file".into(),
            arguments: r#"{"path":"a.rs"}"#.into(),
        });
        let request = ChatRequest {
            model: String::new(),
            messages: vec![
                ChatMessage::new(Role::System, "sys"),
                ChatMessage::new(Role::User, "hi"),
                assistant,
                ChatMessage::tool_result("call_1", "fn main() {}"),
            ],
            tools: vec![ToolSpec {
                name: "read_file".into(),
                description: "Reads a file".into(),
                parameters: json!({"type": "object"}),
            }],
            max_tokens: Some(64),
            temperature: Some(0.5),
        };
        let body = serde_json::to_value(Request::new(&request, "dflt", true)).unwrap();
        assert_eq!(
            body,
            json!({
                "model": "dflt",
                "messages": [
                    {"role": "system", "content": "sys"},
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_1", "type": "function",
                         "function": {"name": "read_file", "arguments": "{\"path\":\"a.rs\"}"}}
                    ]},
                    {"role": "tool", "content": "fn main() {}", "tool_call_id": "call_1"},
                ],
                "tools": [{"type": "function", "function": {
                    "name": "read_file", "description": "Reads a file",
                    "parameters": {"type": "object"}}}],
                "max_tokens": 64,
                "temperature": 0.5,
                "stream": true,
                "stream_options": {"include_usage": true},
            })
        );
    }

    #[test]
    fn plain_request_omits_optional_fields() {
        let request = ChatRequest {
            model: "m".into(),
            messages: vec![ChatMessage::new(Role::User, "hi")],
            ..ChatRequest::default()
        };
        let body = serde_json::to_value(Request::new(&request, "dflt", false)).unwrap();
        assert_eq!(
            body,
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        );
    }

    #[test]
    fn lenient_answers_parse() {
        let answer: Completion = serde_json::from_value(json!({
            "choices": [{"message": {
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                "tool_calls": [{"function": {"name": "f", "arguments": {"x": 1}}}],
            }}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 3},
        }))
        .unwrap();
        let response = answer.into_response("asked").unwrap();
        assert_eq!(response.message.content, "ab");
        assert_eq!(response.model, "asked");
        assert_eq!(response.message.tool_calls[0].id, "call_0");
        assert_eq!(response.message.tool_calls[0].arguments, r#"{"x":1}"#);
        assert_eq!(response.usage.unwrap().total_tokens, 5);
        assert_eq!(response.finish_reason, None);
    }

    #[test]
    fn answer_without_choices_is_an_error() {
        for body in [json!({"choices": []}), json!({"choices": null}), json!({})] {
            let answer: Completion = serde_json::from_value(body).unwrap();
            assert!(answer.into_response("m").is_err());
        }
        let usage: WireUsage =
            serde_json::from_value(json!({"prompt_tokens": 4, "completion_tokens": null})).unwrap();
        assert_eq!(Usage::from(usage).total_tokens, 4);
    }
}
