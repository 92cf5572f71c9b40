//! `POST /api/v1/integrations/github/webhook`. Checks, in this order:
//! secret configured (500), signature over the raw bytes (401), JSON (400),
//! delivery id (400), repository allowed (403), not a duplicate (409); then
//! the delivery is committed to SQLite and acknowledged with 200. The work is
//! queued for the worker, never done inline (GitHub gives up after 10 s).

use super::GitHubIntegration;
use crate::{error::ApiError, state::AppState};
use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    Json,
};
use penguin_api_store::{NewDelivery, StoreError};
use serde_json::{json, Value};

/// GitHub does not send payloads over 25 MB.
pub const MAX_BODY: usize = 25 * 1024 * 1024;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

#[utoipa::path(post, path = "/api/v1/integrations/github/webhook", tag = "github",
    request_body(content = Object, description = "A GitHub webhook payload, signed with X-Hub-Signature-256"),
    params(
        ("X-GitHub-Event" = Option<String>, Header, description = "Event name"),
        ("X-GitHub-Delivery" = Option<String>, Header, description = "Delivery GUID"),
        ("X-Hub-Signature-256" = Option<String>, Header, description = "sha256=<hex HMAC of the body>"),
    ),
    security(()),
    responses((status = 200, description = "Stored and queued", body = Object),
              (status = 400, description = "Invalid JSON payload / Missing delivery id", body = Object),
              (status = 401, description = "Invalid signature", body = Object),
              (status = 403, description = "Unauthorized repository", body = Object),
              (status = 409, description = "Duplicate delivery", body = Object),
              (status = 413, description = "Over 25 MB", body = Object)))]
pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let github: &GitHubIntegration = &state.github;
    if github.secrets.is_empty() {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "WEBHOOK_NOT_CONFIGURED",
            "Webhook secret not configured",
        )
        .suggest("Set GITHUB_WEBHOOK_SECRET to the App's webhook secret and restart."));
    }
    let secrets: Vec<&[u8]> = github.secrets.iter().map(Vec::as_slice).collect();
    if !penguin_bot::signature::verify(&secrets, &body, header(&headers, "x-hub-signature-256")) {
        tracing::warn!(
            delivery = header(&headers, "x-github-delivery"),
            "webhook with an invalid signature"
        );
        let mut err = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_SIGNATURE",
            "Invalid signature",
        )
        .suggest(
            "Sign the raw body with HMAC-SHA256 and the webhook secret (X-Hub-Signature-256).",
        );
        err.recoverable = false;
        return Err(err);
    }
    let payload: Value = serde_json::from_slice(&body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_JSON",
            "Invalid JSON payload",
        )
    })?;
    let delivery_id = header(&headers, "x-github-delivery")
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "MISSING_DELIVERY_ID",
                "Missing delivery id",
            )
        })?
        .to_string();
    let event = header(&headers, "x-github-event")
        .unwrap_or("unknown")
        .to_string();
    let repository = payload
        .get("repository")
        .and_then(|r| r.get("full_name"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let span = tracing::info_span!("delivery", delivery_id = %delivery_id, event = %event);
    if let Some(repo) = &repository {
        let config = github.config.current();
        if !config
            .github
            .webhook
            .repo_allowed(repo, github.default_repository.as_deref())
        {
            span.in_scope(|| tracing::warn!(repository = %repo, "delivery for a repository that is not allowed"));
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "UNAUTHORIZED_REPOSITORY",
                "Unauthorized repository",
            ));
        }
    }
    let action = payload
        .get("action")
        .and_then(Value::as_str)
        .map(str::to_string);
    let stored = github
        .store
        .insert_delivery(NewDelivery {
            delivery_id: delivery_id.clone(),
            event: event.clone(),
            action,
            repository,
            payload: body.to_vec(),
        })
        .await;
    match stored {
        Ok(()) => {}
        Err(StoreError::Conflict { .. }) => {
            state.bot_metrics.dedupe_hit();
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "DUPLICATE_DELIVERY",
                "Duplicate delivery",
            ));
        }
        Err(err) => return Err(err.into()),
    }
    state.bot_metrics.received(&event);
    span.in_scope(|| tracing::info!("delivery stored and queued"));
    github.wake.notify_one();
    Ok(Json(json!({ "status": "ok", "event": event })))
}
