//! The TCP listener: TLS only, callers' ServiceAccount JWTs verified against
//! the JWKS, subjects allowed by glob, everyone else refused; and the
//! runner's refusal to start as root or with bad settings.

use penguin_runner_client::{ClientError, Job, RunnerAddr, RunnerClient};
use penguin_test_support::{
    binaries::workspace_binary,
    fixture,
    keys::{jwks_json, SaToken},
    process::ServiceProcess,
    runner::{runner_user, TestRunner},
};
use std::{collections::HashMap, time::Duration};
use tonic::Code;

const API_SUBJECT: &str = "system:serviceaccount:penguin:penguin";

async fn tcp_runner() -> (TestRunner, std::net::SocketAddr) {
    let files = tempfile::tempdir().unwrap();
    let keep = files.keep();
    std::fs::write(keep.join("jwks.json"), jwks_json()).unwrap();
    for name in ["tls-cert.pem", "tls-key.pem"] {
        std::fs::copy(fixture(name), keep.join(name)).unwrap();
    }
    if let Some((uid, gid)) = runner_user() {
        for name in ["", "jwks.json", "tls-cert.pem", "tls-key.pem"] {
            std::os::unix::fs::chown(keep.join(name), Some(uid), Some(gid)).unwrap();
        }
    }
    let path = |name: &str| keep.join(name).display().to_string();
    let runner = TestRunner::start(&[
        ("PENGUIN_RUNNER_GRPC_ADDR", "127.0.0.1:0".into()),
        ("PENGUIN_RUNNER_JWKS_FILE", path("jwks.json")),
        (
            "PENGUIN_RUNNER_JWT_ISSUER",
            penguin_test_support::keys::SA_ISSUER.into(),
        ),
        ("PENGUIN_RUNNER_TLS_CERT", path("tls-cert.pem")),
        ("PENGUIN_RUNNER_TLS_KEY", path("tls-key.pem")),
        (
            "PENGUIN_RUNNER_ALLOWED_SUBJECTS",
            format!("{API_SUBJECT},system:serviceaccount:ci:runner-*"),
        ),
    ])
    .await;
    let addr = runner
        .process
        .bound_addr("gRPC listening on TCP")
        .await
        .expect("TCP address in the log");
    (runner, addr)
}

fn client_with(addr: std::net::SocketAddr, token: Option<String>) -> RunnerClient {
    let dir = tempfile::tempdir().unwrap().keep();
    let token_file = token.map(|t| {
        let path = dir.join("token");
        std::fs::write(&path, t).unwrap();
        path
    });
    RunnerClient::new(
        &RunnerAddr::Https(format!("https://localhost:{}", addr.port())),
        token_file,
        Some(&fixture("tls-ca.pem")),
    )
    .unwrap()
}

async fn code_of(client: &RunnerClient) -> Result<String, (Code, String)> {
    match client
        .run(Job::shell("echo over tcp"), Vec::new(), 1024)
        .await
    {
        Ok(outcome) => Ok(String::from_utf8_lossy(&outcome.stdout).into_owned()),
        Err(ClientError::Refused { code, message }) => Err((code, message)),
        Err(other) => panic!("{other}"),
    }
}

