//! penguin-api settings: flags or environment, validated into [`Settings`].

use penguin_config::{ConfigError, GitHubEndpoints};
use penguin_llm::LlmSettings;
use penguin_telemetry::LogFormat;
use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

pub use penguin_agent::RunnerKind;

/// Subcommands of the binary.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Serve the API and the bot (the default).
    Serve,
    /// Exit 0 when the running API answers `GET /api/v1/health` on its port
    /// (container health checks: the image has no curl).
    Healthcheck,
    /// Clone `GITHUB_REPOSITORY`, then commit and push to
    /// `penguin/self-test` every `--interval-secs`, asking for git credentials
    /// fresh each time, as the bot does; one JSON line per push. Exit 0 when
    /// every push succeeded (the image has no shell or git).
    SelfTest {
        /// Pushes to make.
        #[arg(long, default_value_t = 5)]
        pushes: u32,
        /// Seconds between pushes.
        #[arg(long, default_value_t = 2)]
        interval_secs: u64,
    },
}

/// Command line and environment.
#[derive(Debug, clap::Parser)]
#[command(
    name = "penguin-api",
    version,
    about = "The Penguin web API and GitHub App bot."
)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8000)]
    pub port: u16,
    /// Accepted API keys, comma-separated.
    #[arg(
        long,
        env = "PENGUIN_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,
    /// Require an API key (X-API-Key or Authorization: Bearer).
    #[arg(long, env = "PENGUIN_AUTH_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub auth_enabled: bool,
    /// Allow auth off on a non-loopback address.
    #[arg(long, env = "PENGUIN_ALLOW_INSECURE_NO_AUTH", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_insecure_no_auth: bool,
    /// Mark the session cookie Secure (behind TLS).
    #[arg(long, env = "PENGUIN_COOKIE_SECURE", default_value_t = false, action = clap::ArgAction::Set)]
    pub cookie_secure: bool,
    /// Browser origins allowed to call the API with credentials (CORS) and to
    /// open its WebSockets, comma-separated (`https://penguin.example`); the
    /// API's own origin is always allowed for WebSockets.
    #[arg(long, env = "PENGUIN_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Failed key checks allowed per client address per minute; more get 429.
    #[arg(long, env = "PENGUIN_AUTH_FAILURES_PER_MINUTE", default_value_t = 10)]
    pub auth_failures_per_minute: u32,
    /// Tasks running at once.
    #[arg(long, env = "PENGUIN_MAX_CONCURRENT_TASKS", default_value_t = 10)]
    pub max_concurrent_tasks: usize,
    /// Largest upload accepted, bytes.
    #[arg(long, env = "PENGUIN_MAX_UPLOAD_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_upload_bytes: usize,
    /// Bytes that webhook bodies not yet verified may hold together (a
    /// quarter, at most 16 MiB, is kept for bodies up to 1 MiB).
    #[arg(long, env = "PENGUIN_WEBHOOK_BODY_BUDGET_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub webhook_body_budget_bytes: usize,
    /// How long a webhook body may take to arrive.
    #[arg(long, env = "PENGUIN_WEBHOOK_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub webhook_read_timeout_secs: u64,
    /// Total bytes all stored uploads may take; a new one past it is refused (507).
    #[arg(long, env = "PENGUIN_UPLOAD_QUOTA_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub upload_quota_bytes: u64,
    /// Uploads older than this many hours are deleted (checked hourly and at start).
    #[arg(long, env = "PENGUIN_UPLOAD_RETENTION_HOURS", default_value_t = 7 * 24)]
    pub upload_retention_hours: u64,
    /// SQLite database and uploads.
    #[arg(long, env = "PENGUIN_DATA_DIR", default_value = "./.penguin-data")]
    pub data_dir: PathBuf,
    /// The repository working copy the agent reads.
    #[arg(long, env = "PENGUIN_WORKSPACE", default_value = ".")]
    pub workspace: PathBuf,
    /// The server's `.penguin/config.yml` [default: <workspace>/.penguin/config.yml].
    #[arg(long, env = "PENGUIN_CONFIG_PATH")]
    pub config_path: Option<PathBuf>,
    /// Where agent commands run.
    #[arg(long, env = "PENGUIN_RUNNER", value_enum, default_value_t = RunnerKind::Local)]
    pub runner: RunnerKind,
    /// Image for the docker runner.
    #[arg(long, env = "PENGUIN_RUNNER_IMAGE")]
    pub runner_image: Option<String>,
    /// penguin-runner's address for PENGUIN_RUNNER=remote: `unix:/path` or `https://host:port`.
    #[arg(long, env = "PENGUIN_RUNNER_ADDR")]
    pub runner_addr: Option<String>,
    /// Projected ServiceAccount token (audience penguin-runner) sent to an https:// runner; re-read per job.
    #[arg(long, env = "PENGUIN_RUNNER_TOKEN_FILE")]
    pub runner_token_file: Option<PathBuf>,
    /// CA that signed an https:// runner's certificate.
    #[arg(long, env = "PENGUIN_RUNNER_CA_FILE")]
    pub runner_ca_file: Option<PathBuf>,
    /// Allow PENGUIN_RUNNER=local on a non-loopback HOST (development only: the
    /// command runs as this server's user, next to its secrets).
    #[arg(long, env = "PENGUIN_ALLOW_LOCAL_RUNNER", default_value_t = false)]
    pub allow_local_runner: bool,
    /// The tokenator's Unix socket (health reports its reachability; never readable by the agent).
    #[arg(long, env = "PENGUIN_TOKENATOR_SOCKET")]
    pub tokenator_socket: Option<PathBuf>,
    /// The shared git credentials file (never readable by the agent).
    #[arg(long, env = "PENGUIN_GIT_CREDENTIALS_PATH")]
    pub git_credentials_path: Option<PathBuf>,
    /// Default and cap of a task's run time, seconds.
    #[arg(long, env = "PENGUIN_TASK_TIME_LIMIT_SECS", default_value_t = 600)]
    pub task_time_limit_secs: u64,
    /// Default model iterations of a task.
    #[arg(long, env = "PENGUIN_MAX_ITERATIONS", default_value_t = 10)]
    pub max_iterations: u32,
    /// How long SIGTERM waits for requests and tasks, seconds.
    #[arg(long, env = "PENGUIN_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,
    /// Log format.
    #[arg(long, env = "PENGUIN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// This server's public base URL (links from GitHub check runs to tasks).
    #[arg(
        long,
        env = "PENGUIN_PUBLIC_URL",
        default_value = "http://localhost:8000"
    )]
    pub public_url: String,
    /// GitHub endpoints.
    #[command(flatten)]
    pub github: GitHubEndpoints,
}

