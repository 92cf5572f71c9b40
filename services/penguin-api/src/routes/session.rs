//! `POST /api/v1/auth/session`: trade an API key for a session cookie
//! (browsers use it for WebSockets, where they cannot set headers);
//! `DELETE` ends the session server-side and clears the cookie. Failed trades
//! count against the client address like any failed key check.

use crate::{
    auth::{cookie, ClientIp, SESSION_COOKIE, SESSION_TTL},
    error::{ApiError, ApiJson},
    state::AppState,
};
use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue},
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
              (status = 401, description = "Invalid key", body = Object),
              (status = 429, description = "Too many failed key checks from this address; see Retry-After", body = Object)))]
pub async fn create(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<SessionRequest>,
) -> Result<Response, ApiError> {
    if !state.auth.enabled() {
        return Ok(Json(json!({ "status": "ok", "auth_enabled": false })).into_response());
    }
    state.auth.check_throttle(ip)?;
    let Some(id) = state.auth.open_session(body.token.trim()) else {
        state.auth.key_failed(ip);
        return Err(ApiError::unauthenticated("the API key is not valid"));
    };
    let cookie = format!(
        "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        secure(&state)
    );
    let mut response =
        Json(json!({ "status": "ok", "expires_in": SESSION_TTL.as_secs() })).into_response();
    set_cookie(&mut response, &cookie)?;
    Ok(response)
}

#[utoipa::path(delete, path = "/api/v1/auth/session", tag = "auth",
    description = "Log out: ends the session named by the `penguin_session` cookie server-side (a later request with it is 401) and clears the cookie. Answers 200 also when there was no session.",
    responses((status = 200, description = "Session ended and cookie cleared", body = Object)))]
pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let ended = cookie(&headers, SESSION_COOKIE).is_some_and(|id| state.auth.close_session(&id));
    let cookie = format!(
        "{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        secure(&state)
    );
    let mut response = Json(json!({ "status": "ok", "ended": ended })).into_response();
    set_cookie(&mut response, &cookie)?;
    Ok(response)
}

fn secure(state: &AppState) -> &'static str {
    if state.settings.cookie_secure {
        "; Secure"
    } else {
        ""
    }
}

fn set_cookie(response: &mut Response, cookie: &str) -> Result<(), ApiError> {
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(cookie)
            .map_err(|_| ApiError::internal("setting the session cookie"))?,
    );
    Ok(())
}
