//! API-key authentication: `X-API-Key`, `Authorization: Bearer`, or a session
//! cookie from `POST /api/v1/auth/session` (browsers cannot set headers on
//! WebSockets). Checked before any handler runs, so WebSockets are
//! authenticated before the upgrade.

use crate::error::ApiError;
use axum::{
    extract::{Request, State},
    http::{header, HeaderMap},
    middleware::Next,
    response::Response,
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use subtle::ConstantTimeEq;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "penguin_session";
/// How long a browser session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Paths served without a key (the webhook has its own HMAC).
const PUBLIC: &[&str] = &[
    "/api/v1/health",
    "/api/v1/auth/session",
    "/api/v1/integrations/github/webhook",
    "/api/openapi.json",
    "/metrics",
    "/healthz",
];

/// Keys and sessions.
pub struct Auth {
    enabled: bool,
    keys: Vec<Vec<u8>>,
    sessions: Mutex<HashMap<String, Instant>>,
}

impl Auth {
    /// `keys` are the accepted API keys; `enabled` false lets everything through.
    pub fn new(enabled: bool, keys: Vec<String>) -> Self {
        for key in &keys {
            penguin_telemetry::register_secret(key);
        }
        Auth {
            enabled,
            keys: keys.into_iter().map(String::into_bytes).collect(),
            sessions: Mutex::default(),
        }
    }

    /// Whether auth is on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Compares against every key in constant time (no early exit on a match).
    pub fn key_is_valid(&self, candidate: &str) -> bool {
        let candidate = candidate.as_bytes();
        self.keys.iter().fold(0u8, |found, key| {
            found | key.as_slice().ct_eq(candidate).unwrap_u8()
        }) == 1
    }

    /// Starts a browser session for a valid key; returns its id.
    pub fn open_session(&self, key: &str) -> Option<String> {
        if !self.key_is_valid(key) {
            return None;
        }
        let id: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, expires| *expires > Instant::now());
        sessions.insert(id.clone(), Instant::now() + SESSION_TTL);
        Some(id)
    }

    fn session_is_valid(&self, id: &str) -> bool {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions
            .get(id)
            .is_some_and(|expires| *expires > Instant::now())
    }

    fn authenticated(&self, headers: &HeaderMap) -> bool {
        if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
            return self.key_is_valid(key.trim());
        }
        if let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            let token = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "));
            return token.is_some_and(|t| self.key_is_valid(t.trim()));
        }
        cookie(headers, SESSION_COOKIE).is_some_and(|id| self.session_is_valid(&id))
    }
}

/// The value of cookie `name`, if sent.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Middleware: 401 unless the path is public or the request carries a valid
/// key or session.
pub async fn require_auth(
    State(auth): State<Arc<Auth>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let path = request.uri().path();
    if !auth.enabled || PUBLIC.contains(&path) || path.starts_with("/api/docs") {
        return Ok(next.run(request).await);
    }
    if auth.authenticated(request.headers()) {
        Ok(next.run(request).await)
    } else {
        let message = if request.headers().contains_key("x-api-key")
            || request.headers().contains_key(header::AUTHORIZATION)
        {
            "the API key is not valid"
        } else {
            "an API key is required"
        };
        Err(ApiError::unauthenticated(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sessions_and_cookies() {
        let auth = Auth::new(
            true,
            vec!["key-one-0123456789".into(), "key-two-0123456789".into()],
        );
        assert!(auth.key_is_valid("key-two-0123456789"));
        assert!(!auth.key_is_valid("key-two-012345678"));
        assert!(!auth.key_is_valid(""));
        let mut headers = HeaderMap::new();
        assert!(!auth.authenticated(&headers));
        headers.insert(
            "authorization",
            "Bearer key-one-0123456789".parse().unwrap(),
        );
        assert!(auth.authenticated(&headers));
        assert!(auth.open_session("wrong").is_none());
        let id = auth.open_session("key-one-0123456789").unwrap();
        let mut cookies = HeaderMap::new();
        cookies.insert(
            "cookie",
            format!("a=b; {SESSION_COOKIE}={id}").parse().unwrap(),
        );
        assert!(auth.authenticated(&cookies));
        cookies.insert(
            "cookie",
            format!("{SESSION_COOKIE}=forged").parse().unwrap(),
        );
        assert!(!auth.authenticated(&cookies));
    }
}
