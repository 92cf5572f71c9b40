//! penguin-api throughput and footprint: `GET /api/v1/health` and
//! `POST /api/v1/chat/message` (against the LLM stand-in) with closed-loop
//! callers over keep-alive connections; idle RSS, RSS after 10k requests,
//! and start-to-ready time.
//!
//! `cargo bench -p penguin-api --bench api` — prints its numbers; asserts nothing.

use llm_standin::LlmStandIn;
use penguin_test_support::{
    api::{self, Api},
    process::ServiceProcess,
};
use serde_json::json;
use std::{
    path::Path,
    time::{Duration, Instant},
};

const BIN: &str = env!("CARGO_BIN_EXE_penguin-api");
const RUN: Duration = Duration::from_secs(5);

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn pid_of(process: &ServiceProcess) -> u32 {
    process.pid().expect("running")
}

/// `callers` closed loops sending `make()` until RUN ends: (req/s, p50 ms, p99 ms, count).
async fn load(
    callers: usize,
    make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder + Clone + Send + 'static,
) -> (f64, f64, f64, usize) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(callers)
        .build()
        .unwrap();
    penguin_test_support::load::closed_loop(callers, RUN, move || {
        let request = make(&client);
        async move {
            let response = request.send().await.expect("request");
            assert!(response.status().is_success(), "{}", response.status());
            response.bytes().await.unwrap();
        }
    })
    .await
}

#[tokio::main]
async fn main() {
    api::install_crypto();
    let llm = LlmStandIn::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut env = api::env(dir.path(), Some(&llm));
    env.insert("RUST_LOG".into(), "warn,penguin_api=info".into());

    let mut ready = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let process = ServiceProcess::spawn(Path::new(BIN), &[], &env).unwrap();
        let addr = process.bound_addr(api::LISTENING).await.unwrap();
        let url = format!("http://{addr}/api/v1/health");
        while reqwest::get(&url)
            .await
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        ready.push(started.elapsed());
    }
    ready.sort();
    println!(
        "start to ready (5 runs): median {:.1} ms (min {:.1}, max {:.1})",
        ready[2].as_secs_f64() * 1e3,
        ready[0].as_secs_f64() * 1e3,
        ready[4].as_secs_f64() * 1e3
    );

    let api = Api::start(BIN, env).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = pid_of(&api.process);
    println!("idle RSS: {:.1} MB", rss_mb(pid));

    let health = api.url("/api/v1/health");
    for callers in [16, 64] {
        let url = health.clone();
        let (rps, p50, p99, n) = load(callers, move |c| c.get(&url)).await;
        println!("GET /api/v1/health        {callers:>3} callers: {rps:>8.0} req/s  p50 {p50:.3} ms  p99 {p99:.3} ms  ({n} requests, ~1.3 KB answers)");
    }
    let chat = api.url("/api/v1/chat/message");
    for callers in [8, 32] {
        let url = chat.clone();
        let (rps, p50, p99, n) = load(callers, move |c| {
            c.post(&url)
                .bearer_auth(api::KEY)
                .json(&json!({"text": "benchmark question of about sixty bytes, typical of chat"}))
        })
        .await;
        println!("POST /api/v1/chat/message {callers:>3} callers: {rps:>8.0} req/s  p50 {p50:.3} ms  p99 {p99:.3} ms  ({n} requests, 60-byte text, new conversation each)");
    }
    println!(
        "RSS after the load above (>10k requests): {:.1} MB",
        rss_mb(pid)
    );
}
