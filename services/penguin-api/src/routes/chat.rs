//! `POST /api/v1/chat/message` and the WebSocket `/api/v1/chat/stream`.
//!
//! A turn names its conversation with `conversation_id` (or Penguin's
//! `session_id`): an existing one is continued, a new id the client chose is
//! created on first use, and without one a new conversation is made. On the
//! WebSocket every turn ends with exactly one `complete` or `error` frame.

use super::frame;
use crate::{
    error::{ApiError, ApiJson},
    ids,
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
use futures::{
    stream::{SplitSink, SplitStream},
    SinkExt, StreamExt,
};
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
    /// Continue this conversation, or create it under this id when it does
    /// not exist yet (1-128 characters of `A-Z a-z 0-9 . _ : -`); a new
    /// conversation with a fresh id when absent.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,128}$", example = "test-1764650000")]
    pub conversation_id: Option<String>,
    /// Penguin's name for `conversation_id`; wins when both are given.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    pub session_id: Option<String>,
    /// The agent to talk to: this server runs one, `default` (another id is
    /// 404 `AGENT_NOT_FOUND`).
    #[serde(default)]
    #[schema(pattern = "^[a-z0-9_-]{1,64}$", example = "default")]
    pub agent_id: Option<String>,
    /// Add the model's reasoning to the answer (`reasoning`). The model
    /// interface returns none, so it is empty and no `reasoning` frames
    /// are sent.
    #[serde(default)]
    pub include_reasoning: Option<bool>,
    /// Extra context for the model, stored with the turn as a `system` message.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub context: Option<Value>,
    /// Paths of files the user refers to (stored as a `system` message).
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
    /// This turn's context, stored before the user's text.
    context: Vec<NewMessage>,
    /// Whether the answer carries `reasoning`.
    include_reasoning: bool,
    /// Agent iterations when the turn may use tools (`max_iterations` ≥ 2).
    agentic: Option<u32>,
    /// The task-pool worker an agentic turn holds while it runs.
    _slot: Option<crate::tasks::PoolSlot>,
}

/// The conversation a request names, checked: `session_id` before
/// `conversation_id`, blank meaning none.
fn requested_conversation(body: &ChatMessageRequest) -> Result<Option<&str>, ApiError> {
    let named = [&body.session_id, &body.conversation_id]
        .into_iter()
        .find_map(|id| id.as_deref().filter(|id| !id.is_empty()));
    named.map(ids::conversation_id).transpose()
}

