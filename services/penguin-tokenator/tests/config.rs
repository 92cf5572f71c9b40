//! Start-up validation: bad settings exit 64 naming the variable; bad keys
//! name the path and never print key material.

use penguin_test_support::{
    fixture,
    tokenator::{self, Tokenator},
    GitHub,
};
use std::{collections::HashMap, time::Duration};

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_penguin-tokenator");

async fn exit_of(env: &HashMap<String, String>, args: &[&str]) -> (Option<i32>, String) {
    let mut process = tokenator::spawn(BIN, args, env);
    let code = process.wait_exit(Duration::from_secs(10)).await;
    (code, process.logs())
}

#[tokio::test]
async fn missing_and_contradictory_settings_exit_64_naming_the_variable() {
    let github = GitHub::start(Duration::from_secs(3600)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let base = tokenator::app_env(&github, dir.path());

    // (variable the error must name, changes: Some(value) sets, None removes)
    let app = [
        "GITHUB_APP_ID",
        "GITHUB_APP_PRIVATE_KEY_PATH",
        "GITHUB_APP_INSTALLATION_ID",
    ];
    type Change<'a> = (&'a str, Option<&'a str>);
    let cases: Vec<(&str, Vec<Change>)> = vec![
        ("GITHUB_APP_ID", app.iter().map(|v| (*v, None)).collect()),
        (
            "GITHUB_APP_PRIVATE_KEY_PATH",
            vec![("GITHUB_APP_PRIVATE_KEY_PATH", None)],
        ),
        ("GITHUB_TOKEN", vec![("GITHUB_TOKEN", Some("ghp_x"))]),
        (
            "GITHUB_APP_ID",
            vec![("GITHUB_APP_ID", Some("not-a-number"))],
        ),
        (
            "GITHUB_API_URL",
            vec![("GITHUB_API_URL", Some("ftp://nope"))],
        ),
        (
            "GITHUB_REPOSITORY",
            vec![("GITHUB_REPOSITORY", Some("just-a-name"))],
        ),
        (
            "PENGUIN_TOKENATOR_REFRESH_FRACTION",
            vec![("PENGUIN_TOKENATOR_REFRESH_FRACTION", Some("2"))],
        ),
        (
            "PENGUIN_TOKENATOR_JWT_ISSUER",
            vec![("PENGUIN_TOKENATOR_JWKS_FILE", Some("/j.json"))],
        ),
        (
            "PENGUIN_TOKENATOR_REDELIVER_LOOKBACK_SECS",
            vec![("PENGUIN_TOKENATOR_REDELIVER_LOOKBACK_SECS", Some("864000"))],
        ),
        (
            "PENGUIN_TOKENATOR_REDELIVER_MAX_ATTEMPTS",
            vec![("PENGUIN_TOKENATOR_REDELIVER_MAX_ATTEMPTS", Some("0"))],
        ),
        (
            "PENGUIN_TOKENATOR_REDELIVER_INTERVAL_SECS",
            vec![("PENGUIN_TOKENATOR_REDELIVER_INTERVAL_SECS", Some("soon"))],
        ),
    ];
    for (var, change) in cases {
        let mut env = base.clone();
        for (name, value) in change {
            match value {
                Some(v) => env.insert(name.to_string(), v.to_string()),
                None => env.remove(name),
            };
        }
        let (code, logs) = exit_of(&env, &[]).await;
        assert_eq!(code, Some(64), "{var}: {logs}");
        assert!(logs.contains(var), "{var} not named in: {logs}");
    }
}

#[tokio::test]
async fn bad_key_files_are_named_and_never_quoted() {
    let github = GitHub::start(Duration::from_secs(3600)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut env = tokenator::app_env(&github, dir.path());

    env.insert(
        "GITHUB_APP_PRIVATE_KEY_PATH".into(),
        "/nonexistent/app.pem".into(),
    );
    let (code, logs) = exit_of(&env, &[]).await;
    assert_eq!(code, Some(64), "{logs}");
    assert!(logs.contains("/nonexistent/app.pem"), "{logs}");

    // A public key where the private key should be.
    let public = fixture("app-key.pub.pem");
    env.insert(
        "GITHUB_APP_PRIVATE_KEY_PATH".into(),
        public.display().to_string(),
    );
    let (code, logs) = exit_of(&env, &[]).await;
    assert_eq!(code, Some(64), "{logs}");
    assert!(logs.contains("is not an RSA private key"), "{logs}");
    let body = std::fs::read_to_string(&public).unwrap();
    for line in body.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!logs.contains(line), "key material printed");
    }
    assert!(!logs.contains("panicked"));
}

