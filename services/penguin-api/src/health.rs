//! `GET /api/v1/health`.

use crate::AppState;
use axum::{extract::State, Json};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// Liveness and uptime.
pub async fn health(State(state): State<AppState>) -> Json<Value> {
    let uptime = state.started.elapsed().as_secs();
    let start: DateTime<Utc> = state.started_at.into();
    Json(json!({
        "status": "healthy",
        "timestamp": Utc::now().to_rfc3339(),
        "uptime": {
            "start_time": start.to_rfc3339(),
            "uptime_seconds": uptime,
            "uptime_human": format!("{}h {}m {}s", uptime / 3600, uptime % 3600 / 60, uptime % 60),
        },
    }))
}

#[cfg(test)]
mod tests {
    use crate::{router, AppState};
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    #[tokio::test]
    async fn health_reports_healthy_with_uptime() {
        let response = router(AppState::new())
            .oneshot(
                axum::http::Request::get("/api/v1/health")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: serde_json::Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes())
                .unwrap();
        assert_eq!(body["status"], "healthy");
        assert!(body["uptime"]["uptime_seconds"].as_u64().unwrap() < 5);
        assert!(body["timestamp"].as_str().unwrap().contains('T'));
    }
}