async fn prepare(state: &AppState, body: &ChatMessageRequest) -> Result<Turn, ApiError> {
    state.model()?;
    let text = penguin_agent::strip_hidden(body.text.trim());
    if text.is_empty() {
        return Err(ApiError::validation("text must not be empty"));
    }
    if let Some(agent) = body.agent_id.as_deref().filter(|a| !a.is_empty()) {
        ids::agent_id(agent)?;
    }
    let requested = requested_conversation(body)?;
    let agentic = body.max_iterations.filter(|n| *n >= 2).map(|n| n.min(50));
    // An agentic turn runs tools like a task, so it takes a worker of the
    // task pool, or is refused (503, recoverable) when the pool is full.
    let slot = match agentic {
        Some(_) => Some(state.tasks.try_reserve()?),
        None => None,
    };
    let conversation = match requested {
        // Created under the client's id on first use.
        Some(id) => state.store.open_conversation(id).await?.0,
        None => state.store.create_conversation(None, json!({})).await?,
    };
    let mut context = Vec::new();
    if let Some(extra) = &body.context {
        context.push(NewMessage::new("system", format!("Context: {extra}")));
    }
    if let Some(files) = body.context_files.as_ref().filter(|f| !f.is_empty()) {
        context.push(NewMessage::new(
            "system",
            format!("Files in context: {}", files.join(", ")),
        ));
    }
    let mut messages = Vec::new();
    let history = conversation.messages.len().saturating_sub(HISTORY_LIMIT);
    for message in &conversation.messages[history..] {
        let role = match message.role.as_str() {
            "assistant" => Role::Assistant,
            "system" => Role::System,
            _ => Role::User,
        };
        messages.push(ChatMessage::new(role, message.content.clone()));
    }
    messages.extend(
        context
            .iter()
            .map(|m| ChatMessage::new(Role::System, m.content.clone())),
    );
    messages.push(ChatMessage::new(Role::User, text.clone()));
    Ok(Turn {
        request: ChatRequest {
            model: state.model_for(body.model.as_deref()),
            messages,
            ..Default::default()
        },
        conversation,
        text,
        context,
        include_reasoning: body.include_reasoning.unwrap_or(false),
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

/// Stores the turn: its context, the user's text and the answer, in order and
/// in one transaction.
async fn store_turn(
    state: &AppState,
    conversation_id: &str,
    turn: &Turn,
    answer: &str,
) -> Result<(), ApiError> {
    let mut messages = turn.context.clone();
    messages.push(NewMessage::new("user", turn.text.clone()));
    messages.push(NewMessage::new("assistant", answer));
    state
        .store
        .append_messages(conversation_id, messages)
        .await?;
    Ok(())
}

/// Adds `reasoning` to an answer when the turn asked for it. The model
/// interface streams no reasoning, so it is empty (Penguin's shape for a
/// model that returned none).
fn with_reasoning(mut answer: Value, include_reasoning: bool) -> Value {
    if include_reasoning {
        answer["reasoning"] = json!("");
    }
    answer
}

/// The frame a failed turn ends with: `error`, its data the error object of
/// the common shape.
fn error_frame(err: &ApiError) -> Message {
    frame("error", err.body())
}

fn usage_json(usage: Option<Usage>) -> Value {
    usage.map_or(Value::Null, |u| json!(u))
}

#[utoipa::path(post, path = "/api/v1/chat/message", tag = "chat", request_body = ChatMessageRequest,
    responses((status = 200, description = "The model's answer (`reasoning` too when `include_reasoning`)", body = Object),
              (status = 400, description = "A conversation_id (`INVALID_CONVERSATION_ID`) or agent_id (`INVALID_AGENT_ID`) that cannot be used, or malformed JSON", body = Object),
              (status = 404, description = "An agent_id other than `default` (`AGENT_NOT_FOUND`)", body = Object),
              (status = 422, description = "A request of the wrong shape, or empty text", body = Object),
              (status = 502, description = "Model provider failed", body = Object),
              (status = 503, description = "No model provider configured, or (agentic turns, max_iterations ≥ 2) every task worker is busy", body = Object),
              (status = 504, description = "Model provider timed out", body = Object)))]
pub async fn message(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ChatMessageRequest>,
) -> Result<Json<Value>, ApiError> {
    let mut turn = prepare(&state, &body).await?;
    let conversation_id = turn.conversation.id.clone();
    if let Some(iterations) = turn.agentic {
        let outcome = run_agentic(&state, &turn, iterations, |_, _| {}).await?;
        store_turn(&state, &conversation_id, &turn, &outcome.response).await?;
        let completed = outcome.status == penguin_agent::OutcomeStatus::Completed;
        return Ok(Json(with_reasoning(
            json!({
                "response": outcome.response,
                "action_results": outcome.action_results,
                "aborted": !completed,
                "status": if completed { "completed" } else { "incomplete" },
                "iterations": outcome.iterations,
                "conversation_id": conversation_id,
                "usage": outcome.usage,
            }),
            turn.include_reasoning,
        )));
    }
    // If the client goes away, axum drops this future and with it the upstream request.
    let answer = state
        .model()?
        .complete(std::mem::take(&mut turn.request))
        .await?;
    state.add_usage(answer.usage);
    store_turn(&state, &conversation_id, &turn, &answer.message.content).await?;
    Ok(Json(with_reasoning(
        json!({
            "response": answer.message.content,
            "action_results": [],
            "aborted": false,
            "status": "completed",
            "conversation_id": conversation_id,
            "usage": usage_json(answer.usage),
        }),
        turn.include_reasoning,
    )))
}

/// `GET /api/v1/chat/stream` (WebSocket): many requests per connection.
#[utoipa::path(get, path = "/api/v1/chat/stream", tag = "chat",
    description = "WebSocket: send `ChatMessageRequest` JSON messages, receive `{event, data}` frames. A turn sends `start` (`{conversation_id}`), then `token` (`{token}`, coalesced), `progress` and `tool` (agentic turns), and ends with exactly one of `complete` (`{response, action_results, aborted, conversation_id, usage, reasoning?}`) or `error` (the error object `{code, message, recoverable, suggested_action, details?}`); a turn refused before it starts (malformed JSON, a refused `conversation_id`, no model, a full task pool) gets only the `error` frame. The connection stays open for the next turn either way. A text message sent while an answer streams stops it (`complete` with `aborted: true`). Browsers authenticate with the session cookie; an upgrade whose `Origin` is neither the API's own nor in PENGUIN_CORS_ORIGINS is refused.",
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

type SocketTx = SplitSink<WebSocket, Message>;
type SocketRx = SplitStream<WebSocket>;

/// How a turn on the WebSocket ended, when it did not fail.
enum TurnEnd {
    /// `complete` was sent.
    Completed,
    /// The client went away.
    ClientGone,
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
        let ended = match parse_request(&text) {
            Ok(body) => stream_turn(&state, &mut tx, &mut rx, &body).await,
            Err(err) => Err(err),
        };
        match ended {
            Ok(TurnEnd::Completed) => {}
            Ok(TurnEnd::ClientGone) => return,
            // Every failure ends the turn with an `error` frame; the
            // connection stays open for the next request.
            Err(err) => {
                if tx.send(error_frame(&err)).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = tx
        .send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "bye".into(),
        })))
        .await;
}

