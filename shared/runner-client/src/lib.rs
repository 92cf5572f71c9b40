//! Calling penguin-runner, the only place repository code runs.
//!
//! - [`RunnerAddr`]: where the runner is (`unix:/path`, or `https://host:port`
//!   with a projected ServiceAccount token and the CA that signed the
//!   runner's certificate).
//! - [`RunnerClient`]: connects lazily, sends a job, collects its events.
//! - [`workspace`]: packing a directory as the job's `.tar.gz`, and applying
//!   the changes a job returns.

pub mod workspace;

use futures::StreamExt;
use penguin_proto::runner::v1::{
    change, output, run_event, run_request, runner_client::RunnerClient as GrpcClient, Change,
    Finished, JobSpec, Limits, RunRequest, WorkspaceChunk,
};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};
use tonic::{
    metadata::MetadataValue,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
    Code, Status,
};

/// Workspace bytes per message (well under gRPC's 4 MiB default).
const CHUNK: usize = 1024 * 1024;
/// Largest message either side accepts (a changed file travels whole).
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Where the runner listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunnerAddr {
    /// A Unix socket (compose, development).
    Unix(PathBuf),
    /// TLS over TCP (Kubernetes).
    Https(String),
}

impl RunnerAddr {
    /// Parses `unix:/path` or `https://host:port`.
    pub fn parse(value: &str) -> Result<Self, String> {
        if let Some(path) = value.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(
                    "a unix: address needs an absolute path (unix:/run/penguin-runner/runner.sock)"
                        .into(),
                );
            }
            return Ok(RunnerAddr::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = value.strip_prefix("https://") {
            if rest.is_empty() || rest.starts_with('/') {
                return Err("an https:// address needs a host".into());
            }
            return Ok(RunnerAddr::Https(value.trim_end_matches('/').to_string()));
        }
        if value.starts_with("http://") {
            return Err("the runner is reached over TLS only: use https:// (or unix:/path)".into());
        }
        Err("expected unix:/path or https://host:port".into())
    }
}

/// Why a job could not be run. [`ClientError::is_transient`] says whether a
/// retry can help.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The runner's address or TLS settings are unusable.
    #[error("runner client configuration: {0}")]
    Config(String),
    /// The workspace could not be packed or the changes applied.
    #[error("workspace: {0}")]
    Workspace(String),
    /// The ServiceAccount token file could not be read.
    #[error("cannot read the runner token file {path}: {reason}")]
    Token {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The runner answered with an error status.
    #[error("the runner refused the job ({code:?}): {message}")]
    Refused {
        /// gRPC code.
        code: Code,
        /// The runner's reason.
        message: String,
    },
    /// The stream ended without a `Finished` event.
    #[error("the runner ended the job without a result")]
    Incomplete,
}

impl ClientError {
    /// True when trying again later can help (the runner is down, busy or
    /// restarting); false for a bad request or configuration.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Refused { code, .. } => matches!(
                code,
                Code::Unavailable
                    | Code::ResourceExhausted
                    | Code::DeadlineExceeded
                    | Code::Aborted
                    | Code::Unknown
                    | Code::Internal
            ),
            ClientError::Incomplete | ClientError::Token { .. } => true,
            ClientError::Config(_) | ClientError::Workspace(_) => false,
        }
    }
}

impl From<Status> for ClientError {
    fn from(status: Status) -> Self {
        ClientError::Refused {
            code: status.code(),
            message: status.message().to_string(),
        }
    }
}

/// What to run.
#[derive(Clone, Debug, Default)]
pub struct Job {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// Working directory relative to the workspace root.
    pub workdir: String,
    /// Limits (zero fields take the runner's maxima).
    pub limits: Limits,
    /// Return changed files.
    pub collect_changes: bool,
    /// The caller's id for the runner's logs.
    pub request_id: String,
}

impl Job {
    /// `sh -c <command>`.
    pub fn shell(command: &str) -> Self {
        Job {
            argv: vec!["sh".into(), "-c".into(), command.into()],
            ..Job::default()
        }
    }
}

/// A finished job, collected.
#[derive(Clone, Debug, Default)]
pub struct JobOutcome {
    /// The runner's job id.
    pub job_id: String,
    /// Standard output (as much as the caller chose to keep).
    pub stdout: Vec<u8>,
    /// Standard error (same).
    pub stderr: Vec<u8>,
    /// The caller's own cap cut stdout or stderr.
    pub locally_truncated: bool,
    /// Changed files.
    pub changes: Vec<Change>,
    /// How it ended.
    pub finished: Finished,
}

/// One event of a running job, for callers that stream.
#[derive(Clone, Debug)]
pub enum JobEvent {
    /// Started, with the runner's job id.
    Started(String),
    /// Standard output bytes.
    Stdout(Vec<u8>),
    /// Standard error bytes.
    Stderr(Vec<u8>),
    /// A changed file.
    Change(Change),
    /// The end.
    Finished(Finished),
}

/// A lazily connected client; cheap to clone.
#[derive(Clone)]
pub struct RunnerClient {
    channel: Channel,
    token_file: Option<PathBuf>,
}

