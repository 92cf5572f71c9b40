//! The tokenator as a process, wired to a GitHub stand-in in App mode: the
//! one way tests start a tokenator. [`spawn`] runs the binary with exactly
//! the given environment (also for settings it must refuse); [`Tokenator`] is
//! one that came up, with its addresses, files and a gRPC client.

use crate::{fixture, process::ServiceProcess, GitHub, APP_ID, INSTALLATION_ID, OWNER, REPO};
use penguin_proto::tokenator::v1::{
    token_service_client::TokenServiceClient, GetTokenRequest, GetTokenResponse,
};
use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};
use tonic::transport::Channel;

/// The log line that carries the bound HTTP address (`/healthz`, `/readyz`, `/metrics`).
pub const HTTP_LISTENING: &str = "HTTP (healthz, readyz, metrics) listening";

/// The environment of an App-mode tokenator against `github`, in `dir`: the
/// App key copied to `secrets/`, HOME and the credentials file in `home/`,
/// the socket in `run/`, every port on loopback and chosen by the system.
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
        // Tests that count the stand-in's calls must not see sweeps of the
        // delivery log; the redelivery tests turn it on.
        ("PENGUIN_TOKENATOR_REDELIVER_INTERVAL_SECS", "0".to_string()),
        ("RUST_LOG", "debug".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Runs the tokenator binary `bin` with exactly `env` (plus PATH) and `args`.
pub fn spawn(
    bin: impl AsRef<Path>,
    args: &[&str],
    env: &HashMap<String, String>,
) -> ServiceProcess {
    ServiceProcess::spawn(bin.as_ref(), args, env).expect("the tokenator binary runs")
}

/// A running tokenator; killed when dropped.
pub struct Tokenator {
    /// Its directory: key, HOME and, unless moved, socket and credentials file.
    pub dir: tempfile::TempDir,
    /// The process.
    pub process: ServiceProcess,
    /// The HTTP address (`/healthz`, `/readyz`, `/metrics`).
    pub http: SocketAddr,
    /// The Unix socket.
    pub socket: PathBuf,
    /// The git credentials file it keeps.
    pub credentials: PathBuf,
    /// Its HOME.
    pub home: PathBuf,
    /// The environment it was started with.
    pub env: HashMap<String, String>,
}

impl Tokenator {
    /// Starts `bin` in App mode against `github` once its HTTP port is bound,
    /// without waiting for a token; `configure` may change the environment
    /// ([`app_env`]) and is given the tokenator's directory.
    pub async fn start(
        bin: impl AsRef<Path>,
        github: &GitHub,
        configure: impl FnOnce(&mut HashMap<String, String>, &Path),
    ) -> Tokenator {
        let dir = tempfile::tempdir().unwrap();
        let mut env = app_env(github, dir.path());
        configure(&mut env, dir.path());
        let process = spawn(bin, &[], &env);
        let http = process
            .bound_addr(HTTP_LISTENING)
            .await
            .unwrap_or_else(|| panic!("tokenator did not start:\n{}", process.logs()));
        Tokenator {
            socket: PathBuf::from(&env["PENGUIN_TOKENATOR_SOCKET"]),
            credentials: PathBuf::from(&env["PENGUIN_GIT_CREDENTIALS_PATH"]),
            home: PathBuf::from(&env["HOME"]),
            dir,
            process,
            http,
            env,
        }
    }

    /// Starts `bin` against `github` with its socket and credentials file in
    /// `run` (created), the volume it shares with the api in the pod, and
    /// `extra` in its environment; waits up to 15 s until it is ready.
    pub async fn start_sharing(
        bin: impl AsRef<Path>,
        github: &GitHub,
        run: &Path,
        extra: &[(&str, &str)],
    ) -> Tokenator {
        std::fs::create_dir_all(run).unwrap();
        let tokenator = Self::start(bin, github, |env, _| {
            env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            for (key, file) in [
                ("PENGUIN_TOKENATOR_SOCKET", "tokenator.sock"),
                ("PENGUIN_GIT_CREDENTIALS_PATH", "git-credentials"),
            ] {
                env.insert(key.into(), run.join(file).display().to_string());
            }
        })
        .await;
        tokenator.wait_ready_within(Duration::from_secs(15)).await;
        tokenator
    }

    /// What an api beside this tokenator is given: the socket, the
    /// credentials file and the GitHub it mints from.
    pub fn api_env(&self) -> HashMap<String, String> {
        let mut env: HashMap<String, String> = [
            ("PENGUIN_TOKENATOR_SOCKET", &self.socket),
            ("PENGUIN_GIT_CREDENTIALS_PATH", &self.credentials),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.display().to_string()))
        .collect();
        for key in ["GITHUB_API_URL", "GITHUB_SERVER_URL", "GITHUB_REPOSITORY"] {
            env.insert(key.to_string(), self.env[key].clone());
        }
        env
    }

    /// gRPC over the Unix socket.
    pub async fn client(&self) -> TokenServiceClient<Channel> {
        TokenServiceClient::new(
            penguin_proto::connect_unix(&self.socket)
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
        penguin_signal::probe::http_ok(self.http, "/readyz").await
    }

    /// Waits up to 30 s for readiness.
    pub async fn wait_ready(&self) {
        self.wait_ready_within(Duration::from_secs(30)).await
    }

    /// Waits up to `timeout` for readiness, panicking with the logs after it.
    pub async fn wait_ready_within(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
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

    /// No token `github` ever issued, nor a piece of one, and no line of the
    /// App key, appears in the logs.
    pub fn assert_no_token_in_logs(&self, github: &GitHub) {
        let tokens = github.standin.tokens_issued();
        assert!(!tokens.is_empty(), "the test minted no token");
        self.process.assert_no_token_leak(&tokens);
        let key = std::fs::read_to_string(fixture("app-key.pem")).unwrap();
        let key_body: Vec<String> = key
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::to_string)
            .collect();
        self.process.assert_no_leak(&key_body);
    }
}
