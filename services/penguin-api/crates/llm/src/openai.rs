//! The OpenAI-compatible chat-completions client (OpenAI, OpenRouter, Ollama, vLLM, llama.cpp).

use std::fmt;
use std::future::Future;

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Response, StatusCode};

use crate::http::{self, Redactor};
use crate::settings::LlmSettings;
use crate::sse;
use crate::types::{ChatModel, ChatRequest, ChatResponse, EventStream, LlmError, ModelInfo};
use crate::wire;

/// The provider name reported by [`OpenAiCompatible`].
pub const OPENAI_COMPATIBLE: &str = "openai-compatible";

/// Substrings of model ids taken to mean the model accepts images (a heuristic; OpenRouter's
/// `architecture.input_modalities` is used when present).
const VISION_HINTS: [&str; 10] = [
    "vision",
    "gpt-4o",
    "gpt-4.1",
    "gpt-5",
    "claude-3",
    "claude-sonnet",
    "claude-opus",
    "claude-haiku",
    "gemini",
    "llava",
];

/// A [`ChatModel`] speaking the OpenAI chat-completions API.
///
/// Cancellation: every call runs on the caller's task. Dropping a future or a returned stream
/// drops the HTTP response, which closes the connection to the provider.
pub struct OpenAiCompatible {
    settings: LlmSettings,
    http: reqwest::Client,
    redactor: Redactor,
}

impl fmt::Debug for OpenAiCompatible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiCompatible")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl OpenAiCompatible {
    /// A client for `settings`. Fails only when the HTTP client cannot be set up
    /// ([`LlmError::Transport`]).
    pub fn new(settings: LlmSettings) -> Result<Self, LlmError> {
        let mut settings = settings;
        settings.base_url = settings.base_url.trim_end_matches('/').to_string();
        let http = http::client(settings.timeout).map_err(LlmError::Transport)?;
        Ok(OpenAiCompatible {
            redactor: Redactor::new(settings.api_key.as_deref()),
            settings,
            http,
        })
    }

    /// The settings in use.
    pub fn settings(&self) -> &LlmSettings {
        &self.settings
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.settings.base_url)
    }

    fn authorized(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.settings.api_key {
            // `bearer_auth` marks the header sensitive, so it is never logged by reqwest/hyper.
            Some(key) => builder.bearer_auth(key),
            None => builder,
        }
    }

    /// Sends a chat/completions body; `Ok` only for a 2xx answer (headers received).
    async fn post_chat(
        &self,
        body: &wire::Request<'_>,
        stream: bool,
    ) -> Result<Response, LlmError> {
        let body = serde_json::to_vec(body)
            .map_err(|e| LlmError::Decode(format!("cannot encode the request: {e}")))?;
        let request = self
            .authorized(self.http.post(self.url("chat/completions")))
            .header(CONTENT_TYPE, "application/json")
            .header(
                ACCEPT,
                if stream {
                    "text/event-stream"
                } else {
                    "application/json"
                },
            )
            .body(body);
        let response = request.send().await.map_err(|e| self.map_error(&e))?;
        self.check_status(response).await
    }

    /// Turns a non-2xx answer into [`LlmError::Upstream`].
    async fn check_status(&self, response: Response) -> Result<Response, LlmError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.bytes().await.unwrap_or_default();
        Err(http::upstream_error(status, &body))
    }

    fn map_error(&self, error: &reqwest::Error) -> LlmError {
        http::map_error(error, self.settings.timeout)
    }

    /// Runs `work` under the settings' deadline and scrubs the key from any error.
    async fn with_deadline<T>(
        &self,
        work: impl Future<Output = Result<T, LlmError>>,
    ) -> Result<T, LlmError> {
        let timeout = self.settings.timeout;
        let result = tokio::time::timeout(timeout, work)
            .await
            .unwrap_or(Err(LlmError::Timeout(timeout)));
        result.map_err(|e| self.redactor.error(e))
    }

    fn model_info(&self, model: wire::WireModel) -> ModelInfo {
        let vision_enabled = match &model.architecture {
            Some(arch) if !arch.input_modalities.is_empty() => {
                arch.input_modalities.iter().any(|m| m == "image")
            }
            _ => looks_like_vision(&model.id),
        };
        ModelInfo {
            name: model
                .name
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| model.id.clone()),
            id: model.id,
            provider: OPENAI_COMPATIBLE.to_string(),
            vision_enabled,
            max_output_tokens: None,
        }
    }

    fn default_model_info(&self) -> ModelInfo {
        self.model_info(wire::WireModel {
            id: self.settings.default_model.clone(),
            ..wire::WireModel::default()
        })
    }
}