/// Validated settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Listen address.
    pub listen: SocketAddr,
    /// Auth on.
    pub auth_enabled: bool,
    /// Keys.
    pub api_keys: Vec<String>,
    /// Secure cookie flag.
    pub cookie_secure: bool,
    /// Allowed browser origins, normalised (`scheme://host[:port]`, lower case).
    pub cors_origins: Vec<String>,
    /// Failed key checks per client address per minute before 429.
    pub auth_failures_per_minute: u32,
    /// Worker pool size.
    pub max_concurrent_tasks: usize,
    /// Upload limit.
    pub max_upload_bytes: usize,
    /// Bytes unverified webhook bodies may hold.
    pub webhook_body_budget_bytes: usize,
    /// Deadline for one webhook body.
    pub webhook_read_timeout: Duration,
    /// Total bytes of stored uploads.
    pub upload_quota_bytes: u64,
    /// How long uploads are kept.
    pub upload_retention: Duration,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Workspace.
    pub workspace: PathBuf,
    /// Config file.
    pub config_path: PathBuf,
    /// Runner.
    pub runner: RunnerKind,
    /// Runner image.
    pub runner_image: Option<String>,
    /// The remote runner, for [`RunnerKind::Remote`].
    pub remote_runner: Option<RemoteRunnerSettings>,
    /// Tokenator socket.
    pub tokenator_socket: Option<PathBuf>,
    /// Credentials file.
    pub git_credentials_path: Option<PathBuf>,
    /// Task time limit.
    pub task_time_limit: Duration,
    /// Default iterations.
    pub max_iterations: u32,
    /// Shutdown grace.
    pub shutdown_grace: Duration,
    /// The model provider, if configured.
    pub llm: Option<LlmSettings>,
    /// Public base URL.
    pub public_url: String,
    /// GitHub REST base URL.
    pub github_api_url: String,
    /// GitHub web and git base URL.
    pub github_server_url: String,
    /// `GITHUB_REPOSITORY`.
    pub github_repository: Option<String>,
}

