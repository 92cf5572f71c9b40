//! Conversations (with their paged history) and checkpoints.

use crate::{
    error::{optional_json, ApiError, ApiJson, ApiQuery},
    ids::{self, DEFAULT_AGENT},
    state::AppState,
};
use axum::{
    extract::{Path, Query, State},
    Json,
};
use penguin_api_store::HistoryQuery;
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
    /// Create it under this id (1-128 characters of `A-Z a-z 0-9 . _ : -`);
    /// a fresh `conv_…` id when absent or empty. An id in use is 409 `CONFLICT`.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,128}$", example = "test-1764650000")]
    pub id: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/conversations/create", tag = "conversations",
    request_body(content = Option<CreateConversation>, content_type = "application/json"),
    responses((status = 200, description = "Created: `{conversation_id}`", body = Object),
              (status = 400, description = "The id cannot be used (`INVALID_CONVERSATION_ID`), or malformed JSON", body = Object),
              (status = 409, description = "A conversation with this id exists (`CONFLICT`)", body = Object),
              (status = 422, description = "A body of the wrong shape", body = Object)))]
pub async fn create(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: CreateConversation = optional_json(&body)?;
    let name = request
        .name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    let c = match request.id.as_deref().filter(|id| !id.is_empty()) {
        Some(id) => {
            let id = ids::conversation_id(id)?;
            state
                .store
                .create_conversation_with_id(id, name, json!({}))
                .await?
        }
        None => state.store.create_conversation(name, json!({})).await?,
    };
    Ok(Json(json!({ "conversation_id": c.id })))
}

/// Messages a history page holds when `limit` is not given.
pub const HISTORY_DEFAULT_LIMIT: usize = 100;
/// The largest `limit` of a history page.
pub const HISTORY_MAX_LIMIT: usize = penguin_api_store::MAX_LIMIT;

/// `GET /conversations/{id}/history` query. Values are checked by hand so a
/// bad one gets a 400 naming it.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Messages per page, 1-1000 (default 100). The first page holds the most
    /// recent ones.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// Include `system` messages (default true, as in Penguin):
    /// true/false, 1/0, yes/no, on/off.
    #[param(value_type = Option<bool>)]
    pub include_system: Option<String>,
    /// Only this agent's messages. This server runs one agent, `default`,
    /// whose every message is; another valid agent id yields no messages.
    #[param(value_type = Option<String>, pattern = "^[a-z0-9_-]{1,64}$")]
    pub agent_id: Option<String>,
    /// Only messages of this type: `message` (user, assistant and system
    /// messages), `action` (tool results) or `status` (none are stored).
    #[param(value_type = Option<String>, pattern = "^(message|action|status)$")]
    pub message_type: Option<String>,
    /// Only messages on this channel; messages here have none, so any
    /// channel yields no messages.
    pub channel: Option<String>,
    /// The previous page's `next_cursor`: the messages before that page.
    pub cursor: Option<String>,
}

/// What a history request asks for, checked.
#[derive(Debug, PartialEq)]
struct HistoryRequest {
    limit: usize,
    include_system: bool,
    /// Only these roles; every role when `None`.
    roles: Option<Vec<&'static str>>,
    /// No message can match (another agent's, or a channel's).
    nothing_matches: bool,
    before: Option<u64>,
}

fn param_error(name: &str, message: String) -> ApiError {
    ApiError::bad_request(message).with_details(json!({ "parameter": name }))
}

/// Roles of each `message_type` (Penguin's: `message` for dialog and
/// context, `action` for tool results, `status` for notices).
fn roles_of(message_type: &str) -> Option<&'static [&'static str]> {
    match message_type {
        "message" => Some(&["user", "assistant", "system"]),
        "action" => Some(&["tool"]),
        "status" => Some(&[]),
        _ => None,
    }
}

/// The `message_type` and `category` Penguin's clients read, from a role.
fn kind_of(role: &str) -> (&'static str, &'static str) {
    match role {
        "tool" => ("action", "SYSTEM_OUTPUT"),
        "system" => ("message", "CONTEXT"),
        _ => ("message", "DIALOG"),
    }
}

