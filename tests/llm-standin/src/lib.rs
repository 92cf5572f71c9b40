//! A test-only stand-in for an OpenAI-compatible chat-completions API.
//!
//! It serves `POST /v1/chat/completions` (plain JSON answers, or server-sent events when the
//! request says `"stream": true`) and `GET /v1/models`, with the real API's JSON shapes, so a
//! client written against OpenAI, OpenRouter, Ollama, vLLM or llama.cpp can be tested without a
//! network or a model.
//!
//! Tests start it in-process with [`LlmStandIn::start`] (or [`LlmStandIn::start_with_key`] to
//! require an API key), script answers with [`LlmStandIn::push_reply`] and observe what the
//! client sent with [`LlmStandIn::requests`]. Without a scripted reply the answer is
//! deterministic: `Penguin stand-in reply to: <last user message>`.
//!
//! Token usage is counted as whitespace-separated words. Dropping the [`LlmStandIn`] stops the
//! server and closes every open connection.

#![warn(missing_docs)]

mod api;
mod bodies;
mod server;
mod state;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::state::Shared;

/// A scripted answer to one `chat/completions` request.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// Answer with this text (streamed in 3–8 character chunks when the request streams).
    Text(String),
    /// Ask for these tool calls: `(name, arguments)`. The finish reason is `tool_calls`.
    ToolCalls(Vec<(String, serde_json::Value)>),
    /// Answer with this HTTP status and an OpenAI-shaped error body
    /// `{"error":{"message","type","code"}}`.
    Error {
        /// HTTP status.
        status: u16,
        /// The error's `message`.
        message: String,
    },
    /// Accept the request and never answer (for timeouts).
    Hang,
    /// Send `after_chunks` chunks of `text`, then drop the connection without `data: [DONE]`.
    /// A non-streaming request gets the status line, headers and half of the JSON body.
    Disconnect {
        /// Content chunks sent before the connection is dropped.
        after_chunks: usize,
        /// The text the chunks are cut from.
        text: String,
    },
}

/// A running stand-in server on `127.0.0.1`. Dropping it stops the server.
pub struct LlmStandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl std::fmt::Debug for LlmStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmStandIn")
            .field("addr", &self.addr)
            .field("requires_key", &self.shared.api_key.is_some())
            .finish_non_exhaustive()
    }
}

impl LlmStandIn {
    /// Starts a stand-in on `127.0.0.1` at a free port that accepts any (or no) API key.
    pub async fn start() -> anyhow::Result<LlmStandIn> {
        Self::launch(None).await
    }

    /// Starts a stand-in that answers 401 unless a request carries
    /// `Authorization: Bearer <key>` with exactly this key.
    pub async fn start_with_key(key: impl Into<String>) -> anyhow::Result<LlmStandIn> {
        let key = key.into();
        anyhow::ensure!(!key.is_empty(), "the stand-in's API key must not be empty");
        Self::launch(Some(key)).await
    }

    async fn launch(api_key: Option<String>) -> anyhow::Result<LlmStandIn> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the LLM stand-in to 127.0.0.1")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(api_key));
        let router = api::router(shared.clone());
        let server = tokio::spawn(server::serve(listener, router));
        Ok(LlmStandIn {
            addr,
            shared,
            server,
        })
    }

    /// The API base, including `/v1`: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues a scripted reply; `chat/completions` requests consume them in order.
    pub fn push_reply(&self, reply: Reply) {
        self.shared.replies.lock().unwrap().push_back(reply);
    }

    /// Every `chat/completions` request body received so far, in order (a body that is not
    /// JSON is recorded as a JSON string).
    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Sets the delay between streamed chunks (default: none).
    pub fn set_chunk_delay(&self, delay: Duration) {
        *self.shared.chunk_delay.lock().unwrap() = delay;
    }

    /// How many streamed answers are being served right now. It drops back when a stream ends
    /// or when its client goes away.
    pub fn open_streams(&self) -> usize {
        self.shared.open_streams.load(Ordering::SeqCst)
    }
}

impl Drop for LlmStandIn {
    fn drop(&mut self) {
        // The accept loop owns every connection task; aborting it drops them all.
        self.server.abort();
    }
}
