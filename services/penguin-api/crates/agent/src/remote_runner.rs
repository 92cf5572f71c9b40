//! [`RemoteRunner`]: commands run in penguin-runner, the sandbox that holds
//! no token, key or secret. Like the local runner it works on a scratch copy
//! of the workspace (made once; denied paths and `.git` are never copied,
//! so they never leave this pod): each command sends the copy, and the files
//! the command changed come back and are applied to it, so a later command
//! sees what an earlier one built or formatted.

use crate::{
    config::SecurityPolicy,
    runner::{scratch_once, short, CommandOutput, CommandRunner, RunnerError, Scratch},
    MAX_OUTPUT_BYTES,
};
use penguin_runner_client::{workspace, ClientError, Job, RunnerClient};
use std::{path::PathBuf, sync::Arc, time::Duration};

/// Runs commands in a penguin-runner.
pub struct RemoteRunner {
    client: RunnerClient,
    workspace: PathBuf,
    policy: Arc<SecurityPolicy>,
    scratch: tokio::sync::OnceCell<Scratch>,
}

impl RemoteRunner {
    /// A runner for `workspace` through `client`.
    pub fn new(client: RunnerClient, workspace: PathBuf, policy: Arc<SecurityPolicy>) -> Self {
        RemoteRunner {
            client,
            workspace,
            policy,
            scratch: tokio::sync::OnceCell::new(),
        }
    }

    async fn scratch(&self) -> Result<&Scratch, RunnerError> {
        scratch_once(&self.scratch, &self.workspace, &self.policy).await
    }
}

fn lossy(bytes: &[u8], truncated: bool) -> String {
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    if truncated {
        text.push_str("\n[truncated]");
    }
    text
}

impl From<ClientError> for RunnerError {
    fn from(err: ClientError) -> Self {
        if err.is_transient() {
            RunnerError::Unavailable(err.to_string())
        } else {
            RunnerError::Remote(err.to_string())
        }
    }
}

#[async_trait::async_trait]
impl CommandRunner for RemoteRunner {
    async fn run(&self, command: &str, timeout: Duration) -> Result<CommandOutput, RunnerError> {
        let scratch = self.scratch().await?;
        let work = scratch.work.clone();
        let archive = tokio::task::spawn_blocking(move || workspace::pack(&work, &|_| false))
            .await
            .map_err(|e| RunnerError::Workspace(e.to_string()))??;
        tracing::info!(runner = "remote", command = %short(command), ?timeout, workspace_bytes = archive.len(), "running command");
        let mut job = Job::shell(command);
        job.limits.wall_time_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        job.limits.output_bytes = 2 * MAX_OUTPUT_BYTES as u64;
        job.collect_changes = true;
        let outcome = self.client.run(job, archive, MAX_OUTPUT_BYTES).await?;
        let finished = outcome.finished;
        let cut = outcome.locally_truncated || finished.output_truncated;
        let work = scratch.work.clone();
        let changes = outcome.changes;
        let changed = changes.len();
        let skipped = tokio::task::spawn_blocking(move || workspace::apply(&work, &changes))
            .await
            .map_err(|e| RunnerError::Workspace(e.to_string()))??;
        if !skipped.is_empty() {
            tracing::warn!(files = ?skipped, "changed files too large to bring back from the runner");
        }
        tracing::info!(
            runner = "remote",
            job_id = %outcome.job_id,
            exit_code = ?finished.exit_code,
            signal = ?finished.signal,
            timed_out = finished.timed_out,
            changed,
            duration_ms = finished.duration_ms,
            "command finished"
        );
        Ok(CommandOutput {
            exit_code: finished.exit_code,
            stdout: lossy(&outcome.stdout, cut),
            stderr: lossy(&outcome.stderr, cut),
            timed_out: finished.timed_out,
        })
    }

    fn name(&self) -> &str {
        "remote"
    }
}
