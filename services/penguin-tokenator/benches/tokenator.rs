//! Cached GetToken throughput and latency over the Unix socket and over TCP
//! (TLS + ServiceAccount JWT), and time from process start to ready.
//!
//! `cargo bench -p penguin-tokenator --bench tokenator` — prints its numbers;
//! it asserts nothing. Everything runs on loopback against the GitHub stand-in.

use penguin_proto::tokenator::v1::{token_service_client::TokenServiceClient, GetTokenRequest};
use penguin_test_support::{
    fixture, keys,
    tokenator::{self, HTTP_LISTENING},
    GitHub,
};
use std::time::{Duration, Instant};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

const BIN: &str = env!("CARGO_BIN_EXE_penguin-tokenator");
const RUN: Duration = Duration::from_secs(5);

struct Report {
    requests: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Report {
    fn print(&mut self, name: &str) {
        self.latencies.sort();
        let pct = |p: f64| {
            self.latencies
                [((self.latencies.len() as f64 * p) as usize).min(self.latencies.len() - 1)]
        };
        println!(
            "{name:<34} {:>9.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms  max {:>7.3} ms  ({} requests)",
            self.requests as f64 / self.elapsed.as_secs_f64(),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            self.latencies.last().unwrap().as_secs_f64() * 1e3,
            self.requests
        );
    }
}

/// `connections` channels × `per_connection` callers, each in a closed loop.
async fn load(channels: Vec<Channel>, per_connection: usize, jwt: Option<String>) -> Report {
    let started = Instant::now();
    let deadline = started + RUN;
    let mut tasks = Vec::new();
    for channel in channels {
        for _ in 0..per_connection {
            let mut client = TokenServiceClient::new(channel.clone());
            let jwt = jwt.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(100_000);
                while Instant::now() < deadline {
                    let mut request = tonic::Request::new(GetTokenRequest::default());
                    if let Some(jwt) = &jwt {
                        request
                            .metadata_mut()
                            .insert("authorization", format!("Bearer {jwt}").parse().unwrap());
                    }
                    let t = Instant::now();
                    client.get_token(request).await.expect("GetToken");
                    latencies.push(t.elapsed());
                }
                latencies
            }));
        }
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    Report {
        requests: latencies.len(),
        elapsed: started.elapsed(),
        latencies,
    }
}

#[tokio::main]
async fn main() {
    let github = GitHub::start(Duration::from_secs(3600)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut env = tokenator::app_env(&github, dir.path());
    std::fs::write(dir.path().join("jwks.json"), keys::jwks_json()).unwrap();
    std::fs::write(
        dir.path().join("policy.yaml"),
        "rules:\n  - subjects: [\"system:serviceaccount:bench:*\"]\n",
    )
    .unwrap();
    for (k, v) in [
        ("RUST_LOG", "info".to_string()),
        (
            "PENGUIN_TOKENATOR_JWKS_FILE",
            dir.path().join("jwks.json").display().to_string(),
        ),
        ("PENGUIN_TOKENATOR_JWT_ISSUER", keys::SA_ISSUER.to_string()),
        (
            "PENGUIN_TOKENATOR_JWT_AUDIENCE",
            keys::SA_AUDIENCE.to_string(),
        ),
        (
            "PENGUIN_TOKENATOR_POLICY_FILE",
            dir.path().join("policy.yaml").display().to_string(),
        ),
        (
            "PENGUIN_TOKENATOR_TLS_CERT",
            fixture("tls-cert.pem").display().to_string(),
        ),
        (
            "PENGUIN_TOKENATOR_TLS_KEY",
            fixture("tls-key.pem").display().to_string(),
        ),
    ] {
        env.insert(k.to_string(), v);
    }

    // Start to ready, five times.
    let mut to_ready = Vec::new();
    let mut mint_ms = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let process = tokenator::spawn(BIN, &[], &env);
        let http = process.bound_addr(HTTP_LISTENING).await.unwrap();
        while !penguin_tokenator::client::ready(http).await {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        to_ready.push(started.elapsed());
        let line = process
            .wait_for_log("minted installation token", Duration::from_secs(5))
            .await
            .unwrap();
        let ms: f64 = line
            .split_once("mint_ms=")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN);
        mint_ms.push(ms);
    }
    to_ready.sort();
    println!(
        "start to ready (5 runs)            median {:.1} ms (min {:.1}, max {:.1}); of which one mint + probe: median {:.1} ms",
        to_ready[2].as_secs_f64() * 1e3,
        to_ready[0].as_secs_f64() * 1e3,
        to_ready[4].as_secs_f64() * 1e3,
        {
            let mut m = mint_ms.clone();
            m.sort_by(|a, b| a.total_cmp(b));
            m[2]
        }
    );

    let process = tokenator::spawn(BIN, &[], &env);
    let http = process.bound_addr(HTTP_LISTENING).await.unwrap();
    let grpc = process.bound_addr("gRPC listening on TCP").await.unwrap();
    while !penguin_tokenator::client::ready(http).await {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let socket = env["PENGUIN_TOKENATOR_SOCKET"].clone();
    let unix = || async {
        penguin_tokenator::client::connect_unix(&socket)
            .await
            .unwrap()
    };
    let ca = Certificate::from_pem(std::fs::read(fixture("tls-ca.pem")).unwrap());
    let tcp = || async {
        Channel::from_shared(format!("https://localhost:{}", grpc.port()))
            .unwrap()
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(ca.clone())
                    .domain_name("localhost"),
            )
            .unwrap()
            .connect()
            .await
            .unwrap()
    };
    let jwt = keys::SaToken::valid("system:serviceaccount:bench:client").sign();

    // Warm up both paths (first mint for the policy scope, connection set-up).
    load(vec![unix().await], 1, None).await;
    load(vec![tcp().await], 1, Some(jwt.clone())).await;

    for (connections, per) in [(1, 4), (1, 8), (2, 4), (2, 8), (4, 16)] {
        let mut channels = Vec::new();
        for _ in 0..connections {
            channels.push(unix().await);
        }
        load(channels, per, None).await.print(&format!(
            "unix  GetToken {connections} conn x {per} callers"
        ));
    }
    for (connections, per) in [(1, 4), (1, 8), (2, 4), (2, 8), (4, 16)] {
        let mut channels = Vec::new();
        for _ in 0..connections {
            channels.push(tcp().await);
        }
        load(channels, per, Some(jwt.clone())).await.print(&format!(
            "tcp+tls GetToken {connections} conn x {per} callers"
        ));
    }
    drop(process);
}
