//! `GET /api/v1/health`: status, uptime, resources, capacity, performance,
//! and the state of storage, the model provider and the tokenator.

use crate::{state::AppState, stats::PerformanceMetrics};
use axum::{extract::State, Json};
use chrono::Utc;
use penguin_proto::tokenator::v1::{token_service_client::TokenServiceClient, GetTokenRequest};
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// Dependency and process readings are reused for this long: probes and
/// load balancers may call `/health` thousands of times a second.
const READINGS_TTL: Duration = Duration::from_secs(1);

/// The cached slow part of a health answer.
#[derive(Clone)]
pub struct Readings {
    at: Instant,
    storage_ok: bool,
    process: ProcessUsage,
    tokenator: Option<Value>,
}

async fn readings(state: &AppState) -> Readings {
    if let Some(cached) = state
        .health_cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
    {
        if cached.at.elapsed() < READINGS_TTL {
            return cached;
        }
    }
    let storage_ok = state.store.ping().await.is_ok();
    let tokenator = match &state.settings.tokenator_socket {
        Some(socket) => Some(tokenator_component(socket).await),
        None => None,
    };
    let fresh = Readings {
        at: Instant::now(),
        storage_ok,
        process: ProcessUsage::read(state),
        tokenator,
    };
    *state.health_cache.lock().unwrap_or_else(|e| e.into_inner()) = Some(fresh.clone());
    fresh
}

#[utoipa::path(get, path = "/api/v1/health", tag = "system",
    responses((status = 200, description = "Health", body = Health)))]
pub async fn health(State(state): State<AppState>) -> Json<Health> {
    let Readings {
        storage_ok,
        process,
        tokenator,
        ..
    } = readings(&state).await;
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

/// Reachability of the tokenator and its token's time to expiry.
async fn tokenator_component(socket: &std::path::Path) -> Value {
    let probe = async {
        let channel = penguin_proto::connect_unix(socket)
            .await
            .map_err(|e| e.to_string())?;
        let answer = TokenServiceClient::new(channel)
            .get_token(GetTokenRequest::default())
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        Ok::<_, String>(answer.expires_at.map(|t| t.seconds))
    };
    match tokio::time::timeout(Duration::from_secs(2), probe).await {
        Ok(Ok(expires)) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs() as i64;
            json!({ "status": "reachable", "token_expires_in_seconds": expires.map(|e| e - now) })
        }
        Ok(Err(reason)) => {
            json!({ "status": "unreachable", "reason": penguin_telemetry::redact(&reason) })
        }
        Err(_) => json!({ "status": "unreachable", "reason": "no answer within 2 s" }),
    }
}

#[derive(Clone, Copy)]
struct ProcessUsage {
    memory_mb: f64,
    memory_percent: f64,
    cpu_percent: f64,
    threads: u64,
}

impl ProcessUsage {
    /// Reads /proc (Linux); zeros elsewhere.
    fn read(state: &AppState) -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let rss_kb = field("VmRSS:");
        let total_kb = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        ProcessUsage {
            memory_mb: round2(rss_kb as f64 / 1024.0),
            memory_percent: if total_kb == 0 {
                0.0
            } else {
                round2(rss_kb as f64 * 100.0 / total_kb as f64)
            },
            cpu_percent: cpu_percent(state),
            threads: field("Threads:"),
        }
    }
}

/// CPU use since the previous health call (or since start).
fn cpu_percent(state: &AppState) -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let cpu_secs = (ticks(11) + ticks(12)) / 100.0;
    let now = Instant::now();
    let mut sample = state.cpu_sample.lock().unwrap_or_else(|e| e.into_inner());
    let (then, cpu_then) = sample.unwrap_or((state.started, 0.0));
    *sample = Some((now, cpu_secs));
    let wall = now.duration_since(then).as_secs_f64();
    if wall <= 0.0 {
        return 0.0;
    }
    round2(((cpu_secs - cpu_then) / wall * 100.0).max(0.0))
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
