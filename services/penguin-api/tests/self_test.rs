//! `penguin-api self-test` and `penguin-api healthcheck`: the subcommands
//! the scratch image relies on, since it has no shell, git or curl.

use penguin_test_support::{
    api::{self, Api},
    binaries::workspace_binary,
    process::{leaked_token_piece, ServiceProcess},
    tokenator::Tokenator,
    GitHub,
};
use serde_json::Value;
use std::{collections::HashMap, path::Path, time::Duration};

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_penguin-api");

/// Runs `penguin-api <args>` to completion: (exit code, stdout JSON lines, logs).
async fn run(args: &[&str], env: &HashMap<String, String>) -> (Option<i32>, Vec<Value>, String) {
    let mut process = ServiceProcess::spawn(Path::new(BIN), args, env).unwrap();
    let code = process.wait_exit(Duration::from_secs(120)).await;
    let logs = process.logs();
    let lines = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("push").is_some())
        .collect();
    (code, lines, logs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_test_pushes_across_token_rotations_and_falls_back_to_the_credentials_file() {
    api::install_crypto();
    // Tokens live three seconds: four pushes two seconds apart span rotations.
    let github = GitHub::start(Duration::from_secs(3)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let tokenator = Tokenator::start_sharing(
        workspace_binary("penguin-tokenator"),
        &github,
        &run_dir,
        &[],
    )
    .await;
    let mut env = api::env(dir.path(), None);
    env.extend(tokenator.api_env());
    let (code, pushes, logs) = run(
        &["self-test", "--pushes", "4", "--interval-secs", "2"],
        &env,
    )
    .await;
    assert_eq!(code, Some(0), "{logs}");
    assert_eq!(pushes.len(), 4, "{logs}");
    assert!(pushes
        .iter()
        .all(|p| p["ok"] == true && p["credentials"] == "tokenator"));
    assert_eq!(github.standin.git_auth_failures(), 0);
    let tokens = github.standin.tokens_issued();
    assert!(tokens.len() >= 3, "{} tokens minted", tokens.len());
    // No token, nor any piece of one, in the logs.
    let assert_no_token = |logs: &str| {
        for token in github.standin.tokens_issued() {
            assert_eq!(
                leaked_token_piece(logs, &token),
                None,
                "a token was printed"
            );
        }
    };
    assert_no_token(&logs);

    // The tokenator gone: the credentials file's token still pushes.
    env.insert(
        "PENGUIN_TOKENATOR_SOCKET".into(),
        dir.path().join("gone.sock").display().to_string(),
    );
    let (code, pushes, logs) = run(&["self-test", "--pushes", "1"], &env).await;
    assert_eq!(code, Some(0), "{logs}");
    assert_eq!(pushes[0]["credentials"], "credentials-file", "{logs}");
    assert_no_token(&logs);
    assert_eq!(github.standin.git_pushes(), 5, "every push landed");
    let bare = github.bare_repo();
    let head = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(&bare)
        .args(["log", "-1", "--format=%s", "penguin/self-test"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&head.stdout).trim(),
        "penguin self-test push 1"
    );

    // Neither source: it fails and says why, without a token in sight.
    env.insert(
        "PENGUIN_GIT_CREDENTIALS_PATH".into(),
        dir.path().join("none").display().to_string(),
    );
    let (code, _, logs) = run(&["self-test", "--pushes", "1"], &env).await;
    assert_eq!(code, Some(1), "{logs}");
    assert!(logs.contains("credentials file"), "{logs}");
    assert_no_token(&logs);
}

#[tokio::test]
async fn healthcheck_is_zero_only_while_the_api_answers() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(BIN, api::env(dir.path(), None)).await;
    let mut env = api.env.clone();
    env.insert("PORT".into(), api.addr.port().to_string());
    let (code, _, logs) = run(&["healthcheck"], &env).await;
    assert_eq!(code, Some(0), "{logs}");
    let (status, _) = api.get("/healthz").await;
    assert_eq!(status, 200, "liveness needs no key");
    api.stop().await;
    let (code, _, _) = run(&["healthcheck"], &env).await;
    assert_eq!(code, Some(1));
}
