//! The slow part of a health answer, cached for a second: storage, the
//! process's resources, the tokenator and the remote runner. Probes and load balancers may call
//! `/health` thousands of times a second.

use penguin_api_store::Store;
use penguin_proto::tokenator::v1::{token_service_client::TokenServiceClient, GetTokenRequest};
use serde_json::{json, Value};
use std::{
    path::PathBuf,
    sync::Mutex,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// Readings are reused for this long.
const READINGS_TTL: Duration = Duration::from_secs(1);

/// One set of readings.
#[derive(Clone)]
pub struct Readings {
    at: Instant,
    /// The store answered.
    pub storage_ok: bool,
    /// The process's resources.
    pub process: ProcessUsage,
    /// The tokenator's component entry, when one is configured.
    pub tokenator: Option<Value>,
    /// The remote runner's component entry, when commands run remotely.
    pub runner: Option<Value>,
}

/// Takes readings, at most once a second.
pub struct HealthReadings {
    store: Store,
    tokenator_socket: Option<PathBuf>,
    runner: Option<penguin_runner_client::RunnerClient>,
    started: Instant,
    cache: Mutex<Option<Readings>>,
    /// CPU sample for `cpu_percent`: (wall instant, CPU seconds).
    cpu_sample: Mutex<Option<(Instant, f64)>>,
}

impl HealthReadings {
    /// Readings of `store` and the tokenator at `tokenator_socket`; CPU use
    /// is measured from `started` until the first reading.
    pub fn new(store: Store, tokenator_socket: Option<PathBuf>, started: Instant) -> Self {
        HealthReadings {
            store,
            tokenator_socket,
            runner: None,
            started,
            cache: Mutex::new(None),
            cpu_sample: Mutex::new(None),
        }
    }

    /// Also reads the health of the remote runner behind `client`.
    pub fn with_runner(mut self, client: Option<penguin_runner_client::RunnerClient>) -> Self {
        self.runner = client;
        self
    }

    /// Readings at most a second old.
    pub async fn current(&self) -> Readings {
        if let Some(cached) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            if cached.at.elapsed() < READINGS_TTL {
                return cached;
            }
        }
        let storage_ok = self.store.ping().await.is_ok();
        let tokenator = match &self.tokenator_socket {
            Some(socket) => Some(tokenator_component(socket).await),
            None => None,
        };
        let runner = match &self.runner {
            Some(client) => {
                let serving = tokio::time::timeout(Duration::from_secs(2), client.is_serving())
                    .await
                    .unwrap_or(false);
                Some(json!({
                    "status": if serving { "serving" } else { "unreachable" },
                    "kind": "remote",
                }))
            }
            None => None,
        };
        let fresh = Readings {
            at: Instant::now(),
            storage_ok,
            process: ProcessUsage::read(self.cpu_percent()),
            tokenator,
            runner,
        };
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = Some(fresh.clone());
        fresh
    }

    /// CPU use since the previous reading (or since start).
    fn cpu_percent(&self) -> f64 {
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
        let mut sample = self.cpu_sample.lock().unwrap_or_else(|e| e.into_inner());
        let (then, cpu_then) = sample.unwrap_or((self.started, 0.0));
        *sample = Some((now, cpu_secs));
        let wall = now.duration_since(then).as_secs_f64();
        if wall <= 0.0 {
            return 0.0;
        }
        round2(((cpu_secs - cpu_then) / wall * 100.0).max(0.0))
    }
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

/// The process's memory, CPU and threads.
#[derive(Clone, Copy)]
pub struct ProcessUsage {
    /// Resident memory.
    pub memory_mb: f64,
    /// Resident memory as a share of the machine's.
    pub memory_percent: f64,
    /// CPU use since the previous reading.
    pub cpu_percent: f64,
    /// Threads.
    pub threads: u64,
}

impl ProcessUsage {
    /// Reads /proc (Linux); zeros elsewhere.
    fn read(cpu_percent: f64) -> Self {
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
            cpu_percent,
            threads: field("Threads:"),
        }
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
