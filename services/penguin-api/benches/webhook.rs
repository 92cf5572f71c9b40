//! Signed GitHub deliveries per second through the real server: verified,
//! committed to SQLite, acknowledged (the worker runs alongside, as in
//! production). Closed-loop callers with unique delivery ids.
//!
//! `cargo bench -p penguin-api --bench webhook` — prints its numbers; asserts nothing.

use penguin_test_support::{
    api::{self, Api},
    deliveries, load,
};
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

const BIN: &str = env!("CARGO_BIN_EXE_penguin-api");
const SECRET: &str = "bench-webhook-secret-0123";
const RUN: Duration = Duration::from_secs(5);

async fn run(
    api: &Api,
    callers: usize,
    body: Arc<Vec<u8>>,
    next_id: Arc<AtomicU64>,
) -> (f64, f64, f64, usize) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(callers)
        .build()
        .unwrap();
    let base = Arc::new(api.url(""));
    // Signed once: the callers measure the server, not HMAC.
    let signature = Arc::new(deliveries::signature(SECRET.as_bytes(), &body));
    load::closed_loop(callers, RUN, move || {
        let (client, base, body, signature, next_id) = (
            client.clone(),
            base.clone(),
            body.clone(),
            signature.clone(),
            next_id.clone(),
        );
        async move {
            let id = format!("bench-{}", next_id.fetch_add(1, Ordering::Relaxed));
            let r = deliveries::request(
                &client,
                &base,
                "ping",
                Some(&id),
                &signature,
                body.as_ref().clone(),
            )
            .send()
            .await
            .unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap();
        }
    })
    .await
}

#[tokio::main]
async fn main() {
    api::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let mut env = api::env(dir.path(), None);
    env.insert("RUST_LOG".into(), "warn,penguin_api=info".into());
    env.insert("GITHUB_WEBHOOK_SECRET".into(), SECRET.into());
    let api = Api::start(BIN, env).await;
    let next_id = Arc::new(AtomicU64::new(0));
    for size in [1024usize, 10 * 1024] {
        let pad = "x".repeat(size.saturating_sub(40));
        let body =
            Arc::new(format!("{{\"zen\":\"bench\",\"hook_id\":1,\"pad\":\"{pad}\"}}").into_bytes());
        for callers in [16, 64] {
            let (rps, p50, p99, n) = run(&api, callers, body.clone(), next_id.clone()).await;
            println!(
                "webhook {:>5} B payload {callers:>3} callers: {rps:>8.0} deliveries/s  p50 {p50:.3} ms  p99 {p99:.3} ms  ({n} deliveries)",
                body.len()
            );
        }
    }
}