#[tokio::test]
async fn help_lists_every_variable_and_hides_secret_values() {
    let mut env = HashMap::new();
    env.insert(
        "GITHUB_TOKEN".to_string(),
        "ghp_supersecretvalue000000000000000000".to_string(),
    );
    let (code, help) = exit_of(&env, &["--help"]).await;
    assert_eq!(code, Some(0));
    for var in [
        "GITHUB_APP_ID",
        "GITHUB_APP_CLIENT_ID",
        "GITHUB_APP_INSTALLATION_ID",
        "GITHUB_APP_PRIVATE_KEY_PATH",
        "GITHUB_TOKEN",
        "GITHUB_TOKEN_FILE",
        "GITHUB_REPOSITORY",
        "GITHUB_API_URL",
        "GITHUB_SERVER_URL",
        "PENGUIN_GIT_CREDENTIALS_PATH",
        "PENGUIN_TOKENATOR_SOCKET",
        "PENGUIN_TOKENATOR_GRPC_ADDR",
        "PENGUIN_TOKENATOR_HTTP_ADDR",
        "PENGUIN_TOKENATOR_JWKS_FILE",
        "PENGUIN_TOKENATOR_JWKS_URL",
        "PENGUIN_TOKENATOR_JWT_ISSUER",
        "PENGUIN_TOKENATOR_JWT_AUDIENCE",
        "PENGUIN_TOKENATOR_POLICY_FILE",
        "PENGUIN_TOKENATOR_TLS_CERT",
        "PENGUIN_TOKENATOR_TLS_KEY",
        "PENGUIN_TOKENATOR_GRPC_PLAINTEXT",
        "PENGUIN_TOKENATOR_TOKEN_FILE",
        "PENGUIN_TOKENATOR_LOG_FORMAT",
        "PENGUIN_TOKENATOR_REFRESH_FRACTION",
        "PENGUIN_TOKENATOR_SAFETY_MARGIN_SECS",
        "PENGUIN_TOKENATOR_SAFETY_MARGIN_FRACTION",
        "PENGUIN_TOKENATOR_REDELIVER_INTERVAL_SECS",
        "PENGUIN_TOKENATOR_REDELIVER_LOOKBACK_SECS",
        "PENGUIN_TOKENATOR_REDELIVER_MAX_ATTEMPTS",
    ] {
        assert!(help.contains(var), "--help does not list {var}");
    }
    assert!(!help.contains("supersecretvalue"));
}

#[tokio::test]
async fn sigterm_drains_and_removes_the_socket() {
    let github = GitHub::start(Duration::from_secs(3600)).await.unwrap();
    let mut tokenator = Tokenator::start(BIN, &github, |env, _| {
        env.insert("PENGUIN_TOKENATOR_LOG_FORMAT".into(), "json".into());
    })
    .await;
    tokenator.wait_ready().await;
    assert!(tokenator.socket.exists());
    assert_eq!(
        tokenator.process.terminate(Duration::from_secs(10)).await,
        Some(0)
    );
    assert!(!tokenator.socket.exists());
    let logs = tokenator.process.logs();
    assert!(
        logs.lines()
            .any(|l| l.starts_with('{') && l.contains("\"message\":\"shutting down")),
        "{logs}"
    );
    tokenator.assert_no_token_in_logs(&github);
}

#[tokio::test]
async fn a_stale_socket_is_replaced_but_another_file_in_the_way_is_refused() {
    let github = GitHub::start(Duration::from_secs(3600)).await.unwrap();
    let tokenator = Tokenator::start(BIN, &github, |env, _| {
        // A previous run died without removing its socket.
        let socket = std::path::PathBuf::from(&env["PENGUIN_TOKENATOR_SOCKET"]);
        std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        assert!(socket.exists());
    })
    .await;
    tokenator.wait_ready().await;
    assert!(tokenator.default_token().await.token.starts_with("ghs_"));

    let dir = tempfile::tempdir().unwrap();
    let mut env = tokenator::app_env(&github, dir.path());
    let in_the_way = dir.path().join("not-a-socket");
    std::fs::write(&in_the_way, "important data").unwrap();
    env.insert(
        "PENGUIN_TOKENATOR_SOCKET".into(),
        in_the_way.display().to_string(),
    );
    let (code, logs) = exit_of(&env, &[]).await;
    assert_eq!(code, Some(1), "{logs}");
    assert!(logs.contains("not a socket"), "{logs}");
    assert_eq!(
        std::fs::read_to_string(&in_the_way).unwrap(),
        "important data",
        "nothing stored is lost"
    );
}

#[tokio::test]
async fn a_key_written_by_another_container_within_the_wait_is_used() {
    let github = GitHub::start(Duration::from_secs(3600)).await.unwrap();
    let tokenator = Tokenator::start(BIN, &github, |env, dir| {
        // The key volume is filled a second after the tokenator starts.
        let late = dir.join("late/github-app.pem");
        env.insert(
            "GITHUB_APP_PRIVATE_KEY_PATH".into(),
            late.display().to_string(),
        );
        env.insert("PENGUIN_TOKENATOR_KEY_WAIT_SECS".into(), "30".into());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(1));
            std::fs::create_dir_all(late.parent().unwrap()).unwrap();
            std::fs::copy(fixture("app-key.pem"), &late).unwrap();
        });
    })
    .await;
    tokenator.wait_ready().await;
    assert!(tokenator
        .process
        .logs()
        .contains("waiting for the App key file"));
    assert!(tokenator.default_token().await.token.starts_with("ghs_"));
}

#[tokio::test]
async fn a_key_that_never_comes_fails_after_the_wait_naming_the_path() {
    let github = GitHub::start(Duration::from_secs(3600)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut env = tokenator::app_env(&github, dir.path());
    let missing = dir.path().join("never/github-app.pem");
    env.insert(
        "GITHUB_APP_PRIVATE_KEY_PATH".into(),
        missing.display().to_string(),
    );
    env.insert("PENGUIN_TOKENATOR_KEY_WAIT_SECS".into(), "1".into());
    let (code, logs) = exit_of(&env, &[]).await;
    assert_eq!(code, Some(64), "{logs}");
    assert!(logs.contains(&missing.display().to_string()), "{logs}");
}
