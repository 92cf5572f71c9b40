//! The TCP listener: TLS, ServiceAccount JWTs verified against a JWKS, and
//! the caller policy.

use penguin_proto::tokenator::v1::{
    token_service_client::TokenServiceClient, GetTokenRequest, RevokeTokenRequest,
    WatchTokenRequest,
};
use penguin_test_support::{
    fixture,
    keys::{jwks_json, SaToken},
    tokenator::{self, Tokenator},
    GitHub,
};
use std::{collections::HashMap, time::Duration};
use tonic::{
    transport::{Certificate, Channel, ClientTlsConfig},
    Code, Request,
};

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_penguin-tokenator");

const POLICY: &str = r#"
rules:
  - subjects: ["system:serviceaccount:agents:runner-*"]
    repositories: [hello-world]
    permissions: {contents: write, pull_requests: write}
"#;

async fn remote_pod() -> (GitHub, Tokenator, Channel) {
    let github = GitHub::start(Duration::from_secs(3600)).await.unwrap();
    let tokenator = Tokenator::start(BIN, &github, |env, dir| {
        std::fs::write(dir.join("jwks.json"), jwks_json()).unwrap();
        let jwks = dir.join("jwks.json").display().to_string();
        caller_auth_env(env, dir, ("PENGUIN_TOKENATOR_JWKS_FILE", jwks));
        let vars = [
            (
                "PENGUIN_TOKENATOR_TLS_CERT",
                dir.join("tls-cert.pem").display().to_string(),
            ),
            (
                "PENGUIN_TOKENATOR_TLS_KEY",
                dir.join("tls-key.pem").display().to_string(),
            ),
        ];
        // Copies, so a test can renew them the way cert-manager does.
        std::fs::copy(fixture("tls-cert.pem"), dir.join("tls-cert.pem")).unwrap();
        std::fs::copy(fixture("tls-key.pem"), dir.join("tls-key.pem")).unwrap();
        env.extend(vars.into_iter().map(|(k, v)| (k.to_string(), v)));
    })
    .await;
    let addr = tokenator
        .process
        .bound_addr("gRPC listening on TCP")
        .await
        .expect("TCP listener");
    tokenator.wait_ready().await;
    let ca = Certificate::from_pem(std::fs::read(fixture("tls-ca.pem")).unwrap());
    let channel = Channel::from_shared(format!("https://localhost:{}", addr.port()))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(ca)
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .expect("TLS connect");
    (github, tokenator, channel)
}

fn with_jwt<T>(message: T, jwt: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {jwt}").parse().unwrap());
    request
}

