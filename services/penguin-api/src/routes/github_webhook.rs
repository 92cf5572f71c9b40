//! `POST /api/v1/integrations/github/webhook`: the bot's ingress
//! (`penguin_bot::ingress`) verifies and stores the delivery; this route maps
//! its answer to HTTP: secret configured (500), signature over the raw bytes
//! (401), JSON (400), delivery id (400), repository allowed (403), then 200:
//! `{"status":"ok"}`, or `{"status":"duplicate"}` for a GUID already stored
//! (acknowledged so GitHub's log shows it delivered; not processed again).

use crate::webhook_body::BodyError;
use crate::{error::ApiError, state::AppState};
use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, StatusCode},
    Json,
};
use penguin_bot::ingress::{DeliveryHeaders, IngressError};
use serde_json::{json, Value};

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
    responses((status = 200, description = "Stored and queued (`status: ok`), or stored before and acknowledged (`status: duplicate`)", body = Object),
              (status = 400, description = "Invalid JSON payload / Missing delivery id", body = Object),
              (status = 401, description = "Invalid signature", body = Object),
              (status = 403, description = "Unauthorized repository", body = Object),
              (status = 408, description = "The body did not arrive in time", body = Object),
              (status = 413, description = "Over 25 MB", body = Object),
              (status = 503, description = "Too many bodies being received; Retry-After says when to try again", body = Object)))]
pub async fn receive(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    // The bytes stay charged to the budget until the delivery is stored.
    let (body, _held) = state
        .webhook_body
        .read(declared, body)
        .await
        .map_err(unread)?;
    let headers = &parts.headers;
    let delivery = DeliveryHeaders {
        event: header(headers, "x-github-event"),
        delivery_id: header(headers, "x-github-delivery"),
        signature: header(headers, "x-hub-signature-256"),
    };
    match state.ingress.accept(delivery, &body).await {
        Ok(accepted) => Ok(Json(json!({
            "status": if accepted.duplicate { "duplicate" } else { "ok" },
            "event": accepted.event,
        }))),
        Err(err) => Err(refusal(err)),
    }
}

/// The error shape for a body that was not read.
fn unread(err: BodyError) -> ApiError {
    let message = err.to_string();
    match err {
        BodyError::TooLarge { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", message)
        }
        BodyError::Busy => {
            let mut err = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "WEBHOOK_BUSY", message);
            err.retry_after = Some(1);
            err
        }
        BodyError::TooSlow(_) => {
            ApiError::new(StatusCode::REQUEST_TIMEOUT, "REQUEST_TIMEOUT", message)
        }
        BodyError::Read(_) => ApiError::bad_request(message),
    }
}

/// The error shape for each refusal, with GitHub's wording.
fn refusal(err: IngressError) -> ApiError {
    let message = err.to_string();
    match err {
        IngressError::NotConfigured => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "WEBHOOK_NOT_CONFIGURED",
            message,
        )
        .suggest("Set GITHUB_WEBHOOK_SECRET to the App's webhook secret and restart."),
        IngressError::InvalidSignature => {
            let mut err = ApiError::new(StatusCode::UNAUTHORIZED, "INVALID_SIGNATURE", message)
                .suggest(
                "Sign the raw body with HMAC-SHA256 and the webhook secret (X-Hub-Signature-256).",
            );
            err.recoverable = false;
            err
        }
        IngressError::InvalidJson => {
            ApiError::new(StatusCode::BAD_REQUEST, "INVALID_JSON", message)
        }
        IngressError::MissingDeliveryId => {
            ApiError::new(StatusCode::BAD_REQUEST, "MISSING_DELIVERY_ID", message)
        }
        IngressError::UnauthorizedRepository => {
            ApiError::new(StatusCode::FORBIDDEN, "UNAUTHORIZED_REPOSITORY", message)
        }
        IngressError::Store(err) => err.into(),
    }
}
