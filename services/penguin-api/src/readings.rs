//! The slow part of a health answer, cached for a second: storage, the
//! process's resources, the tokenator and the remote runner. Probes and load balancers may call
//! `/health` thousands of times a second.
//!
//! CPU use is the process's CPU time over wall time between two readings at
//! least [`MIN_CPU_WINDOW`] apart (100 % is one core busy, as Penguin's
//! psutil reading); memory use is the resident set against the cgroup's
//! memory limit, or the machine's memory when that is lower or unset.

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

/// CPU use is measured over windows at least this long, so a reading right
/// after start or right after the previous one is not a burst's noise.
pub const MIN_CPU_WINDOW: Duration = Duration::from_secs(1);

/// The cgroup v2 memory limit.
const CGROUP_V2_MEMORY_MAX: &str = "/sys/fs/cgroup/memory.max";
/// The cgroup v1 memory limit.
const CGROUP_V1_MEMORY_LIMIT: &str = "/sys/fs/cgroup/memory/memory.limit_in_bytes";

/// The process's CPU time at an instant.
#[derive(Clone, Copy, Debug)]
pub struct CpuSample {
    /// When it was taken.
    pub at: Instant,
    /// CPU seconds (user and system) the process had used by then.
    pub cpu_secs: f64,
}

impl CpuSample {
    /// The process's CPU time now (zero where /proc is missing).
    pub fn now() -> Self {
        CpuSample {
            at: Instant::now(),
            cpu_secs: process_cpu_secs(),
        }
    }
}

/// CPU use between two samples, in percent of one core.
pub fn cpu_percent_between(then: CpuSample, now: CpuSample) -> f64 {
    let wall = now.at.saturating_duration_since(then.at).as_secs_f64();
    if wall <= 0.0 {
        return 0.0;
    }
    round2(((now.cpu_secs - then.cpu_secs) / wall * 100.0).max(0.0))
}

/// Parses a cgroup memory limit file: bytes, or `None` for `max` or junk.
pub fn parse_memory_limit(text: &str) -> Option<u64> {
    text.trim().parse::<u64>().ok().filter(|b| *b > 0)
}

/// The memory the process may use, in KiB: the machine's (`total_kb`), or a
/// cgroup limit when one is set below it.
pub fn memory_limit_kb(total_kb: u64, cgroup_limit_bytes: Option<u64>) -> u64 {
    match cgroup_limit_bytes.map(|b| b / 1024) {
        Some(limit) if limit > 0 && (total_kb == 0 || limit < total_kb) => limit,
        _ => total_kb,
    }
}

/// User and system CPU seconds of this process, from /proc/self/stat.
fn process_cpu_secs() -> f64 {
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
    (ticks(11) + ticks(12)) / 100.0
}

/// The CPU window being measured and the latest complete one's result.
struct CpuWindow {
    start: CpuSample,
    last_percent: f64,
}

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
    cache: Mutex<Option<Readings>>,
    cpu: Mutex<CpuWindow>,
}

impl HealthReadings {
    /// Readings of `store` and the tokenator at `tokenator_socket`; the
    /// first CPU window starts now (CPU use reads 0 until it is complete).
    pub fn new(store: Store, tokenator_socket: Option<PathBuf>) -> Self {
        HealthReadings {
            store,
            tokenator_socket,
            runner: None,
            cache: Mutex::new(None),
            cpu: Mutex::new(CpuWindow {
                start: CpuSample::now(),
                last_percent: 0.0,
            }),
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

    /// CPU use over the latest window of at least [`MIN_CPU_WINDOW`]: a
    /// reading that completes the current window measures it and starts
    /// the next; an earlier one repeats the previous result.
    fn cpu_percent(&self) -> f64 {
        let now = CpuSample::now();
        let mut cpu = self.cpu.lock().unwrap_or_else(|e| e.into_inner());
        if now.at.saturating_duration_since(cpu.start.at) >= MIN_CPU_WINDOW {
            cpu.last_percent = cpu_percent_between(cpu.start, now);
            cpu.start = now;
        }
        cpu.last_percent
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
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessUsage {
    /// Resident memory.
    pub memory_mb: f64,
    /// Resident memory as a share of what the process may use (the cgroup
    /// limit, or the machine's memory).
    pub memory_percent: f64,
    /// What the process may use.
    pub memory_limit_mb: f64,
    /// CPU use over the latest measured window, in percent of one core.
    pub cpu_percent: f64,
    /// Threads.
    pub threads: u64,
}

impl ProcessUsage {
    /// Reads /proc and the cgroup's limit (Linux); zeros elsewhere.
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
        let cgroup = [CGROUP_V2_MEMORY_MAX, CGROUP_V1_MEMORY_LIMIT]
            .iter()
            .find_map(|path| std::fs::read_to_string(path).ok())
            .and_then(|text| parse_memory_limit(&text));
        let limit_kb = memory_limit_kb(total_kb, cgroup);
        ProcessUsage {
            memory_mb: round2(rss_kb as f64 / 1024.0),
            memory_percent: if limit_kb == 0 {
                0.0
            } else {
                round2(rss_kb as f64 * 100.0 / limit_kb as f64)
            },
            memory_limit_mb: round2(limit_kb as f64 / 1024.0),
            cpu_percent,
            threads: field("Threads:"),
        }
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_percent_is_cpu_time_over_wall_time() {
        let then = CpuSample {
            at: Instant::now(),
            cpu_secs: 10.0,
        };
        let at = |ms: u64, cpu_secs: f64| CpuSample {
            at: then.at + Duration::from_millis(ms),
            cpu_secs,
        };
        assert_eq!(cpu_percent_between(then, at(2000, 11.0)), 50.0);
        assert_eq!(cpu_percent_between(then, at(1000, 11.95)), 195.0);
        assert_eq!(cpu_percent_between(then, at(1000, 10.0)), 0.0);
        // No time passed, or the clock of the sample went backwards.
        assert_eq!(cpu_percent_between(then, then), 0.0);
        assert_eq!(cpu_percent_between(at(1000, 12.0), then), 0.0);
    }

    #[test]
    fn memory_limits_prefer_a_lower_cgroup_limit() {
        assert_eq!(parse_memory_limit("max\n"), None);
        assert_eq!(parse_memory_limit("536870912\n"), Some(536_870_912));
        assert_eq!(parse_memory_limit("0"), None);
        assert_eq!(parse_memory_limit(""), None);
        let total_kb = 16 * 1024 * 1024;
        assert_eq!(memory_limit_kb(total_kb, None), total_kb);
        assert_eq!(
            memory_limit_kb(total_kb, Some(512 * 1024 * 1024)),
            512 * 1024
        );
        // cgroup v1's "unlimited" is a huge number.
        assert_eq!(
            memory_limit_kb(total_kb, Some(9_223_372_036_854_771_712)),
            total_kb
        );
        assert_eq!(memory_limit_kb(0, Some(1024 * 1024)), 1024);
    }

    #[test]
    fn the_process_reads_itself() {
        let usage = ProcessUsage::read(0.0);
        if cfg!(target_os = "linux") {
            assert!(usage.memory_mb > 0.0);
            assert!(usage.memory_limit_mb >= usage.memory_mb);
            assert!(usage.memory_percent > 0.0 && usage.memory_percent <= 100.0);
            assert!(usage.threads >= 1);
            let (a, b) = (CpuSample::now(), CpuSample::now());
            assert!(b.cpu_secs >= a.cpu_secs && b.at >= a.at);
        }
    }
}
