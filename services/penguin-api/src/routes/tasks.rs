//! Tasks: run the agent synchronously or in the background, read a task's
//! state, and watch one over a WebSocket.

use super::frame;
use crate::{
    error::{ApiError, ApiJson},
    state::AppState,
    tasks::{TaskEvent, TaskRequest},
};
use axum::{
    extract::{
        ws::{
            rejection::WebSocketUpgradeRejection, CloseFrame, Message, WebSocket, WebSocketUpgrade,
        },
        Path, State,
    },
    http::HeaderMap,
    response::Response,
    Json,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::broadcast;
use utoipa::ToSchema;

/// A task to run.
#[derive(Clone, Debug, Deserialize, ToSchema)]
pub struct ExecuteTask {
    /// Short name.
    pub name: String,
    /// What to do.
    #[serde(default)]
    pub description: Option<String>,
    /// Keep going for up to the iteration cap (accepted for compatibility).
    #[serde(default)]
    pub continuous: Option<bool>,
    /// Seconds before the task is stopped (capped by the server).
    #[serde(default)]
    pub time_limit: Option<u64>,
    /// Model iterations at most (capped at 50).
    #[serde(default)]
    pub max_iterations: Option<u32>,
    /// Model for this task.
    #[serde(default)]
    pub model: Option<String>,
}

fn task_request(state: &AppState, body: ExecuteTask) -> Result<TaskRequest, ApiError> {
    let name = body.name.trim().to_string();
    if name.is_empty() {
        return Err(ApiError::validation("Task name is required."));
    }
    let cap = state.settings.task_time_limit;
    let time_limit = body
        .time_limit
        .map_or(cap, |s| Duration::from_secs(s.max(1)).min(cap));
    Ok(TaskRequest {
        description: penguin_agent::strip_hidden(body.description.as_deref().unwrap_or("")),
        model: state.model_for(body.model.as_deref()),
        max_iterations: body
            .max_iterations
            .unwrap_or(state.settings.max_iterations)
            .clamp(1, 50),
        time_limit,
        metadata: json!({ "continuous": body.continuous.unwrap_or(false) }),
        name,
    })
}

#[utoipa::path(post, path = "/api/v1/tasks/execute-sync", tag = "tasks", request_body = ExecuteTask,
    responses((status = 200, description = "The finished task", body = Object),
              (status = 503, description = "No model provider configured, or at capacity", body = Object)))]
pub async fn execute_sync(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ExecuteTask>,
) -> Result<Json<Value>, ApiError> {
    let request = task_request(&state, body)?;
    state.model()?;
    let result = state.tasks.run_to_end(request).await?;
    Ok(Json(json!({
        "status": result.state.as_str(),
        "response": result.outcome.response,
        "iterations": result.outcome.iterations,
        "execution_time": result.execution_time.as_secs_f64(),
        "action_results": result.outcome.action_results,
        "task_metadata": {
            "task_id": result.task_id,
            "usage": result.outcome.usage,
            "error": result.outcome.error,
        },
    })))
}

#[utoipa::path(post, path = "/api/v1/tasks/execute", tag = "tasks", request_body = ExecuteTask,
    responses((status = 200, description = "Started", body = Object),
              (status = 503, description = "No model provider configured, or at capacity", body = Object)))]
pub async fn execute(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ExecuteTask>,
) -> Result<Json<Value>, ApiError> {
    let request = task_request(&state, body)?;
    state.model()?;
    let (task_id, _) = state.tasks.submit(request).await?;
    Ok(Json(json!({ "status": "started", "task_id": task_id })))
}

#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "Task id")),
    responses((status = 200, description = "State, log and result", body = Object),
              (status = 404, description = "Unknown task", body = Object)))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let task = state.store.get_task(&id).await?;
    let outcome = task.result.as_ref().and_then(|r| r.get("outcome")).cloned();
    Ok(Json(json!({
        "task_id": task.id,
        "id": task.id,
        "name": task.name,
        "description": task.description,
        "state": task.state.as_str(),
        "status": task.state.as_str(),
        "created_at": task.created_at,
        "started_at": task.started_at,
        "finished_at": task.finished_at,
        "log": task.log,
        "result": outcome,
        "execution_time": task.result.as_ref().and_then(|r| r.get("execution_time")).cloned(),
        "metadata": task.metadata,
    })))
}

/// `GET /api/v1/tasks/stream` (WebSocket): one task per connection.
#[utoipa::path(get, path = "/api/v1/tasks/stream", tag = "tasks",
    description = "WebSocket: send one `ExecuteTask` JSON message, receive the task's `task_started`, `task_progress`, `tool`, `message`, `error` and `task_completed` frames (`{event, data}`). Browsers authenticate with the session cookie; an upgrade whose `Origin` is neither the API's own nor in PENGUIN_CORS_ORIGINS is refused.",
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
    Ok(upgrade.on_upgrade(move |socket| task_socket(state, socket)))
}

/// Closes with 1008 (policy violation) and a reason.
async fn refuse(mut socket: WebSocket, message: &str) {
    let _ = socket
        .send(frame("error", json!({ "message": message })))
        .await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: 1008,
            reason: message.to_string().into(),
        })))
        .await;
}

async fn task_socket(state: AppState, mut socket: WebSocket) {
    let first = loop {
        match socket.recv().await {
            Some(Ok(Message::Text(text))) => break text,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            _ => return,
        }
    };
    let body: Value = match serde_json::from_str(&first) {
        Ok(v) => v,
        Err(err) => return refuse(socket, &format!("invalid request: {err}")).await,
    };
    if body
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(|n| n.trim().is_empty())
    {
        return refuse(socket, "Task name is required.").await;
    }
    let request = match serde_json::from_value::<ExecuteTask>(body)
        .map_err(|e| ApiError::validation(e.to_string()))
        .and_then(|b| task_request(&state, b))
    {
        Ok(r) => r,
        Err(err) => return refuse(socket, &err.message).await,
    };
    let (task_id, mut events) = match state.tasks.submit(request).await {
        Ok(started) => started,
        Err(err) => {
            let _ = socket
                .send(frame(
                    "error",
                    json!({ "message": err.message, "code": err.code }),
                ))
                .await;
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
    };
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(TaskEvent { event, data }) => {
                    let done = event == "task_completed";
                    if socket.send(frame(event, data)).await.is_err() {
                        return; // the task keeps running; GET /tasks/{id} has its result
                    }
                    if done {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(task_id, missed, "task watcher lagged");
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            client = socket.recv() => match client {
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "task finished".into(),
        })))
        .await;
}
