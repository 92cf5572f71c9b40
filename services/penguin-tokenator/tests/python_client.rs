//! The Unix socket serves clients that are not tonic: a Python grpcio client
//! generated from the proto, with default channel options, so gRPC's C core
//! sends the percent-encoded socket path as `:authority`. TCP keeps h2's
//! authority checks.

use penguin_test_support::{tokenator::Tokenator, GitHub};
use serde_json::Value;
use std::{path::PathBuf, time::Duration};

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_penguin-tokenator");

/// The Python that has `tests/python/requirements.txt` installed.
fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("PENGUIN_PYTHON") {
        return PathBuf::from(path);
    }
    let venv = penguin_test_support::workspace_root().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "Python with grpcio not found: run scripts/test (it installs tests/python/requirements.txt into .venv) or set PENGUIN_PYTHON"
    );
    venv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_python_grpcio_client_uses_the_unix_socket() {
    let github = GitHub::start(Duration::from_secs(4)).await.unwrap();
    let tokenator = Tokenator::start(BIN, &github, |_, _| {}).await;
    tokenator.wait_ready().await;
    let root = penguin_test_support::workspace_root();
    let output = tokio::process::Command::new(python())
        .arg(root.join("tests/python/tokenator_client.py"))
        .arg(root.join("proto"))
        .arg(&tokenator.socket)
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Python client failed ({}):\n{stdout}\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        tokenator.process.logs()
    );
    let results: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_call =
        |call: &str| -> Vec<&Value> { results.iter().filter(|r| r["call"] == call).collect() };
    let issued = github.standin.tokens_issued();

    let token = by_call("GetToken")[0]["token"].as_str().unwrap();
    assert!(issued.iter().any(|t| t == token), "GetToken: {token:?}");
    let watched: Vec<&str> = by_call("WatchToken")
        .iter()
        .map(|r| r["token"].as_str().unwrap())
        .collect();
    assert_eq!(watched.len(), 2, "{stdout}");
    assert_ne!(watched[0], watched[1], "the second message is a rotation");
    assert!(watched.iter().all(|t| issued.iter().any(|i| i == t)));
    assert!(by_call("GetAppInfo")[0]["bot_login"]
        .as_str()
        .unwrap()
        .ends_with("[bot]"));
    assert_eq!(by_call("Health")[0]["status"], "SERVING");
    let services = by_call("Reflection")[0]["services"].to_string();
    assert!(
        services.contains("penguin.tokenator.v1.TokenService")
            && services.contains("grpc.health.v1.Health"),
        "{services}"
    );
    tokenator.assert_no_token_in_logs(&github);
}

/// TCP keeps h2's authority check: a socket path as `:authority` is reset
/// there (INTERNAL in grpcio), while the same call with the channel's own
/// authority reaches the service and is refused for its missing JWT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_keeps_the_authority_check() {
    let github = GitHub::start(Duration::from_secs(3600)).await.unwrap();
    let tokenator = Tokenator::start(BIN, &github, |env, dir| {
        std::fs::write(
            dir.join("jwks.json"),
            penguin_test_support::keys::jwks_json(),
        )
        .unwrap();
        std::fs::write(dir.join("policy.yaml"), "rules: []\n").unwrap();
        let vars = [
            (
                "PENGUIN_TOKENATOR_POLICY_FILE",
                dir.join("policy.yaml").display().to_string(),
            ),
            (
                "PENGUIN_TOKENATOR_JWKS_FILE",
                dir.join("jwks.json").display().to_string(),
            ),
            (
                "PENGUIN_TOKENATOR_JWT_ISSUER",
                penguin_test_support::keys::SA_ISSUER.to_string(),
            ),
            (
                "PENGUIN_TOKENATOR_JWT_AUDIENCE",
                penguin_test_support::keys::SA_AUDIENCE.to_string(),
            ),
            ("PENGUIN_TOKENATOR_GRPC_PLAINTEXT", "true".to_string()),
        ];
        env.extend(vars.into_iter().map(|(k, v)| (k.to_string(), v)));
    })
    .await;
    let addr = tokenator
        .process
        .bound_addr("gRPC listening on TCP")
        .await
        .expect("TCP listener");
    tokenator.wait_ready().await;
    let root = penguin_test_support::workspace_root();
    let output = tokio::process::Command::new(python())
        .arg(root.join("tests/python/tokenator_client.py"))
        .arg(root.join("proto"))
        .args(["--tcp", &addr.to_string()])
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let codes: Vec<(String, String)> = stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["authority"].as_str().unwrap().into(),
                v["code"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        codes,
        [
            ("default".to_string(), "UNAUTHENTICATED".to_string()),
            ("path".to_string(), "INTERNAL".to_string()),
        ]
    );
}