impl Settings {
    /// Where git tokens come from: the tokenator's socket, else the shared
    /// credentials file, for git on `GITHUB_SERVER_URL`. The one way the bot
    /// and the self-test get git credentials.
    pub fn git_auth(&self) -> penguin_bot::git::GitAuth {
        penguin_bot::git::GitAuth::new(
            self.tokenator_socket.clone(),
            self.git_credentials_path.clone(),
            &self.github_server_url,
        )
    }
}

/// Where penguin-runner is and how to prove who we are to it.
#[derive(Clone, Debug)]
pub struct RemoteRunnerSettings {
    /// `unix:` or `https://`.
    pub addr: penguin_runner_client::RunnerAddr,
    /// Projected ServiceAccount token file (https only).
    pub token_file: Option<PathBuf>,
    /// CA of the runner's certificate (https only).
    pub ca_file: Option<PathBuf>,
}

impl Cli {
    fn remote_runner(&self) -> Result<Option<RemoteRunnerSettings>, ConfigError> {
        if self.runner != RunnerKind::Remote {
            return Ok(None);
        }
        let raw = self.runner_addr.as_deref().ok_or_else(|| {
            ConfigError::missing(
                "PENGUIN_RUNNER_ADDR",
                "PENGUIN_RUNNER=remote sends commands to penguin-runner (unix:/path or https://host:port)",
            )
        })?;
        let addr = penguin_runner_client::RunnerAddr::parse(raw)
            .map_err(|reason| ConfigError::invalid("PENGUIN_RUNNER_ADDR", reason))?;
        if let penguin_runner_client::RunnerAddr::Https(_) = addr {
            if self.runner_token_file.is_none() {
                return Err(ConfigError::missing(
                    "PENGUIN_RUNNER_TOKEN_FILE",
                    "an https:// runner authenticates callers with a ServiceAccount token (audience penguin-runner)",
                ));
            }
            if self.runner_ca_file.is_none() {
                return Err(ConfigError::missing(
                    "PENGUIN_RUNNER_CA_FILE",
                    "the runner's certificate is checked against this CA",
                ));
            }
        }
        Ok(Some(RemoteRunnerSettings {
            addr,
            token_file: self.runner_token_file.clone(),
            ca_file: self.runner_ca_file.clone(),
        }))
    }

