//! `GET /api/v1/health`: status, uptime, resources, capacity, performance,
//! and the state of storage, the model provider and the tokenator.

use crate::{readings::Readings, state::AppState, stats::PerformanceMetrics};
use axum::{extract::State, Json};
use chrono::Utc;
use serde_json::{json, Value};

/// Health of the server and what it depends on.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `healthy`, `degraded` or `at_capacity`.
    pub status: &'static str,
    /// Now (RFC 3339).
    pub timestamp: String,
    /// Uptime.
    #[schema(value_type = Object)]
    pub uptime: Value,
    /// Process resources.
    #[schema(value_type = Object)]
    pub resource_usage: Value,
    /// Task capacity.
    #[schema(value_type = Object)]
    pub agent_capacity: Value,
    /// Request statistics.
    pub performance_metrics: PerformanceMetrics,
    /// Dependencies.
    #[schema(value_type = Object)]
    pub components: Value,
}

#[utoipa::path(get, path = "/api/v1/health", tag = "system",
    responses((status = 200, description = "Health", body = Health)))]
pub async fn health(State(state): State<AppState>) -> Json<Health> {
    let Readings {
        storage_ok,
        process,
        tokenator,
        runner,
        ..
    } = state.health.current().await;
    let (max, active) = (state.tasks.max(), state.tasks.active());
    let status = if !storage_ok {
        "degraded"
    } else if active >= max {
        "at_capacity"
    } else {
        "healthy"
    };
    let uptime = state.started.elapsed().as_secs();
    let mut components = json!({
        "storage": { "status": if storage_ok { "ok" } else { "error" }, "kind": "sqlite" },
        "model_provider": match &state.model {
            Some(model) => json!({ "status": "configured", "provider": model.provider(), "model": state.model_for(None) }),
            None => json!({ "status": "not_configured" }),
        },
    });
    if let Some(tokenator) = tokenator {
        components["tokenator"] = tokenator;
    }
    // Where repository code runs: the remote runner's reachability, or the
    // development runners by name.
    components["runner"] = runner.unwrap_or_else(
        || json!({ "kind": format!("{:?}", state.settings.runner).to_lowercase() }),
    );
    Json(Health {
        status,
        timestamp: Utc::now().to_rfc3339(),
        uptime: json!({
            "start_time": state.started_at.to_rfc3339(),
            "uptime_seconds": uptime,
            "uptime_human": format!("{}d {}h {}m {}s", uptime / 86400, uptime % 86400 / 3600, uptime % 3600 / 60, uptime % 60),
        }),
        resource_usage: json!({
            "memory_mb": process.memory_mb,
            "memory_percent": process.memory_percent,
            "cpu_percent": process.cpu_percent,
            "threads": process.threads,
            "active_tasks": active,
        }),
        agent_capacity: json!({
            "max": max,
            "active": active,
            "available": max.saturating_sub(active),
            "utilization": if max == 0 { 0.0 } else { active as f64 / max as f64 },
        }),
        performance_metrics: state.stats.snapshot(),
        components,
    })
}
