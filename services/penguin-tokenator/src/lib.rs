//! penguin-tokenator: the sidecar that holds the GitHub App private key and
//! hands out short-lived, down-scoped installation tokens.
//!
//! [`Tokenator::build`] validates inputs and binds every listener;
//! [`Tokenator::serve`] runs until the shutdown future resolves, then drains.

pub mod broker;
pub mod client;
pub mod config;
pub mod git_credential;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod redeliver;
pub mod secret_file;

use broker::{TokenBroker, TokenSource};
use config::{Settings, SourceSettings};
use grpc::{
    auth::RemoteAuth,
    policy::{Policy, PolicyError},
    Callers, TokenGrpc,
};
use metrics::Metrics;
use penguin_github::{
    AppClient, AppKey, GitHubError, GitHubHttp, HttpSettings, KeyError, RetryPolicy, ServerClock,
};
use penguin_grpc_auth::{
    jwks, on_change,
    tls::{self, ReloadingCert, TlsError},
    JwksError, JwtVerifier,
};
use penguin_proto::tokenator::v1::{token_service_server::TokenServiceServer, FILE_DESCRIPTOR_SET};
use secret_file::{keep_file, FileFormat};
use std::{
    future::Future,
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};
use tokio::net::{TcpListener, UnixListener};

/// Why the tokenator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The App key is unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The fallback token file is unusable.
    #[error("GITHUB_TOKEN_FILE {path}: {source}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The caller policy is unusable.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The JWKS is unusable.
    #[error(transparent)]
    Jwks(#[from] JwksError),
    /// The TLS files are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The GitHub client could not be built.
    #[error(transparent)]
    GitHub(#[from] GitHubError),
    /// A listener could not be bound.
    #[error("cannot listen on {what} {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// Address or path.
        addr: String,
        /// Why.
        source: io::Error,
    },
    /// The gRPC services could not be assembled.
    #[error("cannot build the gRPC services: {0}")]
    Grpc(String),
}

impl StartError {
    /// True when an operator-supplied input is at fault (exit 64).
    pub fn is_config(&self) -> bool {
        !matches!(
            self,
            StartError::Bind { .. } | StartError::Grpc(_) | StartError::GitHub(_)
        )
    }
}

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
#[error("{listener} server failed: {reason}")]
pub struct ServeError {
    listener: &'static str,
    reason: String,
}

struct TcpListenerSetup {
    listener: TcpListener,
    auth: Arc<RemoteAuth>,
    cert: Option<Arc<ReloadingCert>>,
}

/// A built tokenator with its listeners bound.
pub struct Tokenator {
    settings: Settings,
    broker: TokenBroker,
    metrics: Arc<Metrics>,
    http_listener: TcpListener,
    unix_listener: UnixListener,
    tcp: Option<TcpListenerSetup>,
    github: Option<Arc<GitHubHttp>>,
}