    /// Validates; errors name the variable.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        // PENGUIN_API_KEYS, or a file of keys (comma- or line-separated)
        // named by PENGUIN_API_KEYS_FILE.
        let from_file = if self.api_keys.iter().all(|k| k.trim().is_empty()) {
            penguin_config::secret_var("PENGUIN_API_KEYS")
                .map_err(|e| ConfigError::invalid("PENGUIN_API_KEYS_FILE", e))?
        } else if std::env::var_os("PENGUIN_API_KEYS_FILE").is_some() {
            return Err(ConfigError::Conflict {
                var: "PENGUIN_API_KEYS",
                other: "PENGUIN_API_KEYS_FILE",
                why: "give the keys one way".into(),
            });
        } else {
            None
        };
        let api_keys: Vec<String> = from_file
            .iter()
            .flat_map(|text| text.split([',', '\n']))
            .map(str::to_string)
            .chain(self.api_keys.iter().cloned())
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .collect();
        if self.auth_enabled && api_keys.is_empty() {
            return Err(ConfigError::missing(
                "PENGUIN_API_KEYS",
                "auth is on (PENGUIN_AUTH_ENABLED=true) and no key is configured",
            ));
        }
        if let Some(short) = api_keys.iter().find(|k| k.len() < 16) {
            return Err(ConfigError::invalid(
                "PENGUIN_API_KEYS",
                format!(
                    "every key needs at least 16 characters (one has {})",
                    short.len()
                ),
            ));
        }
        if !self.auth_enabled && !self.host.is_loopback() && !self.allow_insecure_no_auth {
            return Err(ConfigError::Conflict {
                var: "PENGUIN_AUTH_ENABLED",
                other: "HOST",
                why: format!(
                    "auth is off on the non-loopback address {}; set PENGUIN_ALLOW_INSECURE_NO_AUTH=true to allow it",
                    self.host
                ),
            });
        }
        let cors_origins = self
            .cors_origins
            .iter()
            .map(|o| o.trim())
            .filter(|o| !o.is_empty())
            .map(|o| {
                crate::origin::parse_allowed(o).map_err(|why| {
                    ConfigError::invalid("PENGUIN_CORS_ORIGINS", format!("{o:?}: {why}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.auth_failures_per_minute == 0 {
            return Err(ConfigError::invalid(
                "PENGUIN_AUTH_FAILURES_PER_MINUTE",
                "must be at least 1",
            ));
        }
        if self.max_concurrent_tasks == 0 {
            return Err(ConfigError::invalid(
                "PENGUIN_MAX_CONCURRENT_TASKS",
                "must be at least 1",
            ));
        }
        if self.webhook_body_budget_bytes < 64 * 1024 {
            return Err(ConfigError::invalid(
                "PENGUIN_WEBHOOK_BODY_BUDGET_BYTES",
                "must be at least 65536",
            ));
        }
        if self.webhook_read_timeout_secs == 0 {
            return Err(ConfigError::invalid(
                "PENGUIN_WEBHOOK_READ_TIMEOUT_SECS",
                "must be at least 1",
            ));
        }
        if self.max_upload_bytes == 0 {
            return Err(ConfigError::invalid(
                "PENGUIN_MAX_UPLOAD_BYTES",
                "must be at least 1",
            ));
        }
        if self.runner == RunnerKind::Local && !self.host.is_loopback() && !self.allow_local_runner
        {
            return Err(ConfigError::Conflict {
                var: "PENGUIN_RUNNER",
                other: "HOST",
                why: format!(
                    "the local runner runs repository code as this server's user, next to its secrets; with HOST={} use PENGUIN_RUNNER=remote (penguin-runner), or set PENGUIN_ALLOW_LOCAL_RUNNER=true for development only",
                    self.host
                ),
            });
        }
        if self.runner == RunnerKind::Docker && self.runner_image.is_none() {
            return Err(ConfigError::missing(
                "PENGUIN_RUNNER_IMAGE",
                "PENGUIN_RUNNER=docker runs commands in this image",
            ));
        }
        self.github.validate()?;
        if !(self.public_url.starts_with("http://") || self.public_url.starts_with("https://")) {
            return Err(ConfigError::invalid(
                "PENGUIN_PUBLIC_URL",
                "not an http(s) URL",
            ));
        }
        let llm = LlmSettings::from_env()
            .map_err(|reason| ConfigError::invalid("PENGUIN_LLM_BASE_URL", reason))?;
        let config_path = self
            .config_path
            .clone()
            .unwrap_or_else(|| self.workspace.join(".penguin/config.yml"));
        Ok(Settings {
            listen: SocketAddr::new(self.host, self.port),
            auth_enabled: self.auth_enabled,
            api_keys,
            cookie_secure: self.cookie_secure,
            cors_origins,
            auth_failures_per_minute: self.auth_failures_per_minute,
            max_concurrent_tasks: self.max_concurrent_tasks,
            max_upload_bytes: self.max_upload_bytes,
            webhook_body_budget_bytes: self.webhook_body_budget_bytes,
            webhook_read_timeout: Duration::from_secs(self.webhook_read_timeout_secs),
            upload_quota_bytes: self.upload_quota_bytes,
            upload_retention: Duration::from_secs(self.upload_retention_hours.saturating_mul(3600)),
            data_dir: self.data_dir.clone(),
            workspace: self.workspace.clone(),
            config_path,
            runner: self.runner,
            runner_image: self.runner_image.clone(),
            remote_runner: self.remote_runner()?,
            tokenator_socket: self.tokenator_socket.clone(),
            git_credentials_path: self.git_credentials_path.clone(),
            task_time_limit: Duration::from_secs(self.task_time_limit_secs.clamp(1, 3600)),
            max_iterations: self.max_iterations.clamp(1, 50),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            llm,
            public_url: self.public_url.clone(),
            github_api_url: self.github.github_api_url.clone(),
            github_server_url: self.github.github_server_url.clone(),
            github_repository: self.github.github_repository.clone(),
        })
    }
}
