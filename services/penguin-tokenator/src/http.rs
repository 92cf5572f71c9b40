//! `/healthz`, `/readyz` and `/metrics`.

use crate::{broker::TokenBroker, metrics::Metrics, secret_file::FileFormat};
use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Router};
use std::{path::PathBuf, sync::Arc};

#[derive(Clone)]
struct HttpState {
    broker: TokenBroker,
    metrics: Arc<Metrics>,
    credentials: Arc<(PathBuf, FileFormat)>,
}

/// The health and metrics routes. Readiness also requires `credentials`
/// (the git credentials file) to hold the current token, so nothing that
/// starts after the tokenator is ready can find it missing.
pub fn router(
    broker: TokenBroker,
    metrics: Arc<Metrics>,
    credentials: (PathBuf, FileFormat),
) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(HttpState {
            broker,
            metrics,
            credentials: Arc::new(credentials),
        })
}

/// Ready while a default token with more than the safety margin exists;
/// a GitHub outage alone does not make the pod unready.
async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    let Some(token) = state
        .broker
        .default_scope()
        .and_then(|s| state.broker.usable(&s))
    else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no valid default token\n");
    };
    let (path, format) = state.credentials.as_ref();
    let expected = format.render(token.token.expose());
    match tokio::fs::read(path).await {
        Ok(current) if current == expected.as_bytes() => (StatusCode::OK, "ready\n"),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "credentials file not written yet\n",
        ),
    }
}

async fn metrics_text(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}
