//! `/healthz`, `/readyz` and `/metrics`.

use crate::{broker::TokenBroker, metrics::Metrics};
use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Router};
use std::sync::Arc;

#[derive(Clone)]
struct HttpState {
    broker: TokenBroker,
    metrics: Arc<Metrics>,
}

/// The health and metrics routes.
pub fn router(broker: TokenBroker, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(HttpState { broker, metrics })
}

/// Ready while a default token with more than the safety margin exists;
/// a GitHub outage alone does not make the pod unready.
async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    if state.broker.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no valid default token\n")
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
