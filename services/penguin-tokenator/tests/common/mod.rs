//! A tokenator process wired to a GitHub stand-in, for the integration tests.
#![allow(dead_code)]

use penguin_proto::tokenator::v1::{
    token_service_client::TokenServiceClient, GetTokenRequest, GetTokenResponse,
};
use penguin_test_support::{
    fixture, process::ServiceProcess, GitHub, APP_ID, INSTALLATION_ID, OWNER, REPO,
};
use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};
use tonic::transport::Channel;

pub const BIN: &str = env!("CARGO_BIN_EXE_penguin-tokenator");

/// A running tokenator and the stand-in it talks to.
pub struct Pod {
    pub github: GitHub,
    pub dir: tempfile::TempDir,
    pub process: ServiceProcess,
    pub http: SocketAddr,
    pub socket: PathBuf,
    pub credentials: PathBuf,
    pub home: PathBuf,
    pub env: HashMap<String, String>,
}

/// The environment of an App-mode tokenator against `github`, in `dir`.
pub fn app_env(github: &GitHub, dir: &Path) -> HashMap<String, String> {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let key = dir.join("secrets/app-key.pem");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    std::fs::copy(fixture("app-key.pem"), &key).unwrap();
    [
        ("GITHUB_APP_ID", APP_ID.to_string()),
        ("GITHUB_APP_INSTALLATION_ID", INSTALLATION_ID.to_string()),
        ("GITHUB_APP_PRIVATE_KEY_PATH", key.display().to_string()),
        ("GITHUB_API_URL", github.url()),
        ("GITHUB_SERVER_URL", github.url()),
        ("GITHUB_REPOSITORY", format!("{OWNER}/{REPO}")),
        ("HOME", home.display().to_string()),
        (
            "PENGUIN_GIT_CREDENTIALS_PATH",
            home.join(".git-credentials").display().to_string(),
        ),
        (
            "PENGUIN_TOKENATOR_SOCKET",
            dir.join("run/tokenator.sock").display().to_string(),
        ),
        ("PENGUIN_TOKENATOR_HTTP_ADDR", "127.0.0.1:0".to_string()),
        ("PENGUIN_TOKENATOR_GRPC_ADDR", "127.0.0.1:0".to_string()),
        ("PENGUIN_TOKENATOR_PROBE_TIMEOUT_SECS", "10".to_string()),
        ("RUST_LOG", "debug".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

impl Pod {
    /// Starts a tokenator in App mode; `configure` may change its environment.
    pub async fn start(
        github: GitHub,
        configure: impl FnOnce(&mut HashMap<String, String>, &Path),
    ) -> Pod {
        let dir = tempfile::tempdir().unwrap();
        let mut env = app_env(&github, dir.path());
        configure(&mut env, dir.path());
        let process = ServiceProcess::spawn(Path::new(BIN), &[], &env).expect("tokenator starts");
        let http = process
            .bound_addr("HTTP (healthz, readyz, metrics) listening")
            .await
            .unwrap_or_else(|| panic!("tokenator did not start:\n{}", process.logs()));
        Pod {
            socket: PathBuf::from(&env["PENGUIN_TOKENATOR_SOCKET"]),
            credentials: PathBuf::from(&env["PENGUIN_GIT_CREDENTIALS_PATH"]),
            home: PathBuf::from(&env["HOME"]),
            github,
            dir,
            process,
            http,
            env,
        }
    }

    /// gRPC over the Unix socket.
    pub async fn client(&self) -> TokenServiceClient<Channel> {
        TokenServiceClient::new(
            penguin_tokenator::client::connect_unix(&self.socket)
                .await
                .expect("socket"),
        )
    }

    /// The default token over the Unix socket.
    pub async fn default_token(&self) -> GetTokenResponse {
        self.client()
            .await
            .get_token(GetTokenRequest::default())
            .await
            .expect("GetToken")
            .into_inner()
    }

    /// `GET /readyz` answers 200.
    pub async fn ready(&self) -> bool {
        penguin_tokenator::client::ready(self.http).await
    }

    /// Waits for readiness.
    pub async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !self.ready().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never ready:\n{}",
                self.process.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The credentials file's content (empty if absent).
    pub fn credentials_line(&self) -> String {
        std::fs::read_to_string(&self.credentials).unwrap_or_default()
    }

    /// `GET path` on the HTTP port: (status, body).
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.http).await.unwrap();
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.unwrap();
        let status = raw[9..12].parse().unwrap();
        let body = raw
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// No token the stand-in ever issued appears in the tokenator's logs.
    pub fn assert_no_token_in_logs(&self) {
        let tokens = self.github.standin.tokens_issued();
        assert!(!tokens.is_empty(), "the test minted no token");
        self.process.assert_no_leak(&tokens);
        let key = std::fs::read_to_string(fixture("app-key.pem")).unwrap();
        let key_body: Vec<String> = key
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::to_string)
            .collect();
        self.process.assert_no_leak(&key_body);
    }
}
