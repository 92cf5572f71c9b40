//! The tokenator's settings: every one an environment variable with a
//! matching flag (`--help` lists them), validated into [`Settings`].

use penguin_config::{ConfigError, GitHubEndpoints};
use penguin_grpc_auth::{AuthSettings, AuthVars, RawAuth};
use penguin_telemetry::LogFormat;
use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// Command line: an optional subcommand over the shared settings.
#[derive(Debug, clap::Parser)]
#[command(
    name = "penguin-tokenator",
    version,
    about = "Holds the GitHub App key; serves short-lived installation tokens over gRPC and keeps git credentials fresh."
)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings, from flags or environment.
    #[command(flatten)]
    pub args: Args,
}

/// Subcommands of the binary.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the token service (the default).
    Serve,
    /// git credential helper: `git config credential.helper "penguin-tokenator git-credential"`.
    /// Asks the running tokenator over its Unix socket; `store` and `erase` do nothing.
    GitCredential {
        /// `get`, `store` or `erase`, as git passes it.
        operation: String,
    },
    /// Exit 0 when the running tokenator reports ready on its HTTP port (for container health checks).
    Healthcheck,
}

/// Raw settings as given. See [`Settings`] for their meaning after validation.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// GitHub App id (App mode).
    #[arg(long, env = "GITHUB_APP_ID")]
    pub github_app_id: Option<u64>,
    /// GitHub App client id, used as the JWT issuer instead of the App id.
    #[arg(long, env = "GITHUB_APP_CLIENT_ID")]
    pub github_app_client_id: Option<String>,
    /// Default installation; when unset, the installation of GITHUB_REPOSITORY.
    #[arg(long, env = "GITHUB_APP_INSTALLATION_ID")]
    pub github_app_installation_id: Option<u64>,
    /// PEM file with the App's RSA private key (PKCS#1 or PKCS#8); re-read when it changes.
    #[arg(long, env = "GITHUB_APP_PRIVATE_KEY_PATH")]
    pub github_app_private_key_path: Option<PathBuf>,
    /// Fallback without an App: a PAT or installation token.
    #[arg(long, env = "GITHUB_TOKEN", hide_env_values = true)]
    pub github_token: Option<String>,
    /// Fallback without an App: a file holding a token, re-read when it changes.
    #[arg(long, env = "GITHUB_TOKEN_FILE")]
    pub github_token_file: Option<PathBuf>,
    /// GitHub endpoints.
    #[command(flatten)]
    pub endpoints: GitHubEndpoints,
    /// git credential store file kept fresh with the default token [default: $HOME/.git-credentials].
    #[arg(long, env = "PENGUIN_GIT_CREDENTIALS_PATH")]
    pub git_credentials_path: Option<PathBuf>,
    /// Also write the bare default token to this file (for tools that read a token file).
    #[arg(long, env = "PENGUIN_TOKENATOR_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Unix socket for same-pod callers.
    #[arg(
        long,
        env = "PENGUIN_TOKENATOR_SOCKET",
        default_value = "/run/penguin/tokenator.sock"
    )]
    pub socket: PathBuf,
    /// TCP gRPC listener for other pods (only with a JWKS).
    #[arg(
        long,
        env = "PENGUIN_TOKENATOR_GRPC_ADDR",
        default_value = "0.0.0.0:50051"
    )]
    pub grpc_addr: SocketAddr,
    /// HTTP listener for /healthz, /readyz and /metrics.
    #[arg(
        long,
        env = "PENGUIN_TOKENATOR_HTTP_ADDR",
        default_value = "0.0.0.0:8081"
    )]
    pub http_addr: SocketAddr,
    /// JWKS file that verifies callers' ServiceAccount JWTs on the TCP listener.
    #[arg(long, env = "PENGUIN_TOKENATOR_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,
    /// JWKS URL (alternative to the file), fetched at start and refreshed.
    #[arg(long, env = "PENGUIN_TOKENATOR_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// Bearer token file sent with each JWKS_URL fetch (in a cluster, the
    /// pod's ServiceAccount token: the API server's /openid/v1/jwks wants one).
    #[arg(long, env = "PENGUIN_TOKENATOR_JWKS_TOKEN_FILE")]
    pub jwks_token_file: Option<PathBuf>,
    /// CA bundle that verifies JWKS_URL instead of the public roots (in a
    /// cluster, the ServiceAccount's ca.crt).
    #[arg(long, env = "PENGUIN_TOKENATOR_JWKS_CA_FILE")]
    pub jwks_ca_file: Option<PathBuf>,
    /// Required `iss` of callers' JWTs.
    #[arg(long, env = "PENGUIN_TOKENATOR_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` of callers' JWTs.
    #[arg(long, env = "PENGUIN_TOKENATOR_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// YAML policy: which callers may request which repositories and permissions.
    #[arg(long, env = "PENGUIN_TOKENATOR_POLICY_FILE")]
    pub policy_file: Option<PathBuf>,
    /// TLS certificate (PEM chain) for the TCP listener; reloaded when it changes.
    #[arg(long, env = "PENGUIN_TOKENATOR_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for the TCP listener; reloaded when it changes.
    #[arg(long, env = "PENGUIN_TOKENATOR_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Serve the TCP listener without TLS (explicit opt-in, e.g. behind a mesh).
    #[arg(
        long,
        env = "PENGUIN_TOKENATOR_GRPC_PLAINTEXT",
        default_value_t = false
    )]
    pub grpc_plaintext: bool,
    /// Log format.
    #[arg(long, env = "PENGUIN_TOKENATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Refresh a token after this fraction of its lifetime (0 < f < 1).
    #[arg(
        long,
        env = "PENGUIN_TOKENATOR_REFRESH_FRACTION",
        default_value_t = 0.5
    )]
    pub refresh_fraction: f64,
    /// Never hand out a token with less than this many seconds left…
    #[arg(
        long,
        env = "PENGUIN_TOKENATOR_SAFETY_MARGIN_SECS",
        default_value_t = 300
    )]
    pub safety_margin_secs: u64,
    /// …or less than this fraction of its lifetime, whichever is smaller.
    #[arg(
        long,
        env = "PENGUIN_TOKENATOR_SAFETY_MARGIN_FRACTION",
        default_value_t = 0.2
    )]
    pub safety_margin_fraction: f64,
    /// How long to wait for a new token to work (GitHub's replication lag).
    #[arg(
        long,
        env = "PENGUIN_TOKENATOR_PROBE_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub probe_timeout_secs: u64,
    /// Deadline for one GitHub request.
    #[arg(
        long,
        env = "PENGUIN_TOKENATOR_GITHUB_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub github_timeout_secs: u64,
    /// How long to wait at start for a missing App key file to appear (a
    /// volume filled by another container); 0 fails at once.
    #[arg(long, env = "PENGUIN_TOKENATOR_KEY_WAIT_SECS", default_value_t = 0)]
    pub key_wait_secs: u64,
    /// How often the App's webhook delivery log is swept for failed
    /// deliveries to redeliver (App mode); 0 turns the sweep off.
    #[arg(
        long,
        env = "PENGUIN_TOKENATOR_REDELIVER_INTERVAL_SECS",
        default_value_t = 60
    )]
    pub redeliver_interval_secs: u64,
    /// How far back the first sweep after a start looks (at most GitHub's
    /// three days).
    #[arg(
        long,
        env = "PENGUIN_TOKENATOR_REDELIVER_LOOKBACK_SECS",
        default_value_t = 6 * 3600
    )]
    pub redeliver_lookback_secs: u64,
    /// Redeliveries asked for one delivery before giving up on it.
    #[arg(
        long,
        env = "PENGUIN_TOKENATOR_REDELIVER_MAX_ATTEMPTS",
        default_value_t = 5
    )]
    pub redeliver_max_attempts: u32,
}

