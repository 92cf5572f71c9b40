//! Prometheus metrics of the tokenator. Labels never carry token material:
//! only results, methods, codes and reasons.

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use std::{collections::HashMap, sync::atomic::AtomicU64};

/// The methods of `TokenService`, for pre-created request counters.
const GRPC_METHODS: [&str; 4] = ["GetToken", "WatchToken", "RevokeToken", "GetAppInfo"];

type Labels = Vec<(String, String)>;

/// Every metric the tokenator exports.
pub struct Metrics {
    registry: Registry,
    /// Unix time the current default token expires (0 when there is none).
    pub token_expiry: Gauge<f64, AtomicU64>,
    /// Mint attempts by `result` (`ok` or an error kind).
    pub mints: Family<Labels, Counter>,
    /// Time to mint and probe a token, seconds.
    pub mint_duration: Histogram,
    /// GitHub's `x-ratelimit-remaining` from the latest answer.
    pub rate_limit_remaining: Gauge,
    /// gRPC requests by `method` and `code`.
    pub grpc_requests: Family<Labels, Counter>,
    /// Rewrites of kept secret files by `file` and `reason` (`rotation`, `restored`).
    pub file_writes: Family<Labels, Counter>,
    /// Webhook redeliveries by `result` (`requested`, `failed`,
    /// `permanent`, `gave_up`).
    pub redeliveries: Family<Labels, Counter>,
    /// Sweeps of the App's delivery log by `result` (`ok` or an error kind).
    pub redelivery_sweeps: Family<Labels, Counter>,
    /// Age of the oldest delivery that failed and was not delivered since,
    /// seconds (0 when none).
    pub oldest_failed_delivery_age: Gauge<f64, AtomicU64>,
    /// Handles into `grpc_requests` for every method and code, so the hot
    /// path counts without allocating label sets.
    grpc_counters: HashMap<(&'static str, i32), Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("penguin_tokenator");
        let token_expiry = Gauge::<f64, AtomicU64>::default();
        let mints = Family::<Labels, Counter>::default();
        let mint_duration = Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]);
        let rate_limit_remaining = Gauge::default();
        let grpc_requests = Family::<Labels, Counter>::default();
        let file_writes = Family::<Labels, Counter>::default();
        let redeliveries = Family::<Labels, Counter>::default();
        let redelivery_sweeps = Family::<Labels, Counter>::default();
        let oldest_failed_delivery_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "token_expiry_timestamp_seconds",
            "Unix time at which the current default installation token expires",
            token_expiry.clone(),
        );
        registry.register(
            "mints",
            "Installation token mint attempts by result",
            mints.clone(),
        );
        registry.register(
            "mint_duration_seconds",
            "Time to mint a token and see it accepted by GitHub",
            mint_duration.clone(),
        );
        registry.register(
            "github_rate_limit_remaining",
            "x-ratelimit-remaining of GitHub's latest answer",
            rate_limit_remaining.clone(),
        );
        registry.register(
            "grpc_requests",
            "gRPC requests by method and status code",
            grpc_requests.clone(),
        );
        registry.register(
            "secret_file_writes",
            "Atomic rewrites of the credentials and token files by reason",
            file_writes.clone(),
        );
        registry.register(
            "redeliveries",
            "Failed webhook deliveries the tokenator asked GitHub to send again, by result",
            redeliveries.clone(),
        );
        registry.register(
            "redelivery_sweeps",
            "Reads of the App's webhook delivery log by result",
            redelivery_sweeps.clone(),
        );
        registry.register(
            "oldest_failed_delivery_age_seconds",
            "Age of the oldest webhook delivery that failed and was not delivered since",
            oldest_failed_delivery_age.clone(),
        );
        let mut grpc_counters = HashMap::new();
        for method in GRPC_METHODS {
            for code in 0..=16 {
                let code = tonic::Code::from_i32(code);
                let labels = vec![
                    ("method".to_string(), method.to_string()),
                    ("code".to_string(), format!("{code:?}")),
                ];
                grpc_counters.insert(
                    (method, code as i32),
                    grpc_requests.get_or_create(&labels).clone(),
                );
            }
        }
        Metrics {
            grpc_counters,
            registry,
            token_expiry,
            mints,
            mint_duration,
            rate_limit_remaining,
            grpc_requests,
            file_writes,
            redeliveries,
            redelivery_sweeps,
            oldest_failed_delivery_age,
        }
    }

    /// Counts redeliveries with `result`.
    pub fn redelivery(&self, result: &str, n: u64) {
        self.redeliveries
            .get_or_create(&vec![("result".into(), result.into())])
            .inc_by(n);
    }

    /// Counts a sweep of the delivery log.
    pub fn redelivery_sweep(&self, result: &str) {
        self.redelivery_sweeps
            .get_or_create(&vec![("result".into(), result.into())])
            .inc();
    }

    /// Counts a gRPC request.
    pub fn grpc(&self, method: &'static str, code: tonic::Code) {
        match self.grpc_counters.get(&(method, code as i32)) {
            Some(counter) => {
                counter.inc();
            }
            None => {
                self.grpc_requests
                    .get_or_create(&vec![
                        ("method".into(), method.into()),
                        ("code".into(), format!("{code:?}")),
                    ])
                    .inc();
            }
        }
    }

    /// Counts a mint attempt.
    pub fn mint(&self, result: &str) {
        self.mints
            .get_or_create(&vec![("result".into(), result.into())])
            .inc();
    }

    /// Counts a rewrite of a kept file.
    pub fn file_write(&self, file: &str, reason: &str) {
        self.file_writes
            .get_or_create(&vec![
                ("file".into(), file.into()),
                ("reason".into(), reason.into()),
            ])
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