#[tokio::test]
async fn tcp_callers_are_authenticated_and_held_to_the_policy() {
    let (github, tokenator, channel) = remote_pod().await;
    let mut client = TokenServiceClient::new(channel.clone());
    let runner = "system:serviceaccount:agents:runner-1";

    // Valid JWT, empty request: the policy's full grant.
    let answer = client
        .get_token(with_jwt(
            GetTokenRequest::default(),
            &SaToken::valid(runner).sign(),
        ))
        .await
        .expect("allowed")
        .into_inner();
    assert_eq!(answer.repositories, vec!["hello-world".to_string()]);
    assert_eq!(
        answer.permissions,
        HashMap::from([
            ("contents".to_string(), "write".to_string()),
            ("pull_requests".to_string(), "write".to_string())
        ])
    );
    assert!(github.standin.is_token_live(&answer.token));
    // Narrower is fine.
    let narrower = GetTokenRequest {
        permissions: HashMap::from([("contents".to_string(), "read".to_string())]),
        ..Default::default()
    };
    client
        .get_token(with_jwt(narrower, &SaToken::valid(runner).sign()))
        .await
        .expect("narrower");

    let denied = |status: tonic::Status, code: Code, needle: &str| {
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains(needle), "{}", status.message());
    };
    // Beyond the policy: PERMISSION_DENIED with a reason.
    let wider = GetTokenRequest {
        repositories: vec!["other-repo".into()],
        ..Default::default()
    };
    denied(
        client
            .get_token(with_jwt(wider, &SaToken::valid(runner).sign()))
            .await
            .unwrap_err(),
        Code::PermissionDenied,
        "allows only",
    );
    // A caller no rule names: default deny.
    denied(
        client
            .get_token(with_jwt(
                GetTokenRequest::default(),
                &SaToken::valid("system:serviceaccount:other:x").sign(),
            ))
            .await
            .unwrap_err(),
        Code::PermissionDenied,
        "no policy rule",
    );
    // No token, bad signature, expired, wrong audience, wrong issuer: UNAUTHENTICATED.
    denied(
        client
            .get_token(GetTokenRequest::default())
            .await
            .unwrap_err(),
        Code::Unauthenticated,
        "missing",
    );
    let cases = [
        (
            SaToken {
                key_fixture: "other-app-key.pkcs8.pem",
                ..SaToken::valid(runner)
            },
            "signature",
        ),
        (
            SaToken {
                expires_in: -120,
                ..SaToken::valid(runner)
            },
            "expired",
        ),
        (
            SaToken {
                audience: "someone-else",
                ..SaToken::valid(runner)
            },
            "audience",
        ),
        (
            SaToken {
                issuer: "https://evil.example",
                ..SaToken::valid(runner)
            },
            "issuer",
        ),
    ];
    for (token, needle) in cases {
        denied(
            client
                .get_token(with_jwt(GetTokenRequest::default(), &token.sign()))
                .await
                .unwrap_err(),
            Code::Unauthenticated,
            needle,
        );
    }
    denied(
        client
            .get_token(with_jwt(GetTokenRequest::default(), "not-a-jwt"))
            .await
            .unwrap_err(),
        Code::Unauthenticated,
        "not a JWT",
    );
    // WatchToken is held to the same rules.
    let err = client
        .watch_token(with_jwt(
            WatchTokenRequest::default(),
            &SaToken::valid("system:serviceaccount:other:x").sign(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // Health answers over TCP too.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // Each issuance is audited by caller and token hash, never the token.
    let logs = tokenator.process.logs();
    assert!(
        logs.contains("token issued") && logs.contains(runner),
        "no audit line"
    );
    assert!(logs.contains("token_sha256"));
    // The caller's JWT never reaches the logs either.
    tokenator
        .process
        .assert_no_leak(&[SaToken::valid(runner).sign()]);
    tokenator.assert_no_token_in_logs(&github);
}

#[tokio::test]
async fn tcp_callers_release_only_tokens_they_were_issued() {
    let (github, tokenator, channel) = remote_pod().await;
    let mut client = TokenServiceClient::new(channel);
    let jwt = |n: &str| SaToken::valid(&format!("system:serviceaccount:agents:runner-{n}")).sign();
    let get = |n: &str| with_jwt(GetTokenRequest::default(), &jwt(n));
    let revoke = |n: &str, token: &str| {
        with_jwt(
            RevokeTokenRequest {
                token: token.to_string(),
            },
            &jwt(n),
        )
    };
    // Two callers share the cached token of the policy's scope.
    let token = client.get_token(get("1")).await.unwrap().into_inner().token;
    let same = client.get_token(get("2")).await.unwrap().into_inner().token;
    assert_eq!(token, same);

    let denied = |status: tonic::Status| {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(
            status.message().contains("was not issued"),
            "{}",
            status.message()
        );
    };
    // A caller the policy allows but that was never issued the token.
    denied(client.revoke_token(revoke("3", &token)).await.unwrap_err());
    assert!(github.standin.is_token_live(&token));
    // Nor can a caller no rule names, nor the Unix socket, which never got it.
    let stranger = with_jwt(
        RevokeTokenRequest {
            token: token.clone(),
        },
        &SaToken::valid("system:serviceaccount:other:x").sign(),
    );
    let err = client.revoke_token(stranger).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    denied(
        tokenator
            .client()
            .await
            .revoke_token(RevokeTokenRequest {
                token: token.clone(),
            })
            .await
            .unwrap_err(),
    );
    assert!(github.standin.is_token_live(&token));

    // One holder's release leaves it working for the other, and only once.
    client.revoke_token(revoke("1", &token)).await.unwrap();
    assert!(github.standin.is_token_live(&token));
    denied(client.revoke_token(revoke("1", &token)).await.unwrap_err());
    assert!(github.standin.is_token_live(&token));
    // The last holder's release revokes it at GitHub.
    client.revoke_token(revoke("2", &token)).await.unwrap();
    assert!(!github.standin.is_token_live(&token));
    assert!(github.standin.revoked_tokens().contains(&token));
    tokenator.assert_no_token_in_logs(&github);
}

#[tokio::test]
async fn plaintext_tcp_needs_the_explicit_opt_in() {
    let github = GitHub::start(Duration::from_secs(3600)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwks.json"), jwks_json()).unwrap();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    let mut env = tokenator::app_env(&github, dir.path());
    env.insert(
        "PENGUIN_TOKENATOR_JWKS_FILE".into(),
        dir.path().join("jwks.json").display().to_string(),
    );
    env.insert("PENGUIN_TOKENATOR_JWT_ISSUER".into(), "i".into());
    env.insert("PENGUIN_TOKENATOR_JWT_AUDIENCE".into(), "a".into());
    env.insert(
        "PENGUIN_TOKENATOR_POLICY_FILE".into(),
        dir.path().join("policy.yaml").display().to_string(),
    );
    let mut process = tokenator::spawn(BIN, &[], &env);
    assert_eq!(process.wait_exit(Duration::from_secs(10)).await, Some(64));
    assert!(
        process.logs().contains("PENGUIN_TOKENATOR_TLS_CERT"),
        "{}",
        process.logs()
    );

    env.insert("PENGUIN_TOKENATOR_GRPC_PLAINTEXT".into(), "true".into());
    let process = tokenator::spawn(BIN, &[], &env);
    let addr = process
        .bound_addr("gRPC listening on TCP")
        .await
        .expect("plaintext listener");
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let err = TokenServiceClient::new(channel)
        .get_token(GetTokenRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

/// Serves `body` as JSON to every request on a loopback port (a JWKS endpoint).
async fn serve_json(body: String) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

/// TCP callers checked with `jwks` (`PENGUIN_TOKENATOR_JWKS_FILE` or `_URL`
/// and its value), the test issuer and audience, and [`POLICY`].
fn caller_auth_env(env: &mut HashMap<String, String>, dir: &std::path::Path, jwks: (&str, String)) {
    std::fs::write(dir.join("policy.yaml"), POLICY).unwrap();
    let vars = [
        (jwks.0, jwks.1),
        (
            "PENGUIN_TOKENATOR_JWT_ISSUER",
            penguin_test_support::keys::SA_ISSUER.to_string(),
        ),
        (
            "PENGUIN_TOKENATOR_JWT_AUDIENCE",
            penguin_test_support::keys::SA_AUDIENCE.to_string(),
        ),
        (
            "PENGUIN_TOKENATOR_POLICY_FILE",
            dir.join("policy.yaml").display().to_string(),
        ),
    ];
    env.extend(vars.into_iter().map(|(k, v)| (k.to_string(), v)));
}

/// A plaintext TCP listener whose callers are checked with the JWKS at `url`.
fn jwks_url_env(env: &mut HashMap<String, String>, dir: &std::path::Path, url: String) {
    caller_auth_env(env, dir, ("PENGUIN_TOKENATOR_JWKS_URL", url));
    env.insert("PENGUIN_TOKENATOR_GRPC_PLAINTEXT".into(), "true".into());
}

#[tokio::test]
async fn the_jwks_can_come_from_a_url() {
    let jwks = serve_json(jwks_json()).await;
    let github = GitHub::start(Duration::from_secs(3600)).await.unwrap();
    let tokenator = Tokenator::start(BIN, &github, |env, dir| {
        jwks_url_env(env, dir, format!("http://{jwks}/openid/v1/jwks"));
    })
    .await;
    let addr = tokenator
        .process
        .bound_addr("gRPC listening on TCP")
        .await
        .expect("TCP listener");
    tokenator.wait_ready().await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = TokenServiceClient::new(channel);
    let runner = "system:serviceaccount:agents:runner-1";
    let answer = client
        .get_token(with_jwt(
            GetTokenRequest::default(),
            &SaToken::valid(runner).sign(),
        ))
        .await
        .expect("a JWT verified with keys fetched from the URL")
        .into_inner();
    assert!(github.standin.is_token_live(&answer.token));
    let forged = SaToken {
        key_fixture: "other-app-key.pkcs8.pem",
        ..SaToken::valid(runner)
    };
    let err = client
        .get_token(with_jwt(GetTokenRequest::default(), &forged.sign()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    tokenator.assert_no_token_in_logs(&github);
}

#[tokio::test]
async fn a_renewed_tls_certificate_is_served_without_a_restart() {
    let (_github, tokenator, _) = remote_pod().await;
    let addr = tokenator
        .process
        .bound_addr("gRPC listening on TCP")
        .await
        .unwrap();
    let connect = |ca: &'static str| async move {
        let ca = Certificate::from_pem(std::fs::read(fixture(ca)).unwrap());
        Channel::from_shared(format!("https://localhost:{}", addr.port()))
            .unwrap()
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(ca)
                    .domain_name("localhost"),
            )
            .unwrap()
            .connect()
            .await
    };
    assert!(
        connect("tls2-ca.pem").await.is_err(),
        "the second CA is not trusted yet"
    );
    // cert-manager renews in place: both files are rewritten.
    let (cert, key) = (
        tokenator.dir.path().join("tls-cert.pem"),
        tokenator.dir.path().join("tls-key.pem"),
    );
    std::fs::copy(fixture("tls2-key.pem"), &key).unwrap();
    std::fs::copy(fixture("tls2-cert.pem"), &cert).unwrap();
    tokenator
        .process
        .wait_for_log("TLS certificate reloaded", Duration::from_secs(15))
        .await
        .expect("reloaded");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if connect("tls2-ca.pem").await.is_ok() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the renewed certificate is not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        connect("tls-ca.pem").await.is_err(),
        "the old certificate is no longer served"
    );
}

/// Serves `body` over TLS (the fixture `localhost` certificate) only to
/// requests bearing `token`, as the Kubernetes API server serves its JWKS;
/// counts the refusals.
async fn serve_jwks_like_the_api_server(
    body: String,
    token: &'static str,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let certs = CertificateDer::pem_file_iter(fixture("tls-cert.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(fixture("tls-key.pem")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = refused.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, body, counter) = (acceptor.clone(), body.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(stream).await else {
                    return;
                };
                let mut request = vec![0u8; 8192];
                let n = stream.read(&mut request).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&request[..n]).to_ascii_lowercase();
                let answer = if request.contains(&format!("authorization: bearer {token}")) {
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    "HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        .to_string()
                };
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, refused)
}

#[tokio::test]
async fn the_clusters_jwks_is_fetched_with_its_ca_and_the_service_account_token() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (jwks, refused) = serve_jwks_like_the_api_server(jwks_json(), "sa-token-0123").await;
    let github = GitHub::start(Duration::from_secs(3600)).await.unwrap();
    let tokenator = Tokenator::start(BIN, &github, |env, dir| {
        jwks_url_env(
            env,
            dir,
            format!("https://localhost:{}/openid/v1/jwks", jwks.port()),
        );
        std::fs::write(dir.join("sa-token"), "sa-token-0123\n").unwrap();
        env.insert(
            "PENGUIN_TOKENATOR_JWKS_TOKEN_FILE".into(),
            dir.join("sa-token").display().to_string(),
        );
        env.insert(
            "PENGUIN_TOKENATOR_JWKS_CA_FILE".into(),
            fixture("tls-ca.pem").display().to_string(),
        );
    })
    .await;
    let addr = tokenator
        .process
        .bound_addr("gRPC listening on TCP")
        .await
        .unwrap_or_else(|| panic!("no TCP listener:\n{}", tokenator.process.logs()));
    tokenator.wait_ready().await;
    assert_eq!(refused.load(std::sync::atomic::Ordering::SeqCst), 0);
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let answer = TokenServiceClient::new(channel)
        .get_token(with_jwt(
            GetTokenRequest::default(),
            &SaToken::valid("system:serviceaccount:agents:runner-1").sign(),
        ))
        .await
        .expect("a JWT verified with the cluster's keys")
        .into_inner();
    assert!(github.standin.is_token_live(&answer.token));
    assert!(
        !tokenator.process.logs().contains("sa-token-0123"),
        "the SA token was logged"
    );

    // Without the CA the server's certificate is not trusted: start fails, saying why.
    let mut env = tokenator.env.clone();
    env.remove("PENGUIN_TOKENATOR_JWKS_CA_FILE");
    let mut process = tokenator::spawn(BIN, &[], &env);
    let code = process.wait_exit(Duration::from_secs(20)).await;
    assert_ne!(code, Some(0), "{}", process.logs());
    assert!(
        process.logs().contains("openid/v1/jwks"),
        "{}",
        process.logs()
    );
}
