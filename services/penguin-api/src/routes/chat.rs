//! `POST /api/v1/chat/message` and the WebSocket `/api/v1/chat/stream`.

use super::frame;
use crate::{
    error::{ApiError, ApiJson},
    state::AppState,
};
use axum::{
    extract::{
        ws::{
            rejection::WebSocketUpgradeRejection, CloseFrame, Message, WebSocket, WebSocketUpgrade,
        },
        State,
    },
    http::HeaderMap,
    response::Response,
    Json,
};
use futures::{SinkExt, StreamExt};
use penguin_api_store::{Conversation, NewMessage};
use penguin_llm::{ChatMessage, ChatRequest, Role, StreamEvent, Usage};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use utoipa::ToSchema;

/// Conversation turns sent to the model at most.
const HISTORY_LIMIT: usize = 50;
/// Streamed tokens are coalesced into frames at most this often…
const COALESCE: Duration = Duration::from_millis(40);
/// …or once this many bytes are pending.
const COALESCE_BYTES: usize = 256;

/// A chat request (also each message on the chat WebSocket).
#[derive(Clone, Debug, Deserialize, ToSchema)]
pub struct ChatMessageRequest {
    /// What the user says.
    pub text: String,
    /// Continue this conversation (a new one when absent).
    #[serde(default)]
    pub conversation_id: Option<String>,
    /// Extra context for the model.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub context: Option<Value>,
    /// Paths of files the user refers to.
    #[serde(default)]
    pub context_files: Option<Vec<String>>,
    /// Ignored here (use the WebSocket for streaming).
    #[serde(default)]
    pub streaming: Option<bool>,
    /// Cap on agent iterations.
    #[serde(default)]
    pub max_iterations: Option<u32>,
    /// Uploaded images (paths from `/upload`).
    #[serde(default)]
    pub image_paths: Option<Vec<String>>,
    /// Model for this request.
    #[serde(default)]
    pub model: Option<String>,
}

/// Everything a turn needs before the model is called.
struct Turn {
    conversation: Conversation,
    request: ChatRequest,
    text: String,
    /// Agent iterations when the turn may use tools (`max_iterations` ≥ 2).
    agentic: Option<u32>,
    /// The task-pool worker an agentic turn holds while it runs.
    _slot: Option<crate::tasks::PoolSlot>,
}

async fn prepare(state: &AppState, body: &ChatMessageRequest) -> Result<Turn, ApiError> {
    state.model()?;
    let text = penguin_agent::strip_hidden(body.text.trim());
    if text.is_empty() {
        return Err(ApiError::validation("text must not be empty"));
    }
    let agentic = body.max_iterations.filter(|n| *n >= 2).map(|n| n.min(50));
    // An agentic turn runs tools like a task, so it takes a worker of the
    // task pool, or is refused (503, recoverable) when the pool is full.
    let slot = match agentic {
        Some(_) => Some(state.tasks.try_reserve()?),
        None => None,
    };
    let conversation = match body.conversation_id.as_deref().filter(|id| !id.is_empty()) {
        Some(id) => state.store.get_conversation(id).await?,
        None => state.store.create_conversation(None, json!({})).await?,
    };
    let mut messages = Vec::new();
    if let Some(context) = &body.context {
        messages.push(ChatMessage::new(
            Role::System,
            format!("Context: {context}"),
        ));
    }
    if let Some(files) = body.context_files.as_ref().filter(|f| !f.is_empty()) {
        messages.push(ChatMessage::new(
            Role::System,
            format!("Files in context: {}", files.join(", ")),
        ));
    }
    let history = conversation.messages.len().saturating_sub(HISTORY_LIMIT);
    for message in &conversation.messages[history..] {
        let role = match message.role.as_str() {
            "assistant" => Role::Assistant,
            "system" => Role::System,
            _ => Role::User,
        };
        messages.push(ChatMessage::new(role, message.content.clone()));
    }
    messages.push(ChatMessage::new(Role::User, text.clone()));
    Ok(Turn {
        request: ChatRequest {
            model: state.model_for(body.model.as_deref()),
            messages,
            ..Default::default()
        },
        conversation,
        text,
        agentic,
        _slot: slot,
    })
}

