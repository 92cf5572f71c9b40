//! Minting, caching, down-scoping, single-flight, revocation and App info,
//! against the GitHub stand-in.

use futures::future::join_all;
use penguin_proto::tokenator::v1::{
    installation_selector::Target, GetAppInfoRequest, GetTokenRequest, InstallationSelector,
    RevokeTokenRequest,
};
use penguin_test_support::{tokenator::Tokenator, GitHub, INSTALLATION_ID};
use std::{collections::HashMap, os::unix::fs::PermissionsExt, time::Duration};
use tonic::Code;

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_penguin-tokenator");

fn scoped(repos: &[&str], perms: &[(&str, &str)]) -> GetTokenRequest {
    GetTokenRequest {
        installation: None,
        repositories: repos.iter().map(|s| s.to_string()).collect(),
        permissions: perms
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

#[tokio::test]
async fn default_token_is_served_written_and_cached() {
    let github = GitHub::start(Duration::from_secs(3600)).await.unwrap();
    let tokenator = Tokenator::start(BIN, &github, |_, _| {}).await;
    tokenator.wait_ready().await;

    let answer = tokenator.default_token().await;
    assert!(answer.token.starts_with("ghs_"));
    assert!(github.standin.is_token_live(&answer.token));
    assert_eq!(answer.installation_id, INSTALLATION_ID);
    assert_eq!(
        answer.permissions.get("contents").map(String::as_str),
        Some("write")
    );
    let expires = answer.expires_at.expect("expiry").seconds;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (3500..=3605).contains(&(expires - now)),
        "expires in {}",
        expires - now
    );

    // The credentials file holds exactly the default token, mode 0600.
    let line = tokenator.credentials_line();
    assert_eq!(
        line,
        format!(
            "http://x-access-token:{}@{}\n",
            answer.token,
            github.standin.addr()
        )
    );
    let mode = std::fs::metadata(&tokenator.credentials)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    // Cached: many calls, one mint.
    for _ in 0..20 {
        assert_eq!(tokenator.default_token().await.token, answer.token);
    }
    assert_eq!(github.standin.mint_requests().len(), 1);

    let (status, metrics) = tokenator.http_get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("penguin_tokenator_mints_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("penguin_tokenator_token_expiry_timestamp_seconds"));
    assert!(metrics
        .contains("penguin_tokenator_grpc_requests_total{method=\"GetToken\",code=\"Ok\"} 21"));
    assert!(metrics.contains("penguin_tokenator_github_rate_limit_remaining"));
    assert!(!metrics.contains(&answer.token));
    assert_eq!(tokenator.http_get("/healthz").await.0, 200);
    tokenator.assert_no_token_in_logs(&github);
}

#[tokio::test]
async fn scoped_tokens_are_down_scoped_cached_and_minted_once_under_load() {
    let github = GitHub::start(Duration::from_secs(3600)).await.unwrap();
    let tokenator = Tokenator::start(BIN, &github, |_, _| {}).await;
    tokenator.wait_ready().await;
    let request = scoped(&["hello-world"], &[("contents", "read")]);

    // 32 concurrent callers for a new scope: one mint (single-flight).
    let calls = (0..32).map(|_| {
        let tokenator = &tokenator;
        let request = request.clone();
        async move {
            tokenator
                .client()
                .await
                .get_token(request)
                .await
                .unwrap()
                .into_inner()
        }
    });
    let answers = join_all(calls).await;
    let first = &answers[0].token;
    assert!(answers.iter().all(|a| &a.token == first));
    let mints = github.standin.mint_requests();
    assert_eq!(mints.len(), 2, "default + one scoped mint: {mints:?}");
    let scoped_mint = &mints[1];
    assert_eq!(
        scoped_mint.repositories.as_deref(),
        Some(&["hello-world".to_string()][..])
    );
    assert_eq!(
        scoped_mint
            .permissions
            .as_ref()
            .unwrap()
            .get("contents")
            .map(String::as_str),
        Some("read")
    );
    assert_eq!(answers[0].repositories, vec!["hello-world".to_string()]);
    assert_eq!(
        answers[0].permissions,
        HashMap::from([("contents".to_string(), "read".to_string())])
    );
    assert_ne!(first, &tokenator.default_token().await.token);

    // Over-scoped requests get GitHub's 422 as INVALID_ARGUMENT with the reason.
    let err = tokenator
        .client()
        .await
        .get_token(scoped(&["hello-world"], &[("administration", "write")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("422"), "{}", err.message());
    // Malformed scopes never reach GitHub.
    let before = github.standin.mint_requests().len();
    let err = tokenator
        .client()
        .await
        .get_token(scoped(&["a b"], &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = tokenator
        .client()
        .await
        .get_token(scoped(&[], &[("contents", "own")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(github.standin.mint_requests().len(), before);

    // Installations by id and by repository.
    let by_repo = GetTokenRequest {
        installation: Some(InstallationSelector {
            target: Some(Target::Repository("octo-org/hello-world".into())),
        }),
        ..scoped(&[], &[("metadata", "read")])
    };
    let answer = tokenator
        .client()
        .await
        .get_token(by_repo)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.installation_id, INSTALLATION_ID);
    let unknown = GetTokenRequest {
        installation: Some(InstallationSelector {
            target: Some(Target::InstallationId(999)),
        }),
        ..Default::default()
    };
    let err = tokenator
        .client()
        .await
        .get_token(unknown)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(
        err.message().contains("GITHUB_APP_INSTALLATION_ID"),
        "{}",
        err.message()
    );
    tokenator.assert_no_token_in_logs(&github);
}

#[tokio::test]
async fn revoke_drops_scoped_tokens_and_refuses_the_default() {
    let github = GitHub::start(Duration::from_secs(3600)).await.unwrap();
    let tokenator = Tokenator::start(BIN, &github, |_, _| {}).await;
    tokenator.wait_ready().await;
    let mut client = tokenator.client().await;
    let scoped_token = client
        .get_token(scoped(&["hello-world"], &[("contents", "write")]))
        .await
        .unwrap()
        .into_inner()
        .token;
    client
        .revoke_token(RevokeTokenRequest {
            token: scoped_token.clone(),
        })
        .await
        .unwrap();
    assert!(!github.standin.is_token_live(&scoped_token));
    assert!(github.standin.revoked_tokens().contains(&scoped_token));
    // The next request for that scope mints a new one.
    let again = client
        .get_token(scoped(&["hello-world"], &[("contents", "write")]))
        .await
        .unwrap()
        .into_inner()
        .token;
    assert_ne!(again, scoped_token);

    let default = tokenator.default_token().await.token;
    let err = client
        .revoke_token(RevokeTokenRequest {
            token: default.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(github.standin.is_token_live(&default));
    let err = client
        .revoke_token(RevokeTokenRequest {
            token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    tokenator.assert_no_token_in_logs(&github);
}

#[tokio::test]
async fn failed_mints_do_not_use_up_the_scope_cap() {
    let github = GitHub::start(Duration::from_secs(3600)).await.unwrap();
    let tokenator = Tokenator::start(BIN, &github, |_, _| {}).await;
    tokenator.wait_ready().await;
    // More distinct failing scopes than the cache has slots (512): GitHub
    // refuses each (422, a repository the installation lacks).
    let client = tokenator.client().await;
    for batch in 0..20 {
        let requests = (0..30).map(|i| {
            let mut client = client.clone();
            let repo = format!("missing-{batch}-{i}");
            async move { client.get_token(scoped(&[&repo], &[])).await }
        });
        for answer in join_all(requests).await {
            let err = answer.unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        }
    }
    // A new scope still gets a token.
    let answer = tokenator
        .client()
        .await
        .get_token(scoped(&["hello-world"], &[("contents", "read")]))
        .await
        .expect("a new scope after many failed ones")
        .into_inner();
    assert!(github.standin.is_token_live(&answer.token));
    tokenator.assert_no_token_in_logs(&github);
}

#[tokio::test]
async fn a_shared_scoped_token_is_revoked_by_its_last_holder() {
    let github = GitHub::start(Duration::from_secs(3600)).await.unwrap();
    let tokenator = Tokenator::start(BIN, &github, |_, _| {}).await;
    tokenator.wait_ready().await;
    let request = || scoped(&["hello-world"], &[("issues", "write")]);
    // Two callers on their own connections get the same cached token.
    let (mut first, mut second) = (tokenator.client().await, tokenator.client().await);
    let token = first.get_token(request()).await.unwrap().into_inner().token;
    let same = second
        .get_token(request())
        .await
        .unwrap()
        .into_inner()
        .token;
    assert_eq!(token, same, "one cached token per scope");
    let revoke = || RevokeTokenRequest {
        token: token.clone(),
    };
    // The first release leaves it working for the second caller.
    first.revoke_token(revoke()).await.unwrap();
    assert!(github.standin.is_token_live(&token));
    assert!(!github.standin.revoked_tokens().contains(&token));
    // It is still the cached token, handed out (and held) again.
    let again = first.get_token(request()).await.unwrap().into_inner().token;
    assert_eq!(again, token);
    first.revoke_token(revoke()).await.unwrap();
    assert!(github.standin.is_token_live(&token));
    // The last holder's release revokes it at GitHub and drops it from the cache.
    second.revoke_token(revoke()).await.unwrap();
    assert!(!github.standin.is_token_live(&token));
    assert!(github.standin.revoked_tokens().contains(&token));
    let fresh = first.get_token(request()).await.unwrap().into_inner().token;
    assert_ne!(fresh, token);
    assert!(github.standin.is_token_live(&fresh));
    tokenator.assert_no_token_in_logs(&github);
}

#[tokio::test]
async fn app_info_health_and_reflection_answer() {
    let github = GitHub::start(Duration::from_secs(3600)).await.unwrap();
    let tokenator = Tokenator::start(BIN, &github, |_, _| {}).await;
    tokenator.wait_ready().await;
    let info = tokenator
        .client()
        .await
        .get_app_info(GetAppInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.app_id, penguin_test_support::APP_ID);
    assert_eq!(info.slug, "penguin-agent");
    assert_eq!(info.bot_login, "penguin-agent[bot]");
    assert!(info.bot_user_id > 0);
    assert_eq!(
        info.bot_email,
        format!(
            "{}+penguin-agent[bot]@users.noreply.github.com",
            info.bot_user_id
        )
    );

    let channel = penguin_tokenator::client::connect_unix(&tokenator.socket)
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["", "penguin.tokenator.v1.TokenService"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }

    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(futures::stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer")
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(
        names.contains(&"penguin.tokenator.v1.TokenService"),
        "{names:?}"
    );
    tokenator.assert_no_token_in_logs(&github);
}

#[tokio::test]
async fn deleted_installation_drops_cached_tokens_and_readiness() {
    let github = GitHub::start(Duration::from_secs(4)).await.unwrap();
    let tokenator = Tokenator::start(BIN, &github, |_, _| {}).await;
    tokenator.wait_ready().await;
    let scoped_answer = tokenator
        .client()
        .await
        .get_token(scoped(&["hello-world"], &[("contents", "read")]))
        .await
        .unwrap();
    assert!(!scoped_answer.into_inner().token.is_empty());
    github.standin.delete_installation(INSTALLATION_ID);
    // The next refresh (within ~2 s) learns the installation is gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokenator.ready().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still ready:\n{}",
            tokenator.process.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = tokenator
        .client()
        .await
        .get_token(scoped(&["hello-world"], &[("contents", "read")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    tokenator.assert_no_token_in_logs(&github);
}
