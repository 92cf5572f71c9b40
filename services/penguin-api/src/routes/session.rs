//! `POST /api/v1/auth/session`: trade an API key for a session cookie
//! (browsers use it for WebSockets, where they cannot set headers).

use crate::{
    auth::{SESSION_COOKIE, SESSION_TTL},
    error::{ApiError, ApiJson},
    state::AppState,
};
use axum::{
    extract::State,
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
    Json,
};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

/// The key to trade.
#[derive(Deserialize, ToSchema)]
pub struct SessionRequest {
    /// An API key.
    pub token: String,
}

#[utoipa::path(post, path = "/api/v1/auth/session", tag = "auth", request_body = SessionRequest,
    responses((status = 200, description = "Session cookie set", body = Object),
              (status = 401, description = "Invalid key", body = Object)))]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<SessionRequest>,
) -> Result<Response, ApiError> {
    if !state.auth.enabled() {
        return Ok(Json(json!({ "status": "ok", "auth_enabled": false })).into_response());
    }
    let id = state
        .auth
        .open_session(body.token.trim())
        .ok_or_else(|| ApiError::unauthenticated("the API key is not valid"))?;
    let secure = if state.settings.cookie_secure {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        SESSION_TTL.as_secs()
    );
    let mut response =
        Json(json!({ "status": "ok", "expires_in": SESSION_TTL.as_secs() })).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie)
            .map_err(|_| ApiError::internal("setting the session cookie"))?,
    );
    Ok(response)
}
