//! GitHub misbehaving: outages, 5xx, rate limits, replication lag, a skewed
//! clock; key rotation by Kubernetes-style symlink swap; the fallback token file.

use github_standin::Fault;
use penguin_test_support::{fixture, tokenator::Tokenator, GitHub};
use std::{path::Path, time::Duration};

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_penguin-tokenator");

#[tokio::test]
async fn outage_keeps_serving_the_valid_token_and_readiness_follows_validity() {
    let github = GitHub::start(Duration::from_secs(6)).await.unwrap();
    let tokenator = Tokenator::start(BIN, &github, |_, _| {}).await;
    tokenator.wait_ready().await;
    let before = tokenator.default_token().await.token;
    github.standin.set_down(true);
    // While the token is valid (beyond its margin) it is still served and the tokenator is ready.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(tokenator.ready().await);
    assert_eq!(tokenator.default_token().await.token, before);
    // Once it enters its safety margin with no replacement: not ready, and GetToken says why.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while tokenator.ready().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still ready with an expiring token"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = tokenator.http_get("/readyz").await;
    assert_eq!((status, body.as_str()), (503, "no valid default token\n"));
    let err = tokenator
        .client()
        .await
        .get_token(penguin_proto::tokenator::v1::GetTokenRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    // GitHub returns: the refresher recovers on its own.
    github.standin.set_down(false);
    tokenator.wait_ready_within(Duration::from_secs(20)).await;
    assert_ne!(tokenator.default_token().await.token, before);
    tokenator.assert_no_token_in_logs(&github);
}

#[tokio::test]
async fn transient_errors_and_rate_limits_are_retried_with_backoff() {
    let github = GitHub::start(Duration::from_secs(3600)).await.unwrap();
    github.standin.fail_next_mints(2, Fault::Status(502));
    github.standin.fail_next_mints(
        1,
        Fault::TooManyRequests {
            retry_after_secs: 1,
        },
    );
    let started = std::time::Instant::now();
    let tokenator = Tokenator::start(BIN, &github, |_, _| {}).await;
    tokenator.wait_ready().await;
    let statuses: Vec<u16> = github
        .standin
        .mint_requests()
        .iter()
        .map(|m| m.status)
        .collect();
    assert_eq!(statuses, vec![502, 502, 429, 201]);
    // retry-after: 1 was honoured.
    assert!(started.elapsed() >= Duration::from_secs(1));

    // A primary rate limit with a reset far away: no hammering; the caller hears why.
    github.standin.fail_next_mints(
        50,
        Fault::PrimaryRateLimit {
            reset_in_secs: 3600,
        },
    );
    let before = github.standin.mint_requests().len();
    let err = tokenator
        .client()
        .await
        .get_token(penguin_proto::tokenator::v1::GetTokenRequest {
            repositories: vec!["hello-world".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("rate limit"), "{}", err.message());
    assert_eq!(
        github.standin.mint_requests().len(),
        before + 1,
        "one attempt, no hammering"
    );
    tokenator.assert_no_token_in_logs(&github);
}

#[tokio::test]
async fn replication_lag_is_waited_out_before_a_token_is_published() {
    let github = GitHub::start_with(|c| {
        c.token_ttl = Duration::from_secs(4);
        c.replication_lag = Duration::from_millis(1200);
    })
    .await
    .unwrap();
    let tokenator = Tokenator::start(BIN, &github, |_, _| {}).await;
    tokenator.wait_ready().await;
    // Every token we are handed works at once, across rotations.
    let mut seen = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(9);
    while tokio::time::Instant::now() < deadline {
        let token = tokenator.default_token().await.token;
        assert!(
            github.standin.is_token_live(&token),
            "a lagging token was handed out"
        );
        seen.insert(token);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.len() >= 3, "only {} rotations", seen.len());
    tokenator.assert_no_token_in_logs(&github);
}

#[tokio::test]
async fn a_skewed_local_clock_is_corrected_from_githubs_date_header() {
    // GitHub's clock is 20 minutes ahead: a JWT from our clock alone would be
    // expired on arrival.
    let github = GitHub::start_with(|c| c.clock_skew_secs = 1200)
        .await
        .unwrap();
    let tokenator = Tokenator::start(BIN, &github, |_, _| {}).await;
    tokenator.wait_ready().await;
    let answer = tokenator.default_token().await;
    // expires_at is mapped onto our clock: about an hour from our now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let left = answer.expires_at.unwrap().seconds - now;
    assert!(
        (3500..=3605).contains(&left),
        "expires in {left} s on our clock"
    );
    assert!(
        github.standin.jwt_rejections() <= 1,
        "at most the first JWT was refused"
    );
    tokenator.assert_no_token_in_logs(&github);
}

/// Lays out `dir` like a Kubernetes Secret volume: `name -> ..data/name`,
/// `..data -> ..<version>`; returns the path consumers use.
fn k8s_secret_volume(dir: &Path, name: &str, version: &str, content: &[u8]) -> std::path::PathBuf {
    let versioned = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&versioned).unwrap();
    std::fs::write(versioned.join(name), content).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    let link = dir.join(name);
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
    }
    link
}

#[tokio::test]
async fn app_key_swapped_by_symlink_is_picked_up() {
    let github = GitHub::start(Duration::from_secs(3600)).await.unwrap();
    let tokenator = Tokenator::start(BIN, &github, |env, dir| {
        // Start with a key GitHub does not know: every mint is refused.
        let volume = dir.join("k8s-secret");
        let wrong = std::fs::read(fixture("other-app-key.pkcs8.pem")).unwrap();
        let path = k8s_secret_volume(&volume, "app-key.pem", "2026_11_24_v1", &wrong);
        env.insert(
            "GITHUB_APP_PRIVATE_KEY_PATH".into(),
            path.display().to_string(),
        );
    })
    .await;
    tokenator
        .process
        .wait_for_log("cannot mint the default token", Duration::from_secs(10))
        .await
        .expect("mint refused with the wrong key");
    let logs = tokenator.process.logs();
    assert!(
        logs.contains("GITHUB_APP_ID"),
        "the 401 names the setting to check"
    );
    assert!(!tokenator.ready().await);

    // The operator rotates the Secret: Kubernetes swaps ..data atomically.
    let right = std::fs::read(fixture("app-key.pem")).unwrap();
    k8s_secret_volume(
        &tokenator.dir.path().join("k8s-secret"),
        "app-key.pem",
        "2026_11_24_v2",
        &right,
    );
    tokenator
        .process
        .wait_for_log("App private key reloaded", Duration::from_secs(5))
        .await
        .expect("key reloaded");
    tokenator.wait_ready().await;
    tokenator.assert_no_token_in_logs(&github);
}

#[tokio::test]
async fn fallback_token_file_is_served_and_followed() {
    let github = GitHub::start(Duration::from_secs(3600)).await.unwrap();
    let first = "ghs_operatorManagedToken000000000000001";
    let second = "ghs_operatorManagedToken000000000000002";
    let tokenator = Tokenator::start(BIN, &github, |env, dir| {
        for var in [
            "GITHUB_APP_ID",
            "GITHUB_APP_INSTALLATION_ID",
            "GITHUB_APP_PRIVATE_KEY_PATH",
        ] {
            env.remove(var);
        }
        let volume = dir.join("token-secret");
        let path = k8s_secret_volume(&volume, "token", "v1", format!("{first}\n").as_bytes());
        env.insert("GITHUB_TOKEN_FILE".into(), path.display().to_string());
        env.insert(
            "PENGUIN_TOKENATOR_TOKEN_FILE".into(),
            dir.join("out/token").display().to_string(),
        );
    })
    .await;
    tokenator.wait_ready().await;
    let answer = tokenator.default_token().await;
    assert_eq!(answer.token, first);
    assert!(
        answer.expires_at.is_none(),
        "a fixed token has no known expiry"
    );
    assert!(tokenator.credentials_line().contains(first));
    let token_file = tokenator.dir.path().join("out/token");
    assert!(
        penguin_test_support::eventually(Duration::from_secs(2), || {
            std::fs::read_to_string(&token_file).unwrap_or_default() == format!("{first}\n")
        })
        .await
    );

    k8s_secret_volume(
        &tokenator.dir.path().join("token-secret"),
        "token",
        "v2",
        second.as_bytes(),
    );
    assert!(
        penguin_test_support::eventually(Duration::from_secs(3), || tokenator
            .credentials_line()
            .contains(second))
        .await,
        "the new token did not reach the credentials file"
    );
    assert_eq!(tokenator.default_token().await.token, second);
    assert_eq!(
        std::fs::read_to_string(&token_file).unwrap(),
        format!("{second}\n")
    );
    // Down-scoping needs App mode.
    let err = tokenator
        .client()
        .await
        .get_token(penguin_proto::tokenator::v1::GetTokenRequest {
            repositories: vec!["hello-world".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    tokenator
        .process
        .assert_no_leak(&[first.to_string(), second.to_string()]);
}
