//! Unauthenticated webhook bodies cannot exhaust memory: 100 senders that
//! declare 25 MB, send 3 MB each and stall hold at most the body budget, and
//! a valid delivery sent meanwhile is answered at once.

use penguin_test_support::{
    api::{self, Api},
    deliveries,
};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

const BIN: &str = env!("CARGO_BIN_EXE_penguin-api");
const SECRET: &str = "flood-test-webhook-secret";
/// Stalled senders.
const SENDERS: usize = 100;
/// What each sends before it stalls.
const SENT: usize = 3 * 1024 * 1024;
/// The stated bound on memory growth: the default 64 MiB budget plus room
/// for buffers (without a budget, 100 × 3 MB would be held).
const MAX_GROWTH_MB: f64 = 150.0;
/// The stated bound on a valid delivery's answer while the senders stall.
const MAX_ANSWER: Duration = Duration::from_secs(2);

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_senders_neither_grow_memory_nor_delay_a_valid_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = api::env(dir.path(), None);
    env.insert("GITHUB_WEBHOOK_SECRET".into(), SECRET.into());
    let api = Api::start(BIN, env).await;
    let pid = api.process.pid().expect("the api runs");
    let baseline = rss_mb(pid);

    // Sample the api's memory while the flood runs.
    let peak = std::sync::Arc::new(std::sync::Mutex::new(baseline));
    let sampling = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                let now = rss_mb(pid);
                {
                    let mut highest = peak.lock().unwrap();
                    *highest = highest.max(now);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let chunk = vec![b' '; 64 * 1024];
    let mut stalled = Vec::new();
    for i in 0..SENDERS {
        let mut socket = tokio::net::TcpStream::connect(api.addr).await.unwrap();
        let head = format!(
            "POST /api/v1/integrations/github/webhook HTTP/1.1\r\nHost: localhost\r\n\
             Content-Type: application/json\r\nX-GitHub-Event: issue_comment\r\n\
             X-GitHub-Delivery: stalled-{i}\r\nX-Hub-Signature-256: sha256=00\r\n\
             Content-Length: 25000000\r\n\r\n"
        );
        let chunk = chunk.clone();
        // Each sender writes what the server takes (a refused one is closed), then stalls.
        stalled.push(tokio::spawn(async move {
            if socket.write_all(head.as_bytes()).await.is_err() {
                return socket;
            }
            let mut sent = 0;
            while sent < SENT {
                match tokio::time::timeout(Duration::from_secs(2), socket.write_all(&chunk)).await {
                    Ok(Ok(())) => sent += chunk.len(),
                    _ => break,
                }
            }
            socket
        }));
    }
    let mut sockets = Vec::new();
    for sender in stalled {
        sockets.push(sender.await.unwrap());
    }

    // A valid delivery while the stalled bodies are held.
    let payload = deliveries::comment(1, false, "thanks!", "octocat", "User", 1);
    let body = serde_json::to_vec(&payload).unwrap();
    let started = Instant::now();
    let answer = deliveries::signed(
        &api.http,
        &api.url(""),
        SECRET.as_bytes(),
        "issue_comment",
        Some("valid-1"),
        &body,
    )
    .send()
    .await
    .unwrap();
    let took = started.elapsed();
    assert_eq!(answer.status(), 200);
    assert!(took <= MAX_ANSWER, "a valid delivery took {took:?}");

    tokio::time::sleep(Duration::from_millis(300)).await;
    sampling.abort();
    let growth = *peak.lock().unwrap() - baseline;
    assert!(
        growth <= MAX_GROWTH_MB,
        "memory grew by {growth:.0} MB with {SENDERS} stalled senders (bound {MAX_GROWTH_MB} MB)"
    );
    // Senders past the budget were told to come back later.
    let metrics = api.metrics().await;
    assert!(!metrics.contains("stalled-"), "{metrics}");
    drop(sockets);
    println!(
        "{SENDERS} stalled senders: memory +{growth:.1} MB, a valid delivery answered in {took:?}"
    );
}
