//! Request statistics for `/health`'s `performance_metrics`, kept by a
//! middleware: counts, error count, and latency percentiles over a window.

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use chrono::{DateTime, Utc};
use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Latency samples kept for percentiles.
const WINDOW: usize = 2048;

/// Percentiles are recomputed at most this often.
const SNAPSHOT_TTL: std::time::Duration = std::time::Duration::from_millis(250);

#[derive(Default)]
struct Inner {
    count: u64,
    errors: u64,
    total: Duration,
    min: Option<Duration>,
    max: Duration,
    recent: VecDeque<Duration>,
    tasks: u64,
    task_time: Duration,
    last_reset: Option<DateTime<Utc>>,
    /// (when, p95 ms, p99 ms) of the latest percentile computation.
    percentiles: Option<(Instant, f64, f64)>,
}

/// Shared request and task statistics.
#[derive(Clone, Default)]
pub struct Stats {
    inner: Arc<Mutex<Inner>>,
}

/// A snapshot for `/health`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PerformanceMetrics {
    /// Requests served.
    pub request_count: u64,
    /// Mean latency.
    pub avg_latency_ms: f64,
    /// 95th percentile over the recent window.
    pub p95_latency_ms: f64,
    /// 99th percentile over the recent window.
    pub p99_latency_ms: f64,
    /// Fastest.
    pub min_latency_ms: f64,
    /// Slowest.
    pub max_latency_ms: f64,
    /// Share of requests without a server error.
    pub success_rate: f64,
    /// Requests answered with a 5xx.
    pub error_count: u64,
    /// Tasks finished.
    pub task_count: u64,
    /// Mean task duration.
    pub avg_task_duration_sec: f64,
    /// When counting started.
    pub last_reset: String,
}

impl Stats {
    /// Statistics starting now.
    pub fn new() -> Self {
        let stats = Stats::default();
        stats.inner.lock().unwrap().last_reset = Some(Utc::now());
        stats
    }

    fn record(&self, latency: Duration, server_error: bool) {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        s.count += 1;
        s.errors += u64::from(server_error);
        s.total += latency;
        s.min = Some(s.min.map_or(latency, |m| m.min(latency)));
        s.max = s.max.max(latency);
        if s.recent.len() == WINDOW {
            s.recent.pop_front();
        }
        s.recent.push_back(latency);
    }

    /// Records a finished task.
    pub fn record_task(&self, duration: Duration) {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        s.tasks += 1;
        s.task_time += duration;
    }

    /// The current figures.
    pub fn snapshot(&self) -> PerformanceMetrics {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (p95, p99) = match s.percentiles {
            Some((at, p95, p99)) if at.elapsed() < SNAPSHOT_TTL => (p95, p99),
            _ => {
                let mut recent: Vec<Duration> = s.recent.iter().copied().collect();
                recent.sort_unstable();
                let pct = |p: f64| {
                    recent
                        .get(((recent.len() as f64 * p).ceil() as usize).saturating_sub(1))
                        .map_or(0.0, |d| ms(*d))
                };
                let (p95, p99) = (pct(0.95), pct(0.99));
                s.percentiles = Some((Instant::now(), p95, p99));
                (p95, p99)
            }
        };
        PerformanceMetrics {
            request_count: s.count,
            avg_latency_ms: if s.count == 0 {
                0.0
            } else {
                ms(s.total) / s.count as f64
            },
            p95_latency_ms: p95,
            p99_latency_ms: p99,
            min_latency_ms: s.min.map_or(0.0, ms),
            max_latency_ms: ms(s.max),
            success_rate: if s.count == 0 {
                1.0
            } else {
                (s.count - s.errors) as f64 / s.count as f64
            },
            error_count: s.errors,
            task_count: s.tasks,
            avg_task_duration_sec: if s.tasks == 0 {
                0.0
            } else {
                s.task_time.as_secs_f64() / s.tasks as f64
            },
            last_reset: s.last_reset.unwrap_or_else(Utc::now).to_rfc3339(),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Middleware recording every request.
pub async fn track(State(stats): State<Stats>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    stats.record(started.elapsed(), response.status().is_server_error());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_rates() {
        let stats = Stats::new();
        for i in 1..=100 {
            stats.record(Duration::from_millis(i), i == 100);
        }
        let m = stats.snapshot();
        assert_eq!(m.request_count, 100);
        assert_eq!(m.error_count, 1);
        assert_eq!(m.p95_latency_ms, 95.0);
        assert_eq!(m.p99_latency_ms, 99.0);
        assert_eq!(m.min_latency_ms, 1.0);
        assert_eq!(m.max_latency_ms, 100.0);
        assert!((m.success_rate - 0.99).abs() < 1e-9);
        assert!((m.avg_latency_ms - 50.5).abs() < 1e-9);
    }
}