#[tokio::test]
async fn tcp_callers_need_a_valid_jwt_from_an_allowed_subject() {
    let (runner, addr) = tcp_runner().await;
    let runner_audience = |subject: &'static str| SaToken {
        audience: "penguin-runner",
        ..SaToken::valid(subject)
    };

    let ok = client_with(addr, Some(runner_audience(API_SUBJECT).sign()));
    assert_eq!(code_of(&ok).await.unwrap(), "over tcp\n");
    let glob = client_with(
        addr,
        Some(runner_audience("system:serviceaccount:ci:runner-7").sign()),
    );
    assert_eq!(code_of(&glob).await.unwrap(), "over tcp\n");

    let (code, message) = code_of(&client_with(addr, None)).await.unwrap_err();
    assert_eq!(code, Code::Unauthenticated, "{message}");

    // A token minted for the tokenator is not good here.
    let (code, message) = code_of(&client_with(addr, Some(SaToken::valid(API_SUBJECT).sign())))
        .await
        .unwrap_err();
    assert_eq!(code, Code::Unauthenticated);
    assert!(message.contains("audience"), "{message}");

    let expired = SaToken {
        expires_in: -600,
        ..runner_audience(API_SUBJECT)
    };
    assert_eq!(
        code_of(&client_with(addr, Some(expired.sign())))
            .await
            .unwrap_err()
            .0,
        Code::Unauthenticated
    );
    let forged = SaToken {
        key_fixture: "app-key.pem",
        ..runner_audience(API_SUBJECT)
    };
    assert_eq!(
        code_of(&client_with(addr, Some(forged.sign())))
            .await
            .unwrap_err()
            .0,
        Code::Unauthenticated
    );

    let (code, message) = code_of(&client_with(
        addr,
        Some(runner_audience("system:serviceaccount:other:x").sign()),
    ))
    .await
    .unwrap_err();
    assert_eq!(code, Code::PermissionDenied);
    assert!(
        message.contains("system:serviceaccount:other:x"),
        "{message}"
    );

    // Plain HTTP/2 without TLS gets nowhere.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await;
    if let Ok(channel) = plain {
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        assert!(health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .is_err());
    }
    runner
        .process
        .assert_no_leak(&[runner_audience(API_SUBJECT).sign()]);
}

#[tokio::test]
async fn the_runner_refuses_root_and_bad_settings_with_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let env = HashMap::from([
        (
            "PENGUIN_RUNNER_SOCKET".to_string(),
            dir.path().join("r.sock").display().to_string(),
        ),
        (
            "PENGUIN_RUNNER_WORK_DIR".to_string(),
            dir.path().join("work").display().to_string(),
        ),
    ]);
    let binary = workspace_binary("penguin-runner");
    // As root: directly when the tests run as root, else in a user namespace
    // that maps us to uid 0.
    let mut root = if runner_user().is_some() {
        ServiceProcess::spawn(&binary, &[], &env).unwrap()
    } else {
        let unshare = std::path::Path::new("/usr/bin/unshare");
        let mut args = vec!["--map-root-user", binary.to_str().unwrap()];
        args.retain(|_| true);
        ServiceProcess::spawn(unshare, &args, &env).unwrap()
    };
    assert_eq!(root.wait_exit(Duration::from_secs(20)).await, Some(64));
    assert!(
        root.logs().contains("refuses to run as root"),
        "{}",
        root.logs()
    );
    assert!(!dir.path().join("r.sock").exists());

    let mut bad = env.clone();
    bad.insert("PENGUIN_RUNNER_CONCURRENCY".into(), "0".into());
    let mut process = ServiceProcess::spawn_as(&binary, &[], &bad, runner_user()).unwrap();
    assert_eq!(process.wait_exit(Duration::from_secs(20)).await, Some(64));
    assert!(
        process.logs().contains("PENGUIN_RUNNER_CONCURRENCY"),
        "{}",
        process.logs()
    );

    let mut tcp_without_auth = env.clone();
    tcp_without_auth.insert("PENGUIN_RUNNER_GRPC_ADDR".into(), "127.0.0.1:0".into());
    let mut process =
        ServiceProcess::spawn_as(&binary, &[], &tcp_without_auth, runner_user()).unwrap();
    assert_eq!(process.wait_exit(Duration::from_secs(20)).await, Some(64));
    assert!(
        process.logs().contains("PENGUIN_RUNNER_JWKS_FILE"),
        "{}",
        process.logs()
    );
}

#[tokio::test]
async fn health_and_reflection_are_served_on_the_socket() {
    let runner = TestRunner::start(&[]).await;
    assert!(runner.client().is_serving().await);
    let status = std::process::Command::new(workspace_binary("penguin-runner"))
        .arg("healthcheck")
        .env("PENGUIN_RUNNER_SOCKET", &runner.socket)
        .status()
        .unwrap();
    assert!(status.success());
    let missing = std::process::Command::new(workspace_binary("penguin-runner"))
        .arg("healthcheck")
        .env(
            "PENGUIN_RUNNER_SOCKET",
            runner.dir.path().join("nothing.sock"),
        )
        .status()
        .unwrap();
    assert!(!missing.success());
}
