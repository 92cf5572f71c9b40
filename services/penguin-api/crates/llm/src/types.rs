//! Provider-neutral chat types.

use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The person.
    User,
    /// The model.
    Assistant,
    /// A tool's result, answering one of the assistant's tool calls.
    Tool,
}

/// A tool call the model asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Provider-assigned id; the tool's answer carries it back.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// Arguments as JSON text, exactly as the model produced them (may be invalid JSON).
    pub arguments: String,
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Author.
    pub role: Role,
    /// Text (may be empty for an assistant message that only calls tools).
    pub content: String,
    /// Tool calls (assistant messages only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Which call this answers (tool messages only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A plain message.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// A tool's answer to call `tool_call_id`.
    pub fn tool_result(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::Tool,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: Some(tool_call_id.into()),
        }
    }
}

/// A tool the model may call, described by a JSON Schema for its arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// Name the model uses.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: serde_json::Value,
}

/// One request to the model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Model id as the provider knows it.
    pub model: String,
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// Tools the model may call (empty: none).
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
    /// Cap on generated tokens.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: Option<f32>,
}

/// Token accounting of one answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// Both.
    pub total_tokens: u32,
}

impl Usage {
    /// Adds `other` to this running total (saturating).
    pub fn add(&mut self, other: Usage) {
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
        self.total_tokens = self.total_tokens.saturating_add(other.total_tokens);
    }
}

/// A complete answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The assistant's message (text and/or tool calls).
    pub message: ChatMessage,
    /// Token accounting, when the provider reports it.
    pub usage: Option<Usage>,
    /// The model that answered.
    pub model: String,
    /// Why generation stopped (`stop`, `length`, `tool_calls`, …).
    pub finish_reason: Option<String>,
}

/// One event of a streamed answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    /// A piece of the answer's text.
    Token(String),
    /// The end of the answer.
    Done {
        /// Token accounting, when reported.
        usage: Option<Usage>,
        /// Why generation stopped.
        finish_reason: Option<String>,
    },
}

/// A model the provider offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Provider id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Provider name (`openai-compatible`, `anthropic`).
    pub provider: String,
    /// Accepts images.
    pub vision_enabled: bool,
    /// Output cap, when known.
    pub max_output_tokens: Option<u32>,
}

/// Why a model call failed. Messages never contain the API key.
#[derive(Clone, Debug, thiserror::Error)]
pub enum LlmError {
    /// The provider answered with an error status (becomes 502).
    #[error("the model provider answered {status}: {message}")]
    Upstream {
        /// HTTP status from the provider.
        status: u16,
        /// The provider's message.
        message: String,
    },
    /// No answer in time (becomes 504).
    #[error("the model provider did not answer within {0:?}")]
    Timeout(Duration),
    /// The connection failed (becomes 502).
    #[error("cannot reach the model provider: {0}")]
    Transport(String),
    /// The answer could not be understood (becomes 502).
    #[error("cannot read the model provider's answer: {0}")]
    Decode(String),
}

/// A streamed answer.
pub type EventStream = BoxStream<'static, Result<StreamEvent, LlmError>>;

/// A chat model. Dropping a returned future or stream cancels the upstream request.
#[async_trait::async_trait]
pub trait ChatModel: Send + Sync + 'static {
    /// The whole answer at once.
    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, LlmError>;
    /// The answer as it is generated.
    async fn stream(&self, request: ChatRequest) -> Result<EventStream, LlmError>;
    /// Models the provider offers.
    async fn models(&self) -> Result<Vec<ModelInfo>, LlmError>;
    /// The provider's name.
    fn provider(&self) -> &str;
}