const CURSOR_PREFIX: &str = "h1.";

/// An opaque cursor (to clients): the position the next page reads before.
fn encode_cursor(before: u64) -> String {
    format!("{CURSOR_PREFIX}{before:x}")
}

fn decode_cursor(cursor: &str) -> Result<u64, ApiError> {
    cursor
        .strip_prefix(CURSOR_PREFIX)
        .filter(|hex| !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "INVALID_CURSOR",
                "cursor is not one this endpoint returned",
            )
            .suggest("Pass a next_cursor from a previous answer unchanged, or leave cursor out for the most recent page.")
            .with_details(json!({ "parameter": "cursor" }))
        })
}

impl HistoryParams {
    fn check(&self) -> Result<HistoryRequest, ApiError> {
        let limit = match self.limit.as_deref() {
            None => HISTORY_DEFAULT_LIMIT,
            Some(raw) => match raw.trim().parse::<usize>() {
                Ok(n) if (1..=HISTORY_MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(param_error(
                        "limit",
                        format!(
                        "limit must be a whole number from 1 to {HISTORY_MAX_LIMIT}, not {raw:?}"
                    ),
                    ))
                }
            },
        };
        let include_system = match self.include_system.as_deref() {
            None => true,
            Some(raw) => super::query_bool("include_system", raw)?,
        };
        let mut nothing_matches = false;
        if let Some(agent) = self.agent_id.as_deref() {
            match ids::agent_id(agent) {
                Ok(_) => {}
                // Penguin filters by agent: another agent has no messages here.
                Err(err) if err.code == "AGENT_NOT_FOUND" => nothing_matches = true,
                Err(err) => return Err(err),
            }
        }
        if self.channel.is_some() {
            nothing_matches = true;
        }
        let mut roles: Option<Vec<&'static str>> = match self.message_type.as_deref() {
            None => None,
            Some(kind) => Some(
                roles_of(kind)
                    .ok_or_else(|| {
                        param_error(
                            "message_type",
                            format!("message_type must be message, action or status, not {kind:?}"),
                        )
                    })?
                    .to_vec(),
            ),
        };
        if !include_system {
            let all = roles
                .take()
                .unwrap_or_else(|| penguin_api_store::MESSAGE_ROLES.to_vec());
            roles = Some(all.into_iter().filter(|r| *r != "system").collect());
        }
        let before = self.cursor.as_deref().map(decode_cursor).transpose()?;
        Ok(HistoryRequest {
            limit,
            include_system,
            roles,
            nothing_matches,
            before,
        })
    }
}

#[utoipa::path(get, path = "/api/v1/conversations/{id}/history", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id (1-128 characters of `A-Z a-z 0-9 . _ : -`)", pattern = "^[A-Za-z0-9._:-]{1,128}$"), HistoryParams),
    description = "Penguin's `{conversation_id, messages}`, paged: the first page holds the most recent `limit` matching messages, oldest first; while `has_more` is true, `next_cursor` reads the ones before them. Each message: `id`, `seq`, `role`, `content`, `category` (`DIALOG`, `CONTEXT`, `SYSTEM_OUTPUT`), `timestamp`, `agent_id`, `recipient_id`, `message_type` (`message`, `action`), `metadata`.",
    responses((status = 200, description = "A page of messages", body = Object),
              (status = 400, description = "A bad parameter (`BAD_REQUEST`, `INVALID_CURSOR`, `INVALID_AGENT_ID`) or conversation id (`INVALID_CONVERSATION_ID`)", body = Object),
              (status = 404, description = "Unknown conversation", body = Object)))]