/// Waits up to `limit` for `path` to exist (another container may be
/// writing it); reading it then fails with the usual error if it never came.
async fn wait_for_file(path: &std::path::Path, limit: std::time::Duration) {
    if limit.is_zero() || path.exists() {
        return;
    }
    tracing::info!(path = %path.display(), wait_secs = limit.as_secs(), "waiting for the App key file");
    let deadline = tokio::time::Instant::now() + limit;
    while !path.exists() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

impl Tokenator {
    /// Loads the key, token, JWKS, policy and TLS files and binds the listeners.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::new());
        let mut github = None;
        let source = match &settings.source {
            SourceSettings::App {
                issuer, key_path, ..
            } => {
                wait_for_file(key_path, settings.key_wait).await;
                let key = AppKey::from_pem_file(key_path)?;
                let http = Arc::new(GitHubHttp::new(
                    HttpSettings {
                        api_url: settings.endpoints.github_api_url.clone(),
                        timeout: settings.github_timeout,
                    },
                    Arc::new(ServerClock::new()),
                )?);
                github = Some(http.clone());
                let app = AppClient::new(http, key, issuer.clone(), RetryPolicy::default());
                TokenSource::App(std::sync::RwLock::new(Arc::new(app)))
            }
            SourceSettings::Static { .. } | SourceSettings::File { .. } => TokenSource::Static,
        };
        let broker = TokenBroker::new(source, settings.timing, metrics.clone());
        match &settings.source {
            SourceSettings::App {
                installation_id: Some(id),
                ..
            } => broker.set_default_installation(*id),
            SourceSettings::App { .. } => {}
            SourceSettings::Static { token } => broker.set_static_token(token),
            SourceSettings::File { path } => {
                let token = read_token_file(path).map_err(|source| StartError::TokenFile {
                    path: path.clone(),
                    source,
                })?;
                broker.set_static_token(&token);
            }
        }

        let http_listener = bind_tcp("HTTP", settings.http_addr).await?;
        let unix_listener = bind_unix(&settings.socket)?;
        let tcp = match &settings.tcp {
            None => None,
            Some(tcp) => {
                let keys = jwks::load(&tcp.auth.jwks, settings.github_timeout).await?;
                let policy = Policy::load(&tcp.policy)?;
                let verifier = Arc::new(JwtVerifier::new(
                    keys,
                    tcp.auth.issuer.clone(),
                    tcp.auth.audience.clone(),
                ));
                let auth = Arc::new(RemoteAuth::new(verifier, policy));
                let cert = match &tcp.auth.tls {
                    Some(files) => Some(Arc::new(ReloadingCert::new(tls::load_certified_key(
                        files,
                    )?))),
                    None => None,
                };
                let listener = bind_tcp("gRPC", tcp.addr).await?;
                Some(TcpListenerSetup {
                    listener,
                    auth,
                    cert,
                })
            }
        };
        Ok(Tokenator {
            settings,
            broker,
            metrics,
            http_listener,
            unix_listener,
            tcp,
            github,
        })
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// The bound TCP gRPC address, when that listener is on.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|t| t.listener.local_addr().ok())
    }

    /// The Unix socket path.
    pub fn socket_path(&self) -> &Path {
        &self.settings.socket
    }

    /// The token broker.
    pub fn broker(&self) -> &TokenBroker {
        &self.broker
    }

    /// Serves every listener until `shutdown` resolves, then stops accepting,
    /// lets in-flight requests finish and removes the socket file.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Tokenator {
            settings,
            broker,
            metrics,
            http_listener,
            unix_listener,
            tcp,
            github,
        } = self;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };

        spawn_background(&settings, &broker, &metrics, github, tcp.as_ref());

        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        tokio::spawn(report_health(broker.clone(), health_reporter));
        // Health is described too, so grpcurl and reflection-driven clients see it.
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| ServeError {
                listener: "gRPC",
                reason: e.to_string(),
            })?;
        let reflection_alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .map_err(|e| ServeError {
                listener: "gRPC",
                reason: e.to_string(),
            })?;
        let routes = |callers: Callers| {
            tonic::service::Routes::new(TokenServiceServer::new(TokenGrpc::new(
                broker.clone(),
                callers,
                metrics.clone(),
            )))
            .add_service(health_service.clone())
            .add_service(reflection.clone())
            .add_service(reflection_alpha.clone())
        };

        let credentials = (
            settings.credentials_path.clone(),
            FileFormat::GitCredentials {
                origin: settings.endpoints.server_origin(),
            },
        );
        let http = axum::serve(
            http_listener,
            http::router(broker.clone(), metrics.clone(), credentials),
        )
        .with_graceful_shutdown(stopped());
        let unix = tonic::transport::Server::builder()
            .add_routes(routes(Callers::Local))
            .serve_with_incoming_shutdown(grpc::unix_authority::incoming(unix_listener), stopped());
        let tcp_server = async {
            let Some(setup) = tcp else {
                return Ok(());
            };
            let server =
                tonic::transport::Server::builder().add_routes(routes(Callers::Remote(setup.auth)));
            match setup.cert {
                Some(cert) => {
                    let config = tls::server_config(cert).map_err(|e| e.to_string())?;
                    server
                        .serve_with_incoming_shutdown(
                            tls::incoming(setup.listener, config),
                            stopped(),
                        )
                        .await
                }
                None => {
                    server
                        .serve_with_incoming_shutdown(
                            tokio_stream::StreamExt::map(
                                tokio_stream::wrappers::TcpListenerStream::new(setup.listener),
                                |conn| {
                                    conn.inspect(|tcp| {
                                        let _ = tcp.set_nodelay(true);
                                    })
                                },
                            ),
                            stopped(),
                        )
                        .await
                }
            }
            .map_err(|e| e.to_string())
        };
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: draining in-flight requests");
            let _ = stop_tx.send(true);
        });
        let (http, unix, tcp) = tokio::join!(http, unix, tcp_server);
        let _ = std::fs::remove_file(&settings.socket);
        http.map_err(|e| ServeError {
            listener: "HTTP",
            reason: e.to_string(),
        })?;
        unix.map_err(|e| ServeError {
            listener: "Unix socket gRPC",
            reason: e.to_string(),
        })?;
        tcp.map_err(|reason| ServeError {
            listener: "TCP gRPC",
            reason,
        })?;
        Ok(())
    }
}