/// How failed webhook deliveries are found and redelivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedeliverSettings {
    /// Between sweeps (`None`: off).
    pub interval: Option<Duration>,
    /// How far back the first sweep looks.
    pub lookback: Duration,
    /// Redeliveries per delivery before giving up.
    pub max_attempts: u32,
}

/// Where tokens come from.
#[derive(Clone, Debug)]
pub enum SourceSettings {
    /// Minted as a GitHub App.
    App {
        /// App id.
        app_id: u64,
        /// JWT issuer (client id or app id).
        issuer: String,
        /// Default installation; `None` = look up GITHUB_REPOSITORY's.
        installation_id: Option<u64>,
        /// Private key file.
        key_path: PathBuf,
    },
    /// A token given directly (PAT or operator-managed installation token).
    Static {
        /// The token.
        token: String,
    },
    /// A token file kept fresh by someone else.
    File {
        /// The file.
        path: PathBuf,
    },
}

/// Timing of refreshes and the safety margin.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Refresh after this fraction of the lifetime.
    pub refresh_fraction: f64,
    /// Absolute cap on the safety margin.
    pub margin_max: Duration,
    /// Safety margin as a fraction of the lifetime.
    pub margin_fraction: f64,
    /// Replication-lag probe deadline.
    pub probe_timeout: Duration,
}

