//! `/capabilities`, `/system/status`, `/system/info`, `/models*`.

use crate::{
    error::{ApiError, ApiJson},
    state::{AppState, CURRENT_MODEL},
};
use axum::{extract::State, Json};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use utoipa::ToSchema;

#[utoipa::path(get, path = "/api/v1/capabilities", tag = "system",
    responses((status = 200, description = "What this server can do", body = Object)))]
pub async fn capabilities(State(state): State<AppState>) -> Json<Value> {
    let model = state.model.as_ref().map(|_| state.model_for(None));
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "vision_enabled": model.as_deref().is_some_and(vision_model),
        "streaming_enabled": state.model.is_some(),
        "reasoning_supported": false,
        "model": model,
        "provider": state.model.as_ref().map(|m| m.provider().to_string()),
        "max_upload_bytes": state.settings.max_upload_bytes,
        "max_concurrent_tasks": state.tasks.max(),
        "runner": format!("{:?}", state.settings.runner).to_lowercase(),
    }))
}

#[utoipa::path(get, path = "/api/v1/system/status", tag = "system",
    responses((status = 200, description = "Run state and token usage", body = Object)))]
pub async fn status(State(state): State<AppState>) -> Json<Value> {
    let active = state.tasks.active();
    let usage = *state.usage.lock().unwrap_or_else(|e| e.into_inner());
    Json(json!({
        "status": "active",
        "runmode_status": if active == 0 { "idle".to_string() } else { format!("running {active} task(s)") },
        "streaming_active": state.streams_active.load(Ordering::Relaxed) > 0,
        "token_usage": usage,
        "timestamp": Utc::now().to_rfc3339(),
    }))
}

#[utoipa::path(get, path = "/api/v1/system/info", tag = "system",
    responses((status = 200, description = "Version, model and managers", body = Object)))]
pub async fn info(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let conversations = state.store.count_conversations().await?;
    let llm = state.settings.llm.as_ref();
    Ok(Json(json!({
        "penguin_version": env!("CARGO_PKG_VERSION"),
        "current_model": match &state.model {
            Some(model) => {
                let id = state.model_for(None);
                json!({
                    "model": id,
                    "provider": model.provider(),
                    "base_url": llm.map(|s| s.base_url.clone()),
                    "streaming_enabled": true,
                    "vision_enabled": vision_model(&id),
                })
            }
            None => Value::Null,
        },
        "conversation_manager": {
            "storage": "sqlite",
            "total_conversations": conversations,
        },
        "task_manager": {
            "max_concurrent": state.tasks.max(),
            "active": state.tasks.active(),
            "queued": state.tasks.queued(),
        },
        "runner": format!("{:?}", state.settings.runner).to_lowercase(),
        "auth_enabled": state.auth.enabled(),
    })))
}

fn vision_model(id: &str) -> bool {
    let id = id.to_ascii_lowercase();
    [
        "vision",
        "gpt-4o",
        "claude-3",
        "claude-sonnet",
        "claude-opus",
        "gemini",
    ]
    .iter()
    .any(|m| id.contains(m))
}

async fn model_list(state: &AppState) -> Result<Vec<Value>, ApiError> {
    let Some(model) = &state.model else {
        return Ok(Vec::new());
    };
    let current = state.model_for(None);
    let mut models = model.models().await?;
    if !models.iter().any(|m| m.id == current) {
        models.insert(
            0,
            penguin_llm::ModelInfo {
                id: current.clone(),
                name: current.clone(),
                provider: model.provider().to_string(),
                vision_enabled: vision_model(&current),
                max_output_tokens: None,
            },
        );
    }
    Ok(models
        .into_iter()
        .map(|m| {
            json!({
                "id": m.id,
                "name": m.name,
                "provider": m.provider,
                "vision_enabled": m.vision_enabled,
                "max_output_tokens": m.max_output_tokens,
                "current": m.id == current,
            })
        })
        .collect())
}

#[utoipa::path(get, path = "/api/v1/models", tag = "models",
    responses((status = 200, description = "Models the provider offers", body = Object),
              (status = 502, description = "Provider failed", body = Object)))]
pub async fn models(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "models": model_list(&state).await? })))
}

#[utoipa::path(get, path = "/api/v1/models/current", tag = "models",
    responses((status = 200, description = "The current model", body = Object),
              (status = 503, description = "No provider configured", body = Object)))]
pub async fn current_model(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let model = state.model()?;
    let id = state.model_for(None);
    Ok(Json(json!({
        "model": id,
        "provider": model.provider(),
        "vision_enabled": vision_model(&id),
        "streaming_enabled": true,
    })))
}

/// `POST /models/switch` body.
#[derive(Deserialize, ToSchema)]
pub struct SwitchModel {
    /// The model to use from now on.
    pub model_id: String,
}

#[utoipa::path(post, path = "/api/v1/models/switch", tag = "models", request_body = SwitchModel,
    responses((status = 200, description = "Switched", body = Object),
              (status = 404, description = "Unknown model", body = Object),
              (status = 503, description = "No provider configured", body = Object)))]
pub async fn switch_model(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<SwitchModel>,
) -> Result<Json<Value>, ApiError> {
    state.model()?;
    let wanted = body.model_id.trim();
    if wanted.is_empty() {
        return Err(ApiError::validation("model_id must not be empty"));
    }
    let known = model_list(&state).await?;
    if !known.iter().any(|m| m["id"] == wanted) {
        return Err(ApiError::not_found("model", wanted));
    }
    state.store.set_setting(CURRENT_MODEL, wanted).await?;
    *state
        .current_model
        .write()
        .unwrap_or_else(|e| e.into_inner()) = wanted.to_string();
    tracing::info!(model = wanted, "model switched");
    Ok(Json(json!({ "status": "success", "model": wanted })))
}
