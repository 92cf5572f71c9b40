//! The tokenator as the pod runs it, started in this process.

use clap::Parser;
use penguin_test_support::{fixture, GitHub, APP_ID, INSTALLATION_ID};
use std::{path::Path, time::Duration};

/// Starts a tokenator in App mode against `github`, with its socket and
/// credentials file in `run/` (created), and waits until it is ready.
pub async fn start_tokenator(github: &GitHub, dir: &Path, run: &Path) {
    std::fs::create_dir_all(run).unwrap();
    let key = dir.join("app.pem");
    std::fs::copy(fixture("app-key.pem"), &key).unwrap();
    let settings = penguin_tokenator::config::Cli::try_parse_from([
        "penguin-tokenator",
        "--github-app-id",
        &APP_ID.to_string(),
        "--github-app-installation-id",
        &INSTALLATION_ID.to_string(),
        "--github-app-private-key-path",
        key.to_str().unwrap(),
        "--github-api-url",
        &github.url(),
        "--github-server-url",
        &github.url(),
        "--git-credentials-path",
        run.join("git-credentials").to_str().unwrap(),
        "--socket",
        run.join("tokenator.sock").to_str().unwrap(),
        "--http-addr",
        "127.0.0.1:0",
    ])
    .unwrap()
    .args
    .validate()
    .unwrap();
    let tokenator = penguin_tokenator::Tokenator::build(settings).await.unwrap();
    let ready = tokenator.http_addr();
    tokio::spawn(tokenator.serve(std::future::pending()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !penguin_tokenator::client::ready(ready).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tokenator never became ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