impl Timing {
    /// The margin for a token of this lifetime: `min(margin_max, fraction × lifetime)`.
    pub fn margin(&self, lifetime: Duration) -> Duration {
        self.margin_max.min(lifetime.mul_f64(self.margin_fraction))
    }
}

/// The TCP listener's caller authentication; absent = listener off.
#[derive(Clone, Debug)]
pub struct TcpSettings {
    /// Listen address.
    pub addr: SocketAddr,
    /// JWKS, issuer, audience and TLS.
    pub auth: AuthSettings,
    /// Caller policy file.
    pub policy: PathBuf,
}

/// Validated settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Token source.
    pub source: SourceSettings,
    /// GitHub endpoints.
    pub endpoints: GitHubEndpoints,
    /// Credential store file.
    pub credentials_path: PathBuf,
    /// Optional bare token file.
    pub token_file: Option<PathBuf>,
    /// Unix socket path.
    pub socket: PathBuf,
    /// HTTP listener.
    pub http_addr: SocketAddr,
    /// TCP gRPC listener, when enabled.
    pub tcp: Option<TcpSettings>,
    /// Why the TCP listener is off, for the log.
    pub tcp_off_reason: Option<&'static str>,
    /// Timing.
    pub timing: Timing,
    /// GitHub request deadline.
    pub github_timeout: Duration,
    /// How long to wait for a missing App key file at start.
    pub key_wait: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// Webhook redelivery.
    pub redeliver: RedeliverSettings,
}