pub async fn history(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<HistoryParams>,
) -> Result<Json<Value>, ApiError> {
    let id = ids::conversation_id(&id)?;
    let request = params.check()?;
    let roles = if request.nothing_matches {
        Some(Vec::new())
    } else {
        request
            .roles
            .map(|roles| roles.into_iter().map(String::from).collect())
    };
    let page = state
        .store
        .conversation_history(
            id,
            HistoryQuery {
                roles,
                before: request.before,
                limit: request.limit,
            },
        )
        .await?;
    let next_cursor = page
        .has_more
        .then(|| page.messages.first().map(|m| encode_cursor(m.seq)))
        .flatten();
    let messages: Vec<Value> = page
        .messages
        .iter()
        .map(|m| {
            let (message_type, category) = kind_of(&m.role);
            json!({
                "id": format!("msg_{}", m.seq),
                "seq": m.seq,
                "role": m.role,
                "content": m.content,
                "category": category,
                "timestamp": m.timestamp,
                "agent_id": DEFAULT_AGENT,
                "recipient_id": Value::Null,
                "message_type": message_type,
                "metadata": {},
            })
        })
        .collect();
    Ok(Json(json!({
        "conversation_id": id,
        "messages": messages,
        "limit": request.limit,
        "include_system": request.include_system,
        "has_more": next_cursor.is_some(),
        "next_cursor": next_cursor,
    })))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn params(query: &str) -> HistoryParams {
        let uri: axum::http::Uri = format!("/h?{query}").parse().unwrap();
        axum::extract::Query::<HistoryParams>::try_from_uri(&uri)
            .unwrap()
            .0
    }

    #[test]
    fn defaults_follow_penguin() {
        let request = params("").check().unwrap();
        assert_eq!(
            request,
            HistoryRequest {
                limit: HISTORY_DEFAULT_LIMIT,
                include_system: true,
                roles: None,
                nothing_matches: false,
                before: None,
            }
        );
    }

    #[test]
    fn filters_become_roles() {
        let r = params("include_system=false").check().unwrap();
        assert_eq!(r.roles, Some(vec!["user", "assistant", "tool"]));
        let r = params("message_type=message&include_system=OFF")
            .check()
            .unwrap();
        assert_eq!(r.roles, Some(vec!["user", "assistant"]));
        let r = params("message_type=action").check().unwrap();
        assert_eq!(r.roles, Some(vec!["tool"]));
        let r = params("message_type=status").check().unwrap();
        assert_eq!(r.roles, Some(vec![]));
        assert!(!params("agent_id=default").check().unwrap().nothing_matches);
        assert!(params("agent_id=helper").check().unwrap().nothing_matches);
        assert!(params("channel=general").check().unwrap().nothing_matches);
        assert_eq!(params("limit=1000").check().unwrap().limit, 1000);
    }

    #[test]
    fn bad_values_name_their_parameter() {
        for (query, parameter) in [
            ("limit=0", "limit"),
            ("limit=-1", "limit"),
            ("limit=1001", "limit"),
            ("limit=", "limit"),
            ("include_system=2", "include_system"),
            ("message_type=MESSAGE", "message_type"),
            ("cursor=h1.", "cursor"),
            ("cursor=h1.zz", "cursor"),
            ("cursor=12", "cursor"),
        ] {
            let err = params(query).check().unwrap_err();
            assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST, "{query}");
            assert_eq!(err.details.unwrap()["parameter"], parameter, "{query}");
        }
        let err = params("agent_id=A").check().unwrap_err();
        assert_eq!(err.code, "INVALID_AGENT_ID");
    }

    #[test]
    fn cursors_round_trip() {
        for seq in [0, 1, 99, u64::MAX] {
            assert_eq!(decode_cursor(&encode_cursor(seq)).unwrap(), seq);
        }
        let r = params(&format!("cursor={}", encode_cursor(42)))
            .check()
            .unwrap();
        assert_eq!(r.before, Some(42));
    }

    #[test]
    fn kinds_of_roles() {
        assert_eq!(kind_of("user"), ("message", "DIALOG"));
        assert_eq!(kind_of("assistant"), ("message", "DIALOG"));
        assert_eq!(kind_of("system"), ("message", "CONTEXT"));
        assert_eq!(kind_of("tool"), ("action", "SYSTEM_OUTPUT"));
        for kind in ["message", "action", "status"] {
            for role in roles_of(kind).unwrap() {
                assert_eq!(kind_of(role).0, kind);
            }
        }
    }
}
