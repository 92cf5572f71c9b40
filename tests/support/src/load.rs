//! Closed-loop load for the benches: callers that each send the next request
//! as soon as the last one was answered, and what they measured.

use std::{
    future::Future,
    time::{Duration, Instant},
};

/// `callers` closed loops awaiting `call()` until `run` passed: requests per
/// second, p50 and p99 in milliseconds, and the number of requests.
pub async fn closed_loop<F, Fut>(callers: usize, run: Duration, call: F) -> (f64, f64, f64, usize)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let started = Instant::now();
    let deadline = started + run;
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                call().await;
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let pct =
        |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1e3;
    (
        all.len() as f64 / started.elapsed().as_secs_f64(),
        pct(0.5),
        pct(0.99),
        all.len(),
    )
}
