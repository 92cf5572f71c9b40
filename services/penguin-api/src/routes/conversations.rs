//! Conversations and checkpoints.

use crate::{
    error::{optional_json, ApiError, ApiJson},
    state::AppState,
};
use axum::{
    extract::{Path, Query, State},
    Json,
};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

#[utoipa::path(get, path = "/api/v1/conversations", tag = "conversations",
    responses((status = 200, description = "Conversations, newest first", body = Object)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let conversations = state.store.list_conversations(1000).await?;
    Ok(Json(json!({
        "conversations": conversations.iter().map(|c| json!({
            "id": c.id,
            "created_at": c.created_at,
            "last_active": c.last_active,
            "message_count": c.message_count,
            "title": c.title,
        })).collect::<Vec<_>>()
    })))
}

#[utoipa::path(get, path = "/api/v1/conversations/{id}", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, description = "The conversation with its messages", body = Object),
              (status = 404, description = "Unknown conversation", body = Object)))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let c = state.store.get_conversation(&id).await?;
    Ok(Json(json!({
        "id": c.id,
        "title": c.title,
        "messages": c.messages,
        "created_at": c.created_at,
        "last_active": c.last_active,
        "metadata": c.metadata,
    })))
}

/// `POST /conversations/create` body (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CreateConversation {
    /// A title.
    #[serde(default)]
    pub name: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/conversations/create", tag = "conversations",
    request_body(content = Option<CreateConversation>, content_type = "application/json"),
    responses((status = 200, description = "Created", body = Object)))]
pub async fn create(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: CreateConversation = optional_json(&body)?;
    let name = request
        .name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    let c = state.store.create_conversation(name, json!({})).await?;
    Ok(Json(json!({ "conversation_id": c.id })))
}

/// `POST /checkpoints/create` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateCheckpoint {
    /// Checkpoint name.
    #[serde(default)]
    pub name: Option<String>,
    /// What it captures.
    #[serde(default)]
    pub description: Option<String>,
    /// The conversation (session) to capture; the most recently active one when absent.
    #[serde(default, alias = "session_id")]
    pub conversation_id: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/checkpoints/create", tag = "checkpoints", request_body = CreateCheckpoint,
    responses((status = 200, description = "Created", body = Object),
              (status = 404, description = "No such conversation", body = Object)))]
pub async fn create_checkpoint(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateCheckpoint>,
) -> Result<Json<Value>, ApiError> {
    let conversation_id = match body.conversation_id.filter(|c| !c.is_empty()) {
        Some(id) => id,
        None => state
            .store
            .list_conversations(1)
            .await?
            .into_iter()
            .next()
            .map(|c| c.id)
            .ok_or_else(|| {
                ApiError::not_found("conversation", "(most recent)")
                    .suggest("Start a conversation first.")
            })?,
    };
    let cp = state
        .store
        .create_checkpoint(&conversation_id, body.name, body.description)
        .await?;
    Ok(Json(json!({
        "checkpoint_id": cp.checkpoint_id,
        "status": "created",
        "name": cp.name,
        "description": cp.description,
        "conversation_id": cp.conversation_id,
        "message_count": cp.message_count,
    })))
}

/// `GET /checkpoints` query.
#[derive(Debug, Deserialize, IntoParams)]
pub struct CheckpointQuery {
    /// Only this conversation's checkpoints.
    pub session_id: Option<String>,
    /// At most this many.
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/checkpoints", tag = "checkpoints", params(CheckpointQuery),
    responses((status = 200, description = "Checkpoints, newest first", body = Object)))]
pub async fn list_checkpoints(
    State(state): State<AppState>,
    Query(query): Query<CheckpointQuery>,
) -> Result<Json<Value>, ApiError> {
    let cps = state
        .store
        .list_checkpoints(query.session_id.as_deref(), query.limit.unwrap_or(50))
        .await?;
    Ok(Json(json!({
        "checkpoints": cps.iter().map(|cp| json!({
            "checkpoint_id": cp.checkpoint_id,
            "id": cp.checkpoint_id,
            "name": cp.name,
            "description": cp.description,
            "session_id": cp.conversation_id,
            "created_at": cp.created_at,
            "message_count": cp.message_count,
        })).collect::<Vec<_>>()
    })))
}

#[utoipa::path(post, path = "/api/v1/checkpoints/{id}/rollback", tag = "checkpoints",
    params(("id" = String, Path, description = "Checkpoint id")),
    responses((status = 200, description = "Conversation restored", body = Object),
              (status = 404, description = "Unknown checkpoint", body = Object)))]
pub async fn rollback(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let c = state.store.rollback_checkpoint(&id).await?;
    Ok(Json(json!({
        "status": "success",
        "checkpoint_id": id,
        "conversation_id": c.id,
        "message_count": c.messages.len(),
    })))
}

/// `POST /checkpoints/{id}/branch` body (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct BranchCheckpoint {
    /// Title of the new conversation.
    #[serde(default)]
    pub name: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/checkpoints/{id}/branch", tag = "checkpoints",
    params(("id" = String, Path, description = "Checkpoint id")),
    request_body(content = Option<BranchCheckpoint>, content_type = "application/json"),
    responses((status = 200, description = "New conversation from the checkpoint", body = Object),
              (status = 404, description = "Unknown checkpoint", body = Object)))]
pub async fn branch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: BranchCheckpoint = optional_json(&body)?;
    let c = state.store.branch_checkpoint(&id, request.name).await?;
    Ok(Json(json!({
        "status": "success",
        "checkpoint_id": id,
        "branch_id": c.id,
        "conversation_id": c.id,
        "message_count": c.messages.len(),
    })))
}