/// An agentic turn: the agent loop with the workspace tools, every tool call
/// under the security policy. Events go to `on_event` as (frame name, data).
async fn run_agentic(
    state: &AppState,
    turn: &Turn,
    iterations: u32,
    mut on_event: impl FnMut(&'static str, Value),
) -> Result<penguin_agent::AgentOutcome, ApiError> {
    let model = state.model()?.clone();
    let mut context = turn.request.messages.clone();
    context.pop(); // the user's text becomes the task description
    let spec = penguin_agent::TaskSpec {
        name: "chat".into(),
        description: turn.text.clone(),
        model: turn.request.model.clone(),
        max_iterations: iterations,
        time_limit: state.settings.task_time_limit,
        context,
    };
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let (_cancel_tx, cancel) = tokio::sync::watch::channel(false);
    let tools = state.tasks.tools().clone();
    let agent = penguin_agent::run_agent(model.as_ref(), &tools, spec, events_tx, cancel);
    tokio::pin!(agent);
    let outcome = loop {
        tokio::select! {
            outcome = &mut agent => break outcome,
            Some(event) = events.recv() => match event {
                penguin_agent::AgentEvent::Progress { iteration, max_iterations, message } => on_event(
                    "progress",
                    json!({ "iteration": iteration, "max_iterations": max_iterations, "message": message }),
                ),
                penguin_agent::AgentEvent::Tool(result) => on_event("tool", json!(result)),
                _ => {}
            },
        }
    };
    while let Ok(event) = events.try_recv() {
        if let penguin_agent::AgentEvent::Tool(result) = event {
            on_event("tool", json!(result));
        }
    }
    state.add_usage(Some(outcome.usage));
    match (&outcome.status, &outcome.error) {
        (penguin_agent::OutcomeStatus::Failed, Some(error)) => Err(ApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "UPSTREAM_ERROR",
            penguin_telemetry::redact(error).into_owned(),
        )),
        _ => Ok(outcome),
    }
}

async fn store_turn(
    state: &AppState,
    conversation_id: &str,
    user: &str,
    answer: &str,
) -> Result<(), ApiError> {
    state
        .store
        .append_messages(
            conversation_id,
            vec![
                NewMessage {
                    role: "user".into(),
                    content: user.into(),
                },
                NewMessage {
                    role: "assistant".into(),
                    content: answer.into(),
                },
            ],
        )
        .await?;
    Ok(())
}

fn usage_json(usage: Option<Usage>) -> Value {
    usage.map_or(Value::Null, |u| json!(u))
}

#[utoipa::path(post, path = "/api/v1/chat/message", tag = "chat", request_body = ChatMessageRequest,
    responses((status = 200, description = "The model's answer", body = Object),
              (status = 404, description = "Unknown conversation", body = Object),
              (status = 502, description = "Model provider failed", body = Object),
              (status = 503, description = "No model provider configured, or (agentic turns, max_iterations ≥ 2) every task worker is busy", body = Object),
              (status = 504, description = "Model provider timed out", body = Object)))]
pub async fn message(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ChatMessageRequest>,
) -> Result<Json<Value>, ApiError> {
    let turn = prepare(&state, &body).await?;
    if let Some(iterations) = turn.agentic {
        let outcome = run_agentic(&state, &turn, iterations, |_, _| {}).await?;
        store_turn(&state, &turn.conversation.id, &turn.text, &outcome.response).await?;
        let completed = outcome.status == penguin_agent::OutcomeStatus::Completed;
        return Ok(Json(json!({
            "response": outcome.response,
            "action_results": outcome.action_results,
            "aborted": !completed,
            "status": if completed { "completed" } else { "incomplete" },
            "iterations": outcome.iterations,
            "conversation_id": turn.conversation.id,
            "usage": outcome.usage,
        })));
    }
    // If the client goes away, axum drops this future and with it the upstream request.
    let answer = state.model()?.complete(turn.request).await?;
    state.add_usage(answer.usage);
    store_turn(
        &state,
        &turn.conversation.id,
        &turn.text,
        &answer.message.content,
    )
    .await?;
    Ok(Json(json!({
        "response": answer.message.content,
        "action_results": [],
        "aborted": false,
        "status": "completed",
        "conversation_id": turn.conversation.id,
        "usage": usage_json(answer.usage),
    })))
}

/// `GET /api/v1/chat/stream` (WebSocket): many requests per connection.
#[utoipa::path(get, path = "/api/v1/chat/stream", tag = "chat",
    description = "WebSocket: send `ChatMessageRequest` JSON messages, receive `start`, `token`, `progress`, `tool`, `complete` and `error` frames (`{event, data}`). Browsers authenticate with the session cookie; an upgrade whose `Origin` is neither the API's own nor in PENGUIN_CORS_ORIGINS is refused.",
    responses((status = 101, description = "Switching to the WebSocket protocol"),
              (status = 400, description = "Not a WebSocket handshake", body = Object),
              (status = 401, description = "No valid key or session", body = Object),
              (status = 403, description = "The Origin is not allowed", body = Object)))]
pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = crate::origin::websocket(&headers, &state.settings.cors_origins, upgrade)?;
    Ok(upgrade.on_upgrade(move |socket| chat_socket(state, socket)))
}