impl RunnerClient {
    /// A client for `addr`. For `https://`, `ca_file` is the CA that signed
    /// the runner's certificate and `token_file` the caller's projected
    /// ServiceAccount token (re-read for every job: it rotates).
    pub fn new(
        addr: &RunnerAddr,
        token_file: Option<PathBuf>,
        ca_file: Option<&Path>,
    ) -> Result<Self, ClientError> {
        let channel = match addr {
            RunnerAddr::Unix(path) => {
                let path = path.clone();
                // The URI is required by the API but unused: the connector dials the socket.
                Endpoint::from_static("http://runner.socket").connect_with_connector_lazy(
                    tower::service_fn(move |_: tonic::transport::Uri| {
                        let path = path.clone();
                        async move {
                            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                                tokio::net::UnixStream::connect(path).await?,
                            ))
                        }
                    }),
                )
            }
            RunnerAddr::Https(url) => {
                let ca_file = ca_file.ok_or_else(|| {
                    ClientError::Config(
                        "an https:// runner needs the CA that signed its certificate".into(),
                    )
                })?;
                let pem = std::fs::read(ca_file).map_err(|e| {
                    ClientError::Config(format!("CA file {}: {e}", ca_file.display()))
                })?;
                Endpoint::from_shared(url.clone())
                    .map_err(|e| ClientError::Config(e.to_string()))?
                    .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
                    .map_err(|e| ClientError::Config(e.to_string()))?
                    .tcp_nodelay(true)
                    .connect_lazy()
            }
        };
        Ok(RunnerClient {
            channel,
            token_file,
        })
    }

    fn grpc(&self) -> GrpcClient<Channel> {
        GrpcClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    fn authorize<T>(
        &self,
        mut request: tonic::Request<T>,
    ) -> Result<tonic::Request<T>, ClientError> {
        if let Some(path) = &self.token_file {
            let token = std::fs::read_to_string(path).map_err(|e| ClientError::Token {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            let value =
                MetadataValue::try_from(format!("Bearer {}", token.trim())).map_err(|_| {
                    ClientError::Token {
                        path: path.display().to_string(),
                        reason: "the token is not a valid header value".into(),
                    }
                })?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }

    /// True when the runner's gRPC health check says SERVING.
    pub async fn is_serving(&self) -> bool {
        let mut health = tonic_health::pb::health_client::HealthClient::new(self.channel.clone());
        let Ok(request) =
            self.authorize(tonic::Request::new(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            }))
        else {
            return false;
        };
        matches!(
            health.check(request).await,
            Ok(r) if r.get_ref().status
                == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        )
    }

    /// Starts `job` on `workspace` (a `.tar.gz`, see [`workspace::pack`]) and
    /// returns its events as they come.
    pub async fn start(
        &self,
        job: Job,
        workspace: Vec<u8>,
    ) -> Result<impl futures::Stream<Item = Result<JobEvent, ClientError>>, ClientError> {
        let spec = JobSpec {
            argv: job.argv,
            env: job.env.into_iter().collect(),
            workdir: job.workdir,
            limits: Some(job.limits),
            collect_changes: job.collect_changes,
            request_id: job.request_id,
        };
        let mut messages = vec![RunRequest {
            item: Some(run_request::Item::Spec(spec)),
        }];
        messages.extend(workspace.chunks(CHUNK).map(|chunk| RunRequest {
            item: Some(run_request::Item::Workspace(WorkspaceChunk {
                data: chunk.to_vec(),
            })),
        }));
        let request = self.authorize(tonic::Request::new(tokio_stream::iter(messages)))?;
        let events = self.grpc().run(request).await?.into_inner();
        Ok(events.filter_map(|event| async move {
            match event {
                Err(status) => Some(Err(ClientError::from(status))),
                Ok(event) => match event.event? {
                    run_event::Event::Started(s) => Some(Ok(JobEvent::Started(s.job_id))),
                    run_event::Event::Output(o) => {
                        Some(Ok(if o.stream == output::Stream::Stderr as i32 {
                            JobEvent::Stderr(o.data)
                        } else {
                            JobEvent::Stdout(o.data)
                        }))
                    }
                    run_event::Event::Change(c) => Some(Ok(JobEvent::Change(c))),
                    run_event::Event::Finished(f) => Some(Ok(JobEvent::Finished(f))),
                },
            }
        }))
    }

    /// Runs `job` to the end, keeping at most `keep_output` bytes of each of
    /// stdout and stderr.
    pub async fn run(
        &self,
        job: Job,
        workspace: Vec<u8>,
        keep_output: usize,
    ) -> Result<JobOutcome, ClientError> {
        let events = self.start(job, workspace).await?;
        futures::pin_mut!(events);
        let mut outcome = JobOutcome::default();
        let keep = |buf: &mut Vec<u8>, data: Vec<u8>, cut: &mut bool| {
            let room = keep_output.saturating_sub(buf.len());
            if data.len() > room {
                *cut = true;
            }
            buf.extend_from_slice(&data[..data.len().min(room)]);
        };
        while let Some(event) = events.next().await {
            match event? {
                JobEvent::Started(id) => outcome.job_id = id,
                JobEvent::Stdout(data) => {
                    keep(&mut outcome.stdout, data, &mut outcome.locally_truncated)
                }
                JobEvent::Stderr(data) => {
                    keep(&mut outcome.stderr, data, &mut outcome.locally_truncated)
                }
                JobEvent::Change(change) => outcome.changes.push(change),
                JobEvent::Finished(finished) => {
                    outcome.finished = finished;
                    return Ok(outcome);
                }
            }
        }
        Err(ClientError::Incomplete)
    }
}

/// Which kind of change, by name (for logs and summaries).
pub fn change_kind(change: &Change) -> &'static str {
    match change::Kind::try_from(change.kind).unwrap_or(change::Kind::Unspecified) {
        change::Kind::Added => "added",
        change::Kind::Modified => "modified",
        change::Kind::Deleted => "deleted",
        change::Kind::Unspecified => "changed",
    }
}

/// How long a caller should wait for a job by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
