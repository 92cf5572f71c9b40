//! Talking to a language model: the types every provider shares, the [`ChatModel`] trait the API
//! and the agent loop call, and [`OpenAiCompatible`], a client for the OpenAI chat-completions
//! API that OpenAI, OpenRouter, Ollama, vLLM and llama.cpp all speak.
//!
//! Configure it from the environment with [`LlmSettings::from_env`] and get a model with
//! [`build`].
//!
//! # Why `reqwest` and not `async-openai`
//!
//! The client is `reqwest` (rustls on *ring*) plus `eventsource-stream` and a few serde structs
//! of our own (`wire.rs`). `async-openai` 0.43 was evaluated and not used because:
//!
//! - its TLS feature pulls in aws-lc (`reqwest/rustls`); avoiding it means building the reqwest
//!   client ourselves anyway (`rustls-no-provider` + `with_http_client`);
//! - its stream ends the same way whether or not `data: [DONE]` arrived, so a truncated answer
//!   would look like a complete one; here that is an error;
//! - its response types require fields (`id`, `created`, `object`) that some compatible servers
//!   omit, so their answers would fail to parse; ours are lenient;
//! - it retries 429, 5xx and connect errors with backoff by default, hiding the provider's
//!   status behind seconds of delay that the caller's deadline does not know about;
//! - it spawns a task per stream and brings a large dependency tree for four request shapes.

mod http;
mod openai;
mod settings;
mod sse;
mod types;
mod wire;

use std::sync::Arc;

pub use openai::{OpenAiCompatible, OPENAI_COMPATIBLE};
pub use settings::{LlmSettings, DEFAULT_TIMEOUT, OPENAI_BASE_URL, OPENROUTER_BASE_URL};
pub use types::*;

/// The chat model for `settings`.
///
/// Never fails: if the HTTP client cannot be set up (which needs a broken TLS environment), the
/// returned model answers every call with that [`LlmError::Transport`] error, so the API can
/// start and report the problem per request.
pub fn build(settings: &LlmSettings) -> Arc<dyn ChatModel> {
    match OpenAiCompatible::new(settings.clone()) {
        Ok(model) => Arc::new(model),
        Err(error) => {
            tracing::error!(%error, "cannot set up the model provider client");
            Arc::new(Unavailable { error })
        }
    }
}

/// A model whose client could not be built.
struct Unavailable {
    error: LlmError,
}

#[async_trait::async_trait]
impl ChatModel for Unavailable {
    async fn complete(&self, _request: ChatRequest) -> Result<ChatResponse, LlmError> {
        Err(self.error.clone())
    }

    async fn stream(&self, _request: ChatRequest) -> Result<EventStream, LlmError> {
        Err(self.error.clone())
    }

    async fn models(&self) -> Result<Vec<ModelInfo>, LlmError> {
        Err(self.error.clone())
    }

    fn provider(&self) -> &str {
        OPENAI_COMPATIBLE
    }
}