async fn chat_socket(state: AppState, socket: WebSocket) {
    let _guard = state.stream_guard();
    let (mut tx, mut rx) = socket.split();
    while let Some(Ok(incoming)) = rx.next().await {
        let text = match incoming {
            Message::Text(text) => text,
            Message::Close(_) => return,
            _ => continue,
        };
        let body: ChatMessageRequest = match serde_json::from_str(&text) {
            Ok(body) => body,
            Err(err) => {
                let _ = tx
                    .send(frame(
                        "error",
                        json!({ "message": format!("invalid request: {err}") }),
                    ))
                    .await;
                continue;
            }
        };
        let turn = match prepare(&state, &body).await {
            Ok(turn) => turn,
            Err(err) => {
                let _ = tx
                    .send(frame(
                        "error",
                        json!({ "message": err.message, "code": err.code, "recoverable": err.recoverable }),
                    ))
                    .await;
                continue;
            }
        };
        let conversation_id = turn.conversation.id.clone();
        if tx
            .send(frame(
                "start",
                json!({ "conversation_id": conversation_id }),
            ))
            .await
            .is_err()
        {
            return;
        }
        if let Some(iterations) = turn.agentic {
            // Frames go out as the agent works, not when it is done.
            let (frames_tx, mut frames) = tokio::sync::mpsc::unbounded_channel();
            let agent = run_agentic(&state, &turn, iterations, move |event, data| {
                let _ = frames_tx.send(frame(event, data));
            });
            let forward = async {
                let mut client_gone = false;
                while let Some(f) = frames.recv().await {
                    client_gone |= tx.send(f).await.is_err();
                }
                client_gone
            };
            let (result, client_gone) = tokio::join!(agent, forward);
            if client_gone {
                return;
            }
            let done = match result {
                Ok(outcome) => {
                    if let Err(err) =
                        store_turn(&state, &conversation_id, &turn.text, &outcome.response).await
                    {
                        frame("error", json!({ "message": err.message }))
                    } else {
                        let _ = tx
                            .send(frame("token", json!({ "token": outcome.response })))
                            .await;
                        frame(
                            "complete",
                            json!({
                                "response": outcome.response,
                                "action_results": outcome.action_results,
                                "aborted": outcome.status != penguin_agent::OutcomeStatus::Completed,
                                "conversation_id": conversation_id,
                                "usage": outcome.usage,
                            }),
                        )
                    }
                }
                Err(err) => frame("error", json!({ "message": err.message, "code": err.code })),
            };
            if tx.send(done).await.is_err() {
                return;
            }
            continue;
        }
        let model = match state.model() {
            Ok(m) => m.clone(),
            Err(_) => return,
        };
        let mut upstream = match model.stream(turn.request).await {
            Ok(s) => s,
            Err(err) => {
                let err = ApiError::from(err);
                let _ = tx
                    .send(frame(
                        "error",
                        json!({ "message": err.message, "code": err.code }),
                    ))
                    .await;
                continue;
            }
        };
        let mut answer = String::new();
        let mut pending = String::new();
        let mut last_flush = Instant::now();
        let mut usage = None;
        let mut aborted = false;
        let mut failed = None;
        loop {
            tokio::select! {
                event = upstream.next() => match event {
                    Some(Ok(StreamEvent::Token(token))) => {
                        answer.push_str(&token);
                        pending.push_str(&token);
                        if pending.len() >= COALESCE_BYTES || last_flush.elapsed() >= COALESCE {
                            if tx.send(frame("token", json!({ "token": std::mem::take(&mut pending) }))).await.is_err() {
                                return; // client gone: dropping `upstream` cancels the request
                            }
                            last_flush = Instant::now();
                        }
                    }
                    Some(Ok(StreamEvent::Done { usage: u, .. })) => { usage = u; break; }
                    Some(Err(err)) => { failed = Some(ApiError::from(err)); break; }
                    None => break,
                },
                client = rx.next() => match client {
                    // Any message or a close while streaming stops this answer.
                    Some(Ok(Message::Text(_))) => { aborted = true; break; }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    _ => return,
                },
            }
        }
        drop(upstream);
        if !pending.is_empty() {
            let _ = tx.send(frame("token", json!({ "token": pending }))).await;
        }
        if let Some(err) = failed {
            let _ = tx
                .send(frame(
                    "error",
                    json!({ "message": err.message, "code": err.code }),
                ))
                .await;
            continue;
        }
        state.add_usage(usage);
        if let Err(err) = store_turn(&state, &conversation_id, &turn.text, &answer).await {
            let _ = tx
                .send(frame("error", json!({ "message": err.message })))
                .await;
            continue;
        }
        let done = frame(
            "complete",
            json!({
                "response": answer,
                "action_results": [],
                "aborted": aborted,
                "conversation_id": conversation_id,
                "usage": usage_json(usage),
            }),
        );
        if tx.send(done).await.is_err() {
            return;
        }
    }
    let _ = tx
        .send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "bye".into(),
        })))
        .await;
}