/// Whether a model id suggests image input (see [`VISION_HINTS`]).
fn looks_like_vision(id: &str) -> bool {
    let id = id.to_ascii_lowercase();
    VISION_HINTS.iter().any(|hint| id.contains(hint))
}

#[async_trait::async_trait]
impl ChatModel for OpenAiCompatible {
    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse, LlmError> {
        let body = wire::Request::new(&request, &self.settings.default_model, false);
        tracing::debug!(model = body.model(), "chat completion request");
        self.with_deadline(async {
            let response = self.post_chat(&body, false).await?;
            let bytes = response.bytes().await.map_err(|e| self.map_error(&e))?;
            let answer: wire::Completion = serde_json::from_slice(&bytes)
                .map_err(|e| LlmError::Decode(format!("the answer is not a completion: {e}")))?;
            if answer.choices.is_empty() {
                if let Some(error) = &answer.error {
                    return Err(LlmError::Upstream {
                        status: 502,
                        message: http::json_error_message(&serde_json::json!({ "error": error }))
                            .unwrap_or_else(|| "the provider reported an error".into()),
                    });
                }
            }
            answer.into_response(body.model()).map_err(LlmError::Decode)
        })
        .await
    }

    async fn stream(&self, request: ChatRequest) -> Result<EventStream, LlmError> {
        let body = wire::Request::new(&request, &self.settings.default_model, true);
        tracing::debug!(model = body.model(), "streamed chat completion request");
        // The deadline covers the response headers (and an error body); afterwards each read
        // from the body gets its own deadline.
        let response = self.with_deadline(self.post_chat(&body, true)).await?;
        let timeout = self.settings.timeout;
        Ok(sse::decode(
            sse::body_chunks(response, timeout),
            timeout,
            self.redactor.clone(),
        ))
    }

    async fn models(&self) -> Result<Vec<ModelInfo>, LlmError> {
        self.with_deadline(async {
            let request = self.authorized(self.http.get(self.url("models")));
            let response = request
                .header(ACCEPT, "application/json")
                .send()
                .await
                .map_err(|e| self.map_error(&e))?;
            if matches!(
                response.status(),
                StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
            ) {
                return Ok(vec![self.default_model_info()]);
            }
            let response = self.check_status(response).await?;
            let bytes = response.bytes().await.map_err(|e| self.map_error(&e))?;
            let list: wire::ModelList = serde_json::from_slice(&bytes)
                .map_err(|e| LlmError::Decode(format!("the model list is not understood: {e}")))?;
            Ok(list
                .data
                .into_iter()
                .filter(|m| !m.id.is_empty())
                .map(|m| self.model_info(m))
                .collect())
        })
        .await
    }

    fn provider(&self) -> &str {
        OPENAI_COMPATIBLE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vision_heuristic() {
        for id in [
            "gpt-4o-mini",
            "llama-3.2-11b-vision",
            "google/gemini-2.0-flash",
            "anthropic/claude-3.5-sonnet",
        ] {
            assert!(looks_like_vision(id), "{id}");
        }
        for id in ["gpt-3.5-turbo", "qwen2.5-coder:7b", "standin-model"] {
            assert!(!looks_like_vision(id), "{id}");
        }
    }
}
