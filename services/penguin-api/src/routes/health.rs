//! `GET /api/v1/health`: status, uptime, resources, capacity, performance,
//! and the state of storage, the model provider and the tokenator.
//!
//! `status` follows Penguin under load: `degraded` when the process's CPU or
//! memory use is above 90 %, `at_capacity` when every task worker is busy
//! (it wins over high CPU or memory, as in Penguin), and `degraded` whenever
//! storage fails. The answer is 200 whatever the status: clients read the
//! field, and `/healthz` is the liveness probe.

use crate::{
    readings::{ProcessUsage, Readings},
    state::AppState,
    stats::PerformanceMetrics,
};
use axum::{extract::State, Json};
use chrono::Utc;
use serde_json::{json, Value};

/// Health of the server and what it depends on.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `healthy`, `degraded` or `at_capacity`.
    pub status: &'static str,
    /// Why the status is not `healthy` (empty when it is).
    pub status_reasons: Vec<String>,
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

/// Above this CPU use (percent of one core) the server is `degraded` (Penguin's threshold).
pub const CPU_DEGRADED_PERCENT: f64 = 90.0;
/// Above this memory use (percent of what the process may use) the server is
/// `degraded` (Penguin's threshold).
pub const MEMORY_DEGRADED_PERCENT: f64 = 90.0;

/// The status and why: storage failing is `degraded`; otherwise a full task
/// pool is `at_capacity`; otherwise CPU or memory use above the thresholds
/// is `degraded`.
pub fn status_of(
    storage_ok: bool,
    process: &ProcessUsage,
    active: usize,
    max: usize,
) -> (&'static str, Vec<String>) {
    let mut reasons = Vec::new();
    if !storage_ok {
        reasons.push("storage does not answer".to_string());
    }
    let full = active >= max;
    if full {
        reasons.push(format!("all {max} task workers are busy"));
    }
    if process.cpu_percent > CPU_DEGRADED_PERCENT {
        reasons.push(format!(
            "cpu_percent {} is above {CPU_DEGRADED_PERCENT}",
            process.cpu_percent
        ));
    }
    if process.memory_percent > MEMORY_DEGRADED_PERCENT {
        reasons.push(format!(
            "memory_percent {} is above {MEMORY_DEGRADED_PERCENT}",
            process.memory_percent
        ));
    }
    let status = if !storage_ok {
        "degraded"
    } else if full {
        "at_capacity"
    } else if reasons.is_empty() {
        "healthy"
    } else {
        "degraded"
    };
    (status, reasons)
}

#[utoipa::path(get, path = "/api/v1/health", tag = "system",
    description = "Always 200. `status` is `degraded` when storage fails or the process's CPU (percent of one core) or memory use is above 90 %, `at_capacity` when every task worker is busy, else `healthy`; `status_reasons` says why.",
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
    let (status, status_reasons) = status_of(storage_ok, &process, active, max);
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
        status_reasons,
        timestamp: Utc::now().to_rfc3339(),
        uptime: json!({
            "start_time": state.started_at.to_rfc3339(),
            "uptime_seconds": uptime,
            "uptime_human": format!("{}d {}h {}m {}s", uptime / 86400, uptime % 86400 / 3600, uptime % 3600 / 60, uptime % 60),
        }),
        resource_usage: json!({
            "memory_mb": process.memory_mb,
            "memory_percent": process.memory_percent,
            "memory_limit_mb": process.memory_limit_mb,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(cpu_percent: f64, memory_percent: f64) -> ProcessUsage {
        ProcessUsage {
            cpu_percent,
            memory_percent,
            ..ProcessUsage::default()
        }
    }

    #[test]
    fn healthy_below_every_threshold() {
        let (status, reasons) = status_of(true, &usage(90.0, 90.0), 9, 10);
        assert_eq!(status, "healthy");
        assert!(reasons.is_empty());
    }

    #[test]
    fn cpu_or_memory_above_90_percent_is_degraded() {
        let (status, reasons) = status_of(true, &usage(90.01, 10.0), 0, 10);
        assert_eq!(status, "degraded");
        assert!(reasons[0].starts_with("cpu_percent 90.01"), "{reasons:?}");
        let (status, reasons) = status_of(true, &usage(150.0, 95.5), 0, 10);
        assert_eq!(status, "degraded");
        assert_eq!(reasons.len(), 2);
        let (status, reasons) = status_of(true, &usage(0.0, 91.0), 3, 10);
        assert_eq!(status, "degraded");
        assert!(reasons[0].starts_with("memory_percent 91"), "{reasons:?}");
    }

    #[test]
    fn a_full_pool_is_at_capacity_even_under_load() {
        assert_eq!(status_of(true, &usage(0.0, 0.0), 10, 10).0, "at_capacity");
        let (status, reasons) = status_of(true, &usage(99.0, 99.0), 2, 2);
        assert_eq!(status, "at_capacity");
        assert_eq!(reasons.len(), 3);
    }

    #[test]
    fn failing_storage_is_degraded_whatever_else() {
        let (status, reasons) = status_of(false, &usage(0.0, 0.0), 10, 10);
        assert_eq!(status, "degraded");
        assert_eq!(reasons[0], "storage does not answer");
        assert_eq!(status_of(false, &usage(0.0, 0.0), 0, 10).0, "degraded");
    }
}
