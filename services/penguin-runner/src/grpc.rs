//! The gRPC job service: who may call (anyone on the Unix socket, which only
//! the api can reach; over TCP an allowed ServiceAccount subject), then the
//! job's lifecycle from [`crate::job`].

use crate::job::Jobs;
use futures::StreamExt;
use globset::GlobSet;
use penguin_grpc_auth::JwtVerifier;
use penguin_proto::runner::v1::{run_request::Item, runner_server::Runner, RunEvent, RunRequest};
use std::{pin::Pin, sync::Arc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

/// Who is calling.
#[derive(Clone)]
pub enum Callers {
    /// The Unix socket: its file mode and volume decide who can connect.
    Local,
    /// TCP: a verified JWT whose subject matches an allowed glob.
    Remote {
        /// JWT verification.
        verifier: Arc<JwtVerifier>,
        /// Allowed subjects.
        allowed: Arc<GlobSet>,
    },
}

impl Callers {
    fn authorize(&self, request: &Request<Streaming<RunRequest>>) -> Result<String, Status> {
        match self {
            Callers::Local => Ok("unix-socket".into()),
            Callers::Remote { verifier, allowed } => {
                let subject = verifier.authenticate(request.metadata())?;
                if allowed.is_match(&subject) {
                    Ok(subject)
                } else {
                    Err(Status::permission_denied(format!(
                        "{subject} may not run jobs on this runner"
                    )))
                }
            }
        }
    }
}

/// The `penguin.runner.v1.Runner` service.
pub struct RunnerGrpc {
    jobs: Arc<Jobs>,
    callers: Callers,
}

impl RunnerGrpc {
    /// The service over `jobs` for `callers`.
    pub fn new(jobs: Arc<Jobs>, callers: Callers) -> Self {
        RunnerGrpc { jobs, callers }
    }
}

type EventStream = Pin<Box<dyn futures::Stream<Item = Result<RunEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Runner for RunnerGrpc {
    type RunStream = EventStream;

    async fn run(
        &self,
        request: Request<Streaming<RunRequest>>,
    ) -> Result<Response<Self::RunStream>, Status> {
        let caller = self.callers.authorize(&request)?;
        let mut inbound = request.into_inner();
        let spec = match inbound.next().await {
            Some(Ok(RunRequest {
                item: Some(Item::Spec(spec)),
            })) => spec,
            Some(Err(status)) => return Err(status),
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must be the JobSpec",
                ))
            }
        };
        let plan = self.jobs.plan(spec)?;
        let span = tracing::info_span!(
            "job",
            job_id = %plan.job_id,
            request_id = %plan.request_id,
            caller = %caller
        );
        let jobs = self.jobs.clone();
        async move {
            let permit = jobs.slot().await?;
            let dir = jobs.make_dir(&plan)?;
            let chunks = inbound.map(|message| match message {
                Ok(RunRequest {
                    item: Some(Item::Workspace(chunk)),
                }) => Ok(chunk.data),
                Ok(_) => Err(Status::invalid_argument(
                    "after the JobSpec only workspace chunks may follow",
                )),
                Err(status) => Err(status),
            });
            let size = jobs.receive_workspace(&dir, Box::pin(chunks)).await?;
            tracing::info!(argv0 = %plan_argv0(&plan), workspace_bytes = size, "job starting");
            let (tx, rx) = tokio::sync::mpsc::channel(64);
            let jobs = jobs.clone();
            tokio::spawn(
                async move {
                    jobs.execute(plan, dir, tx).await;
                    drop(permit);
                }
                .in_current_span(),
            );
            Ok(Response::new(
                Box::pin(ReceiverStream::new(rx)) as EventStream
            ))
        }
        .instrument(span)
        .await
    }
}

fn plan_argv0(plan: &crate::job::Plan) -> String {
    plan.argv0().to_string()
}
