//! The tokenator as the pod runs it, started in this process, and signed
//! deliveries built from GitHub's public webhook examples. Also included by
//! penguin-api's restart test, which runs the api as a process.
#![allow(dead_code)]

use clap::Parser;
use penguin_test_support::{fixture, GitHub, APP_ID, INSTALLATION_ID, OWNER, REPO};
use serde_json::{json, Value};
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

/// GitHub's `issue_comment.created` example, retargeted.
pub fn comment_delivery(
    number: u64,
    is_pr: bool,
    body: &str,
    login: &str,
    user_type: &str,
    comment_id: u64,
) -> Value {
    let mut payload = penguin_test_support::webhooks::example("issue_comment", "created");
    payload["repository"]["full_name"] = json!(format!("{OWNER}/{REPO}"));
    payload["repository"]["name"] = json!(REPO);
    payload["repository"]["owner"]["login"] = json!(OWNER);
    payload["issue"]["number"] = json!(number);
    payload["issue"]["labels"] = json!([]);
    if is_pr {
        let pr = format!("https://api.github.com/repos/{OWNER}/{REPO}/pulls/{number}");
        payload["issue"]["pull_request"] = json!({"url": pr, "html_url": pr, "diff_url": format!("{pr}.diff"), "patch_url": format!("{pr}.patch")});
    } else if let Some(issue) = payload["issue"].as_object_mut() {
        issue.remove("pull_request");
    }
    payload["comment"]["id"] = json!(comment_id);
    payload["comment"]["body"] = json!(body);
    payload["comment"]["user"]["login"] = json!(login);
    payload["comment"]["user"]["type"] = json!(user_type);
    payload["sender"]["login"] = json!(login);
    payload["sender"]["type"] = json!(user_type);
    payload
}
