//! The api as a process: its test environment, start-up, an authenticated
//! client, and the error shape every failure has.

use crate::process::ServiceProcess;
use llm_standin::LlmStandIn;
use serde_json::Value;
use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

/// The API key of [`env`].
pub const KEY: &str = "test-key-0123456789abcdef";

/// The log line that carries the bound address.
pub const LISTENING: &str = "HTTP API listening";

/// A running API; killed when dropped.
pub struct Api {
    /// The process.
    pub process: ServiceProcess,
    /// Where it listens.
    pub addr: SocketAddr,
    /// `PENGUIN_DATA_DIR`.
    pub data: PathBuf,
    /// `PENGUIN_WORKSPACE`.
    pub workspace: PathBuf,
    /// The environment it was started with.
    pub env: HashMap<String, String>,
    /// A client for it.
    pub http: reqwest::Client,
}

/// The default environment: auth on with [`KEY`], data and workspace under `dir`
/// (the workspace seeded with a few files and a `.env`), the model at `llm`
/// (when given).
pub fn env(dir: &Path, llm: Option<&LlmStandIn>) -> HashMap<String, String> {
    let workspace = dir.join("workspace");
    std::fs::create_dir_all(workspace.join("src")).unwrap();
    std::fs::write(workspace.join("README.md"), "# Demo\nA demo repository.\n").unwrap();
    std::fs::write(workspace.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(workspace.join(".env"), "SECRET=do-not-read\n").unwrap();
    let mut env: HashMap<String, String> = [
        ("HOST", "127.0.0.1".to_string()),
        ("PORT", "0".to_string()),
        ("PENGUIN_API_KEYS", KEY.to_string()),
        ("PENGUIN_DATA_DIR", dir.join("data").display().to_string()),
        ("PENGUIN_WORKSPACE", workspace.display().to_string()),
        ("PENGUIN_MAX_UPLOAD_BYTES", "65536".to_string()),
        ("PENGUIN_SHUTDOWN_GRACE_SECS", "2".to_string()),
        ("RUST_LOG", "debug".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(llm) = llm {
        env.insert("PENGUIN_LLM_BASE_URL".into(), llm.base_url());
        env.insert(
            "PENGUIN_LLM_API_KEY".into(),
            "sk-test-0123456789abcdefghij".into(),
        );
        env.insert("PENGUIN_DEFAULT_MODEL".into(), "standin-model".into());
        env.insert("PENGUIN_LLM_TIMEOUT_SECS".into(), "5".into());
    }
    env
}

/// reqwest is built without a default TLS provider (the workspace bans
/// aws-lc); tests install ring once.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Api {
    /// Starts the api binary `bin` with `env`, once it listens.
    pub async fn start(bin: impl AsRef<Path>, env: HashMap<String, String>) -> Api {
        install_crypto();
        let process = ServiceProcess::spawn(bin.as_ref(), &[], &env).expect("penguin-api starts");
        let addr = process
            .bound_addr(LISTENING)
            .await
            .unwrap_or_else(|| panic!("penguin-api did not start:\n{}", process.logs()));
        Api {
            process,
            addr,
            data: PathBuf::from(&env["PENGUIN_DATA_DIR"]),
            workspace: PathBuf::from(&env["PENGUIN_WORKSPACE"]),
            env,
            http: reqwest::Client::new(),
        }
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// GET with the key: (status, JSON body).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .header("X-API-Key", KEY)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// POST JSON with the key: (status, JSON body).
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .header("Authorization", format!("Bearer {KEY}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// The metrics exposition, `GET /metrics` (public).
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A WebSocket to `path`, authenticated with the key.
    pub async fn websocket(
        &self,
        path: &str,
    ) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>
    {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://{}{}", self.addr, path)
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("X-API-Key", KEY.parse().unwrap());
        tokio_tungstenite::connect_async(request)
            .await
            .expect("websocket")
            .0
    }

    /// Stops the process gracefully.
    pub async fn stop(mut self) -> HashMap<String, String> {
        assert_eq!(
            self.process.terminate(Duration::from_secs(15)).await,
            Some(0),
            "{}",
            self.process.logs()
        );
        self.env
    }
}

/// Asserts the common error shape and returns the error object.
pub fn error_of(body: &Value) -> &Value {
    let error = &body["detail"]["error"];
    assert!(error["code"].is_string(), "not the error shape: {body}");
    assert!(error["message"].is_string(), "{body}");
    assert!(error["recoverable"].is_boolean(), "{body}");
    assert!(error.get("suggested_action").is_some(), "{body}");
    error
}