/// A WebSocket message as a request: malformed JSON is `BAD_REQUEST`, JSON
/// of the wrong shape `VALIDATION_ERROR`, as over HTTP.
fn parse_request(text: &str) -> Result<ChatMessageRequest, ApiError> {
    serde_json::from_str(text).map_err(|e| {
        if e.is_data() {
            ApiError::validation(format!("invalid request: {e}"))
        } else {
            ApiError::bad_request(format!("Malformed JSON: {e}"))
        }
    })
}

/// One turn on the WebSocket: `start`, the answer's frames and `complete`.
/// An `Err` is sent by the caller as the turn's `error` frame.
async fn stream_turn(
    state: &AppState,
    tx: &mut SocketTx,
    rx: &mut SocketRx,
    body: &ChatMessageRequest,
) -> Result<TurnEnd, ApiError> {
    let mut turn = prepare(state, body).await?;
    let conversation_id = turn.conversation.id.clone();
    if tx
        .send(frame(
            "start",
            json!({ "conversation_id": conversation_id }),
        ))
        .await
        .is_err()
    {
        return Ok(TurnEnd::ClientGone);
    }
    if let Some(iterations) = turn.agentic {
        // Frames go out as the agent works, not when it is done.
        let (frames_tx, mut frames) = tokio::sync::mpsc::unbounded_channel();
        let agent = run_agentic(state, &turn, iterations, move |event, data| {
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
            return Ok(TurnEnd::ClientGone);
        }
        let outcome = result?;
        store_turn(state, &conversation_id, &turn, &outcome.response).await?;
        let _ = tx
            .send(frame("token", json!({ "token": outcome.response })))
            .await;
        let done = frame(
            "complete",
            with_reasoning(
                json!({
                    "response": outcome.response,
                    "action_results": outcome.action_results,
                    "aborted": outcome.status != penguin_agent::OutcomeStatus::Completed,
                    "conversation_id": conversation_id,
                    "usage": outcome.usage,
                }),
                turn.include_reasoning,
            ),
        );
        return Ok(send_or_gone(tx, done).await);
    }
    let model = state.model()?.clone();
    let mut upstream = model
        .stream(std::mem::take(&mut turn.request))
        .await
        .map_err(ApiError::from)?;
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
                            // Client gone: dropping `upstream` cancels the request.
                            return Ok(TurnEnd::ClientGone);
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
                _ => return Ok(TurnEnd::ClientGone),
            },
        }
    }
    drop(upstream);
    if !pending.is_empty()
        && tx
            .send(frame("token", json!({ "token": pending })))
            .await
            .is_err()
    {
        return Ok(TurnEnd::ClientGone);
    }
    if let Some(err) = failed {
        return Err(err);
    }
    state.add_usage(usage);
    store_turn(state, &conversation_id, &turn, &answer).await?;
    let done = frame(
        "complete",
        with_reasoning(
            json!({
                "response": answer,
                "action_results": [],
                "aborted": aborted,
                "conversation_id": conversation_id,
                "usage": usage_json(usage),
            }),
            turn.include_reasoning,
        ),
    );
    Ok(send_or_gone(tx, done).await)
}

async fn send_or_gone(tx: &mut SocketTx, done: Message) -> TurnEnd {
    match tx.send(done).await {
        Ok(()) => TurnEnd::Completed,
        Err(_) => TurnEnd::ClientGone,
    }
}
