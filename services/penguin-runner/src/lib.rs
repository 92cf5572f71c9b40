//! penguin-runner: the only place repository code runs.
//!
//! A small, static gRPC server that can be dropped into any toolchain image.
//! It holds no token, key, database or secret and needs no network for its
//! jobs. Each job is disposable (see [`job`]); the [`supervisor`] makes sure
//! nothing a job starts outlives it.
//!
//! [`Runner::build`] validates inputs and binds every listener;
//! [`Runner::serve`] runs until the shutdown future resolves, then lets
//! running jobs finish.

pub mod config;
pub mod exec;
pub mod grpc;
pub mod job;
pub mod supervisor;

use config::Settings;
use grpc::{Callers, RunnerGrpc};
use job::{JobSettings, Jobs};
use penguin_grpc_auth::{jwks, tls, JwksError, JwtVerifier, ReloadingCert, TlsError};
use penguin_proto::runner::v1::{runner_server::RunnerServer, FILE_DESCRIPTOR_SET};
use penguin_runner_client::MAX_MESSAGE;
use std::{
    future::Future,
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};
use tokio::net::{TcpListener, UnixListener};

/// How long fetching a JWKS URL may take.
const JWKS_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the runner could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Started as root.
    #[error("penguin-runner refuses to run as root (uid 0): jobs would run as root too; run it as an unprivileged user (the image uses 10002)")]
    Root,
    /// The work directory is unusable.
    #[error("PENGUIN_RUNNER_WORK_DIR {path}: {source}")]
    WorkDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The JWKS is unusable.
    #[error(transparent)]
    Jwks(#[from] JwksError),
    /// The TLS files are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// This executable's path is unknown (it starts each job's supervisor).
    #[error("cannot find this executable to supervise jobs: {0}")]
    Exe(io::Error),
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
}

impl StartError {
    /// True when an operator-supplied input is at fault (exit 64).
    pub fn is_config(&self) -> bool {
        !matches!(self, StartError::Bind { .. } | StartError::Exe(_))
    }
}

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
#[error("{listener} server failed: {reason}")]
pub struct ServeError {
    listener: &'static str,
    reason: String,
}

struct TcpSetup {
    listener: TcpListener,
    verifier: Arc<JwtVerifier>,
    allowed: Arc<globset::GlobSet>,
    cert: Arc<ReloadingCert>,
}

/// A built runner with its listeners bound.
pub struct Runner {
    settings: Settings,
    jobs: Arc<Jobs>,
    unix_listener: UnixListener,
    tcp: Option<TcpSetup>,
}

/// The uid this process runs as.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

impl Runner {
    /// Checks the user and work directory, loads the JWKS and TLS files,
    /// binds the listeners.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        if effective_uid() == 0 {
            return Err(StartError::Root);
        }
        let work_err = |source| StartError::WorkDir {
            path: settings.work_dir.clone(),
            source,
        };
        std::fs::create_dir_all(&settings.work_dir).map_err(work_err)?;
        clear_stale_jobs(&settings.work_dir).map_err(work_err)?;
        let supervisor = std::env::current_exe().map_err(StartError::Exe)?;
        let base_env = settings
            .env_allowlist
            .iter()
            .filter_map(|name| std::env::var(name).ok().map(|v| (name.clone(), v)))
            .collect();
        let jobs = Arc::new(Jobs::new(
            JobSettings {
                work_dir: settings.work_dir.clone(),
                maxima: settings.maxima,
                base_env,
                queue_wait: settings.queue_wait,
                supervisor,
            },
            settings.concurrency,
        ));
        let unix_listener = bind_unix(&settings.socket)?;
        let tcp = match &settings.tcp {
            None => None,
            Some(tcp) => {
                let keys = jwks::load(&tcp.auth.jwks, JWKS_TIMEOUT).await?;
                let verifier = Arc::new(JwtVerifier::new(
                    keys,
                    tcp.auth.issuer.clone(),
                    tcp.auth.audience.clone(),
                ));
                let files = tcp
                    .auth
                    .tls
                    .as_ref()
                    .expect("the runner's TCP listener is TLS only");
                let cert = Arc::new(ReloadingCert::new(tls::load_certified_key(files)?));
                let listener =
                    TcpListener::bind(tcp.addr)
                        .await
                        .map_err(|source| StartError::Bind {
                            what: "gRPC TCP",
                            addr: tcp.addr.to_string(),
                            source,
                        })?;
                Some(TcpSetup {
                    listener,
                    verifier,
                    allowed: Arc::new(tcp.allowed.clone()),
                    cert,
                })
            }
        };
        Ok(Runner {
            settings,
            jobs,
            unix_listener,
            tcp,
        })
    }

    /// The Unix socket path.
    pub fn socket_path(&self) -> &Path {
        &self.settings.socket
    }

    /// The bound TCP address, when that listener is on.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|t| t.listener.local_addr().ok())
    }

    /// Serves until `shutdown` resolves; then stops accepting, lets running
    /// jobs finish and removes the socket file.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Runner {
            settings,
            jobs,
            unix_listener,
            tcp,
        } = self;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<RunnerServer<RunnerGrpc>>()
            .await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| ServeError {
                listener: "gRPC",
                reason: e.to_string(),
            })?;
        let routes = |callers: Callers| {
            tonic::service::Routes::new(
                RunnerServer::new(RunnerGrpc::new(jobs.clone(), callers))
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE),
            )
            .add_service(health_service.clone())
            .add_service(reflection.clone())
        };
        let unix = tonic::transport::Server::builder()
            .add_routes(routes(Callers::Local))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::UnixListenerStream::new(unix_listener),
                stopped(),
            );
        let tcp_server = async {
            let Some(setup) = tcp else {
                return Ok(());
            };
            if let Some(tcp) = &settings.tcp {
                jwks::keep_fresh(&tcp.auth.jwks, setup.verifier.clone(), JWKS_TIMEOUT);
                if let Some(files) = &tcp.auth.tls {
                    tls::keep_fresh(files, setup.cert.clone());
                }
            }
            let config = tls::server_config(setup.cert).map_err(|e| e.to_string())?;
            tonic::transport::Server::builder()
                .add_routes(routes(Callers::Remote {
                    verifier: setup.verifier,
                    allowed: setup.allowed,
                }))
                .serve_with_incoming_shutdown(tls::incoming(setup.listener, config), stopped())
                .await
                .map_err(|e| e.to_string())
        };
        let reporter = health_reporter.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: no new jobs; running jobs finish");
            reporter.set_not_serving::<RunnerServer<RunnerGrpc>>().await;
            let _ = stop_tx.send(true);
        });
        let (unix, tcp) = tokio::join!(unix, tcp_server);
        let _ = std::fs::remove_file(&settings.socket);
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

/// Removes job directories a previous run left (it was killed mid-job).
fn clear_stale_jobs(work_dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(work_dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with("job-") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
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