impl Args {
    /// Validates the raw settings; errors name the variable to fix.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        self.endpoints.validate()?;
        let source = self.source()?;
        let credentials_path = match &self.git_credentials_path {
            Some(p) => p.clone(),
            None => {
                let home = std::env::var_os("HOME").ok_or_else(|| {
                    ConfigError::missing(
                        "PENGUIN_GIT_CREDENTIALS_PATH",
                        "HOME is not set, so the default $HOME/.git-credentials has no place",
                    )
                })?;
                PathBuf::from(home).join(".git-credentials")
            }
        };
        if !(self.refresh_fraction > 0.0 && self.refresh_fraction < 1.0) {
            return Err(ConfigError::invalid(
                "PENGUIN_TOKENATOR_REFRESH_FRACTION",
                format!("{} is not between 0 and 1", self.refresh_fraction),
            ));
        }
        if !(self.safety_margin_fraction >= 0.0 && self.safety_margin_fraction < 1.0) {
            return Err(ConfigError::invalid(
                "PENGUIN_TOKENATOR_SAFETY_MARGIN_FRACTION",
                format!("{} is not in [0, 1)", self.safety_margin_fraction),
            ));
        }
        if self.refresh_fraction + self.safety_margin_fraction >= 1.0 {
            return Err(ConfigError::Conflict {
                var: "PENGUIN_TOKENATOR_REFRESH_FRACTION",
                other: "PENGUIN_TOKENATOR_SAFETY_MARGIN_FRACTION",
                why: "a token must be refreshed before it enters its safety margin (their sum must be < 1)".into(),
            });
        }
        if self.github_timeout_secs == 0 {
            return Err(ConfigError::invalid(
                "PENGUIN_TOKENATOR_GITHUB_TIMEOUT_SECS",
                "must be at least 1",
            ));
        }
        let (tcp, tcp_off_reason) = self.tcp()?;
        // GitHub keeps (and redelivers) three days of deliveries.
        const THREE_DAYS: u64 = 3 * 24 * 3600;
        if !(1..=THREE_DAYS).contains(&self.redeliver_lookback_secs) {
            return Err(ConfigError::invalid(
                "PENGUIN_TOKENATOR_REDELIVER_LOOKBACK_SECS",
                format!(
                    "{} is not between 1 and {THREE_DAYS} (GitHub redelivers three days back)",
                    self.redeliver_lookback_secs
                ),
            ));
        }
        if !(1..=100).contains(&self.redeliver_max_attempts) {
            return Err(ConfigError::invalid(
                "PENGUIN_TOKENATOR_REDELIVER_MAX_ATTEMPTS",
                format!("{} is not between 1 and 100", self.redeliver_max_attempts),
            ));
        }
        Ok(Settings {
            source,
            endpoints: self.endpoints.clone(),
            credentials_path,
            token_file: self.token_file.clone(),
            socket: self.socket.clone(),
            http_addr: self.http_addr,
            tcp,
            tcp_off_reason,
            timing: Timing {
                refresh_fraction: self.refresh_fraction,
                margin_max: Duration::from_secs(self.safety_margin_secs),
                margin_fraction: self.safety_margin_fraction,
                probe_timeout: Duration::from_secs(self.probe_timeout_secs),
            },
            github_timeout: Duration::from_secs(self.github_timeout_secs),
            key_wait: Duration::from_secs(self.key_wait_secs),
            log_format: self.log_format,
            redeliver: RedeliverSettings {
                interval: (self.redeliver_interval_secs > 0)
                    .then(|| Duration::from_secs(self.redeliver_interval_secs)),
                lookback: Duration::from_secs(self.redeliver_lookback_secs),
                max_attempts: self.redeliver_max_attempts,
            },
        })
    }

    fn source(&self) -> Result<SourceSettings, ConfigError> {
        let app = self.github_app_id.is_some() || self.github_app_client_id.is_some();
        if app {
            if let Some(other) = [
                self.github_token.as_ref().map(|_| "GITHUB_TOKEN"),
                self.github_token_file.as_ref().map(|_| "GITHUB_TOKEN_FILE"),
            ]
            .into_iter()
            .flatten()
            .next()
            {
                return Err(ConfigError::Conflict {
                    var: "GITHUB_APP_ID",
                    other,
                    why: "configure either a GitHub App or a fallback token, not both".into(),
                });
            }
            let app_id = self.github_app_id.ok_or_else(|| {
                ConfigError::missing(
                    "GITHUB_APP_ID",
                    "GITHUB_APP_CLIENT_ID is set; the App id is needed too",
                )
            })?;
            let key_path = self.github_app_private_key_path.clone().ok_or_else(|| {
                ConfigError::missing(
                    "GITHUB_APP_PRIVATE_KEY_PATH",
                    "App mode signs JWTs with the App's private key",
                )
            })?;
            if self.github_app_installation_id.is_none()
                && self.endpoints.github_repository.is_none()
            {
                return Err(ConfigError::missing(
                    "GITHUB_APP_INSTALLATION_ID",
                    "set it, or set GITHUB_REPOSITORY so the installation can be looked up",
                ));
            }
            let issuer = self
                .github_app_client_id
                .clone()
                .unwrap_or_else(|| app_id.to_string());
            return Ok(SourceSettings::App {
                app_id,
                issuer,
                installation_id: self.github_app_installation_id,
                key_path,
            });
        }
        if self.github_app_private_key_path.is_some() || self.github_app_installation_id.is_some() {
            return Err(ConfigError::missing(
                "GITHUB_APP_ID",
                "GITHUB_APP_PRIVATE_KEY_PATH / GITHUB_APP_INSTALLATION_ID are set but the App id is not",
            ));
        }
        match (&self.github_token, &self.github_token_file) {
            (Some(_), Some(_)) => Err(ConfigError::Conflict {
                var: "GITHUB_TOKEN",
                other: "GITHUB_TOKEN_FILE",
                why: "give the token one way".into(),
            }),
            (Some(token), None) if token.trim().is_empty() => {
                Err(ConfigError::invalid("GITHUB_TOKEN", "is empty"))
            }
            (Some(token), None) => Ok(SourceSettings::Static {
                token: token.trim().to_string(),
            }),
            (None, Some(path)) => Ok(SourceSettings::File { path: path.clone() }),
            (None, None) => Err(ConfigError::missing(
                "GITHUB_APP_ID",
                "configure a GitHub App (GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY_PATH, GITHUB_APP_INSTALLATION_ID) or a fallback GITHUB_TOKEN / GITHUB_TOKEN_FILE",
            )),
        }
    }

    fn tcp(&self) -> Result<(Option<TcpSettings>, Option<&'static str>), ConfigError> {
        let raw = RawAuth {
            jwks_file: self.jwks_file.clone(),
            jwks_url: self.jwks_url.clone(),
            jwks_token_file: self.jwks_token_file.clone(),
            jwks_ca_file: self.jwks_ca_file.clone(),
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            plaintext: self.grpc_plaintext,
        };
        let Some(auth) = raw.validate(&AUTH_VARS)? else {
            return Ok((
                None,
                Some("no JWKS configured (PENGUIN_TOKENATOR_JWKS_FILE / PENGUIN_TOKENATOR_JWKS_URL), so TCP callers could not be authenticated"),
            ));
        };
        let policy = self.policy_file.clone().ok_or_else(|| {
            ConfigError::missing(
                "PENGUIN_TOKENATOR_POLICY_FILE",
                "TCP callers are denied unless a policy allows them",
            )
        })?;
        Ok((
            Some(TcpSettings {
                addr: self.grpc_addr,
                auth,
                policy,
            }),
            None,
        ))
    }
}