/// Starts the default token, the kept files and the file watchers.
fn spawn_background(
    settings: &Settings,
    broker: &TokenBroker,
    metrics: &Arc<Metrics>,
    github: Option<Arc<GitHubHttp>>,
    tcp: Option<&TcpListenerSetup>,
) {
    let default_broker = broker.clone();
    let repository = settings.endpoints.github_repository.clone();
    tokio::spawn(async move {
        if default_broker.default_scope().is_none() {
            if let Some(repo) = repository {
                default_broker.resolve_default_installation(&repo).await;
            }
        }
        default_broker.start_default().await;
    });

    let origin = settings.endpoints.server_origin();
    tokio::spawn(keep_file(
        settings.credentials_path.clone(),
        FileFormat::GitCredentials { origin },
        broker.subscribe_default(),
        metrics.clone(),
    ));
    if let Some(path) = &settings.token_file {
        tokio::spawn(keep_file(
            path.clone(),
            FileFormat::BareToken,
            broker.subscribe_default(),
            metrics.clone(),
        ));
    }

    if matches!(settings.source, SourceSettings::App { .. }) {
        let broker = broker.clone();
        tokio::spawn(redeliver::run(
            settings.redeliver,
            move || broker.app_client(),
            metrics.clone(),
        ));
    }
    match &settings.source {
        SourceSettings::App { key_path, .. } => {
            let broker = broker.clone();
            on_change(key_path.clone(), move |path| {
                match AppKey::from_pem_file(path) {
                    Ok(key) => {
                        tracing::info!(path = %path.display(), "App private key reloaded");
                        broker.replace_app_key(key);
                    }
                    Err(err) => tracing::error!(%err, "keeping the previous App key"),
                }
            });
        }
        SourceSettings::File { path } => {
            let broker = broker.clone();
            on_change(path.clone(), move |path| match read_token_file(path) {
                Ok(token) => {
                    if broker
                        .usable(&penguin_github::TokenScope::installation(0))
                        .is_none_or(|t| t.token.expose() != token)
                    {
                        tracing::info!(path = %path.display(), "token file changed; serving the new token");
                        broker.set_static_token(&token);
                    }
                }
                Err(err) => {
                    tracing::error!(path = %path.display(), %err, "keeping the previous token")
                }
            });
        }
        SourceSettings::Static { .. } => {}
    }

    if let Some(github) = github {
        let metrics = metrics.clone();
        tokio::spawn(async move {
            loop {
                if let Some(remaining) = github.rate_limit_remaining() {
                    metrics.rate_limit_remaining.set(remaining);
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        });
    }

    let (Some(tcp_settings), Some(setup)) = (&settings.tcp, tcp) else {
        return;
    };
    let auth = setup.auth.clone();
    on_change(
        tcp_settings.policy.clone(),
        move |path| match Policy::load(path) {
            Ok(policy) => {
                tracing::info!(path = %path.display(), "caller policy reloaded");
                auth.set_policy(policy);
            }
            Err(err) => tracing::error!(%err, "keeping the previous caller policy"),
        },
    );
    jwks::keep_fresh(
        &tcp_settings.auth.jwks,
        setup.auth.verifier().clone(),
        settings.github_timeout,
    );
    if let (Some(files), Some(cert)) = (&tcp_settings.auth.tls, &setup.cert) {
        tls::keep_fresh(files, cert.clone());
    }
}

/// Keeps grpc.health.v1 in step with readiness.
async fn report_health(broker: TokenBroker, reporter: tonic_health::server::HealthReporter) {
    use tonic_health::ServingStatus;
    let mut updates = broker.subscribe_default();
    let mut last = None;
    loop {
        let status = if broker.is_ready() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        if last != Some(status) {
            reporter
                .set_service_status("penguin.tokenator.v1.TokenService", status)
                .await;
            reporter.set_service_status("", status).await;
            last = Some(status);
        }
        tokio::select! {
            _ = updates.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

fn read_token_file(path: &Path) -> io::Result<String> {
    let token = std::fs::read_to_string(path)?.trim().to_string();
    if token.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the file is empty",
        ));
    }
    Ok(token)
}

async fn bind_tcp(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            what,
            addr: addr.to_string(),
            source,
        })
}

/// Binds the Unix socket (mode 0660: same-pod callers share the volume and
/// the group; nobody else may connect).
fn bind_unix(path: &Path) -> Result<UnixListener, StartError> {
    penguin_grpc_auth::unix::bind(path, 0o660).map_err(|source| StartError::Bind {
        what: "Unix socket",
        addr: path.display().to_string(),
        source,
    })
}