/// The tokenator's caller-authentication variables.
const AUTH_VARS: AuthVars = AuthVars {
    jwks_file: "PENGUIN_TOKENATOR_JWKS_FILE",
    jwks_url: "PENGUIN_TOKENATOR_JWKS_URL",
    issuer: "PENGUIN_TOKENATOR_JWT_ISSUER",
    audience: "PENGUIN_TOKENATOR_JWT_AUDIENCE",
    tls_cert: "PENGUIN_TOKENATOR_TLS_CERT",
    tls_key: "PENGUIN_TOKENATOR_TLS_KEY",
    plaintext: Some("PENGUIN_TOKENATOR_GRPC_PLAINTEXT"),
};

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Settings, ConfigError> {
        let mut argv = vec!["penguin-tokenator", "--git-credentials-path", "/tmp/creds"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("parses").args.validate()
    }

    fn var_of(err: ConfigError) -> &'static str {
        match err {
            ConfigError::Missing { var, .. }
            | ConfigError::Invalid { var, .. }
            | ConfigError::Conflict { var, .. } => var,
        }
    }

    #[test]
    fn app_mode_needs_key_and_installation() {
        let app = [
            "--github-app-id",
            "1",
            "--github-app-private-key-path",
            "/k.pem",
        ];
        assert_eq!(
            var_of(parse(&app).unwrap_err()),
            "GITHUB_APP_INSTALLATION_ID"
        );
        let mut with_repo = app.to_vec();
        with_repo.extend(["--github-repository", "octo-org/hello-world"]);
        assert!(matches!(
            parse(&with_repo).unwrap().source,
            SourceSettings::App {
                installation_id: None,
                ..
            }
        ));
        assert_eq!(
            var_of(
                parse(&["--github-app-id", "1", "--github-app-installation-id", "2"]).unwrap_err()
            ),
            "GITHUB_APP_PRIVATE_KEY_PATH"
        );
        let mut client = vec!["--github-app-client-id", "Iv1.abc"];
        client.extend(&app[2..]);
        client.extend(["--github-app-installation-id", "2"]);
        assert_eq!(var_of(parse(&client).unwrap_err()), "GITHUB_APP_ID");
        client.extend(["--github-app-id", "1"]);
        match parse(&client).unwrap().source {
            SourceSettings::App { issuer, .. } => assert_eq!(issuer, "Iv1.abc"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn contradictions_and_absence_name_variables() {
        assert_eq!(var_of(parse(&[]).unwrap_err()), "GITHUB_APP_ID");
        assert_eq!(
            var_of(parse(&["--github-token", "x", "--github-token-file", "/t"]).unwrap_err()),
            "GITHUB_TOKEN"
        );
        let err = parse(&[
            "--github-app-id",
            "1",
            "--github-app-private-key-path",
            "/k",
            "--github-app-installation-id",
            "2",
            "--github-token",
            "ghp_x",
        ])
        .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Conflict {
                var: "GITHUB_APP_ID",
                other: "GITHUB_TOKEN",
                ..
            }
        ));
        assert_eq!(
            var_of(parse(&["--github-token", "t", "--refresh-fraction", "1.5"]).unwrap_err()),
            "PENGUIN_TOKENATOR_REFRESH_FRACTION"
        );
    }

    #[test]
    fn tcp_listener_needs_full_auth_and_tls_or_opt_in() {
        let base = ["--github-token", "t"];
        let s = parse(&base).unwrap();
        assert!(s.tcp.is_none() && s.tcp_off_reason.is_some());
        let mut jwks = base.to_vec();
        jwks.extend(["--jwks-file", "/j.json"]);
        assert_eq!(
            var_of(parse(&jwks).unwrap_err()),
            "PENGUIN_TOKENATOR_JWT_ISSUER"
        );
        jwks.extend([
            "--jwt-issuer",
            "https://k8s",
            "--jwt-audience",
            "tokenator",
            "--policy-file",
            "/p.yaml",
        ]);
        assert_eq!(
            var_of(parse(&jwks).unwrap_err()),
            "PENGUIN_TOKENATOR_TLS_CERT"
        );
        let mut plain = jwks.clone();
        plain.push("--grpc-plaintext");
        assert!(parse(&plain).unwrap().tcp.unwrap().auth.tls.is_none());
        jwks.extend(["--tls-cert", "/c.pem"]);
        assert_eq!(
            var_of(parse(&jwks).unwrap_err()),
            "PENGUIN_TOKENATOR_TLS_KEY"
        );
    }

    #[test]
    fn margin_is_the_smaller_of_cap_and_fraction() {
        let t = Timing {
            refresh_fraction: 0.5,
            margin_max: Duration::from_secs(300),
            margin_fraction: 0.2,
            probe_timeout: Duration::from_secs(10),
        };
        assert_eq!(
            t.margin(Duration::from_secs(3600)),
            Duration::from_secs(300)
        );
        assert_eq!(t.margin(Duration::from_secs(10)), Duration::from_secs(2));
    }
}
